"""The score functions against the single adapters of the Fig. 3 grid: Table 4 (every function on
the scores dataset), Fig. 5 / 11 / 12 (srank vs test accuracy, vs train loss; accuracy vs loss, per
dataset), Fig. 10 (every function's matrix) and Fig. 13 (srank at each eta and head pre-training
length), with their findings."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .. import verdicts as V
from ..analysis import load_runs, lookup, number, pair_text, read_json, single_edges
from ..verdicts import spearman
from .drawing import grid_axes, plt, sns
from .evidence import HEALTHY, Finding, Health, fmt, tally
from .product import Batches, Product, Scores


PAPER_FUNCTION = {"min_col": "min_abs_column_sum", "max_col": "max_abs_column_sum", "frobenius": "frobenius",
                  "spectral": "spectral", "nuclear": "nuclear", "srank": "srank_eta0.01"}


def score_correlations(edges: pd.DataFrame, matrix) -> dict:
    """Spearman of a score matrix against the single-edge test accuracy and train loss."""
    matrix = np.asarray(matrix, float)
    scores = [matrix[i, j] for i, j in zip(edges.i, edges.j)]
    rho_acc, p_acc = spearman(scores, edges["mean"])
    rho_loss, p_loss = spearman(scores, edges.train_loss)
    return {"test_accuracy_spearman": rho_acc, "test_accuracy_p": p_acc,
            "train_loss_spearman": rho_loss, "train_loss_p": p_loss, "edges": len(scores)}


def table4(fig3_runs: pd.DataFrame, scores: Mapping, dataset: str) -> pd.DataFrame:
    """Each score function vs the single-adapter train loss and test accuracy (Table 4)."""
    edges = single_edges(fig3_runs[fig3_runs.dataset == dataset])
    rows = [{"function": fn, "paper_name": PAPER_FUNCTION.get(fn, fn), **score_correlations(edges, matrix)}
            for fn, matrix in scores["heads"]["default"]["scores"].items()]
    return pd.DataFrame(rows)


def fig5_correlations(fig3_runs: pd.DataFrame, scores_by_dataset: Mapping[str, Mapping]) -> pd.DataFrame:
    """srank (the config's eta) vs test accuracy and train loss, per dataset (Fig. 5, 11), and
    test accuracy vs log train loss (Fig. 12)."""
    rows = []
    for dataset, scores in scores_by_dataset.items():
        edges = single_edges(fig3_runs[fig3_runs.dataset == dataset])
        rho, p = spearman(edges["mean"], np.log(edges.train_loss))
        rows.append({"dataset": dataset, **score_correlations(edges, scores["heads"]["default"]["scores"]["srank"]),
                     "accuracy_vs_log_loss_spearman": rho, "accuracy_vs_log_loss_p": p})
    return pd.DataFrame(rows)


def fig13_correlations(fig3_runs: pd.DataFrame, scores: Mapping, dataset: str) -> pd.DataFrame:
    """srank at each eta and head pre-training length (the grid) vs train loss and test accuracy (Fig. 13)."""
    edges = single_edges(fig3_runs[fig3_runs.dataset == dataset])
    rows = []
    grid = [head for name, head in scores["heads"].items() if name != "default"]
    for head in sorted(grid, key=lambda h: h["head_steps"]):
        for eta, matrix in head["srank_by_eta"].items():
            c = score_correlations(edges, matrix)
            rows.append({"n_steps": head["head_steps"], "eta": float(eta), "train_loss_corr": c["train_loss_spearman"],
                         "test_acc_corr": c["test_accuracy_spearman"]})
    return pd.DataFrame(rows, columns=["n_steps", "eta", "train_loss_corr", "test_acc_corr"])


# ---------------------------------------------------------------- side by side with the paper

def _table4_pairs(ours, paper):
    theirs = paper.set_index("function") if len(paper) else pd.DataFrame()
    return pd.DataFrame([{"function": r.function, **{column: pair_text(number(getattr(r, column)),
                                                                  number(lookup(theirs, r.paper_name, column)))
                                                     for column in ("train_loss_spearman", "test_accuracy_spearman")}}
                         for r in ours.itertuples(index=False)])


# ---------------------------------------------------------------- drawing

def _score_scatter(edges: pd.DataFrame, scores: Mapping[str, Mapping], y: str, ylabel: str, fn: str = "srank",
                   log_y: bool = False):
    datasets = list(scores)
    fig, axes = grid_axes(len(datasets))
    for ax, dataset in zip(axes, datasets):
        part = edges[edges.dataset == dataset]
        matrix = np.asarray(scores[dataset]["heads"]["default"]["scores"][fn], float)
        x = [matrix[i, j] for i, j in zip(part.i, part.j)]
        values = np.log(part[y]) if log_y else part[y]
        rho, _ = spearman(x, values)
        sns.scatterplot(x=x, y=values, hue=part.kind.values, ax=ax, s=25)
        ax.set(title=f"{dataset} (rho = {rho:.2f})", xlabel=f"{fn} of the gradient", ylabel=ylabel)
        ax.legend(fontsize=6)
    return fig


def figure10(edges: pd.DataFrame, scores: Mapping, functions: list[str]):
    """Top: the score matrices of every function; bottom: score vs single-adapter train loss."""
    fig, axes = plt.subplots(2, len(functions), figsize=(3.2 * len(functions), 6.2), squeeze=False)
    for k, fn in enumerate(functions):
        matrix = np.asarray(scores["heads"]["default"]["scores"][fn], float)
        sns.heatmap(matrix, ax=axes[0, k], cmap="magma", square=True, cbar=False)
        axes[0, k].set(title=fn, xlabel="j", ylabel="i")
        x = [matrix[i, j] for i, j in zip(edges.i, edges.j)]
        rho, _ = spearman(x, edges.train_loss)
        sns.scatterplot(x=x, y=edges.train_loss, ax=axes[1, k], s=20)
        axes[1, k].set(title=f"rho = {rho:.2f}", xlabel=fn, ylabel="train loss")
    return fig


def figure12(edges: pd.DataFrame):
    datasets = list(dict.fromkeys(edges.dataset))
    fig, axes = grid_axes(len(datasets))
    for ax, dataset in zip(axes, datasets):
        part = edges[edges.dataset == dataset]
        rho, _ = spearman(np.log(part.train_loss), part["mean"])
        sns.scatterplot(x=np.log(part.train_loss), y=part["mean"], hue=part.kind.values, ax=ax, s=25)
        ax.set(title=f"{dataset} (rho = {rho:.2f})", xlabel="log train loss", ylabel="test accuracy (%)")
        ax.legend(fontsize=6)
    return fig


def figure13(data: pd.DataFrame):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, column, title in ((axes[0], "train_loss_corr", "srank vs train loss"),
                              (axes[1], "test_acc_corr", "srank vs test accuracy")):
        wide = data.pivot(index="n_steps", columns="eta", values=column)
        sns.heatmap(wide, annot=True, fmt=".2f", vmin=-1, vmax=1, cmap="coolwarm", ax=ax)
        ax.set(title=f"Spearman: {title}", xlabel="eta", ylabel="head pre-training steps")
    return fig


# ---------------------------------------------------------------- findings

PAPER4, PAPER13 = "table4_aggregation_inat18", "figure13_eta_nsteps_inat18"
SRANK_ACCURACY = Finding(
    "Fig. 5", "srank of the gradient correlates with single-adapter test accuracy", "",
    "Spearman rho > 0 at p < 0.05 on at least half the datasets (< 0 at p < 0.05: against)",
    lambda e: finding_srank_accuracy(e.figure("fig5"), e.paper(PAPER4), e.health))
SRANK_LOSS = Finding(
    "Fig. 11", "edges with a higher gradient srank reach a lower train loss", "Spearman rho = -0.93 on iNat18 (Table 4)",
    "Spearman rho < 0 at p < 0.05 on at least half the datasets (> 0 at p < 0.05: against)",
    lambda e: finding_srank_loss(e.figure("fig5"), e.health))
SRANK_BEST_FUNCTION = Finding(
    "Table 4", "of the six score functions, srank correlates best with test accuracy and train loss", "",
    "in the paper's direction (rho > 0 for accuracy, < 0 for loss) srank significant and above every other function "
    "by Fisher z at p < 0.05, for both; another function above srank at p < 0.05: not",
    lambda e: finding_srank_best_function(e.table("table4"), e.paper(PAPER4), e.health, e.scores_dataset))
HEAD_STEPS = Finding(
    "Fig. 13", "a longer head pre-training gives a better srank/accuracy correlation", "",
    "Fisher z of rho(longest) vs rho(shortest), p < 0.05 (rho in the paper's direction, > 0)",
    lambda e: finding_head_steps(e.figure("fig13"), e.paper(PAPER13), e.score_edges, e.health, e.scores_dataset))


def _correlation_outcomes(fig5: pd.DataFrame, column: str, sign: int, health: Health):
    outcomes, texts, left_out = [], [], 0
    for r in fig5.itertuples():
        if health.dataset("fig3", r.dataset):
            left_out += 1
            continue
        rho, p = getattr(r, f"{column}_spearman"), getattr(r, f"{column}_p")
        if not V.finite(rho):
            continue
        outcomes.append(V.test_outcome(sign * rho, p))
        texts.append(f"{r.dataset} rho={fmt(rho)}, p={fmt(p, 3)}")
    return outcomes, texts, left_out


def finding_srank_accuracy(fig5: pd.DataFrame, paper4: pd.DataFrame, health: Health = HEALTHY) -> dict:
    outcomes, texts, left_out = _correlation_outcomes(fig5, "test_accuracy", 1, health)
    paper_rho = paper4.set_index("function").loc["srank_eta0.01", "test_accuracy_spearman"]
    return SRANK_ACCURACY.record(f"positive at p < 0.05 on {outcomes.count(1)} of {len(outcomes)} datasets",
                                 "; ".join(texts) + f" ({tally(outcomes)})", V.majority(outcomes, left_out),
                                 paper=f"Spearman rho = {fmt(paper_rho)} on iNat18 (Table 4); lower on dSpr, SVHN, SST2")


def finding_srank_loss(fig5: pd.DataFrame, health: Health = HEALTHY) -> dict:
    outcomes, texts, left_out = _correlation_outcomes(fig5, "train_loss", -1, health)
    return SRANK_LOSS.record(f"negative at p < 0.05 on {outcomes.count(1)} of {len(outcomes)} datasets",
                             "; ".join(texts) + f" ({tally(outcomes)})", V.majority(outcomes, left_out))


def _best_function_outcome(table4: pd.DataFrame, column: str, sign: int) -> tuple[int, str]:
    """srank against every other score function on one target, in the paper's direction (sign: +1
    for accuracy, -1 for train loss: a function anti-correlated with accuracy is not "best"):
    +1 when srank is itself significant and beats every other by Fisher z at p < 0.05, -1 when one
    other beats srank at p < 0.05, 0 otherwise."""
    rows = table4.dropna(subset=[f"{column}_spearman"]).set_index("function")
    if "srank" not in rows.index or len(rows) < 2:
        return 0, f"{column}: not enough data"
    n = int(rows["edges"].min()) if "edges" in rows else 0
    own = sign * rows.loc["srank", f"{column}_spearman"]
    others = (sign * rows[f"{column}_spearman"]).drop("srank")
    runner = others.idxmax()
    z_srank, p_srank = V.fisher_z(own, others[runner], n)  # srank vs the strongest other
    z_lose = [V.fisher_z(v, own, n) for v in others]
    text = f"{column}: srank {fmt(sign * own)} vs {runner} {fmt(sign * others[runner])}, z={fmt(z_srank)}"
    if any(V.test_outcome(z, p) == 1 for z, p in z_lose):
        return -1, text
    own_p = rows.loc["srank", f"{column}_p"] if f"{column}_p" in rows else V.correlation_p(own, n)
    if V.test_outcome(z_srank, p_srank) == 1 and V.test_outcome(own, own_p) == 1:
        return 1, text
    return 0, text


def finding_srank_best_function(table4: pd.DataFrame, paper4: pd.DataFrame, health: Health = HEALTHY,
                                dataset: str = "") -> dict:
    paper = paper4.set_index("function").loc["srank_eta0.01"]
    paper_text = f"srank: test {fmt(paper.test_accuracy_spearman)}, train loss {fmt(paper.train_loss_spearman)} (both the best)"
    if dataset and health.dataset("fig3", dataset):
        return SRANK_BEST_FUNCTION.record("most grid runs collapsed", "-", V.DIVERGED, paper=paper_text)
    acc, acc_text = _best_function_outcome(table4, "test_accuracy", 1)
    loss, loss_text = _best_function_outcome(table4, "train_loss", -1)
    verdict = (V.REPRODUCED if acc == loss == 1 else V.NOT_REPRODUCED if -1 in (acc, loss) else V.INCONCLUSIVE)
    return SRANK_BEST_FUNCTION.record(f"{acc_text}; {loss_text}", f"accuracy {acc:+d}, loss {loss:+d}", verdict,
                                      paper=paper_text)


def finding_head_steps(fig13: pd.DataFrame, paper13: pd.DataFrame, n_edges: int, health: Health = HEALTHY,
                       dataset: str = "") -> dict:
    """rho(srank, accuracy) at the longest vs the shortest head pre-training (eta 0.01), Fisher z."""
    def ends(frame):
        part = frame[np.isclose(frame.eta, 0.01)].sort_values("n_steps").dropna(subset=["test_acc_corr"])
        return (part.test_acc_corr.iloc[0], part.test_acc_corr.iloc[-1]) if len(part) >= 2 else None

    theirs = ends(paper13)
    paper_text = f"rho {fmt(theirs[0])} -> {fmt(theirs[1])} from the shortest to the longest (eta 0.01)" if theirs else "-"
    if dataset and health.dataset("fig3", dataset):
        return HEAD_STEPS.record("most grid runs collapsed", "-", V.DIVERGED, paper=paper_text)
    ours = ends(fig13)
    if ours is None:
        return HEAD_STEPS.record("not enough data", "-", V.INCONCLUSIVE, paper=paper_text)
    z, p = V.fisher_z(ours[1], ours[0], n_edges)
    return HEAD_STEPS.record(f"rho {fmt(ours[0])} -> {fmt(ours[1])}", f"z={fmt(z)}, p={fmt(p, 3)} over {n_edges} edges",
                             V.outcome_verdict(V.test_outcome(z, p)), paper=paper_text)


# ---------------------------------------------------------------- the products

def _scores_by_dataset(paths: list[str]) -> dict:
    return {s["dataset"]: s for s in map(read_json, paths)}


def _fig5(context, inputs):
    return fig5_correlations(load_runs(inputs["fig3"]), _scores_by_dataset(inputs["scores"]))


def _draw_fig5(y: str, label: str, log_y: bool):
    def draw(data, context, inputs):
        return _score_scatter(single_edges(load_runs(inputs["fig3"])), _scores_by_dataset(inputs["scores"]), y, label,
                              log_y=log_y)
    return draw


def _table4(context, inputs):
    return table4(load_runs(inputs["fig3"]), read_json(inputs["scores"]), context["scores"]["dataset"])


def _draw_fig10(data, context, inputs):
    runs, scores = load_runs(inputs["fig3"]), read_json(inputs["scores"])
    edges = single_edges(runs[runs.dataset == context["scores"]["dataset"]])
    return figure10(edges, scores, list(scores["heads"]["default"]["scores"]))


def _fig12(context, inputs):
    return single_edges(load_runs(inputs["fig3"]))


def _fig13(context, inputs):
    return fig13_correlations(load_runs(inputs["fig3"]), read_json(inputs["scores"]), context["scores"]["dataset"])


GRID_SCORES = {"fig3": Batches("fig3"), "scores": Scores("fig3.datasets")}
ONE_SCORES = {"fig3": Batches("fig3", "scores"), "scores": Scores("scores")}
PRODUCTS = [
    Product("fig5", "Fig. 5: srank of the gradient vs test accuracy", GRID_SCORES, _fig5, experiments=("fig3",),
            reads_scores_config=True, draw=_draw_fig5("mean", "test accuracy (%)", False), findings=(SRANK_ACCURACY,)),
    Product("fig11", "Fig. 11: srank of the gradient vs train loss", GRID_SCORES, _fig5, experiments=("fig3",),
            reads_scores_config=True, draw=_draw_fig5("train_loss", "log train loss", True), findings=(SRANK_LOSS,)),
    Product("table4", "Table 4: score functions vs single-adapter train loss and test accuracy (Spearman)", ONE_SCORES,
            _table4, reads_scores_config=True, paper=PAPER4, pairs=_table4_pairs, findings=(SRANK_BEST_FUNCTION,)),
    Product("fig13", "Fig. 13: eta and head pre-training steps vs correlation", ONE_SCORES, _fig13,
            reads_scores_config=True, draw=lambda data, c, i: figure13(data), findings=(HEAD_STEPS,)),
    Product("fig10", "Fig. 10: score functions: matrices and vs train loss", ONE_SCORES, _table4,
            reads_scores_config=True, draw=_draw_fig10),
    Product("fig12", "Fig. 12: test accuracy vs train loss", {"fig3": Batches("fig3")}, _fig12, experiments=("fig3",),
            draw=lambda data, c, i: figure12(data)),
]
