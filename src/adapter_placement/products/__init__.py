"""Every table and figure of DESIGN.md section 6, one ``Product`` each, in one registry.

A product declares once its name, title, inputs, compute, drawing, side-by-side formatter and the
findings of the paper it judges (``product.py``); the modules group them by what they are about.
workflow/rules/tables.smk and figures.smk make one rule per product of ``PRODUCTS``; report.py
renders REPORT.md from it (titles, tables side by side, every finding of ``FINDINGS``)."""
from __future__ import annotations

import re
from typing import Optional

import pandas as pd

from . import baselines, costs, gga, scores, single, text, variants
from .product import Product


# The order of the modules and of each module's products is the order of the findings in the report.
MODULES = (single, baselines, scores, gga, variants, text, costs)


def _paper_order(product: Product) -> tuple:
    """Tables before figures, each by its number in the paper (App. K and those beyond the paper last)."""
    number = re.search(r"\d+", product.name)
    return product.is_figure, int(number.group()) if number else 99, product.name


PRODUCTS: dict[str, Product] = {p.name: p for p in sorted((p for m in MODULES for p in m.PRODUCTS), key=_paper_order)}
FINDINGS = tuple(f for m in MODULES for p in m.PRODUCTS for f in p.findings)


def side_by_side(name: str, ours: pd.DataFrame, paper: Optional[pd.DataFrame]) -> pd.DataFrame:
    """Table ``name`` with one cell per number: "this run | paper" (paper from ``paper/*.csv``, in
    percent like ours; "–" where a side has no number). Tables without transcribed paper numbers
    (Table 6) get "–" on the paper's side."""
    return PRODUCTS[name].pairs(ours, paper if paper is not None else pd.DataFrame())
