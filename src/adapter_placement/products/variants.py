"""Variants of the adapter: linear vs non-linear single adapters on the grid (Fig. 8) and the
activation against the number of parallel adapters (Fig. 9), with their findings."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from .. import verdicts as V
from ..analysis import load_runs, single_edges, summarise
from ..verdicts import pearson, spearman
from .drawing import edge_matrix, plt, sns
from .evidence import HEALTHY, Finding, Health, fmt, healthy, noise_of, pooled_of, seeds_of, tally
from .product import Batches, Product, grid_nodes


def fig8_data(linear_runs: pd.DataFrame, fig3_runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per grid edge: linear and non-linear single-adapter test accuracy (%, Fig. 8), with the
    Pearson and Spearman correlations over the edges (App. D reports both) on every row."""
    linear = single_edges(linear_runs[linear_runs.dataset == dataset])
    nonlinear = single_edges(fig3_runs[fig3_runs.dataset == dataset])
    data = linear.merge(nonlinear, on=["dataset", "placement", "i", "j", "kind"], suffixes=("_linear", "_nonlinear"))
    return data.assign(**linear_correlations(data))


def linear_correlations(data: pd.DataFrame) -> dict:
    """Pearson and Spearman (with p-values) of non-linear vs linear single-adapter accuracy."""
    r, r_p = pearson(data.mean_linear, data.mean_nonlinear)
    rho, rho_p = spearman(data.mean_linear, data.mean_nonlinear)
    return {"pearson": r, "pearson_p": r_p, "spearman": rho, "spearman_p": rho_p}


def fig9_data(runs: pd.DataFrame) -> pd.DataFrame:
    return summarise(runs, ["activation", "n_adapters"], scale=100)


# ---------------------------------------------------------------- drawing

def figure8(data: pd.DataFrame, num_nodes: int):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    points = sorted(set(data.i) | set(data.j))
    matrix = edge_matrix(data, num_nodes, "mean_linear")[np.ix_(points, points)]
    sns.heatmap(matrix, ax=axes[0], cmap="viridis", xticklabels=points, yticklabels=points, square=True,
                cbar_kws={"label": "test accuracy (%)"})
    axes[0].set(title="single linear adapters", xlabel="target node j", ylabel="source node i")
    c = linear_correlations(data)
    sns.scatterplot(data=data, x="mean_linear", y="mean_nonlinear", hue="kind", ax=axes[1])
    low, high = np.nanmin(data[["mean_linear", "mean_nonlinear"]].values), np.nanmax(data[["mean_linear", "mean_nonlinear"]].values)
    axes[1].plot([low, high], [low, high], "k--", lw=1)
    axes[1].set(title=f"non-linear vs linear (Pearson {c['pearson']:.2f}, Spearman {c['spearman']:.2f})",
                xlabel="linear adapter accuracy (%)", ylabel="non-linear adapter accuracy (%)")
    return fig


def figure9(data: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5, 3.8))
    sns.lineplot(data=data, x="n_adapters", y="mean", hue="activation", marker="o", ax=ax)
    ax.set(title="activation vs number of parallel adapters", xlabel="number of adapters", ylabel="test accuracy (%)")
    return fig


# ---------------------------------------------------------------- findings

LINEAR_RANKS_ALIKE = Finding(
    "Fig. 8", "linear and non-linear single adapters rank the edges alike", "high Pearson and Spearman",
    "Spearman rho > 0 at p < 0.05 (< 0 at p < 0.05: not)", lambda e: finding_linear_rank(e.figure("fig8"), e.health))
LINEAR_OUTPERFORMS = Finding(
    "Fig. 8", "linear adapters outperform non-linear ones at most edges", "most points below the diagonal",
    "two-sided sign test over the edges, p < 0.05 (majority the other way: not reproduced)",
    lambda e: finding_linear_better(e.figure("fig8"), e.health))
ACTIVATIONS_ALIKE = Finding(
    "Fig. 9", "GELU, ReLU and identity adapters perform similarly", "similar",
    "per N: similar when the ANOVA p >= 0.05 and the spread <= 2 pooled std, different at p < 0.05; "
    "similar at at least half the N", lambda e: finding_activations_alike(e.figure("fig9"), e.health, e.seeds))
NONLINEARITY_GROWS = Finding(
    "Fig. 9", "the non-linearity matters more with more adapters", "yes",
    "contrast t test of the growth of the gap against the pooled seed noise of Fig. 9's cells, p < 0.05",
    lambda e: finding_nonlinearity_grows(e.figure("fig9"), e.health, e.seeds))


def _healthy_edges(fig8: pd.DataFrame, health: Health) -> tuple[pd.DataFrame, bool]:
    """The edges whose linear and non-linear runs did not collapse, and whether too few are left
    (under 3 of at least 3: the finding is diverged)."""
    ok = fig8
    for column in ("run_ids_linear", "run_ids_nonlinear"):
        ok = healthy(ok, health, column)
    return ok, len(ok) < 3 <= len(fig8)


def finding_linear_rank(fig8: pd.DataFrame, health: Health = HEALTHY) -> dict:
    """Spearman of linear vs non-linear single-adapter accuracy over the edges; edges with a
    collapsed run are left out."""
    ok, gone = _healthy_edges(fig8, health)
    rho, p = V.spearman(ok.mean_linear, ok.mean_nonlinear)
    return LINEAR_RANKS_ALIKE.record(f"Spearman {fmt(rho)} over {len(ok)} edges", f"rho={fmt(rho)}, p={fmt(p, 3)}",
                                     V.DIVERGED if gone else V.outcome_verdict(V.test_outcome(rho, p)))


def finding_linear_better(fig8: pd.DataFrame, health: Health = HEALTHY) -> dict:
    """A sign test of linear > non-linear over the edges (ties left out); edges with a collapsed run
    are left out."""
    ok, gone = _healthy_edges(fig8, health)
    diff = (ok.mean_linear - ok.mean_nonlinear).dropna()
    above, below = int((diff > 0).sum()), int((diff < 0).sum())
    p_sign = V.sign_test(above, below)
    return LINEAR_OUTPERFORMS.record(f"linear above at {above}, below at {below} of {len(diff)} edges",
                                     f"sign test p={fmt(p_sign, 3)}",
                                     V.DIVERGED if gone else V.outcome_verdict(V.test_outcome(above - below, p_sign)))


def _healthy_cells(fig9: pd.DataFrame, health: Health, seeds: int) -> tuple[pd.DataFrame, bool]:
    """The Fig. 9 cells whose runs did not collapse, and whether any were left out."""
    data = healthy(fig9.assign(seeds=seeds_of(fig9, seeds)), health).dropna(subset=["mean"])
    return data, len(healthy(fig9, health)) < len(fig9)


def finding_activations_alike(fig9: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    data, left_out = _healthy_cells(fig9, health, seeds)
    outcomes, texts = [], []
    for n, part in data.groupby("n_adapters"):
        if len(part) < 2:
            continue
        f, p = V.anova(part["mean"].tolist(), part["std"].tolist(), part["seeds"].tolist())
        spread = part["mean"].max() - part["mean"].min()
        outcomes.append(-V.effect_outcome(p, spread, pooled_of(part)))  # the claim is "no effect"
        texts.append(f"N={n} spread {fmt(spread)} (F={fmt(f)}, p={fmt(p, 3)})")
    return ACTIVATIONS_ALIKE.record("; ".join(texts), tally(outcomes), V.majority(outcomes, int(left_out)))


def finding_nonlinearity_grows(fig9: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> Optional[dict]:
    """The GELU - identity gap at the most adapters against the gap at the fewest (a contrast of four
    cells); None when this run has neither those cells nor a collapsed one."""
    data, left_out = _healthy_cells(fig9, health, seeds)
    cells = data.set_index(["activation", "n_adapters"])
    ns = sorted(set(data.n_adapters))
    if len(ns) >= 2 and all((a, n) in cells.index for a in ("gelu", "identity") for n in (ns[0], ns[-1])):
        keys = [("gelu", ns[-1]), ("identity", ns[-1]), ("gelu", ns[0]), ("identity", ns[0])]
        rows = [cells.loc[k] for k in keys]
        t, df, p = V.pooled_contrast([r["mean"] for r in rows], [int(r["seeds"]) for r in rows], [1, -1, -1, 1],
                                     *noise_of(data))
        first, last = rows[2]["mean"] - rows[3]["mean"], rows[0]["mean"] - rows[1]["mean"]
        return NONLINEARITY_GROWS.record(f"GELU - identity: {fmt(first)} at N={ns[0]}, {fmt(last)} at N={ns[-1]}",
                                         f"t={fmt(t)}, p={fmt(p, 3)}", V.outcome_verdict(V.test_outcome(t, p)))
    if left_out:
        return NONLINEARITY_GROWS.record("runs collapsed", "-", V.DIVERGED,
                                         criterion="t test of the growth of the gap, p < 0.05")
    return None


# ---------------------------------------------------------------- the products

def _fig8(context, inputs):
    return fig8_data(load_runs(inputs["fig8"]), load_runs(inputs["fig3"]), context["experiments"]["fig8"]["dataset"])


def _draw_fig8(data, context, inputs):
    return figure8(data, grid_nodes(context)[context["experiments"]["fig8"]["dataset"]])


PRODUCTS = [
    Product("fig8", "Fig. 8: linear vs non-linear single adapters", {"fig8": Batches("fig8"), "fig3": Batches("fig3", "fig8.dataset")},
            _fig8, experiments=("fig8",), draw=_draw_fig8, findings=(LINEAR_RANKS_ALIKE, LINEAR_OUTPERFORMS)),
    Product("fig9", "Fig. 9: activation vs number of parallel adapters", {"fig9": Batches("fig9")},
            lambda context, inputs: fig9_data(load_runs(inputs["fig9"])), experiments=("fig9",),
            draw=lambda data, c, i: figure9(data), findings=(ACTIVATIONS_ALIKE, NONLINEARITY_GROWS)),
]
