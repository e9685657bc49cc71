"""Adapter placement in transformers: the adapter graph, gradient-rank scores and GGA.

Reproduces "Towards Optimal Adapter Placement for Efficient Transfer Learning"; see DESIGN.md.

The names below load on first use (PEP 562), so that planning the DAG (the Snakefile imports
``adapter_placement.data`` and the plan) does not import torch.
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "AdapterGraph": "graph", "BottleneckAdapter": "adapters", "LinearAdapter": "adapters",
    "Edge": "placements", "edge_kind": "placements", "gga_select": "gga", "SCORE_FUNCTIONS": "scores",
    "edge_gradients": "scores", "score_edges": "scores", "score_matrix": "scores", "srank": "scores",
    "train_head": "scores",
}

__all__ = sorted([*_EXPORTS, "placements"])


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if name == "placements":
        return importlib.import_module(".placements", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
