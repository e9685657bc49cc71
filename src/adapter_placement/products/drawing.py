"""What the figures share: the backend (files, no display), the seaborn import, the FT / LP / PA
dashed lines and a grid of axes. Each figure's own drawing lives with its product."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # no display: figures are files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

LINE_STYLE = {"full_ft": ("FT", "tab:pink"), "linear_probe": ("LP", "black"), "parallel_all": ("PA", "tab:cyan")}


def grid_axes(count: int, width: float = 3.4, height: float = 2.8, columns: int = 4):
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def baseline_lines(ax, lines: pd.DataFrame, dataset: str, scale: float = 1.0) -> None:
    for _, row in lines[lines.dataset == dataset].iterrows():
        label, colour = LINE_STYLE[row.method]
        if np.isfinite(row["mean"]):
            ax.axhline(row["mean"] * scale, ls="--", lw=1, color=colour, label=label)


def edge_matrix(part: pd.DataFrame, n: int, value: str = "mean") -> np.ndarray:
    matrix = np.full((n, n), np.nan)
    for _, row in part.iterrows():
        matrix[int(row.i), int(row.j)] = row[value]
    return matrix
