"""Adapter placement in transformers: the adapter graph, gradient-rank scores and GGA.

Reproduces "Towards Optimal Adapter Placement for Efficient Transfer Learning"; see DESIGN.md.
"""
from . import placements
from .adapters import BottleneckAdapter, LinearAdapter
from .gga import gga_select
from .graph import AdapterGraph
from .placements import Edge, edge_kind
from .scores import SCORE_FUNCTIONS, edge_gradients, score_edges, score_matrix, srank, train_head

__version__ = "0.1.0"

__all__ = [
    "AdapterGraph", "BottleneckAdapter", "Edge", "LinearAdapter", "SCORE_FUNCTIONS", "edge_gradients",
    "edge_kind", "gga_select", "placements", "score_edges", "score_matrix", "srank", "train_head",
]
