"""The table job: a table's numbers from the job's input files (its product in ``products``), as
CSV, and as Markdown side by side with the paper's numbers where the paper has the table."""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from .analysis import write_frame
from .products import PRODUCTS, side_by_side


def write_table(spec: Mapping, inputs: Mapping, outputs: Mapping) -> pd.DataFrame:
    """The table job: CSV of this run, Markdown side by side with the paper's numbers where the
    paper has the table (``inputs["paper"]``: its ``paper/*.csv``)."""
    product = PRODUCTS[spec["name"]]
    frame = product.compute(spec["context"], inputs)
    pairs = None
    if product.pairs is not None:
        pairs = side_by_side(product.name, frame, pd.read_csv(inputs["paper"]) if inputs.get("paper") else None)
    write_frame(frame, outputs["csv"], outputs["md"], product.title, pairs)
    return frame
