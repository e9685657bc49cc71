"""Gradient Guided Adapters: greedy selection with distance discounting (App. H, DESIGN.md 3)."""
from __future__ import annotations

import numpy as np

from .placements import Edge, check_edges


def gga_select(scores, n: int, gamma: float = 0.6, exclude=()) -> list[Edge]:
    """Pick ``n`` distinct edges from an ``(num_nodes, num_nodes)`` score matrix, in pick order.

    Each round takes the highest-scoring edge not yet picked, then multiplies every score by
    ``1 - gamma ** L1((i, j), picked)``, so later picks avoid the neighbourhood of earlier ones.
    ``gamma = 0`` is plain top-n (``0 ** 0 = 1`` only discounts the picked edge itself).
    Algorithm 1 measures the distance to the transposed edge; DESIGN.md reads that as a typo.
    Ties go to the lower (i, j) in row-major order, so the selection is deterministic.
    ``exclude``: edges never picked, and which discount nothing (e.g. those already placed).
    """
    s = np.array(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"scores must be a square (num_nodes, num_nodes) matrix, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    picked = np.zeros(s.shape, dtype=bool)
    for i, j in check_edges(exclude, s.shape[0]):
        picked[i, j] = True
    free = s.size - int(picked.sum())
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= free:
        what = "the number of edges not excluded" if picked.any() else "the number of edges"
        raise ValueError(f"n must be in 1..{free} ({what}), got {n!r}")
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma!r}")

    rows, cols = np.indices(s.shape)
    edges: list[Edge] = []
    for _ in range(n):
        # np.argmax returns the first maximum in row-major (C) order: the tie-break rule.
        k, l = np.unravel_index(np.argmax(np.where(picked, -np.inf, s)), s.shape)
        edges.append(Edge(int(k), int(l)))
        picked[k, l] = True
        s = s * (1.0 - gamma ** (np.abs(rows - k) + np.abs(cols - l)))
    return edges
