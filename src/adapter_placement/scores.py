"""Gradient scores of every edge from one forward and one backward pass (Sec. 6.1, DESIGN.md 2).

A zero-initialised linear adapter ``x W`` on edge (i, j) has gradient ``dL/dW = X_i^T G_j``: the
source values of node i times the gradient at the point where node j's adapters add. With all
adapters at zero the network is the plain backbone, so capturing every node's value and every
add point's gradient once gives all n^2 gradient matrices, which a score function ``f`` reduces to
one number per edge.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import call_model, describe, logits_of, tap_nodes
from .device import autocast, check_precision, resolve_device, to_device
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


# ---------------------------------------------------------------- gradients of all edges, a block of rows at a time

MEMORY_FRACTION = 0.5  # of the free memory, the default budget: the rest is left to the forward's activations
FLOAT32_BYTES = 4


def edge_gradients(model: nn.Module, batches: Iterable, loss_fn: Callable = F.cross_entropy, *,
                   device=None, precision: str = "fp32") -> torch.Tensor:
    """Mean gradient ``dL/dW_ij`` of a zero linear adapter on every edge: shape (n, n, d, d).

    One forward and one backward pass of the plain backbone per batch; batches are weighted by
    their number of examples, so splitting a batch of 512 into 8 of 64 gives the same result.
    Memory: n^2 d^2 floats for the result (1.5 GB for ViT-B/16, 52 GB for ViT-g/14) plus one batch's
    activations; ``score_edges`` and ``reduce_gradient_blocks`` never hold the whole stack.

    ``model`` may also be an ``AdapterGraph`` whose adapters are trained: the gradients are then
    those of a zero linear adapter added to that graph, next to its adapters (one more forward
    of the plain backbone per batch gives the recurrent sources). The result lies on the device the
    passes ran on (``device``, by default the model's).
    """
    n, _ = _shape(model)
    (stack,) = reduce_gradient_blocks(model, batches, lambda rows: rows, loss_fn, block_rows=n,
                                      device=device, precision=precision)
    return stack


def reduce_gradient_blocks(model: nn.Module, batches: Iterable, reduce: Callable[[torch.Tensor], object],
                           loss_fn: Callable = F.cross_entropy, *, max_memory: Optional[int] = None,
                           block_rows: Optional[int] = None, device=None, precision: str = "fp32") -> list:
    """``reduce(rows)`` for every block of source rows of the edge gradients, in row order.

    ``rows`` is the float32 slice ``[i0:i1]`` (shape (i1 - i0, n, d, d)) of ``edge_gradients``'
    stack, each row computed exactly as there, so reductions of the blocks are the same numbers.
    Every block is one pass over all ``batches`` and is freed before the next one is accumulated:
    ``reduce`` should return something small (scores). Block size: ``block_rows``, or as many rows
    as ``max_memory`` bytes hold (``score_memory_bytes``; by default ``default_max_memory``), so one
    pass when the whole stack fits. ``batches`` must yield the same batches every time it is
    iterated (a list, not a shuffling loader; a one-shot iterator is read into a list first).

    The passes run on ``device`` (default: the model's; the model is moved there and back) with
    the forward under ``precision`` autocast; captures and sums are float32 whatever the precision.
    """
    n, d = _shape(model)
    check_precision(precision)
    device = _scoring_device(model, device)
    budget = _budget(max_memory, block_rows, n, d, device)
    if isinstance(batches, Iterator):  # several passes may read it
        batches = list(batches)
    graph = isinstance(model, AdapterGraph)
    capture = partial(_capture_graph_batch, model) if graph else partial(_capture_batch, describe(model))
    results, first_targets, start = [], None, 0
    with _frozen(model, device):
        while start < n:
            block, targets_seen = None, []
            for inputs, targets in batches:
                inputs, targets = to_device((inputs, targets), device)
                xs, zs, fs, gs = capture(inputs, targets, loss_fn, device, precision)
                if block_rows is None:  # the first batch's captures size the blocks
                    block_rows = rows_that_fit(budget, n, d, _capture_bytes(xs, zs, fs, gs))
                if block is None:
                    block, examples = torch.zeros(min(block_rows, n - start), n, d, d, device=gs.device), 0
                _add_outer_products(block, start, xs, zs, gs, weight=len(targets), first=fs)
                examples += len(targets)
                targets_seen.append(targets.cpu())
                del xs, zs, fs, gs
            if block is None:
                raise ValueError("batches is empty: no data to score the edges on")
            first_targets = _check_same_batches(first_targets, targets_seen)
            start += len(block)
            results.append(reduce(block.div_(examples)))
            del block
    return results


def _shape(model: nn.Module) -> tuple[int, int]:
    """(n nodes, hidden size d) of a graph or a supported model; a ValueError names others."""
    backbone = model.backbone if isinstance(model, AdapterGraph) else describe(model)
    return backbone.num_nodes, backbone.hidden_size


def _scoring_device(model: nn.Module, device) -> torch.device:
    if device is None:
        return next(model.parameters()).device
    return resolve_device(str(device))


@contextmanager
def _frozen(net: nn.Module, device: torch.device) -> Iterator[None]:
    """The deterministic frozen network on ``device``: eval mode, and no parameter gradients (only
    the zero deltas need them: autograd saves less). Mode, flags and device restored afterwards."""
    was_training, home = net.training, next(net.parameters()).device
    flags = {p: p.requires_grad for p in net.parameters()}
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        net.to(home).train(was_training)
        for p, flag in flags.items():
            p.requires_grad_(flag)


def _check_same_batches(first: Optional[list], seen: list) -> list:
    """A later pass must read what the first did, else its rows would average other examples."""
    if first is not None and (len(first) != len(seen) or not all(map(torch.equal, first, seen))):
        raise ValueError("batches changed between passes over them: scoring in blocks of rows reads "
                         "them once per block, so they must be the same every time (a list)")
    return seen if first is None else first


# ---------------------------------------------------------------- memory budget of a block

def score_memory_bytes(rows: int, n: int, d: int, capture_bytes: int = 0) -> int:
    """Peak bytes of scoring a block of ``rows`` source rows, beyond the model and its forward's
    activations: the block itself, and the larger of what accumulating one batch adds (its
    captures, ``capture_bytes``, and the row being formed, with its recurrent part: 2 n d^2
    floats) and what reducing a row adds (its float64 copy and the SVD's copy of that: 4 n d^2)."""
    row = n * d * d * FLOAT32_BYTES
    return rows * row + max(capture_bytes + 2 * row, 4 * row)


def rows_that_fit(budget: int, n: int, d: int, capture_bytes: int = 0) -> int:
    """The most source rows (at most n) whose block fits ``budget`` bytes; a ValueError when
    not even one does, naming both numbers."""
    need = score_memory_bytes(1, n, d, capture_bytes)
    if need > budget:
        raise ValueError(f"a memory budget of {budget} bytes cannot hold one row of edge gradients, "
                         f"which needs {need} bytes (n = {n}, d = {d}, {capture_bytes} bytes of one "
                         f"batch's captures): raise max_memory or score smaller batches")
    return min(n, 1 + (budget - need) // (n * d * d * FLOAT32_BYTES))


def _budget(max_memory, block_rows, n: int, d: int, device: torch.device) -> Optional[int]:
    """The budget in bytes (None when ``block_rows`` fixes the blocks), checked before any data is
    read: a budget that cannot hold one row even without captures fails here."""
    if block_rows is not None:
        if max_memory is not None:
            raise ValueError(f"give max_memory or block_rows, not both (got {max_memory!r} and {block_rows!r})")
        if isinstance(block_rows, bool) or not isinstance(block_rows, int) or not 1 <= block_rows <= n:
            raise ValueError(f"block_rows must be an integer in 1..{n} (the nodes), got {block_rows!r}")
        return None
    if max_memory is None:
        max_memory = default_max_memory(device)
    elif isinstance(max_memory, bool) or not isinstance(max_memory, (int, float)) or not max_memory > 0:
        raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
    rows_that_fit(int(max_memory), n, d)
    return int(max_memory)


def _capture_bytes(*captures: Optional[torch.Tensor]) -> int:
    """Bytes of one batch's captures, plus the copy of G that lays every G_j side by side."""
    xs, zs, fs, gs = captures
    return sum(t.numel() * t.element_size() for t in (xs, zs, fs, gs, gs) if t is not None)


def default_max_memory(device: torch.device) -> int:
    """``MEMORY_FRACTION`` of the memory free on ``device``: on CUDA what the driver reports free
    plus what torch's caching allocator holds unused; elsewhere the available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    else:
        free = available_ram_bytes()
    return int(MEMORY_FRACTION * free)


def available_ram_bytes() -> int:
    """RAM a new allocation can get: Linux's MemAvailable (free pages elsewhere), within what a
    cgroup v2 memory limit leaves (a SLURM job sees the whole node's RAM in /proc/meminfo)."""
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        names = os.sysconf_names
        pages = os.sysconf("SC_AVPHYS_PAGES" if "SC_AVPHYS_PAGES" in names else "SC_PHYS_PAGES")
        available = pages * os.sysconf("SC_PAGE_SIZE")
    return min([available] + _cgroup_headroom())


def _cgroup_headroom() -> list[int]:
    """limit - usage of this process's cgroup v2 and each of its parents that sets a limit."""
    try:
        with open("/proc/self/cgroup") as f:
            path = next(line.split("::", 1)[1].strip() for line in f if line.startswith("0::"))
    except (OSError, StopIteration):
        return []
    folder, headroom = "/sys/fs/cgroup" + path.rstrip("/"), []
    while folder.startswith("/sys/fs/cgroup"):
        try:
            with open(f"{folder}/memory.max") as f_max, open(f"{folder}/memory.current") as f_now:
                limit, current = f_max.read().strip(), int(f_now.read())
            if limit != "max":
                headroom.append(max(0, int(limit) - current))
        except (OSError, ValueError):
            pass
        folder = os.path.dirname(folder)
    return headroom


# ---------------------------------------------------------------- one batch: captures and sums

def _capture_batch(backbone, inputs, targets, loss_fn, device, precision):
    """Node values x_i, pre-adapter values z_i and add-point gradients g_j, each (n, tokens, d)
    float32, and None for the first pass (the plain backbone's pass is the first pass)."""
    nodes, pre_values, deltas = {}, {}, {}

    def on_add(j, pre):
        z = pre()
        pre_values[j] = z.detach()
        # a zero tensor added at node j: its gradient is g_j, and it changes nothing
        deltas[j] = torch.zeros_like(z, requires_grad=True)
        return deltas[j]

    def on_node(j, x):
        nodes[j] = x.detach()

    with torch.enable_grad(), tap_nodes(backbone, on_add, on_node), autocast(device, precision):
        loss = loss_fn(logits_of(call_model(backbone.model, inputs)), targets)
    order = range(backbone.num_nodes)
    grads = torch.autograd.grad(loss, [deltas[j] for j in order])
    return _flat(nodes[i] for i in order), _flat(pre_values[i] for i in order), None, _flat(grads)


def _capture_graph_batch(graph: AdapterGraph, inputs, targets, loss_fn, device, precision):
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
    with autocast(device, precision):
        if graph.edges:
            kwargs = inputs if isinstance(inputs, dict) else {}
            args = () if isinstance(inputs, dict) else (inputs,)
            first = graph.compute_first_pass(*args, nodes=order, **kwargs)
        with torch.enable_grad(), graph.probe(on_add, on_node):
            loss = loss_fn(logits_of(call_model(graph, inputs, first_pass=first)), targets)
    grads = torch.autograd.grad(loss, [deltas[j] for j in order])
    fs = None if first is None else _flat(first[i] for i in order)
    return _flat(nodes[i] for i in order), _flat(pre_values[i] for i in order), fs, _flat(grads)


def _flat(per_node: Iterable[torch.Tensor]) -> torch.Tensor:
    """(n, tokens, d) float32 from n tensors (..., d): sums are float32 whatever the forward's precision."""
    per_node = list(per_node)
    d = per_node[0].shape[-1]
    return torch.stack([t.reshape(-1, d) for t in per_node]).float()


def _add_outer_products(block: torch.Tensor, start: int, xs: torch.Tensor, zs: torch.Tensor, gs: torch.Tensor,
                        weight: float, first: Optional[torch.Tensor] = None) -> None:
    """``block[i - start, j] += weight * X_i^T G_j`` for the source rows i of the block and every j,
    one row at a time so that the workspace is one row (n d^2); the sequential edge (i, i) reads
    z_i instead of x_i, and recurrent edges (i > j) read ``first[i]`` (the first pass) when it is
    given. A row is computed the same whatever the block, so blocks give the whole stack's numbers."""
    n, tokens, d = gs.shape
    g_all = gs.permute(1, 0, 2).reshape(tokens, n * d)  # every G_j side by side
    for i in range(start, start + len(block)):
        row = (xs[i].T @ g_all).view(d, n, d).transpose(0, 1)
        if first is not None and i > 0:
            row[:i] = (first[i].T @ g_all[:, :i * d]).view(d, i, d).transpose(0, 1)
        row[i] = zs[i].T @ gs[i]
        block[i - start].add_(row, alpha=weight)


# ---------------------------------------------------------------- scores of all edges

def score_edges(model: nn.Module, batches: Iterable, loss_fn: Callable = F.cross_entropy,
                fn: Union[str, Sequence[str]] = "srank", eta: float = 0.01, *, max_memory: Optional[int] = None,
                device=None, precision: str = "fp32"):
    """The (n, n) matrix of scores ``f(E[dL/dW_ij])`` of all edges, indexed ``[i, j]``, on the CPU.

    ``model`` is the plain timm / Hugging Face model (train its head first: ``train_head``), or an
    ``AdapterGraph`` whose adapters are already trained (see ``edge_gradients``);
    ``batches`` yields ``(inputs, targets)``, inputs a tensor or a dict of keyword arguments.
    With a sequence of function names, returns a dict name -> matrix from the same gradients.
    The gradients are summed and scored a block of source rows at a time within ``max_memory``
    bytes, on ``device`` in ``precision`` (see ``reduce_gradient_blocks``): the same numbers as
    scoring the whole stack at once.
    """
    names = [fn] if isinstance(fn, str) else list(fn)
    for name in names:
        check_score_args(name, eta)
    def reduce(rows):  # a block of rows' scores, on the CPU
        return {name: score_matrix(rows, name, eta) for name in names}

    blocks = reduce_gradient_blocks(model, batches, reduce, loss_fn, max_memory=max_memory, device=device,
                                    precision=precision)
    scores = {name: torch.cat([block[name] for block in blocks]) for name in names}
    return scores[fn] if isinstance(fn, str) else scores


# ---------------------------------------------------------------- head pre-training (App. A.4)

def train_head(model: nn.Module, batches: Iterable, steps: int, loss_fn: Callable = F.cross_entropy,
               lr: float = 1e-3, optimizer: str = "sgd", momentum: float = 0.9,
               weight_decay: float = 0.0, precision: str = "fp32") -> list[float]:
    """Train only the classifier head for ``steps`` steps, cycling over ``batches``.

    The paper scores edges after training the head alone for 2.5% of the run's steps (App. A.4),
    so that the gradients reflect the task rather than a random head. ``optimizer`` is "sgd"
    (vision, with momentum) or "adamw" (text), at a constant learning rate. Returns the loss of
    every step. The backbone runs in eval mode on its own device, and the other parameters'
    ``requires_grad`` flags are restored afterwards.
    """
    from .engine import Recipe, cycle, fit

    head = describe(model).head
    if head is None:
        raise ValueError(f"{type(model).__name__} has no classifier head to train")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    recipe = Recipe(optimizer, lr, steps, momentum=momentum, weight_decay=weight_decay)  # bad names fail here
    params = list(head.parameters())
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        if steps == 0:
            return []
        return fit(model, params, cycle(list(batches)), recipe, device=params[0].device, precision=precision)
    except FloatingPointError as error:
        raise FloatingPointError(f"head training: {error}") from None
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)
