"""GGA against the other ways to pick N adapters (Fig. 6a, 6b) and against FFN-parallel adapters over
the rank (Fig. 6c), one adapter of rank L*r against L FFN-parallel adapters of rank r (Table 5), and
GGA's discounting (Fig. 14), with their findings."""
from __future__ import annotations


import numpy as np
import pandas as pd

from .. import verdicts as V
from ..analysis import (cell_text, first_value, load_runs, lookup, number, pair_text, read_json, single_edges,
                        summarise)
from ..gga import gga_select
from .baselines import baselines
from .drawing import baseline_lines, edge_matrix, plt, sns
from .evidence import HEALTHY, Finding, Health, fmt, healthy, in_pooled_std, is_bad, noise_of, seeds_of, t_rows, tally
from .product import Batches, Product, Scores


def table5(runs: pd.DataFrame, ranks: list[int], blocks: int) -> pd.DataFrame:
    """L FFN-parallel adapters of rank r vs one adapter of rank L*r on the best grid edge (App. I).

    Every grid edge is trained at rank L*r. The final runs train on train+val and report only test
    accuracy, so no validation accuracy can choose the edge; choosing it by test accuracy would make
    the single adapter the best of many noisy draws. ``single_best_*`` is the edge with the lowest
    mean train loss (it sees no test example; ties go to the higher test accuracy, then the lower
    edge), ``single_max_*`` the paper's protocol, the best test accuracy over the edges (an
    optimistic, oracle choice). Accuracies in percent."""
    rows = []
    for rank in ranks:
        ffn = summarise(runs[(runs.placement == "ffn_parallel") & (runs["rank"] == rank)], ["placement"], scale=100)
        edges = single_edges(runs[runs["rank"] == rank * blocks]).dropna(subset=["mean"])
        by_loss = _first(edges, ["train_loss", "mean", "i", "j"], [True, False, True, True])
        by_test = _first(edges, ["mean", "i", "j"], [False, True, True])
        rows.append({"rank": rank, "single_rank": rank * blocks,
                     "all_parallel_ffn_mean": first_value(ffn, "mean"), "all_parallel_ffn_std": first_value(ffn, "std"),
                     "single_best_mean": first_value(by_loss, "mean"), "single_best_std": first_value(by_loss, "std"),
                     "single_edge": _edge_text(by_loss), "single_best_train_loss": first_value(by_loss, "train_loss"),
                     "single_max_mean": first_value(by_test, "mean"), "single_max_std": first_value(by_test, "std"),
                     "single_max_edge": _edge_text(by_test), "edges": len(edges),
                     "run_ids": ";".join(filter(None, [first_value(ffn, "run_ids", ""), first_value(by_loss, "run_ids", "")]))})
    return pd.DataFrame(rows)


def _first(frame: pd.DataFrame, by: list[str], ascending: list[bool]) -> pd.DataFrame:
    return frame.sort_values(by, ascending=ascending).head(1)


def _edge_text(summary: pd.DataFrame) -> str:
    return f"({int(summary.i.iloc[0])}, {int(summary.j.iloc[0])})" if len(summary) else ""


def fig6_data(runs: pd.DataFrame, table1: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean test accuracy (%) per dataset, selection method and number of adapters (Fig. 6a, 6b).
    First-2L and last-2L are parallel_all, so they are Table 1's runs of it (``plan_fig6ab`` does
    not train them again), at the N of the figure's other methods."""
    if table1 is not None and not runs.empty:
        every = table1[(table1.placement == "parallel_all") & table1.dataset.isin(set(runs.dataset))
                       & table1.n_adapters.isin(set(runs.n_adapters))]
        runs = pd.concat([runs, every.assign(selection="first"), every.assign(selection="last")], ignore_index=True)
    return summarise(runs, ["dataset", "selection", "n_adapters"], scale=100)


def fig6c_data(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy (%) per rank and method, with the trainable parameters (Fig. 6c)."""
    runs = runs.assign(selection=np.where(runs.placement == "ffn_parallel", "ffn_parallel", "gga"))
    out = summarise(runs, ["selection", "rank"], scale=100)
    params = runs.groupby(["selection", "rank"]).trainable_parameters.mean().reset_index()
    return out.merge(params, on=["selection", "rank"])


# ---------------------------------------------------------------- Fig. 14: GGA's discounting

def discount_matrix(num_nodes: int, edge: tuple[int, int], gamma: float) -> np.ndarray:
    """d_kl(i, j) = 1 - gamma ** L1((i, j), (k, l)) of App. H for the picked edge (k, l) = ``edge``."""
    rows, cols = np.indices((num_nodes, num_nodes))
    return 1.0 - gamma ** (np.abs(rows - edge[0]) + np.abs(cols - edge[1]))


def cumulative_discount(num_nodes: int, edges, gamma: float) -> np.ndarray:
    """The product of the discount matrices of every picked edge: what GGA has multiplied the scores
    by once it picked ``edges`` (each picked edge itself ends at 0)."""
    out = np.ones((num_nodes, num_nodes))
    for edge in edges:
        out *= discount_matrix(num_nodes, edge, gamma)
    return out


def fig14_data(scores, n_adapters: int, gamma: float) -> pd.DataFrame:
    """Per edge (i, j): the score, the discount matrix of GGA's first pick, the product of the
    discounts of all ``n_adapters`` picks, the score after selection (their product), and the pick
    order (0-based; -1 for edges not picked) of Algorithm 1 (``gga.gga_select``)."""
    s = np.asarray(scores, float)
    n = s.shape[0]
    picks = [tuple(e) for e in gga_select(s, n_adapters, gamma)]
    first, every = discount_matrix(n, picks[0], gamma), cumulative_discount(n, picks, gamma)
    order = {edge: k for k, edge in enumerate(picks)}
    rows, cols = np.indices(s.shape)
    return pd.DataFrame({"i": rows.ravel(), "j": cols.ravel(), "score": s.ravel(), "discount_first": first.ravel(),
                         "discount_all": every.ravel(), "score_after": (s * every).ravel(),
                         "pick": [order.get((i, j), -1) for i, j in zip(rows.ravel(), cols.ravel())]})


# ---------------------------------------------------------------- side by side with the paper

def _table5_pairs(ours, paper):
    theirs = paper.set_index("rank") if len(paper) else pd.DataFrame()
    ranks = sorted({int(r) for r in [*ours["rank"], *theirs.index]}, reverse=True)  # as the paper: 16, 8, 4, 2
    mine = ours.set_index("rank")
    rows = []
    for rank in ranks:
        ffn, single = lookup(theirs, rank, "all_parallel_ffn_12"), lookup(theirs, rank, "single_best_rank_x12")
        rows.append({"rank": rank,
                     "all parallel (FFN)": pair_text(cell_text(lookup(mine, rank, "all_parallel_ffn_mean"),
                                                       lookup(mine, rank, "all_parallel_ffn_std")), number(ffn)),
                     "single, lowest train loss": pair_text(cell_text(lookup(mine, rank, "single_best_mean"),
                                                              lookup(mine, rank, "single_best_std")), number(single)),
                     "single, best test (paper's choice)": pair_text(cell_text(lookup(mine, rank, "single_max_mean"),
                                                                       lookup(mine, rank, "single_max_std")), number(single))})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- drawing

def figure6(ab: pd.DataFrame, lines: pd.DataFrame, c: pd.DataFrame):
    datasets = list(dict.fromkeys(ab.dataset))
    fig, axes = plt.subplots(1, len(datasets) + 1, figsize=(4.2 * (len(datasets) + 1), 3.8))
    for ax, dataset, letter in zip(axes, datasets, "abcdefgh"):
        sns.lineplot(data=ab[ab.dataset == dataset], x="n_adapters", y="mean", hue="selection", marker="o", ax=ax)
        baseline_lines(ax, lines[lines.method.isin(["full_ft", "parallel_all"])], dataset)
        ax.set(title=f"({letter}) {dataset}", xlabel="number of adapters N", ylabel="test accuracy (%)", xscale="log")
        counts = sorted(ab.n_adapters.unique())
        ax.set_xticks(counts, [str(int(n)) for n in counts])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    sns.lineplot(data=c, x="trainable_parameters", y="mean", hue="selection", marker="o", ax=axes[-1])
    for _, row in c.iterrows():
        axes[-1].annotate(f"r{row['rank']}", (row.trainable_parameters, row["mean"]), fontsize=7)
    axes[-1].set(title=f"({'abcdefgh'[len(datasets)]}) rank sweep", xlabel="trainable parameters",
                 ylabel="test accuracy (%)", xscale="log")
    return fig


def figure14(data: pd.DataFrame):
    """Left: the discount matrix of GGA's first pick; right: the scores after all picks (App. H)."""
    n = int(data.i.max()) + 1
    first = data[data.pick == 0].iloc[0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    for ax, column, title in ((axes[0], "discount_first", f"discount matrix of the first pick ({int(first.i)}, {int(first.j)})"),
                              (axes[1], "score_after", f"scores after placing {int((data.pick >= 0).sum())} adapters")):
        sns.heatmap(edge_matrix(data, n, column), ax=ax, cmap="magma", square=True)
        ax.set(title=title, xlabel="target node j", ylabel="source node i")
    for _, row in data[data.pick >= 0].iterrows():
        axes[1].add_patch(plt.Rectangle((row.j, row.i), 1, 1, fill=False, ec="cyan", lw=1))
    return fig


# ---------------------------------------------------------------- findings

GGA_SMALL_N = Finding(
    "Fig. 6a/b", "GGA beats top-k, random, first-k and last-k with few adapters (N <= {small})",
    "GGA best at small N on iNat18 and Places365",
    "t of GGA vs the baseline (pooled seed noise of the dataset's cells), p < 0.05 above in at least half of the comparisons",
    lambda e: finding_gga_small_n(e.figure("fig6"), e.health, e.seeds))
# The paper's Fig. 6a/b: GGA matches all parallel adapters with N = 3 of them on iNat18, 12 on Places365.
PAPER_MATCHES = {"inat18": 3, "places365": 12}
GGA_MATCHES_PA = Finding(
    "Fig. 6a/b", "GGA with few adapters matches all parallel adapters ({cases})",
    "yes (iNat18: N = 3; Places365: N = 12)",
    "GGA - PA >= -1 pooled std (behind by > 2 pooled std: not reproduced); majority of the cases in this run",
    lambda e: finding_gga_matches_pa(e.figure("fig6"), e.table("table1"), e.health, e.seeds))
GGA_BEATS_FFN = Finding(
    "Fig. 6c", "GGA beats FFN-parallel adapters at every rank, most at low rank", "at all 4 ranks",
    "t (pooled seed noise of the panel's cells), p < 0.05 above at at least half the ranks", lambda e: finding_gga_rank(e.figure("fig6"), e.health, e.seeds))
SINGLE_MATCHES_FFN = Finding(
    "Table 5", "one adapter of rank L*r at the best edge matches L FFN-parallel adapters of rank r",
    "at all 4 ranks (within 0.3 points)", "single - FFN >= -1 pooled std at at least half the ranks (< -2 pooled std: not)",
    lambda e: finding_single_matches_ffn(e.table("table5"), e.health, e.seeds))


def finding_gga_small_n(fig6: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1, small: int = 6) -> dict:
    """GGA vs each baseline at each (dataset, N <= small), a t test against the pooled seed noise of
    the dataset's panel a/b cells; majority of the comparisons."""
    every = fig6[(fig6.panel == "ab") & (fig6.n_adapters <= small)]
    ab = healthy(every.assign(seeds=seeds_of(every, seeds)), health).dropna(subset=["mean"])
    left_out = len(healthy(every, health)) < len(every)
    panel = fig6[fig6.panel == "ab"]
    panel = healthy(panel.assign(seeds=seeds_of(panel, seeds)), health)
    outcomes = []
    for (dataset, _), part in ab.groupby(["dataset", "n_adapters"]):
        cells = part.set_index("selection")
        if "gga" not in cells.index:
            continue
        noise = noise_of(panel[panel.dataset == dataset])
        for other in cells.index.drop("gga"):
            outcomes.append(t_rows(cells.loc["gga"], cells.loc[other], noise)[0])
    return GGA_SMALL_N.record(f"GGA clearly above in {outcomes.count(1)}, below in {outcomes.count(-1)} of "
                              f"{len(outcomes)} (dataset, N, baseline) comparisons", tally(outcomes),
                              V.majority(outcomes, int(left_out)), small=small)


def finding_gga_matches_pa(fig6: pd.DataFrame, table1: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1,
                           cases: dict = PAPER_MATCHES) -> dict:
    """GGA with N adapters against all parallel adapters, for each (dataset, N) of the paper's
    ``cases`` that this run has, a match outcome; majority of the cases."""
    ab = fig6[fig6.panel == "ab"]
    outcomes, texts, judged, left_out = [], [], [], 0
    for dataset, n in cases.items():
        gga = ab[(ab.dataset == dataset) & (ab.selection == "gga") & (ab.n_adapters == n)]
        pa = table1[(table1.method == "parallel_all") & (table1.dataset == dataset)]
        if gga.empty or pa.empty:
            continue
        judged.append(f"{dataset} N = {n}")
        g, p = gga.iloc[0], pa.iloc[0]
        if is_bad(g, health) or is_bad(p, health):
            left_out += 1
            continue
        pooled = V.pooled_std([g["std"], p["std"]], [seeds_of(gga, seeds).iloc[0], seeds_of(pa, seeds).iloc[0]])
        diff = g["mean"] - p["mean"]
        outcomes.append(V.match_outcome(diff, pooled))
        texts.append(f"{dataset} N = {n}: GGA {fmt(g['mean'])} vs PA {fmt(p['mean'])}, {fmt(diff)} points "
                     f"= {in_pooled_std(diff, pooled)}")
    if not judged:
        return GGA_MATCHES_PA.record("not in this run", "-", V.INCONCLUSIVE,
                                     cases=", ".join(f"{d} N = {n}" for d, n in cases.items()))
    return GGA_MATCHES_PA.record("; ".join(texts) or "a run collapsed", tally(outcomes),
                                 V.majority(outcomes, left_out), cases=", ".join(judged))


def finding_gga_rank(fig6: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """GGA vs FFN-parallel adapters at each rank, a t test against the pooled seed noise of every
    panel c cell; majority of the ranks."""
    c = fig6[fig6.panel == "c"]
    c = c.assign(seeds=seeds_of(c, seeds))
    ok = healthy(c, health).dropna(subset=["mean"])
    outcomes, texts, noise = [], [], noise_of(ok)
    for rank, part in ok.groupby("rank"):
        cells = part.set_index("selection")
        if {"gga", "ffn_parallel"} <= set(cells.index):
            outcome, text = t_rows(cells.loc["gga"], cells.loc["ffn_parallel"], noise)
            outcomes.append(outcome)
            texts.append(f"r{int(rank)} {fmt(cells.loc['gga', 'mean'] - cells.loc['ffn_parallel', 'mean'])} ({text})")
    return GGA_BEATS_FFN.record("GGA - FFN: " + "; ".join(texts), tally(outcomes),
                                V.majority(outcomes, int(len(healthy(c, health)) < len(c))))


def finding_single_matches_ffn(table5: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """Per rank: one adapter of rank L*r at the best edge - L FFN adapters of rank r, match outcome."""
    ok = healthy(table5, health).dropna(subset=["all_parallel_ffn_mean", "single_best_mean"])
    outcomes, texts = [], []
    for r in ok.itertuples():
        pooled = V.pooled_std([r.all_parallel_ffn_std, r.single_best_std], [seeds, seeds])
        diff = r.single_best_mean - r.all_parallel_ffn_mean
        outcomes.append(V.match_outcome(diff, pooled))
        texts.append(f"r{r.rank} {fmt(diff)} ({in_pooled_std(diff, pooled)})")
    return SINGLE_MATCHES_FFN.record("single - FFN: " + "; ".join(texts), tally(outcomes),
                                     V.majority(outcomes, int(len(healthy(table5, health)) < len(table5))))


# ---------------------------------------------------------------- the products

def _fig6(context, inputs):
    ab = fig6_data(load_runs(inputs["fig6ab"]), load_runs(inputs["table1"]))
    c = fig6c_data(load_runs(inputs["fig6c"]))
    return pd.concat([ab.assign(panel="ab"), c.assign(panel="c")], ignore_index=True)


def _draw_fig6(data, context, inputs):
    table1 = load_runs(inputs["table1"])
    lines = baselines(table1, context["experiments"]["fig6ab"]["datasets"])
    return figure6(fig6_data(load_runs(inputs["fig6ab"]), table1), lines, fig6c_data(load_runs(inputs["fig6c"])))


def _table5(context, inputs):
    exp = context["experiments"]
    dataset = exp["table5"]["dataset"]
    blocks = context["models"][context["datasets"][dataset]["model"]]["blocks"]
    return table5(load_runs(inputs["table5"]), exp["table5"]["ranks"], blocks)


def _fig14(context, inputs):
    matrix = read_json(inputs["scores"])["heads"]["default"]["scores"]["srank"]
    # as in the paper's Fig. 14: 2L adapters (24 for ViT-B) with the Fig. 6 gamma
    return fig14_data(matrix, len(matrix) - 1, context["experiments"]["fig6ab"]["gamma"])


PRODUCTS = [
    Product("fig6", "Fig. 6: GGA, top-k, random, first-k, last-k (a, b); rank sweep (c)",
            {"fig6ab": Batches("fig6ab"), "fig6c": Batches("fig6c"), "table1": Batches("table1", "fig6ab.datasets")},
            _fig6, experiments=("fig6ab", "fig6c", "table1"), draw=_draw_fig6,
            findings=(GGA_SMALL_N, GGA_MATCHES_PA, GGA_BEATS_FFN)),
    Product("table5", "Table 5: one adapter of rank L*r on the best grid edge vs L FFN-parallel adapters of rank r "
            "(test accuracy %)", {"table5": Batches("table5")}, _table5, experiments=("table5",),
            paper="table5_single_vs_ffn_parallel", pairs=_table5_pairs, findings=(SINGLE_MATCHES_FFN,)),
    Product("fig14", "Fig. 14: GGA's discount matrix and the score matrix after selection", {"scores": Scores("scores")},
            _fig14, experiments=("fig6ab",), reads_scores_config=True, draw=lambda data, c, i: figure14(data)),
]
