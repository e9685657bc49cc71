"""Gradient scores of every edge from one forward and one backward pass (Sec. 6.1, DESIGN.md 2).

A zero-initialised linear adapter ``x W`` on edge (i, j) has gradient ``dL/dW = X_i^T G_j``: the
source values of node i times the gradient at the point where node j's adapters add. With all
adapters at zero the network is the plain backbone, so capturing every node's value and every
add point's gradient once gives all n^2 gradient matrices, which a score function ``f`` reduces to
one number per edge.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import call_model, describe, logits_of, tap_nodes
from .graph import AdapterGraph

SCORE_FUNCTIONS = ("srank", "frobenius", "spectral", "nuclear", "min_col", "max_col")


# ---------------------------------------------------------------- score functions (pure math)

def srank(singular_values: torch.Tensor, eta: float = 0.01) -> torch.Tensor:
    """Smallest k whose k largest singular values hold at least (1 - eta) of their sum.

    ``singular_values`` has shape (..., d), sorted in descending order (as ``svdvals`` returns).
    A zero matrix has srank 0. (Kumar et al. 2020; footnote 6 of the paper.)
    """
    total = singular_values.sum(-1, keepdim=True)
    reached = singular_values.cumsum(-1) >= (1.0 - eta) * total
    k = reached.to(torch.int64).argmax(-1) + 1  # first index where the share is reached
    return torch.where(total.squeeze(-1) > 0, k, torch.zeros_like(k)).to(torch.float64)


def apply_score(grads: torch.Tensor, fn: str, eta: float = 0.01) -> torch.Tensor:
    """Reduce gradient matrices of shape (..., d, d) to scores of shape (...)."""
    if fn == "frobenius":
        return torch.linalg.matrix_norm(grads, "fro").double()
    if fn == "min_col":
        return grads.abs().sum(-2).amin(-1).double()
    if fn == "max_col":
        return grads.abs().sum(-2).amax(-1).double()
    s = torch.linalg.svdvals(grads.double())
    if fn == "srank":
        return srank(s, eta)
    if fn == "spectral":
        return s[..., 0]
    if fn == "nuclear":
        return s.sum(-1)
    raise ValueError(f"unknown score function {fn!r}; expected one of {SCORE_FUNCTIONS}")


def score_matrix(grads: torch.Tensor, fn: str = "srank", eta: float = 0.01) -> torch.Tensor:
    """Scores of an (n, n, d, d) stack of edge gradients, row by row to bound the SVD workspace."""
    check_score_args(fn, eta)
    return torch.stack([apply_score(row, fn, eta) for row in grads]).cpu()


def check_score_args(fn: str, eta: float) -> None:
    if fn not in SCORE_FUNCTIONS:
        raise ValueError(f"unknown score function {fn!r}; expected one of {SCORE_FUNCTIONS}")
    if not (isinstance(eta, (int, float)) and 0.0 < eta < 1.0):
        raise ValueError(f"eta must be in (0, 1), got {eta!r}")


# ---------------------------------------------------------------- gradients of all edges

def edge_gradients(model: nn.Module, batches: Iterable, loss_fn: Callable = F.cross_entropy) -> torch.Tensor:
    """Mean gradient ``dL/dW_ij`` of a zero linear adapter on every edge: shape (n, n, d, d).

    One forward and one backward pass of the plain backbone per batch; batches are weighted by
    their number of examples, so splitting a batch of 512 into 8 of 64 gives the same result.
    Memory: n^2 d^2 floats for the result (1.5 GB for ViT-B/16) plus one batch's activations.

    ``model`` may also be an ``AdapterGraph`` whose adapters are trained: the gradients are then
    those of a zero linear adapter added to that graph, next to its adapters (one more forward
    of the plain backbone per batch gives the recurrent sources).
    """
    if isinstance(model, AdapterGraph):
        return _graph_edge_gradients(model, batches, loss_fn)
    backbone = describe(model)
    n, d = backbone.num_nodes, backbone.hidden_size
    was_training = model.training
    flags = {p: p.requires_grad for p in model.parameters()}
    model.eval()  # the scores are taken on the deterministic frozen backbone
    for p in model.parameters():  # only the zero deltas need gradients: autograd saves less
        p.requires_grad_(False)
    total, examples = None, 0
    try:
        for inputs, targets in batches:
            xs, zs, gs = _capture_batch(backbone, inputs, targets, loss_fn)
            if total is None:
                total = torch.zeros(n, n, d, d, dtype=gs.dtype, device=gs.device)
            _add_outer_products(total, xs, zs, gs, weight=len(targets))
            examples += len(targets)
            del xs, zs, gs
    finally:
        model.train(was_training)
        for p, flag in flags.items():
            p.requires_grad_(flag)
    if total is None:
        raise ValueError("batches is empty: no data to score the edges on")
    return total.div_(examples)


def _capture_batch(backbone, inputs, targets, loss_fn):
    """Node values x_i, pre-adapter values z_i and add-point gradients g_j, each (n, tokens, d)."""
    nodes, pre_values, deltas = {}, {}, {}

    def on_add(j, pre):
        z = pre()
        pre_values[j] = z.detach()
        # a zero tensor added at node j: its gradient is g_j, and it changes nothing
        deltas[j] = torch.zeros_like(z, requires_grad=True)
        return deltas[j]

    def on_node(j, x):
        nodes[j] = x.detach()

    with torch.enable_grad(), tap_nodes(backbone, on_add, on_node):
        loss = loss_fn(logits_of(call_model(backbone.model, inputs)), targets)
    order = range(backbone.num_nodes)
    grads = torch.autograd.grad(loss, [deltas[j] for j in order])
    d = backbone.hidden_size
    flat = lambda ts: torch.stack([t.reshape(-1, d) for t in ts]).float()  # noqa: E731
    return flat(nodes[i] for i in order), flat(pre_values[i] for i in order), flat(grads)


def _add_outer_products(total: torch.Tensor, xs: torch.Tensor, zs: torch.Tensor, gs: torch.Tensor,
                        weight: float, first: Optional[torch.Tensor] = None) -> None:
    """``total[i, j] += weight * X_i^T G_j`` for every (i, j), one source row at a time so that
    the workspace is one row (n d^2); the sequential edge (i, i) reads z_i instead of x_i, and
    recurrent edges (i > j) read ``first[i]`` (the first pass) when it is given."""
    n, tokens, d = gs.shape
    g_all = gs.permute(1, 0, 2).reshape(tokens, n * d)  # every G_j side by side
    for i in range(n):
        row = (xs[i].T @ g_all).view(d, n, d).transpose(0, 1)
        if first is not None and i > 0:
            row[:i] = (first[i].T @ g_all[:, :i * d]).view(d, i, d).transpose(0, 1)
        row[i] = zs[i].T @ gs[i]
        total[i].add_(row, alpha=weight)


def _graph_edge_gradients(graph: AdapterGraph, batches: Iterable, loss_fn: Callable) -> torch.Tensor:
    """``edge_gradients`` on a graph with adapters: the zero adapters are added through its probe."""
    n, d = graph.num_nodes, graph.backbone.hidden_size
    was_training = graph.training
    flags = {p: p.requires_grad for p in graph.parameters()}
    graph.eval()
    for p in graph.parameters():
        p.requires_grad_(False)
    total, examples = None, 0
    try:
        for inputs, targets in batches:
            xs, zs, fs, gs = _capture_graph_batch(graph, inputs, targets, loss_fn)
            if total is None:
                total = torch.zeros(n, n, d, d, dtype=gs.dtype, device=gs.device)
            _add_outer_products(total, xs, zs, gs, weight=len(targets), first=fs)
            examples += len(targets)
            del xs, zs, fs, gs
    finally:
        graph.train(was_training)
        for p, flag in flags.items():
            p.requires_grad_(flag)
    if total is None:
        raise ValueError("batches is empty: no data to score the edges on")
    return total.div_(examples)


def _capture_graph_batch(graph: AdapterGraph, inputs, targets, loss_fn):
    """Like ``_capture_batch`` on the graph's pass, plus the first pass (None when the graph has no
    adapters: its pass is then the first pass)."""
    nodes, pre_values, deltas = {}, {}, {}

    def on_add(j, pre):
        pre_values[j] = pre().detach()
        deltas[j] = torch.zeros_like(pre_values[j], requires_grad=True)
        return deltas[j]

    def on_node(j, x):
        nodes[j] = x.detach()

    order = range(graph.num_nodes)
    first = None
    if graph.edges:
        kwargs = inputs if isinstance(inputs, dict) else {}
        args = () if isinstance(inputs, dict) else (inputs,)
        first = graph.compute_first_pass(*args, nodes=order, **kwargs)
    with torch.enable_grad(), graph.probe(on_add, on_node):
        loss = loss_fn(logits_of(call_model(graph, inputs, first_pass=first)), targets)
    grads = torch.autograd.grad(loss, [deltas[j] for j in order])
    d = graph.backbone.hidden_size
    flat = lambda ts: torch.stack([t.reshape(-1, d) for t in ts]).float()  # noqa: E731
    fs = None if first is None else flat(first[i] for i in order)
    return flat(nodes[i] for i in order), flat(pre_values[i] for i in order), fs, flat(grads)


def score_edges(model: nn.Module, batches: Iterable, loss_fn: Callable = F.cross_entropy,
                fn: Union[str, Sequence[str]] = "srank", eta: float = 0.01):
    """The (n, n) matrix of scores ``f(E[dL/dW_ij])`` of all edges, indexed ``[i, j]``.

    ``model`` is the plain timm / Hugging Face model (train its head first: ``train_head``), or an
    ``AdapterGraph`` whose adapters are already trained (see ``edge_gradients``);
    ``batches`` yields ``(inputs, targets)``, inputs a tensor or a dict of keyword arguments.
    With a sequence of function names, returns a dict name -> matrix from the same gradients.
    """
    names = [fn] if isinstance(fn, str) else list(fn)
    for name in names:
        check_score_args(name, eta)
    if not isinstance(model, AdapterGraph):
        describe(model)  # an unsupported model fails here, before any work
    grads = edge_gradients(model, batches, loss_fn)
    scores = {name: score_matrix(grads, name, eta) for name in names}
    return scores[fn] if isinstance(fn, str) else scores


# ---------------------------------------------------------------- head pre-training (App. A.4)

def train_head(model: nn.Module, batches: Iterable, steps: int, loss_fn: Callable = F.cross_entropy,
               lr: float = 1e-3, optimizer: str = "sgd", momentum: float = 0.9,
               weight_decay: float = 0.0) -> list[float]:
    """Train only the classifier head for ``steps`` steps, cycling over ``batches``.

    The paper scores edges after training the head alone for 2.5% of the run's steps (App. A.4),
    so that the gradients reflect the task rather than a random head. ``optimizer`` is "sgd"
    (vision, with momentum) or "adamw" (text). Returns the loss of every step. The backbone runs
    in eval mode and the other parameters' ``requires_grad`` flags are restored afterwards.
    """
    head = describe(model).head
    if head is None:
        raise ValueError(f"{type(model).__name__} has no classifier head to train")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if optimizer not in ("sgd", "adamw"):
        raise ValueError(f"unknown optimizer {optimizer!r}; expected 'sgd' or 'adamw'")
    params = list(head.parameters())
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = (torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
           if optimizer == "sgd" else torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay))
    was_training = model.training
    model.eval()
    losses: list[float] = []
    try:
        while len(losses) < steps:
            before = len(losses)
            for inputs, targets in batches:
                if len(losses) == steps:
                    break
                loss = loss_fn(logits_of(call_model(model, inputs)), targets)
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(f"head training loss is {loss.item()} at step {len(losses)}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            if len(losses) == before:
                raise ValueError("batches is empty: no data to train the head on")
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)
    return losses
