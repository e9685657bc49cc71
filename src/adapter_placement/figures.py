"""The figure job: the figure's data from the job's input files (its product in ``products``),
saved as CSV next to the tables (``results/figure_data``), then drawn with seaborn and saved as PNG
and PDF."""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from . import atomic
from .analysis import write_frame
from .products import PRODUCTS
from .products.drawing import plt, sns


def write_figure(spec: Mapping, inputs: Mapping, outputs: Mapping) -> pd.DataFrame:
    sns.set_theme(style="whitegrid", context="paper")
    product = PRODUCTS[spec["name"]]
    data = product.compute(spec["context"], inputs)
    write_frame(data, outputs["data"])
    fig = product.draw(data, spec["context"], inputs)
    fig.suptitle(spec.get("title", ""), fontsize=10)
    fig.tight_layout()
    for key in ("png", "pdf"):
        with atomic.atomic_path(outputs[key]) as tmp:
            fig.savefig(tmp, format=key, dpi=150)
    plt.close(fig)
    return data
