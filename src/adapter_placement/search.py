"""Placement searches beyond the paper's one-shot GGA (issue 6, "Beyond the paper").

- ``iterative_gga``: pick k edges by GGA, train them briefly, score the remaining edges again
  with those adapters in place, pick the next k, until N. ``k = N`` is the paper's GGA.
- ``edge_switch``: an adapter behind a Gumbel-softmax on/off gate on every candidate edge (the
  learnable switch of Adaptable Adapters, Moosavi et al. 2022); adapters and gates train jointly
  while the temperature anneals, then the N edges whose gates are most likely on are kept.
- ``prune_regrow``: dynamic sparse training over edges (RigL-style): N random adapters; every T
  steps the fraction p with the lowest pruning criterion goes, and as many fresh zero-output
  adapters grow where the gradient score of the graph as it is now is highest.

Each takes the model, a list of ``(inputs, targets)`` batches (what ``train_head`` and
``score_edges`` take; training cycles over it) and plain arguments, and returns a
``SearchResult``: the placement, a history, and the cost of selection (scoring, choosing) and of
the search's own training phases, in measured seconds and analytic FLOPs (``pass_flops``). The
chosen placement is then trained like any other (``train.train``); that is not part of the cost.
``run_search`` dispatches by name, for a config dict. The searches modify the model they are
given (its head trains, its parameters are frozen): pass a fresh one.
"""
from __future__ import annotations

import inspect
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import placements
from .adapters import check_adapter_args
from .backbones import VIT, describe
from .engine import NonFiniteLossError, fit, make_optimizer, recipe_for
from .flops import Arch, pass_flops
from .gga import gga_select
from .graph import AdapterGraph
from .placements import Edge
from .scores import check_score_args, score_edges, train_head

METHODS = ("iterative_gga", "edge_switch", "prune_regrow")
PRUNE_CRITERIA = ("magnitude", "taylor")
ON = 0  # index of "on" in a switch's two gate outcomes (on, off)


@dataclass
class SearchResult:
    """A placement and what finding it cost.

    ``edges``: N edges, in pick order (iterative_gga), by falling gate probability (edge_switch) or
    in row-major order (prune_regrow). ``history``: one JSON-ready record per round, logging
    window or update. ``seconds`` (measured) and ``flops`` (``pass_flops``) hold "selection" (scoring and choosing edges, head pre-training),
    "training" (the search's own training phases) and "total". ``details`` holds what a method
    reports besides (gate probabilities, surviving edges). ``graph`` is the search's own graph as
    it ended (not part of ``as_dict``)."""

    edges: list[Edge]
    history: list[dict]
    seconds: dict[str, float]
    flops: dict[str, float]
    details: dict = field(default_factory=dict)
    graph: Optional[AdapterGraph] = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        return {"edges": [list(e) for e in self.edges], "history": self.history, "seconds": self.seconds,
                "flops": self.flops, "details": self.details}


# ---------------------------------------------------------------- the FLOP model (flops.py) of a real model

def arch_of(model: nn.Module, rank: int) -> Arch:
    """The ``Arch`` of a timm ViT or a Hugging Face BERT/RoBERTa."""
    return describe(model).arch(rank)


def tokens_of(arch: Arch, inputs) -> int:
    return arch.tokens if arch.tokens is not None else int(inputs["input_ids"].shape[-1])


# ---------------------------------------------------------------- gates, temperature, ranking (pure)

def gumbel_noise(shape, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log U)``, U uniform on the open interval (0, 1)."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    u = u.clamp(torch.finfo(torch.float64).tiny, 1.0 - torch.finfo(torch.float64).eps)
    return -torch.log(-torch.log(u))


def gumbel_gates(logits: torch.Tensor, tau: float, noise: torch.Tensor, hard: bool = True) -> torch.Tensor:
    """A Gumbel-softmax sample over the last axis (Jang et al. 2017; Maddison et al. 2017).

    Soft: ``softmax((logits + noise) / tau)``. Hard: the one-hot of its argmax in the forward
    pass, with the soft sample's gradient (straight-through), so a gate is exactly on or off
    while its logits still learn. The argmax is ``k`` with probability ``softmax(logits)[k]``.
    """
    soft = torch.softmax((logits + noise.to(logits)) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return one_hot - soft.detach() + soft


def temperature(step: int, steps: int, start: float, end: float) -> float:
    """Geometric annealing from ``start`` at step 0 to ``end`` at step ``steps - 1``."""
    return start * (end / start) ** (step / max(1, steps - 1))


def top_edges(values: Mapping[Edge, float], count: int, largest: bool = True) -> list[Edge]:
    """The ``count`` edges with the largest (or smallest) values; ties go to the lower (i, j)."""
    sign = -1.0 if largest else 1.0
    return sorted(values, key=lambda e: (sign * float(values[e]), e))[:count]


def drop_count(n: int, fraction: float) -> int:
    """How many of ``n`` adapters one prune step replaces: ``round(fraction * n)``, at least 1."""
    return min(n, max(1, round(fraction * n)))


def adapter_magnitude(adapter: nn.Module) -> float:
    """``|alpha| * ||W_up W_down||_F``: the size of the linear map the adapter adds (about LN and act)."""
    with torch.no_grad():
        return float(adapter.alpha.abs() * torch.linalg.matrix_norm(adapter.up.weight @ adapter.down.weight))


# ---------------------------------------------------------------- cost and training phases

class _Cost:
    """Seconds and FLOPs per part ("selection", "training")."""

    def __init__(self):
        self.seconds = {"selection": 0.0, "training": 0.0}
        self.flops = {"selection": 0.0, "training": 0.0}

    def timed(self, part: str, started: float, flops: float = 0.0) -> None:
        self.seconds[part] += time.perf_counter() - started
        self.flops[part] += flops

    def totals(self) -> tuple[dict, dict]:
        return ({**self.seconds, "total": sum(self.seconds.values())},
                {**self.flops, "total": sum(self.flops.values())})


class _Trainer:
    """Trains a graph's adapters and head in phases, between which its edges may change.

    Steps cycle over the batch list in order. One learning-rate schedule (App. A: warm-up, then
    cosine or linear decay, ``engine.recipe_for``) spans all phases; ``rebuild`` makes a new
    optimiser after the edges change and keeps the state (momentum) of the parameters that stay,
    so a surviving adapter trains on as if nothing happened. Each phase is one ``engine.fit``."""

    def __init__(self, graph: AdapterGraph, batches: list, arch: Arch, cost: _Cost, lr: float,
                 total_steps: int, warmup: Optional[int], loss_fn: Callable, precision: str = "fp32"):
        self.graph, self.batches, self.arch, self.cost = graph, batches, arch, cost
        modality = "vision" if graph.backbone.family == VIT else "text"
        self.recipe = recipe_for(modality, lr, total_steps, warmup)
        self.device, self.precision = next(graph.parameters()).device, precision
        self.loss_fn, self.step, self.opt = loss_fn, 0, None
        self.rebuild()

    def rebuild(self) -> None:
        params = list(self.graph.adapter_parameters()) + list(self.graph.head_parameters())
        opt = make_optimizer(self.recipe, params)
        if self.opt is not None:
            for p in params:
                if p in self.opt.state:
                    opt.state[p] = self.opt.state[p]
        self.opt = opt

    def run(self, steps: int, before_step: Optional[Callable] = None,
            after_backward: Optional[Callable] = None) -> list[float]:
        """Train ``steps`` steps; ``before_step(step)`` and ``after_backward(step)`` are hooks."""
        started, flops = time.perf_counter(), [0.0]

        def count(step, _loss, _opt):  # the edges may change between steps: count each as it ran
            inputs, targets = self.batches[step % len(self.batches)]
            flops[0] += pass_flops(self.arch, len(targets), tokens_of(self.arch, inputs), len(self.graph.edges),
                                   first_pass=bool(self.graph.recurrent_sources))

        stream = ((*self.batches[s % len(self.batches)], {}) for s in itertools.count(self.step))
        self.graph.train()
        try:
            losses = fit(self.graph, None, stream, self.recipe, device=self.device, precision=self.precision,
                         steps=steps, first_step=self.step, optimizer=self.opt, loss_fn=self.loss_fn,
                         before_step=before_step, after_backward=after_backward, on_step=count)
        except NonFiniteLossError as error:
            raise NonFiniteLossError(f"search {error}") from None
        self.step += steps
        self.cost.timed("training", started, flops[0])
        return losses


def _scores(net: nn.Module, batches: list, arch: Arch, cost: _Cost, fn: str, eta: float,
            loss_fn: Callable) -> torch.Tensor:
    """``score_edges`` of a plain model or a graph with adapters, with its cost as selection."""
    started = time.perf_counter()
    scores = score_edges(net, batches, loss_fn, fn, eta)
    edges = len(net.edges) if isinstance(net, AdapterGraph) else 0
    flops = sum(pass_flops(arch, len(t), tokens_of(arch, x), edges, first_pass=edges > 0,
                           scored_edges=scores.numel()) for x, t in batches)
    cost.timed("selection", started, flops)
    return scores


def _prepare(model: nn.Module, batches, score_batches, rank: int, seed: int, head_steps: int, lr: float,
             loss_fn: Callable):
    """Seed, batch lists, Arch, cost; the head pre-trained alone (App. A.4) when asked."""
    torch.manual_seed(seed)
    batches = list(batches)
    score_batches = batches if score_batches is None else list(score_batches)
    if not batches or not score_batches:
        raise ValueError("batches is empty: no data to search on")
    arch, cost = arch_of(model, rank), _Cost()
    if head_steps:
        started = time.perf_counter()
        text = describe(model).family != VIT
        train_head(model, batches, head_steps, loss_fn, lr=lr, optimizer="adamw" if text else "sgd")
        flops = sum(pass_flops(arch, len(t), tokens_of(arch, x), backward=False)
                    for x, t in (batches[s % len(batches)] for s in range(head_steps)))
        cost.timed("selection", started, flops)
    return batches, score_batches, arch, cost


def _edges_json(edges: Iterable[Edge]) -> list[list[int]]:
    return [[int(e[0]), int(e[1])] for e in edges]


# ---------------------------------------------------------------- argument checks (before any work)

def _integer(name: str, value, minimum: int = 1, maximum: Optional[int] = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if not ok or (maximum is not None and value > maximum):
        bound = f"in {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")


def _positive(name: str, value) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_common(n, rank, activation, lr, fn, eta, seed, head_steps, warmup) -> None:
    _integer("n", n)
    check_adapter_args(rank, activation, "bottleneck")
    _positive("lr", lr)
    check_score_args(fn, eta)
    _integer("seed", seed, minimum=0)
    _integer("head_steps", head_steps, minimum=0)
    if warmup is not None:
        _integer("warmup_steps", warmup, minimum=0)


def _check_edge_count(n: int, model: nn.Module) -> int:
    """The number of nodes; N must fit in the n^2 edges (cheap: reads the model's structure)."""
    num_nodes = describe(model).num_nodes
    _integer("n", n, maximum=num_nodes ** 2)
    return num_nodes


# ---------------------------------------------------------------- iterative GGA

def iterative_gga(model: nn.Module, batches: Iterable, n: int, k: int, *, phase_steps: int = 50,
                  gamma: float = 0.6, fn: str = "srank", eta: float = 0.01, rank: int = 8,
                  activation: str = "gelu", lr: float = 1e-3, warmup_steps: Optional[int] = None,
                  head_steps: int = 0, seed: int = 0, score_batches: Optional[Iterable] = None,
                  loss_fn: Callable = F.cross_entropy) -> SearchResult:
    """GGA in rounds of ``k`` edges, re-scoring with the adapters of earlier rounds in place.

    Round 1 is the paper's GGA on the plain backbone (``gga_select``). After each round but the
    last, the graph so far trains ``phase_steps`` steps (adapters and head), and the next round
    scores every edge on that graph (``score_edges`` of an ``AdapterGraph``). Earlier picks are
    excluded but discount nothing: what they already cover now shows in the new scores, which is
    what the distance discount of GGA guessed at. ``k >= n`` is one round: the paper's GGA.
    """
    _check_common(n, rank, activation, lr, fn, eta, seed, head_steps, warmup_steps)
    _integer("k", k)
    _integer("phase_steps", phase_steps)
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma!r}")
    _check_edge_count(n, model)
    batches, score_batches, arch, cost = _prepare(model, batches, score_batches, rank, seed, head_steps, lr,
                                                  loss_fn)
    rounds = math.ceil(n / k)
    graph = AdapterGraph(model, [], rank, activation)
    trainer = _Trainer(graph, batches, arch, cost, lr, phase_steps * (rounds - 1), warmup_steps, loss_fn)
    history = []
    for round_index in range(rounds):
        scores = _scores(graph, score_batches, arch, cost, fn, eta, loss_fn)
        started = time.perf_counter()
        picked = gga_select(scores, min(k, n - len(graph.edges)), gamma, exclude=graph.edges)
        graph.add_edges(picked)
        cost.timed("selection", started)
        record = {"round": round_index, "picked": _edges_json(picked),
                  "picked_scores": [float(scores[e]) for e in picked]}
        if len(graph.edges) < n:
            trainer.rebuild()
            losses = trainer.run(phase_steps)
            record["train_loss"] = sum(losses) / len(losses)
        history.append(record)
    seconds, flops = cost.totals()
    return SearchResult(list(graph.edges), history, seconds, flops, {"rounds": rounds}, graph)


# ---------------------------------------------------------------- learnable edge switch

def edge_switch(model: nn.Module, batches: Iterable, n: int, *, steps: int = 200,
                candidates: Optional[int] = None, tau_start: float = 1.0, tau_end: float = 0.1,
                hard: bool = True, gate_lr: float = 0.05, fn: str = "srank", eta: float = 0.01, rank: int = 8,
                activation: str = "gelu", lr: float = 1e-3, warmup_steps: Optional[int] = None,
                head_steps: int = 0, seed: int = 0, score_batches: Optional[Iterable] = None,
                loss_fn: Callable = F.cross_entropy, log_every: int = 10) -> SearchResult:
    """Adapters behind learnable Gumbel-softmax on/off gates on the candidate edges; keep the top N.

    Candidates: all n^2 edges, or (``candidates=M``) the M best by score (plain backbone, ``fn``).
    Each step draws every gate once (``gumbel_gates`` over (on, off), temperature annealed from
    ``tau_start`` to ``tau_end``) and multiplies its adapter's output by it; adapters and head
    train with the usual optimiser, the gate logits with Adam at ``gate_lr``. The N edges with
    the highest ``P(on) = softmax(logits)[on]`` are the placement (ties: lower (i, j)).
    """
    _check_common(n, rank, activation, lr, fn, eta, seed, head_steps, warmup_steps)
    _integer("steps", steps)
    _integer("log_every", log_every)
    _positive("tau_start", tau_start)
    _positive("tau_end", tau_end)
    _positive("gate_lr", gate_lr)
    if tau_end > tau_start:
        raise ValueError(f"tau_end ({tau_end}) must not exceed tau_start ({tau_start}): the temperature anneals")
    num_nodes = _check_edge_count(n, model)
    if candidates is not None:
        _integer("candidates", candidates, minimum=n, maximum=num_nodes ** 2)
    batches, score_batches, arch, cost = _prepare(model, batches, score_batches, rank, seed, head_steps, lr,
                                                  loss_fn)
    if candidates is None:
        edges = placements.all_edges(num_nodes)
    else:
        scores = _scores(model, score_batches, arch, cost, fn, eta, loss_fn)
        edges = sorted(gga_select(scores, candidates, gamma=0.0))
    graph = AdapterGraph(model, edges, rank, activation)
    logits = nn.Parameter(torch.zeros(len(edges), 2, device=next(graph.parameters()).device))
    gates, handles = _attach_gates(graph, edges)
    gate_opt = torch.optim.Adam([logits], lr=gate_lr)
    generator = torch.Generator().manual_seed(seed)
    trainer = _Trainer(graph, batches, arch, cost, lr, steps, warmup_steps, loss_fn)

    def draw(step):
        tau = temperature(step, steps, tau_start, tau_end)
        gates["values"] = gumbel_gates(logits, tau, gumbel_noise(logits.shape, generator), hard)[:, ON]
        gate_opt.zero_grad(set_to_none=True)

    history = []
    try:
        while trainer.step < steps:
            losses = trainer.run(min(log_every, steps - trainer.step), draw, lambda _: gate_opt.step())
            on = torch.softmax(logits.detach(), -1)[:, ON]
            history.append({"step": trainer.step, "tau": temperature(trainer.step - 1, steps, tau_start, tau_end),
                            "train_loss": sum(losses) / len(losses), "mean_on_probability": float(on.mean())})
    finally:
        for h in handles:
            h.remove()
    started = time.perf_counter()
    probability = dict(zip(edges, torch.softmax(logits.detach(), -1)[:, ON].tolist()))
    chosen = top_edges(probability, n)
    cost.timed("selection", started)
    ranked = top_edges(probability, len(edges))
    details = {"candidates": _edges_json(edges),
               "gate_probability": [[e.i, e.j, probability[e]] for e in ranked]}
    seconds, flops = cost.totals()
    return SearchResult(chosen, history, seconds, flops, details, graph)


def _attach_gates(graph: AdapterGraph, edges: Sequence[Edge]):
    """Forward hooks that multiply adapter e's output by ``gates["values"][index of e]``."""
    gates: dict = {"values": None}

    def hook_for(index):
        return lambda _module, _args, out: out * gates["values"][index]

    handles = [graph.adapter(*e).register_forward_hook(hook_for(k)) for k, e in enumerate(edges)]
    return gates, handles


# ---------------------------------------------------------------- prune and regrow

def prune_and_regrow(graph: AdapterGraph, criterion: Mapping[Edge, float], count: int,
                     score: Callable[[AdapterGraph], torch.Tensor]) -> tuple[list[Edge], list[Edge]]:
    """One update: drop the ``count`` adapters with the lowest ``criterion``, then grow as many fresh
    ones (zero output: the function is unchanged) at the edges not in the graph with the highest
    ``score(pruned graph)``; just-dropped edges may come back, from zero. Returns (dropped, grown)."""
    dropped = top_edges(criterion, count, largest=False)
    graph.remove_edges(dropped)
    grown = gga_select(score(graph), count, gamma=0.0, exclude=graph.edges)
    graph.add_edges(grown)
    return dropped, grown


class _TaylorSums:
    """Sums of ``alpha * dL/dalpha`` per adapter over the steps since the last update: the first-order
    change of the loss when the adapter is removed (alpha -> 0), Molchanov et al. 2019's criterion."""

    def __init__(self, graph: AdapterGraph):
        self.graph, self.sums, self.steps = graph, {}, {}

    def __call__(self, _step) -> None:
        for e in self.graph.edges:
            alpha = self.graph.adapter(*e).alpha
            if alpha.grad is not None:
                self.sums[e] = self.sums.get(e, 0.0) + (alpha * alpha.grad).detach()
                self.steps[e] = self.steps.get(e, 0) + 1

    def values(self) -> dict[Edge, float]:
        """``|mean alpha * dL/dalpha|`` of every edge of the graph (0 for one not trained yet)."""
        return {e: abs(float(self.sums[e]) / self.steps[e]) if e in self.steps else 0.0 for e in self.graph.edges}

    def reset(self) -> None:
        self.sums, self.steps = {}, {}


def criterion_values(graph: AdapterGraph, criterion: str, taylor: Optional[_TaylorSums] = None) -> dict:
    if criterion == "magnitude":
        return {e: adapter_magnitude(graph.adapter(*e)) for e in graph.edges}
    if criterion == "taylor":
        return taylor.values()
    raise ValueError(f"unknown pruning criterion {criterion!r}; expected one of {PRUNE_CRITERIA}")


def prune_regrow(model: nn.Module, batches: Iterable, n: int, *, steps: int = 300, update_every: int = 50,
                 fraction: float = 0.3, criterion: str = "magnitude", fn: str = "srank", eta: float = 0.01,
                 rank: int = 8, activation: str = "gelu", lr: float = 1e-3, warmup_steps: Optional[int] = None,
                 head_steps: int = 0, seed: int = 0, score_batches: Optional[Iterable] = None,
                 loss_fn: Callable = F.cross_entropy) -> SearchResult:
    """Dynamic sparse training over edges: N adapters throughout, the weakest replaced every T steps.

    Starts from ``placements.random(n_nodes, n, seed)``. After every ``update_every`` steps (not
    at the end), ``prune_and_regrow`` replaces ``drop_count(n, fraction)`` adapters: the lowest by
    ``criterion`` ("magnitude": ``adapter_magnitude``; "taylor": ``|mean alpha dL/dalpha|`` over
    the steps since the last update) go, and fresh ones grow at the edges of highest gradient score
    ``fn`` on the pruned graph. ``details`` reports the edges that survived from the start.
    """
    _check_common(n, rank, activation, lr, fn, eta, seed, head_steps, warmup_steps)
    _integer("update_every", update_every)
    _integer("steps", steps, minimum=update_every + 1)  # at least one update
    if not (isinstance(fraction, (int, float)) and 0.0 < fraction < 1.0):
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    if criterion not in PRUNE_CRITERIA:
        raise ValueError(f"unknown pruning criterion {criterion!r}; expected one of {PRUNE_CRITERIA}")
    num_nodes = _check_edge_count(n, model)
    batches, score_batches, arch, cost = _prepare(model, batches, score_batches, rank, seed, head_steps, lr,
                                                  loss_fn)
    initial = placements.random(num_nodes, n, seed)
    graph = AdapterGraph(model, initial, rank, activation)
    trainer = _Trainer(graph, batches, arch, cost, lr, steps, warmup_steps, loss_fn)
    taylor, count, history, ever_dropped = _TaylorSums(graph), drop_count(n, fraction), [], set()
    score = lambda g: _scores(g, score_batches, arch, cost, fn, eta, loss_fn)  # noqa: E731
    while True:
        losses = trainer.run(min(update_every, steps - trainer.step), after_backward=taylor)
        if trainer.step >= steps:
            break
        started = time.perf_counter()
        values = criterion_values(graph, criterion, taylor)
        cost.timed("selection", started)
        dropped, grown = prune_and_regrow(graph, values, count, score)
        ever_dropped.update(dropped)
        trainer.rebuild()
        taylor.reset()
        history.append({"step": trainer.step, "train_loss": sum(losses) / len(losses),
                        "criterion": [[e.i, e.j, values[e]] for e in top_edges(values, len(values), largest=False)],
                        "dropped": _edges_json(dropped), "grown": _edges_json(grown),
                        "edges": _edges_json(graph.edges)})
    details = {"initial": _edges_json(initial), "updates": len(history), "final_train_loss": sum(losses) / len(losses),
               "survivors": _edges_json(e for e in initial if e not in ever_dropped)}
    seconds, flops = cost.totals()
    return SearchResult(sorted(graph.edges), history, seconds, flops, details, graph)


# ---------------------------------------------------------------- dispatch by name

SEARCHES = {"iterative_gga": iterative_gga, "edge_switch": edge_switch, "prune_regrow": prune_regrow}


def run_search(method: str, model: nn.Module, batches: Iterable, **options) -> SearchResult:
    """Run the search named ``method`` (one of ``METHODS``) with keyword ``options``.

    For a config dict: ``run_search(cfg["method"], model, batches, **cfg["options"])``, options
    named as the method's keyword arguments (``n``, ``k``, ``fraction``, ``update_every``...).
    A bad method, an unknown or missing option, or a bad value (``n < 1``, ``k < 1``, ``fraction``
    outside (0, 1), ...) raises ValueError naming it, before any scoring or training.
    """
    if method not in SEARCHES:
        raise ValueError(f"unknown search method {method!r}; expected one of {METHODS}")
    params = inspect.signature(SEARCHES[method]).parameters
    accepted = [name for name in params if name not in ("model", "batches")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {method}; accepted: {accepted}")
    missing = [name for name in accepted if params[name].default is inspect.Parameter.empty and name not in options]
    if missing:
        raise ValueError(f"{method} needs option(s) {missing}")
    return SEARCHES[method](model, batches, **options)
