"""One adapter at a time: one parallel adapter at each position (Fig. 1; MHA vs FFN, Fig. 7), one
adapter on each grid edge (Fig. 3; Spearman between datasets, Fig. 4) and the best single adapter of
each kind (Table 3), with their findings."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from .. import verdicts as V
from ..analysis import load_runs, pairs_by_dataset, single_edges, summarise
from ..verdicts import spearman
from .baselines import baselines
from .drawing import LINE_STYLE, baseline_lines, edge_matrix, grid_axes, plt, sns
from .evidence import HEALTHY, Finding, Health, fmt, healthy, in_pooled_std, is_bad, noise_of, percent, pooled_of, seeds_of, tally
from .product import Batches, Product, grid_nodes


def fig1_data(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and parallel position k: mean accuracy (%), block and sub-layer (Fig. 1, 7)."""
    out = summarise(runs, ["dataset", "placement"], scale=100)
    out["position"] = out.placement.map(lambda p: int(p.split("_")[1]))
    out["block"] = (out.position + 1) // 2
    out["sublayer"] = np.where(out.position % 2 == 1, "MHA", "FFN")
    return out.sort_values(["dataset", "position"])


CHOSEN = {"chosen_mean": "mean", "chosen_std": "std", "chosen_run_ids": "run_ids", "chosen_edge": "edge"}


def table3(fig1_runs: pd.DataFrame, fig3_runs: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """The best single adapter of each kind: parallel from Fig. 1, the others from the Fig. 3 grid.
    ``mean``, ``std``, ``edge``: the edge of best test accuracy (the paper's table); ``chosen_*``: the
    edge of lowest mean train loss, the one the findings judge (picked by test, the kinds with more
    edges would win by the max of more noisy draws)."""
    edges = pd.concat([single_edges(fig1_runs), single_edges(fig3_runs)], ignore_index=True)
    rows = []
    for dataset in datasets:
        for kind in ("parallel", "sequential", "long_range", "recurrent"):
            part = edges[(edges.dataset == dataset) & (edges.kind == kind)]
            if part.empty:
                rows.append({"adapter_type": kind, "dataset": dataset, "mean": math.nan, "std": math.nan,
                             "edge": "", "run_ids": "", "chosen_mean": math.nan, "chosen_std": math.nan,
                             "chosen_edge": "", "chosen_run_ids": "", "chosen_train_loss": math.nan})
                continue
            best = part.sort_values(["mean", "i", "j"], ascending=[False, True, True]).iloc[0]  # ties: lower edge
            # as analysis.best_by_train_loss chooses: a diverged seed makes the loss infinite
            loss = part.train_loss.where(part.diverged == 0, math.inf).fillna(math.inf)
            chosen = part.assign(loss=loss).sort_values(["loss", "i", "j"]).iloc[0]  # ties: lower edge
            rows.append({"adapter_type": kind, "dataset": dataset, "mean": best["mean"], "std": best["std"],
                         "edge": f"({best.i}, {best.j})", "run_ids": best.run_ids,
                         "chosen_mean": chosen["mean"], "chosen_std": chosen["std"],
                         "chosen_edge": f"({chosen.i}, {chosen.j})", "chosen_run_ids": chosen.run_ids,
                         "chosen_train_loss": chosen.train_loss})
    return pd.DataFrame(rows)


def chosen_edges(table3: pd.DataFrame) -> pd.DataFrame:
    """Table 3 with each kind's edge of lowest train loss in its mean, std, edge and run ids (what
    the findings judge). A table without the chosen columns (written before they existed) is an
    error, not a silent fall-back to the test max."""
    missing = [c for c in [*CHOSEN, "chosen_train_loss"] if c not in table3]
    if missing:
        raise ValueError(f"Table 3 lacks {missing}: rebuild it (snakemake --forcerun table3)")
    return table3.drop(columns=list(CHOSEN.values())).rename(columns=CHOSEN)


def fig4_correlations(fig3_runs: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """Spearman between datasets of the single-adapter test accuracies on the grid (Fig. 4)."""
    edges = single_edges(fig3_runs)
    wide = edges.pivot_table(index="placement", columns="dataset", values="mean")
    rows = []
    for a in datasets:
        for b in datasets:
            rho = 1.0 if a == b else spearman(wide.get(a, []), wide.get(b, []))[0]
            rows.append({"dataset_a": a, "dataset_b": b, "spearman": rho})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- side by side with the paper

def _table3_pairs(ours, paper):
    return pairs_by_dataset(ours, paper, "adapter_type", scale=100)  # the paper prints Table 3 in fractions


# ---------------------------------------------------------------- drawing

def figure1(data: pd.DataFrame, lines: pd.DataFrame):
    """Test accuracy of one parallel adapter at each position, with FT / LP / PA lines."""
    datasets = list(dict.fromkeys(data.dataset))
    fig, axes = grid_axes(len(datasets))
    for ax, dataset in zip(axes, datasets):
        part = data[data.dataset == dataset]
        sns.lineplot(data=part, x="position", y="mean", marker="o", ax=ax, color="tab:blue")
        ax.fill_between(part.position, part["mean"] - part["std"], part["mean"] + part["std"], alpha=0.2)
        baseline_lines(ax, lines, dataset)
        ax.set(title=dataset, xlabel="parallel position k (edge k-1 -> k)", ylabel="test accuracy (%)")
    axes[0].legend(fontsize=7)
    return fig


def figure7(data: pd.DataFrame, lines: pd.DataFrame):
    """MHA vs FFN parallel adapter per block."""
    datasets = list(dict.fromkeys(data.dataset))
    fig, axes = grid_axes(len(datasets))
    for ax, dataset in zip(axes, datasets):
        sns.lineplot(data=data[data.dataset == dataset], x="block", y="mean", hue="sublayer", marker="o", ax=ax)
        baseline_lines(ax, lines, dataset)
        ax.set(title=dataset, xlabel="encoder block", ylabel="test accuracy (%)")
        ax.legend(fontsize=7)
    return fig


def figure3(data: pd.DataFrame, lines: pd.DataFrame, num_nodes: Mapping[str, int]):
    """Single-adapter test accuracy on the grid edges (row i = source, column j = target)."""
    datasets = list(dict.fromkeys(data.dataset))
    fig, axes = grid_axes(len(datasets), width=3.8, height=3.4)
    for ax, dataset in zip(axes, datasets):
        part = data[data.dataset == dataset]
        points = sorted(set(part.i) | set(part.j))
        matrix = edge_matrix(part, num_nodes[dataset])[np.ix_(points, points)]
        sns.heatmap(matrix, ax=ax, cmap="viridis", xticklabels=points, yticklabels=points, square=True,
                    cbar_kws={"label": "test accuracy (%)"})
        for _, row in part.nlargest(3, "mean").iterrows():
            ax.add_patch(plt.Rectangle((points.index(row.j), points.index(row.i)), 1, 1, fill=False, ec="yellow", lw=2))
        base = lines[lines.dataset == dataset].set_index("method")["mean"].round(1).to_dict()
        ax.set(title=f"{dataset}\n" + " ".join(f"{LINE_STYLE[m][0]} {v}" for m, v in base.items()),
               xlabel="target node j", ylabel="source node i")
    return fig


def figure4(data: pd.DataFrame):
    wide = data.pivot(index="dataset_a", columns="dataset_b", values="spearman")
    order = list(dict.fromkeys(data.dataset_a))
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    sns.heatmap(wide.loc[order, order], annot=True, fmt=".2f", vmin=-1, vmax=1, cmap="coolwarm", ax=ax)
    ax.set(title="Spearman between datasets (single-adapter accuracy)", xlabel="", ylabel="")
    return fig


# ---------------------------------------------------------------- findings

PLACEMENT_MATTERS = Finding(
    "Fig. 1", "the position of a single parallel adapter changes test accuracy, and the best position is task dependent",
    "qualitative (Fig. 1)", "ANOVA over positions per dataset: p < 0.05 on at least half the datasets (spread within "
    "2 pooled std and p >= 0.05: no effect); collapsed cells left out",
    lambda e: finding_single_placement_matters(e.figure("fig1"), e.health, e.seeds))
MHA_FFN_ALIKE = Finding(
    "Fig. 7", "MHA vs FFN parallel placement differs little on most datasets", "exceptions: Clevr-Count, dSpr-Loc",
    "similar (mean |MHA - FFN| <= 2 pooled std, no block's t p < 0.05/blocks, pooled seed noise of the dataset) on at least half the datasets",
    lambda e: finding_mha_ffn(e.figure("fig1"), e.health, e.seeds))
RECURRENT_BEST = Finding(
    "Table 3", "the best single adapter is recurrent, or within one std of the best, on most datasets", "",
    "recurrent - best other kind >= -1 pooled std on at least half the datasets (< -2 pooled std: not); each kind's "
    "edge is the one of lowest train loss (the paper's test max, which favours the kinds with more edges, is shown)",
    lambda e: finding_recurrent_best(e.table("table3"), e.paper("table3_best_single_by_type"), e.health, e.seeds))
SINGLE_MATCHES_PARALLEL = Finding(
    "Fig. 3", "one well-placed adapter can match or beat 2L parallel adapters on some datasets (iNat18, dSpr-Loc)",
    "iNat18, dSpr-Loc", "single (%) - PA (%) >= -1 pooled std on at least one dataset; not reproduced when "
    "behind by > 2 pooled std on every dataset; the single adapter is Table 3's edge of lowest train loss",
    lambda e: finding_single_vs_parallel(e.table("table3"), e.table("table1"), e.health, e.seeds))
DATASETS_CORRELATE = Finding(
    "Fig. 4", "single-adapter accuracies correlate weakly across datasets, except iNat18 / Places365",
    "qualitative (Fig. 4)",
    "Fisher z: rho(iNat18, Places365) > the median rho of the other pairs at p < 0.05 (< : not reproduced)",
    lambda e: finding_dataset_correlation(e.figure("fig4"), e.grid_edges, e.health))


def finding_single_placement_matters(fig1: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """Per dataset a one-way ANOVA over the 2L positions: +1 at p < 0.05; -1 (placement does not
    matter) when p >= 0.05 and the spread of the means is within 2 pooled std; 0 otherwise."""
    outcomes, texts, best, left_out = [], [], {}, 0
    for dataset, part in fig1.groupby("dataset", sort=False):
        part = part.assign(seeds=seeds_of(part, seeds))
        ok = healthy(part, health).dropna(subset=["mean"])
        if len(ok) < 2:
            left_out += len(healthy(part, health)) < len(part)
            continue
        f, p = V.anova(ok["mean"].tolist(), ok["std"].tolist(), ok["seeds"].tolist())
        outcomes.append(V.effect_outcome(p, ok["mean"].max() - ok["mean"].min(), pooled_of(ok)))
        texts.append(f"{dataset} F={fmt(f)}, p={fmt(p, 3)}")
        best[dataset] = int(ok.loc[ok["mean"].idxmax(), "position"])
    return PLACEMENT_MATTERS.record(f"best positions {best}", "; ".join(texts) + f" ({tally(outcomes)})",
                                    V.majority(outcomes, left_out))


def finding_mha_ffn(fig1: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """Per dataset: MHA vs FFN adapter of the same block. Similar (+1) when the mean |MHA - FFN| over
    blocks is within 2 pooled std and no block differs; different (-1) when a block's t (against the dataset's pooled seed noise) has
    p < 0.05 / blocks (Bonferroni); 0 otherwise."""
    outcomes, texts, left_out = [], [], 0
    for dataset, part in fig1.groupby("dataset", sort=False):
        part = part.assign(seeds=seeds_of(part, seeds))
        ok = healthy(part, health).dropna(subset=["mean"])
        cells = {(r.block, r.sublayer): r for r in ok.itertuples()}
        blocks = sorted(b for b in set(ok.block) if (b, "MHA") in cells and (b, "FFN") in cells)
        if not blocks:
            left_out += len(healthy(part, health)) < len(part)
            continue
        noise = noise_of(ok)
        ps = [V.pooled_t(cells[b, "MHA"].mean, cells[b, "MHA"].seeds, cells[b, "FFN"].mean, cells[b, "FFN"].seeds,
                         *noise)[2] for b in blocks]
        gap = float(np.mean([abs(cells[b, "MHA"].mean - cells[b, "FFN"].mean) for b in blocks]))
        pooled = pooled_of(ok)
        if any(V.finite(p) and p < V.ALPHA / len(blocks) for p in ps):
            outcomes.append(-1)
        elif V.finite(pooled) and pooled > 0 and gap <= V.K_STD * pooled:
            outcomes.append(1)
        else:
            outcomes.append(0)
        texts.append(f"{dataset} mean |MHA-FFN| {fmt(gap)} (pooled std {fmt(pooled)}, min p {fmt(min(ps), 3)})")
    return MHA_FFN_ALIKE.record("; ".join(texts), tally(outcomes), V.majority(outcomes, left_out))


def _paper_recurrent_count(paper3: pd.DataFrame) -> tuple[int, int]:
    """The paper's datasets where recurrent is the best kind or within the best's std."""
    hits = total = 0
    for _, part in paper3.groupby("dataset"):
        rec = part[part.adapter_type == "recurrent"]
        if rec.empty or part["mean"].isna().all():
            continue
        top = part.loc[part["mean"].idxmax()]
        total += 1
        hits += bool(rec["mean"].iloc[0] >= top["mean"] - top["std"])
    return hits, total


def finding_recurrent_best(table3: pd.DataFrame, paper3: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """Per dataset: best recurrent edge vs the best edge of the other kinds, d = rec - best other,
    +1 when d >= -1 pooled std (best or within one std, the paper's tolerance), -1 when d < -2 pooled std."""
    outcomes, texts, left_out = [], [], 0
    for dataset, part in chosen_edges(table3).groupby("dataset", sort=False):
        part = part.assign(seeds=seeds_of(part, seeds))
        ok = healthy(part, health).dropna(subset=["mean"])
        rec, others = ok[ok.adapter_type == "recurrent"], ok[ok.adapter_type != "recurrent"]
        if rec.empty or others.empty:
            left_out += len(healthy(part, health)) < len(part)
            continue
        top = others.loc[others["mean"].idxmax()]
        pooled = V.pooled_std([rec["std"].iloc[0], top["std"]], [rec["seeds"].iloc[0], top["seeds"]])
        diff = rec["mean"].iloc[0] - top["mean"]
        outcomes.append(V.match_outcome(diff, pooled))
        texts.append(f"{dataset} rec - {top.adapter_type} = {fmt(diff, 3)} ({in_pooled_std(diff, pooled)})")
    theirs, paper_total = _paper_recurrent_count(paper3)
    return RECURRENT_BEST.record("; ".join(texts), tally(outcomes), V.majority(outcomes, left_out),
                                 paper=f"{theirs} of {paper_total} datasets")


def finding_single_vs_parallel(table3: pd.DataFrame, table1: pd.DataFrame, health: Health = HEALTHY,
                               seeds: int = 1) -> dict:
    """Per dataset: the best single adapter (Table 3, converted to percent) vs all parallel adapters
    (Table 1, percent): match outcome of best single - PA. The claim is existential ("on some")."""
    single = percent(chosen_edges(table3).assign(seeds=seeds_of(table3, seeds)))
    pa = table1[table1.method == "parallel_all"]
    pa = pa.assign(seeds=seeds_of(pa, seeds)).set_index("dataset")
    outcomes, texts, hits, left_out = [], [], [], 0
    for dataset, part in single.groupby("dataset", sort=False):
        if dataset not in pa.index or not V.finite(pa.loc[dataset, "mean"]):
            continue
        ok = healthy(part, health).dropna(subset=["mean"])
        if ok.empty or is_bad(pa.loc[dataset], health):
            left_out += 1
            continue
        top = ok.loc[ok.chosen_train_loss.fillna(math.inf).idxmin()]  # the kinds' edges compete on train loss too
        pooled = V.pooled_std([top["std"], pa.loc[dataset, "std"]], [top["seeds"], pa.loc[dataset, "seeds"]])
        diff = top["mean"] - pa.loc[dataset, "mean"]
        outcome = V.match_outcome(diff, pooled)
        outcomes.append(outcome)
        hits += [dataset] if outcome == 1 else []
        texts.append(f"{dataset} {fmt(diff)} points ({in_pooled_std(diff, pooled)})")
    if not outcomes:
        verdict = V.DIVERGED if left_out else V.INCONCLUSIVE
    else:
        verdict = V.REPRODUCED if hits else V.NOT_REPRODUCED if all(o == -1 for o in outcomes) else V.INCONCLUSIVE
    return SINGLE_MATCHES_PARALLEL.record(f"matched on {', '.join(hits) or 'none'}", "; ".join(texts), verdict)


def finding_dataset_correlation(fig4: pd.DataFrame, n_edges: int, health: Health = HEALTHY,
                                pair=("inat18", "places365")) -> dict:
    """Fisher z test of rho(pair) against the median rho of the other dataset pairs (n_edges grid
    edges each): the pair correlates more (p < 0.05) or less."""
    if any(health.dataset("fig3", d) for d in pair):
        return DATASETS_CORRELATE.record("most grid runs collapsed", "-", V.DIVERGED)
    off = fig4[fig4.dataset_a < fig4.dataset_b].dropna(subset=["spearman"])
    match = off[(off.dataset_a == min(pair)) & (off.dataset_b == max(pair))]
    others = off.drop(match.index)
    if match.empty or others.empty:
        return DATASETS_CORRELATE.record("not enough data", "-", V.INCONCLUSIVE)
    rho, median = float(match.spearman.iloc[0]), float(others.spearman.median())
    z, p = V.fisher_z(rho, median, n_edges)
    return DATASETS_CORRELATE.record(f"rho({pair[0]}, {pair[1]}) = {fmt(rho)}, median of the other pairs {fmt(median)}",
                                     f"z={fmt(z)}, p={fmt(p, 3)} over {n_edges} edges",
                                     V.outcome_verdict(V.test_outcome(z, p)))


# ---------------------------------------------------------------- the products

def _lines(context, inputs):
    return baselines(load_runs(inputs["table1"]), context["experiments"]["table1"]["datasets"])


def _fig1(context, inputs):
    return fig1_data(load_runs(inputs["fig1"]))


def _grid_edges(context, inputs):
    return single_edges(load_runs(inputs["fig3"]))


def _table3(context, inputs):
    exp = context["experiments"]
    datasets = [d for d in exp["fig3"]["datasets"] if d in exp["fig1"]["datasets"]]
    return table3(load_runs(inputs["fig1"]), load_runs(inputs["fig3"]), datasets)


def _fig4(context, inputs):
    return fig4_correlations(load_runs(inputs["fig3"]), context["experiments"]["fig3"]["datasets"])


WITH_LINES = {"table1": Batches("table1")}
PRODUCTS = [
    Product("fig1", "Fig. 1: one parallel adapter at each position", {"fig1": Batches("fig1"), **WITH_LINES}, _fig1,
            experiments=("fig1", "table1"), draw=lambda data, c, i: figure1(data, _lines(c, i)),
            findings=(PLACEMENT_MATTERS,)),
    Product("fig7", "Fig. 7: MHA vs FFN parallel adapter per block", {"fig1": Batches("fig1"), **WITH_LINES}, _fig1,
            experiments=("fig1", "table1"), draw=lambda data, c, i: figure7(data, _lines(c, i)),
            findings=(MHA_FFN_ALIKE,)),
    Product("table3", "Table 3: best single adapter of each kind (test accuracy %)",
            {"fig1": Batches("fig1"), "fig3": Batches("fig3")}, _table3, experiments=("fig1", "fig3"),
            paper="table3_best_single_by_type", pairs=_table3_pairs, findings=(RECURRENT_BEST,)),
    Product("fig3", "Fig. 3: one adapter on each grid edge", {"fig3": Batches("fig3"), **WITH_LINES}, _grid_edges,
            experiments=("fig3", "table1"), draw=lambda data, c, i: figure3(data, _lines(c, i), grid_nodes(c)),
            findings=(SINGLE_MATCHES_PARALLEL,)),
    Product("fig4", "Fig. 4: Spearman between datasets", {"fig3": Batches("fig3")}, _fig4, experiments=("fig3",),
            draw=lambda data, c, i: figure4(data), findings=(DATASETS_CORRELATE,)),
]
