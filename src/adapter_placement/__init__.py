"""Adapter placement in transformers: the adapter graph, gradient-rank scores and GGA."""
__version__ = "0.1.0"
