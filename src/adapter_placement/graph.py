"""The adapter graph: adapters on any edges (i, j) between the hidden states of an encoder.

One rule covers every kind of adapter (DESIGN.md 1): adapter (i, j) adds ``A(source)`` to node j,
where the source is

- node i of the current pass for parallel (i = j-1) and long-range (i < j-1) edges,
- node j before any adapter added to it (``z_j``) for sequential edges (i = j),
- node i of the *first pass*, the frozen backbone without adapters, for recurrent edges (i > j).
"""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager, nullcontext
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .adapters import check_adapter_args, make_adapter
from .backbones import OnAdd, OnNode, close_node, describe, start_at_node, tap_nodes
from .placements import Edge, check_edges

FirstPass = Union[Mapping[int, torch.Tensor], Sequence[torch.Tensor]]


class AdapterGraph(nn.Module):
    """Wrap a timm ViT or a Hugging Face BERT/RoBERTa and put one adapter on each edge.

    The backbone is frozen (the classification head stays trainable) and always runs in eval mode:
    dropout off, so that node values are a fixed function of the input and the first pass of
    recurrent edges can be cached. Called like the wrapped model, returns what it returns.
    """

    def __init__(self, model: nn.Module, edges: Iterable[tuple[int, int]], rank: int = 8,
                 activation: str = "gelu", kind: str = "bottleneck"):
        super().__init__()
        check_adapter_args(rank, activation, kind)
        self.backbone = describe(model)
        self.num_nodes = self.backbone.num_nodes
        self.edges = check_edges(edges, self.num_nodes)
        self.rank, self.activation, self.kind = rank, activation, kind
        self.model = model

        for p in model.parameters():
            p.requires_grad_(False)
        for p in self.head_parameters():
            p.requires_grad_(True)

        self.adapters = nn.ModuleDict({_key(e): self._new_adapter() for e in self.edges})
        self._probe: Optional[tuple[OnAdd, OnNode]] = None
        self._index_edges()
        self.train()

    def _new_adapter(self) -> nn.Module:
        ref = next(self.model.parameters())
        adapter = make_adapter(self.backbone.hidden_size, self.rank, self.activation, self.kind)
        return adapter.to(device=ref.device, dtype=ref.dtype)

    def _index_edges(self) -> None:
        self._incoming: dict[int, list[Edge]] = defaultdict(list)
        for e in self.edges:
            self._incoming[e.j].append(e)
        self._current_sources = {e.i for e in self.edges if e.i < e.j}
        self.recurrent_sources = sorted({e.i for e in self.edges if e.i > e.j})
        self.prefix_node = frozen_prefix_node(self.edges, self.num_nodes)
        # Current-pass sources before the prefix are plain-backbone values: a pass that skips the
        # prefix reads them from the first pass (a cache), as recurrent edges do.
        self.skipped_sources = sorted(i for i in self._current_sources if i < (self.prefix_node or 0))

    def first_pass_sources(self, prefix: bool = False) -> list[int]:
        """The nodes a forward reads from ``first_pass``: the recurrent sources, and with
        ``prefix`` (the blocks before ``prefix_node`` skipped) the sources before it."""
        return sorted(set(self.recurrent_sources) | (set(self.skipped_sources) if prefix else set()))

    def add_edges(self, edges: Iterable[tuple[int, int]]) -> list[Edge]:
        """Put fresh adapters (zero output, so the function is unchanged) on new ``edges``.

        For searches that change the placement while training; an optimiser built before does
        not hold the new parameters."""
        added = check_edges(edges, self.num_nodes)
        taken = [e for e in added if e in self.edges]
        if taken:
            raise ValueError(f"edges {taken} already hold adapters")
        for e in added:
            self.adapters[_key(e)] = self._new_adapter().train(self.training)
        self.edges = self.edges + added
        self._index_edges()
        return added

    def remove_edges(self, edges: Iterable[tuple[int, int]]) -> list[Edge]:
        """Take the adapters off ``edges`` (their parameters leave the graph)."""
        removed = check_edges(edges, self.num_nodes)
        missing = [e for e in removed if e not in self.edges]
        if missing:
            raise ValueError(f"no adapters on edges {missing}; edges: {self.edges}")
        for e in removed:
            del self.adapters[_key(e)]
        self.edges = [e for e in self.edges if e not in removed]
        self._index_edges()
        return removed

    @contextmanager
    def probe(self, on_add: OnAdd, on_node: OnNode) -> Iterator[None]:
        """Watch every node and add extra values during the forwards run inside the block.

        ``on_node(j, x_j)`` sees node j of the current pass (adapters included); ``on_add(j, pre)``
        may return a tensor added at node j next to the adapters, ``pre()`` being z_j. Scores of a
        graph with trained adapters use it (``scores.edge_gradients``)."""
        self._probe = (on_add, on_node)
        try:
            yield
        finally:
            self._probe = None

    def adapter(self, i: int, j: int) -> nn.Module:
        """The adapter on edge (i, j); calling it on a source tensor gives what it adds."""
        key = _key(Edge(i, j))
        if key not in self.adapters:
            raise ValueError(f"no adapter on edge ({i}, {j}); edges: {self.edges}")
        return self.adapters[key]

    def adapter_parameters(self) -> Iterator[nn.Parameter]:
        return self.adapters.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        head = self.backbone.head
        return iter(()) if head is None else head.parameters()

    def train(self, mode: bool = True) -> "AdapterGraph":
        super().train(mode)
        self.model.eval()  # the frozen backbone is deterministic (see class docstring)
        return self

    def compute_first_pass(self, *args, nodes: Optional[Iterable[int]] = None, **kwargs) -> dict[int, torch.Tensor]:
        """Node values of the plain frozen backbone (no adapters): the sources of recurrent edges.

        ``nodes`` picks which to keep (default: the recurrent sources of this graph). Hand the
        result back as ``graph(..., first_pass=...)`` to skip the extra pass, e.g. from a cache.
        """
        keep = self.recurrent_sources if nodes is None else nodes
        return self.plain_pass(*args, nodes=keep, **kwargs)[0]

    @torch.no_grad()
    def plain_pass(self, *args, nodes: Iterable[int] = (), pre_nodes: Iterable[int] = (),
                   **kwargs) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """One pass of the plain frozen backbone: the values of ``nodes``, and of ``pre_nodes``
        before the sub-layer closes them (z_j: what ``prefix`` takes). It stops after the last one."""
        keep, keep_pre = set(nodes), set(pre_nodes)
        values: dict[int, torch.Tensor] = {}
        pre_values: dict[int, torch.Tensor] = {}

        def check_done():
            if len(values) == len(keep) and len(pre_values) == len(keep_pre):
                raise _PassDone  # the blocks after the last wanted node change nothing here

        def on_add(j, pre):
            if j in keep_pre:
                pre_values[j] = pre().detach()
                check_done()

        def on_node(j, x):
            if j in keep:
                values[j] = x.detach()
                check_done()

        if keep or keep_pre:
            try:
                with tap_nodes(self.backbone, on_add, on_node):
                    self.model(*args, **kwargs)
            except _PassDone:
                pass
        return values, pre_values

    def forward(self, *args, first_pass: Optional[FirstPass] = None,
                prefix: Optional[torch.Tensor] = None, **kwargs):
        """``first_pass``: the recurrent sources (``compute_first_pass``), computed here if None.
        ``prefix``: z_p, the plain backbone's value of node p = ``self.prefix_node`` before the
        sub-layer that ends there closes it (``plain_pass(pre_nodes=[p])``), e.g. from a cache.
        The pass then starts at node p, with the adapters into p added to ``prefix``: the blocks
        before p are skipped, since no adapter can change them."""
        if prefix is not None and self.prefix_node is None:
            raise ValueError("an adapter touches node 0, so there is no frozen prefix to skip")
        from_first_pass = set(self.first_pass_sources(prefix is not None))
        if from_first_pass and first_pass is None:
            first_pass = self.compute_first_pass(*args, nodes=from_first_pass, **kwargs)
        current: dict[int, torch.Tensor] = {}

        probe_add, probe_node = self._probe or (None, None)

        def on_node(j, x):
            if j in self._current_sources:
                current[j] = x
            if probe_node is not None:
                probe_node(j, x)

        def on_add(j, pre):
            total = None
            for e in self._incoming.get(j, ()):
                if e.i == e.j:
                    source = pre()
                elif e.i > e.j or (prefix is not None and e.i < self.prefix_node):
                    source = first_pass[e.i]
                else:
                    source = current[e.i]
                out = self.adapters[_key(e)](source)
                total = out if total is None else total + out
            extra = None if probe_add is None else probe_add(j, pre)
            if extra is not None:
                total = extra if total is None else total + extra
            return total

        skip = nullcontext()
        if prefix is not None:
            p = self.prefix_node
            added = on_add(p, lambda: prefix)
            hidden = close_node(self.backbone, p, prefix if added is None else prefix + added)
            if p == self.num_nodes - 1:
                on_node(p, hidden)  # no block runs, so no block hook reports it
            skip = start_at_node(self.backbone, p, hidden)
        with tap_nodes(self.backbone, on_add, on_node), skip:
            return self.model(*args, **kwargs)


def frozen_prefix_node(edges: list[Edge], num_nodes: int) -> Optional[int]:
    """The node where a pass can start, or None if an adapter touches node 0.

    A pass starts at a block input (an even node p) from z_p, its plain-backbone value before any
    adapter adds to it: every node before the first target j, and z_j itself, are those of the
    frozen backbone. So p = j for an even j (the adapters into j are added at the start) and the
    block input j - 1 for an odd j. Sources before p are plain-backbone values too
    (``AdapterGraph.skipped_sources``), read from the first pass.
    """
    targets = [e.j for e in edges] or [num_nodes - 1]
    first = min(targets)
    if first == 0:
        return None
    return first - first % 2


class _PassDone(Exception):
    """Ends a first pass once every wanted node is recorded."""


def _key(edge: Edge) -> str:
    return f"{edge.i}_{edge.j}"
