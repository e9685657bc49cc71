"""The figures of DESIGN.md section 6 with seaborn: each is drawn from a DataFrame (``analysis``),
saved as PNG and PDF, and its data saved as CSV next to the tables (``results/figure_data``).

``write_figure`` is the job: it builds the data from the job's input files, draws, saves.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import matplotlib

matplotlib.use("Agg")  # no display: figures are files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import analysis, atomic  # noqa: E402
from .analysis import load_runs, read_json  # noqa: E402

LINE_STYLE = {"full_ft": ("FT", "tab:pink"), "linear_probe": ("LP", "black"), "parallel_all": ("PA", "tab:cyan")}


def _grid(count: int, width: float = 3.4, height: float = 2.8, columns: int = 4):
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _baseline_lines(ax, lines: pd.DataFrame, dataset: str, scale: float = 1.0) -> None:
    for _, row in lines[lines.dataset == dataset].iterrows():
        label, colour = LINE_STYLE[row.method]
        if np.isfinite(row["mean"]):
            ax.axhline(row["mean"] * scale, ls="--", lw=1, color=colour, label=label)


# ---------------------------------------------------------------- one function per figure

def figure1(data: pd.DataFrame, lines: pd.DataFrame):
    """Test accuracy of one parallel adapter at each position, with FT / LP / PA lines."""
    datasets = list(dict.fromkeys(data.dataset))
    fig, axes = _grid(len(datasets))
    for ax, dataset in zip(axes, datasets):
        part = data[data.dataset == dataset]
        sns.lineplot(data=part, x="position", y="mean", marker="o", ax=ax, color="tab:blue")
        ax.fill_between(part.position, part["mean"] - part["std"], part["mean"] + part["std"], alpha=0.2)
        _baseline_lines(ax, lines, dataset)
        ax.set(title=dataset, xlabel="parallel position k (edge k-1 -> k)", ylabel="test accuracy (%)")
    axes[0].legend(fontsize=7)
    return fig


def figure7(data: pd.DataFrame, lines: pd.DataFrame):
    """MHA vs FFN parallel adapter per block."""
    datasets = list(dict.fromkeys(data.dataset))
    fig, axes = _grid(len(datasets))
    for ax, dataset in zip(axes, datasets):
        sns.lineplot(data=data[data.dataset == dataset], x="block", y="mean", hue="sublayer", marker="o", ax=ax)
        _baseline_lines(ax, lines, dataset)
        ax.set(title=dataset, xlabel="encoder block", ylabel="test accuracy (%)")
        ax.legend(fontsize=7)
    return fig


def _edge_matrix(part: pd.DataFrame, n: int, value: str = "mean") -> np.ndarray:
    matrix = np.full((n, n), np.nan)
    for _, row in part.iterrows():
        matrix[int(row.i), int(row.j)] = row[value]
    return matrix


def figure3(data: pd.DataFrame, lines: pd.DataFrame, num_nodes: Mapping[str, int]):
    """Single-adapter test accuracy on the grid edges (row i = source, column j = target)."""
    datasets = list(dict.fromkeys(data.dataset))
    fig, axes = _grid(len(datasets), width=3.8, height=3.4)
    for ax, dataset in zip(axes, datasets):
        part = data[data.dataset == dataset]
        points = sorted(set(part.i) | set(part.j))
        matrix = _edge_matrix(part, num_nodes[dataset])[np.ix_(points, points)]
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


def _score_scatter(edges: pd.DataFrame, scores: Mapping[str, Mapping], y: str, ylabel: str, fn: str = "srank",
                   log_y: bool = False):
    datasets = list(scores)
    fig, axes = _grid(len(datasets))
    for ax, dataset in zip(axes, datasets):
        part = edges[edges.dataset == dataset]
        matrix = np.asarray(scores[dataset]["heads"]["default"]["scores"][fn], float)
        x = [matrix[i, j] for i, j in zip(part.i, part.j)]
        values = np.log(part[y]) if log_y else part[y]
        rho, _ = analysis.spearman(x, values)
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
        rho, _ = analysis.spearman(x, edges.train_loss)
        sns.scatterplot(x=x, y=edges.train_loss, ax=axes[1, k], s=20)
        axes[1, k].set(title=f"rho = {rho:.2f}", xlabel=fn, ylabel="train loss")
    return fig


def figure12(edges: pd.DataFrame):
    datasets = list(dict.fromkeys(edges.dataset))
    fig, axes = _grid(len(datasets))
    for ax, dataset in zip(axes, datasets):
        part = edges[edges.dataset == dataset]
        rho, _ = analysis.spearman(np.log(part.train_loss), part["mean"])
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


def figure6(ab: pd.DataFrame, lines: pd.DataFrame, c: pd.DataFrame):
    datasets = list(dict.fromkeys(ab.dataset))
    fig, axes = plt.subplots(1, len(datasets) + 1, figsize=(4.2 * (len(datasets) + 1), 3.8))
    for ax, dataset, letter in zip(axes, datasets, "abcdefgh"):
        sns.lineplot(data=ab[ab.dataset == dataset], x="n_adapters", y="mean", hue="selection", marker="o", ax=ax)
        _baseline_lines(ax, lines[lines.method.isin(["full_ft", "parallel_all"])], dataset)
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


def figure8(data: pd.DataFrame, num_nodes: int):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    points = sorted(set(data.i) | set(data.j))
    matrix = _edge_matrix(data, num_nodes, "mean_linear")[np.ix_(points, points)]
    sns.heatmap(matrix, ax=axes[0], cmap="viridis", xticklabels=points, yticklabels=points, square=True,
                cbar_kws={"label": "test accuracy (%)"})
    axes[0].set(title="single linear adapters", xlabel="target node j", ylabel="source node i")
    c = analysis.linear_correlations(data)
    sns.scatterplot(data=data, x="mean_linear", y="mean_nonlinear", hue="kind", ax=axes[1])
    low, high = np.nanmin(data[["mean_linear", "mean_nonlinear"]].values), np.nanmax(data[["mean_linear", "mean_nonlinear"]].values)
    axes[1].plot([low, high], [low, high], "k--", lw=1)
    axes[1].set(title=f"non-linear vs linear (Pearson {c['pearson']:.2f}, Spearman {c['spearman']:.2f})",
                xlabel="linear adapter accuracy (%)", ylabel="non-linear adapter accuracy (%)")
    return fig


def figure14(data: pd.DataFrame):
    """Left: the discount matrix of GGA's first pick; right: the scores after all picks (App. H)."""
    n = int(data.i.max()) + 1
    first = data[data.pick == 0].iloc[0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    for ax, column, title in ((axes[0], "discount_first", f"discount matrix of the first pick ({int(first.i)}, {int(first.j)})"),
                              (axes[1], "score_after", f"scores after placing {int((data.pick >= 0).sum())} adapters")):
        sns.heatmap(_edge_matrix(data, n, column), ax=ax, cmap="magma", square=True)
        ax.set(title=title, xlabel="target node j", ylabel="source node i")
    for _, row in data[data.pick >= 0].iterrows():
        axes[1].add_patch(plt.Rectangle((row.j, row.i), 1, 1, fill=False, ec="cyan", lw=1))
    return fig


def figure9(data: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5, 3.8))
    sns.lineplot(data=data, x="n_adapters", y="mean", hue="activation", marker="o", ax=ax)
    ax.set(title="activation vs number of parallel adapters", xlabel="number of adapters", ylabel="test accuracy (%)")
    return fig


def figure15(data: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.bar(data.setup, data["mean"], yerr=data["std"].fillna(0), color=["tab:green", "tab:gray"], capsize=4)
    low = np.nanmin(data["mean"] - data["std"].fillna(0))
    ax.set(ylim=(max(0, low - 5), None), ylabel="test accuracy (%)", title="all n^2 adapters vs best random")
    return fig


def figure_search(data: pd.DataFrame):
    """Per dataset: test accuracy against N, against measured seconds and against analytic GFLOPs
    (selection plus training), one line per placement method (beyond the paper)."""
    datasets = list(dict.fromkeys(data.dataset))
    fig, axes = plt.subplots(len(datasets), 3, figsize=(13, 3.6 * len(datasets)), squeeze=False)
    methods = list(dict.fromkeys(data.method))
    palette = dict(zip(methods, sns.color_palette("tab10", len(methods))))
    for row, dataset in zip(axes, datasets):
        part = data[data.dataset == dataset]
        for ax, x, label in zip(row, ("n_adapters", "total_seconds", "total_gflops"),
                                ("number of adapters N", "seconds (selection + training)", "GFLOPs (selection + training)")):
            sns.lineplot(data=part, x=x, y="mean", hue="method", hue_order=methods, palette=palette, marker="o",
                         ax=ax, sort=True, legend=ax is row[0])
            ax.set(title=dataset, xlabel=label, ylabel="test accuracy (%)", xscale="log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labelled minor ticks overlap
        counts = sorted(part.n_adapters.unique())
        row[0].set_xticks(counts, [str(int(n)) for n in counts])
        row[0].minorticks_off()
        row[0].legend(fontsize=7)
    return fig


# ---------------------------------------------------------------- the job

def _scores_by_dataset(paths: list[str]) -> dict:
    return {s["dataset"]: s for s in map(read_json, paths)}


def build_figure(name: str, context: Mapping, inputs: Mapping) -> tuple[pd.DataFrame, Callable]:
    """(data, draw) of the figure ``name``; ``draw()`` returns the matplotlib figure."""
    exp = context["experiments"]
    nodes = {d: 2 * context["models"][e["model"]]["blocks"] + 1 for d, e in context["datasets"].items()}
    lines = lambda: analysis.baselines(load_runs(inputs["table1"]), exp["table1"]["datasets"])  # noqa: E731
    if name in ("fig1", "fig7"):
        data = analysis.fig1_data(load_runs(inputs["fig1"]))
        draw = figure1 if name == "fig1" else figure7
        return data, lambda: draw(data, lines())
    if name == "fig3":
        data = analysis.single_edges(load_runs(inputs["fig3"]))
        return data, lambda: figure3(data, lines(), nodes)
    if name == "fig4":
        data = analysis.fig4_correlations(load_runs(inputs["fig3"]), exp["fig3"]["datasets"])
        return data, lambda: figure4(data)
    if name in ("fig5", "fig11"):
        runs, scores = load_runs(inputs["fig3"]), _scores_by_dataset(inputs["scores"])
        data = analysis.fig5_correlations(runs, scores)
        edges = analysis.single_edges(runs)
        y, label, log_y = (("mean", "test accuracy (%)", False) if name == "fig5" else ("train_loss", "log train loss", True))
        return data, lambda: _score_scatter(edges, scores, y, label, log_y=log_y)
    if name == "fig12":
        edges = analysis.single_edges(load_runs(inputs["fig3"]))
        return edges, lambda: figure12(edges)
    if name == "fig10":
        dataset = context["scores"]["dataset"]
        runs, scores = load_runs(inputs["fig3"]), read_json(inputs["scores"])
        data = analysis.table4(runs, scores, dataset)
        edges = analysis.single_edges(runs[runs.dataset == dataset])
        return data, lambda: figure10(edges, scores, list(scores["heads"]["default"]["scores"]))
    if name == "fig13":
        data = analysis.fig13_correlations(load_runs(inputs["fig3"]), read_json(inputs["scores"]), context["scores"]["dataset"])
        return data, lambda: figure13(data)
    if name == "fig6":
        ab = analysis.fig6_data(load_runs(inputs["fig6ab"]))
        c = analysis.fig6c_data(load_runs(inputs["fig6c"]))
        data = pd.concat([ab.assign(panel="ab"), c.assign(panel="c")], ignore_index=True)
        return data, lambda: figure6(ab, analysis.baselines(load_runs(inputs["table1"]), exp["fig6ab"]["datasets"]), c)
    if name == "fig8":
        dataset = exp["fig8"]["dataset"]
        data = analysis.fig8_data(load_runs(inputs["fig8"]), load_runs(inputs["fig3"]), dataset)
        return data, lambda: figure8(data, nodes[dataset])
    if name == "fig9":
        data = analysis.fig9_data(load_runs(inputs["fig9"]))
        return data, lambda: figure9(data)
    if name == "fig14":
        matrix = read_json(inputs["scores"])["heads"]["default"]["scores"]["srank"]
        # as in the paper's Fig. 14: 2L adapters (24 for ViT-B) with the Fig. 6 gamma
        data = analysis.fig14_data(matrix, len(matrix) - 1, exp["fig6ab"]["gamma"])
        return data, lambda: figure14(data)
    if name == "fig15":
        data = analysis.fig15_data(load_runs(inputs["fig15"]), load_runs(inputs["table1"]), exp["fig15"]["dataset"])
        return data, lambda: figure15(data)
    if name == "fig_search":
        data = analysis.search_table(analysis.search_costs_from_inputs(context, inputs), exp["search"]["methods"])
        return data, lambda: figure_search(data)
    raise ValueError(f"unknown figure {name!r}")


def write_figure(spec: Mapping, inputs: Mapping, outputs: Mapping) -> pd.DataFrame:
    sns.set_theme(style="whitegrid", context="paper")
    data, draw = build_figure(spec["name"], spec["context"], inputs)
    analysis.write_frame(data, outputs["data"])
    fig = draw()
    fig.suptitle(spec.get("title", ""), fontsize=10)
    fig.tight_layout()
    for key in ("png", "pdf"):
        with atomic.atomic_path(outputs[key]) as tmp:
            fig.savefig(tmp, format=key, dpi=150)
    plt.close(fig)
    return data
