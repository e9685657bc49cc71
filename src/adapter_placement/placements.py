"""Edges of the adapter graph and the placements the paper uses as baselines (DESIGN.md 1, 4).

A placement is a list of edges ``(i, j)`` between the ``n = 2L + 1`` hidden states of an encoder.
Node ``2b + 1`` is the state after block ``b``'s attention sub-layer, node ``2b + 2`` after its
feed-forward sub-layer, node 0 the encoder input. Every function here is pure.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np

PARALLEL, SEQUENTIAL, LONG_RANGE, RECURRENT = "parallel", "sequential", "long-range", "recurrent"
EDGE_KINDS = (PARALLEL, SEQUENTIAL, LONG_RANGE, RECURRENT)


class Edge(NamedTuple):
    """An adapter from node ``i`` (its source) into node ``j`` (where its output is added)."""

    i: int
    j: int


def edge_kind(i: int, j: int) -> str:
    """Which of the paper's four adapter kinds the edge (i, j) is (Sec. 4.1)."""
    if j == i + 1:
        return PARALLEL
    if i == j:
        return SEQUENTIAL
    if i < j:
        return LONG_RANGE
    return RECURRENT


def check_num_nodes(num_nodes: int) -> int:
    """An encoder with L >= 1 blocks has an odd number n = 2L + 1 >= 3 of nodes."""
    if not isinstance(num_nodes, (int, np.integer)) or num_nodes < 3 or num_nodes % 2 == 0:
        raise ValueError(f"num_nodes must be an odd integer 2L+1 >= 3, got {num_nodes!r}")
    return int(num_nodes)


def check_edges(edges: Iterable[tuple[int, int]], num_nodes: int) -> list[Edge]:
    """Validate a placement: integer pairs inside ``0..num_nodes-1``, no edge twice."""
    checked: list[Edge] = []
    for edge in edges:
        try:
            i, j = edge
        except (TypeError, ValueError):
            raise ValueError(f"an edge is a pair (i, j) of node indices, got {edge!r}") from None
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (i, j)):
            raise ValueError(f"edge {edge!r} must hold integer node indices")
        if not (0 <= i < num_nodes and 0 <= j < num_nodes):
            raise ValueError(f"edge ({i}, {j}) is outside the nodes 0..{num_nodes - 1}")
        e = Edge(int(i), int(j))
        if e in checked:
            raise ValueError(f"edge ({i}, {j}) appears more than once in the placement")
        checked.append(e)
    return checked


def parallel_all(num_nodes: int) -> list[Edge]:
    """The 2L parallel edges (k-1, k), k = 1..2L: the standard adapter recipe (PA)."""
    n = check_num_nodes(num_nodes)
    return [Edge(k - 1, k) for k in range(1, n)]


def sequential_all(num_nodes: int) -> list[Edge]:
    """The 2L sequential edges (k, k), k = 1..2L (Houlsby-style adapters after every sub-layer)."""
    n = check_num_nodes(num_nodes)
    return [Edge(k, k) for k in range(1, n)]


def _check_k(num_nodes: int, k: int) -> int:
    n = check_num_nodes(num_nodes)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be in 1..{n - 1} (the number of parallel edges), got {k!r}")
    return n


def first_k(num_nodes: int, k: int) -> list[Edge]:
    """The k parallel edges nearest the input."""
    _check_k(num_nodes, k)
    return parallel_all(num_nodes)[:k]


def last_k(num_nodes: int, k: int) -> list[Edge]:
    """The k parallel edges nearest the output (Rücklé et al. 2020)."""
    _check_k(num_nodes, k)
    return parallel_all(num_nodes)[-k:]


def ffn_parallel(num_nodes: int) -> list[Edge]:
    """Parallel edges into the feed-forward nodes only (even k): L edges (App. I, ViT-g)."""
    return [e for e in parallel_all(num_nodes) if e.j % 2 == 0]


def grid(num_nodes: int, stride: int) -> list[Edge]:
    """Every edge (i, j) with i, j in {0, s, 2s, ...}: the sub-sampled search space of Fig. 3."""
    n = check_num_nodes(num_nodes)
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    points = range(0, n, stride)
    return [Edge(i, j) for i in points for j in points]


def random(num_nodes: int, count: int, seed: int) -> list[Edge]:
    """``count`` distinct edges drawn uniformly from all n^2, in row-major order.

    Draw ``d`` of Table 1 is ``random(n, 24, seed=d)``: the same seed gives the same placement on
    every machine (numpy's PCG64 generator).
    """
    n = check_num_nodes(num_nodes)
    if not isinstance(count, (int, np.integer)) or not 1 <= count <= n * n:
        raise ValueError(f"count must be in 1..{n * n} (the number of edges), got {count!r}")
    flat = np.random.default_rng(seed).choice(n * n, size=int(count), replace=False)
    return [Edge(int(f) // n, int(f) % n) for f in sorted(flat)]


def all_edges(num_nodes: int) -> list[Edge]:
    """All n^2 edges in row-major order."""
    n = check_num_nodes(num_nodes)
    return [Edge(i, j) for i in range(n) for j in range(n)]


def random_non_recurrent(num_nodes: int, count: int, seed: int) -> list[Edge]:
    """``count`` distinct edges (i, j) with i <= j, uniformly, in row-major order (Table 7)."""
    n = check_num_nodes(num_nodes)
    candidates = [Edge(i, j) for i in range(n) for j in range(i, n)]
    if not 1 <= count <= len(candidates):
        raise ValueError(f"count must be in 1..{len(candidates)} (non-recurrent edges), got {count!r}")
    picks = np.random.default_rng(seed).choice(len(candidates), size=count, replace=False)
    return [candidates[k] for k in sorted(picks)]


def spread(num_nodes: int, count: int) -> list[Edge]:
    """``count`` parallel edges spaced evenly over the 2L positions, the first at (0, 1) (Fig. 9)."""
    edges = parallel_all(num_nodes)
    if not 1 <= count <= len(edges):
        raise ValueError(f"spread needs 1..{len(edges)} adapters, got {count}")
    step = len(edges) / count
    return [edges[int(k * step)] for k in range(count)]
