"""The frozen-prefix cache: node values of the plain backbone, per example, on disk.

With the backbone frozen, no augmentation and dropout off, every node before the first one an
adapter touches, and every node of the first pass (the sources of recurrent edges), is a fixed
function of the example. A single-adapter sweep (hundreds of runs on one dataset) computes them
once, here, and each run starts its forward at ``graph.prefix_node``. The math is the graph's own:
``graph(x, prefix=..., first_pass=...)`` equals ``graph(x)`` (tests/test_train.py checks it).

Layout: ``<root>/<model>/<task>-data<seed>/<split>-<digest>/node<k>.pt`` (node k's value) and
``pre<k>.pt`` (z_k, node k before its sub-layer closes it: the start of a pass), one tensor
(examples, tokens, d) each. The digest is of the split's examples and labels, so a cache made from
other examples (a changed task construction, other sizes) is never read.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from . import atomic
from .data.tasks import index_inputs
from .device import pin, to_device
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
        self.files = [f"node{k}" for k in self.sources] + ([] if self.prefix_node is None
                                                           else [f"pre{self.prefix_node}"])
        self.folder = Path(root) / model_key(model_spec) / f"{task.name}-data{data_seed}"
        self._values: dict[str, dict[str, torch.Tensor]] = {}

    @property
    def device(self) -> torch.device:
        return next(self.graph.parameters()).device

    def extras(self, split: str, index: torch.Tensor) -> dict:
        """Keyword arguments for ``graph(...)`` for the examples ``index`` of ``split``."""
        values = self.values(split)
        extras = {}
        if self.prefix_node is not None:
            extras["prefix"] = values[f"pre{self.prefix_node}"][index]
        if self.sources:
            extras["first_pass"] = {i: values[f"node{i}"][index] for i in self.sources}
        return extras

    def path(self, split: str, name: str) -> Path:
        return self.folder / f"{split.replace('+', '_')}-{self.task.digest(split)}" / f"{name}.pt"

    def fill(self, split: str, names) -> None:
        """Compute the files ``names`` of ``split`` that are not on disk, in one plain pass."""
        missing = [name for name in dict.fromkeys(names) if not self.path(split, name).exists()]
        if missing:
            for name, value in self._compute(split, missing).items():
                atomic.torch_save(self.path(split, name), value)

    def values(self, split: str) -> dict[str, torch.Tensor]:
        if split not in self._values:
            self.fill(split, self.files)
            # kept on the host (a GPU need not hold a whole split), pinned so that each
            # batch's slice copies to the GPU asynchronously
            self._values[split] = {name: pin(torch.load(self.path(split, name), weights_only=True), self.device)
                                   for name in self.files}
        return self._values[split]

    @torch.no_grad()
    def _compute(self, split: str, names: list[str]) -> dict[str, torch.Tensor]:
        nodes = [int(n[4:]) for n in names if n.startswith("node")]
        pre_nodes = [int(n[3:]) for n in names if n.startswith("pre")]
        inputs, labels = self.task.tensors(split)
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        for start in range(0, len(labels), self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, len(labels)))
            batch = to_device(index_inputs(inputs, index), self.device)
            args, kwargs = ((), batch) if isinstance(batch, dict) else ((batch,), {})
            values, pre_values = self.graph.plain_pass(*args, nodes=nodes, pre_nodes=pre_nodes, **kwargs)
            for k, value in values.items():
                parts[f"node{k}"].append(value.cpu())
            for k, value in pre_values.items():
                parts[f"pre{k}"].append(value.cpu())
        return {name: torch.cat(v) for name, v in parts.items()}


def fill_together(caches: list[NodeCache], splits) -> None:
    """Every file that any of ``caches`` (one model, task and folder) needs, one pass per split:
    a batch of runs filling the cache run by run would pass once per new node."""
    if not caches:
        return
    folders = {c.folder for c in caches}
    if len(folders) > 1:
        raise ValueError(f"caches of one model and task fill together, got folders {sorted(map(str, folders))}")
    names = [name for c in caches for name in c.files]
    for split in splits:
        caches[0].fill(split, names)
