"""The frozen-prefix cache: node values of the plain backbone, per example, on disk.

With the backbone frozen, no augmentation and dropout off, every node before the first one an
adapter touches, and every node of the first pass (the sources of recurrent edges), is a fixed
function of the example. A single-adapter sweep (hundreds of runs on one dataset) computes them
once, here, and each run starts its forward at ``graph.prefix_node``. The math is the graph's own:
``graph(x, prefix=..., first_pass=...)`` equals ``graph(x)`` (tests/test_train.py checks it).

Layout: ``<root>/<model>/<task>-data<seed>/<split>/node<k>.pt``, one tensor (examples, tokens, d).
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from . import atomic
from .data import index_inputs
from .graph import AdapterGraph


def model_key(spec: str) -> str:
    """A folder name for a model: its spec, plus a fingerprint of the file for local weights."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(spec) if os.path.exists(spec) else spec)
    if os.path.exists(spec):
        stat = os.stat(spec)
        slug += "-" + hashlib.sha1(f"{os.path.abspath(spec)}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return slug


class NodeCache:
    def __init__(self, graph: AdapterGraph, task, root: Path, model_spec: str, data_seed: int,
                 batch_size: int = 256):
        self.graph, self.task, self.batch_size = graph, task, batch_size
        self.prefix_node = graph.prefix_node or None  # starting at block 0 skips nothing: no cache
        self.sources = graph.first_pass_sources(prefix=self.prefix_node is not None)
        self.nodes = sorted(set(self.sources) | ({self.prefix_node} - {None}))
        self.folder = Path(root) / model_key(model_spec) / f"{task.name}-data{data_seed}"
        self._values: dict[str, dict[int, torch.Tensor]] = {}

    def extras(self, split: str, index: torch.Tensor) -> dict:
        """Keyword arguments for ``graph(...)`` for the examples ``index`` of ``split``."""
        values = self.values(split)
        extras = {}
        if self.prefix_node is not None:
            extras["prefix"] = values[self.prefix_node][index]
        if self.sources:
            extras["first_pass"] = {i: values[i][index] for i in self.sources}
        return extras

    def values(self, split: str) -> dict[int, torch.Tensor]:
        if split not in self._values:
            paths = {k: self.folder / split.replace("+", "_") / f"node{k}.pt" for k in self.nodes}
            missing = [k for k, p in paths.items() if not p.exists()]
            if missing:
                for k, value in self._compute(split, missing).items():
                    atomic.torch_save(paths[k], value)
            self._values[split] = {k: torch.load(p, weights_only=True) for k, p in paths.items()}
        return self._values[split]

    @torch.no_grad()
    def _compute(self, split: str, nodes: list[int]) -> dict[int, torch.Tensor]:
        inputs, labels = self.task.tensors(split)
        parts: dict[int, list[torch.Tensor]] = {k: [] for k in nodes}
        for start in range(0, len(labels), self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, len(labels)))
            batch = index_inputs(inputs, index)
            args, kwargs = ((), batch) if isinstance(batch, dict) else ((batch,), {})
            for k, value in self.graph.compute_first_pass(*args, nodes=nodes, **kwargs).items():
                parts[k].append(value.cpu())
        return {k: torch.cat(v) for k, v in parts.items()}
