"""The searches of issue 6 (search.py) against direct computations of their mechanics."""
import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adapter_placement import AdapterGraph, edge_gradients, gga_select, score_edges
from adapter_placement.adapters import LinearAdapter, RationalActivation, make_adapter
from adapter_placement.placements import Edge, all_edges
from adapter_placement.search import (Arch, SearchResult, _attach_gates, _TaylorSums, criterion_values,
                                      drop_count, edge_switch, gumbel_gates, gumbel_noise, iterative_gga,
                                      pass_flops, prune_and_regrow, prune_regrow, run_search, temperature,
                                      top_edges)
from conftest import small_text_model, small_vit
from reference import vit_with_adapters

torch.set_num_threads(1)

TARGETS = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])


@pytest.fixture
def batches():
    images = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return [(images[:4], TARGETS[:4]), (images[4:], TARGETS[4:])]


def randomise(graph, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in graph.adapter_parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


# ---------------------------------------------------------------- Gumbel-softmax gates

def test_gumbel_noise_has_the_gumbel_mean_and_variance():
    noise = gumbel_noise((200_000,), torch.Generator().manual_seed(0))
    assert noise.mean().item() == pytest.approx(0.5772157, abs=0.01)  # Euler-Mascheroni
    assert noise.var().item() == pytest.approx(math.pi ** 2 / 6, abs=0.02)


@pytest.mark.parametrize("tau", [0.3, 2.0])
def test_hard_gates_sum_to_one_and_follow_the_softmax(tau):
    logits = torch.tensor([[0.3, -1.2, 0.8], [2.0, 0.0, -2.0], [0.0, 0.0, 0.0]])
    draws = 40_000
    noise = gumbel_noise((draws, *logits.shape), torch.Generator().manual_seed(3))
    hard = gumbel_gates(logits.expand(draws, -1, -1), tau, noise, hard=True)
    soft = gumbel_gates(logits.expand(draws, -1, -1), tau, noise, hard=False)
    torch.testing.assert_close(hard.sum(-1), torch.ones(draws, 3), rtol=0, atol=1e-6)
    torch.testing.assert_close(soft.sum(-1), torch.ones(draws, 3), rtol=0, atol=1e-6)
    assert set(hard.round().unique().tolist()) == {0.0, 1.0}
    frequency = hard.round().mean(0)
    p = torch.softmax(logits, -1)
    tolerance = 4 * torch.sqrt(p * (1 - p) / draws) + 1e-3
    assert ((frequency - p).abs() <= tolerance).all(), (frequency, p)


def test_straight_through_gradient_is_the_soft_samples():
    logits = torch.tensor([0.4, -0.3, 1.1], requires_grad=True)
    noise = torch.tensor([0.2, 1.5, -0.4], dtype=torch.float64)
    weights, tau = torch.tensor([1.0, -2.0, 0.5]), 0.7
    gates = gumbel_gates(logits, tau, noise, hard=True)
    expected_forward = torch.zeros(3)
    expected_forward[torch.argmax(logits.detach() + noise.float())] = 1.0
    torch.testing.assert_close(gates.detach(), expected_forward, rtol=0, atol=1e-6)
    (weights * gates).sum().backward()
    # d softmax(y / tau) / dy = (diag(s) - s s^T) / tau, by hand
    s = torch.softmax((logits.detach() + noise.float()) / tau, -1)
    jacobian = (torch.diag(s) - torch.outer(s, s)) / tau
    torch.testing.assert_close(logits.grad, jacobian.T @ weights)


def test_temperature_anneals_geometrically():
    taus = [temperature(s, 11, 2.0, 0.02) for s in range(11)]
    assert taus[0] == pytest.approx(2.0) and taus[-1] == pytest.approx(0.02)
    ratios = np.array(taus[1:]) / np.array(taus[:-1])
    np.testing.assert_allclose(ratios, 0.01 ** 0.1, rtol=1e-12)


def test_gates_switch_adapters_on_and_off(images):
    model = small_vit()
    edges = [(0, 1), (2, 2), (1, 4), (6, 2)]
    graph = AdapterGraph(model, edges, rank=4)
    randomise(graph)
    gates, handles = _attach_gates(graph, graph.edges)
    gates["values"] = torch.tensor([1.0, 0.0, 1.0, 0.0])
    with torch.no_grad():
        got = graph(images)
        kept = [e for e, on in zip(graph.edges, [1, 0, 1, 0]) if on]
        expected = vit_with_adapters(model, images, kept, {e: graph.adapter(*e) for e in kept})
    for h in handles:
        h.remove()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- scores of a graph with trained adapters

TRAINED = [(0, 1), (2, 2), (1, 4), (6, 2), (3, 5)]  # n = 7: parallel, sequential, long-range, recurrent
PROBES = [(0, 1), (2, 2), (3, 4), (5, 5), (0, 6), (1, 3), (6, 0), (5, 2), (4, 1), (2, 5)]


class _Both(nn.Module):
    """A trained adapter and a new linear one on the same edge: their outputs add."""

    def __init__(self, trained, new):
        super().__init__()
        self.trained, self.new = trained, new

    def forward(self, x):
        return self.trained(x) + self.new(x)


def autograd_on_graph(model, trained, edge, inputs, targets):
    """dL/dW of a real zero linear adapter added on ``edge`` to a copy of the trained graph."""
    edges = list(trained.edges) + ([] if edge in trained.edges else [edge])
    graph = AdapterGraph(model, edges, rank=trained.rank)
    for e in trained.edges:
        graph.adapter(*e).load_state_dict(trained.adapter(*e).state_dict())
    key = next(k for k, m in graph.adapters.items() if m is graph.adapter(*edge))
    probe = LinearAdapter(graph.backbone.hidden_size)
    graph.adapters[key] = _Both(graph.adapter(*edge), probe) if edge in trained.edges else probe
    out = graph(**inputs) if isinstance(inputs, dict) else graph(inputs)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    F.cross_entropy(logits, targets).backward()
    return probe.weight.grad


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_scores_of_a_trained_graph_match_autograd(family, images, text_batch):
    model = small_vit() if family == "vit" else small_text_model("bert")
    inputs, targets = (images, torch.tensor([0, 3, 1, 4])) if family == "vit" else (text_batch, torch.tensor([2, 0, 1]))
    trained = AdapterGraph(model, TRAINED, rank=4)
    randomise(trained, seed=5)
    grads = edge_gradients(trained, [(inputs, targets)])
    plain = edge_gradients(model, [(inputs, targets)])
    assert all(p.requires_grad for p in trained.adapter_parameters())  # flags restored
    for edge in PROBES:
        expected = autograd_on_graph(model, trained, edge, inputs, targets)
        torch.testing.assert_close(grads[edge], expected, rtol=1e-4, atol=1e-6, msg=f"edge {edge}")
        assert not torch.allclose(plain[edge], expected, rtol=1e-2, atol=1e-5), f"edge {edge}: adapters ignored"


def test_scores_of_a_graph_without_adapters_are_the_backbones(batches):
    model = small_vit(depth=2)
    torch.testing.assert_close(edge_gradients(AdapterGraph(model, []), batches), edge_gradients(model, batches),
                               rtol=0, atol=0)


# ---------------------------------------------------------------- iterative GGA

def test_iterative_gga_with_k_equal_n_is_gga_select(batches):
    result = iterative_gga(small_vit(depth=2), batches, n=5, k=5, gamma=0.6, fn="srank")
    expected = gga_select(score_edges(small_vit(depth=2), batches, fn="srank"), 5, gamma=0.6)
    assert result.edges == expected
    assert len(result.history) == 1 and result.seconds["training"] == 0
    assert result.flops == {"selection": scoring_flops([]), "training": 0.0, "total": scoring_flops([])}


def test_iterative_gga_rescores_with_the_trained_adapters_in_place(batches):
    result = iterative_gga(small_vit(depth=2), batches, n=5, k=2, phase_steps=3, gamma=0.5, fn="frobenius",
                           lr=0.05, seed=1)
    rounds = [[Edge(*e) for e in r["picked"]] for r in result.history]
    assert [len(r) for r in rounds] == [2, 2, 1] and len(set(result.edges)) == 5
    assert result.edges == [e for r in rounds for e in r]
    graph = result.graph
    assert all(graph.adapter(*e).up.weight.abs().max() > 0 for e in rounds[0] + rounds[1])  # trained
    assert graph.adapter(*rounds[2][0]).up.weight.abs().max() == 0  # the last round is never trained
    # the last round, recomputed: the scores of the graph of rounds 1-2 exactly as trained
    graph.remove_edges(rounds[2])
    scores = score_edges(graph, batches, fn="frobenius")
    assert gga_select(scores, 1, gamma=0.5, exclude=rounds[0] + rounds[1]) == rounds[2]
    # and re-scoring mattered: one-shot GGA on the plain backbone picks differently here
    assert rounds[1] != gga_select(score_edges(small_vit(depth=2), batches, fn="frobenius"), 4, 0.5)[2:]


# ---------------------------------------------------------------- edge switch

def test_edge_switch_keeps_the_most_probable_gates(batches):
    result = edge_switch(small_vit(depth=2), batches, n=3, steps=8, log_every=4, lr=0.05, gate_lr=0.2, seed=2)
    table = result.details["gate_probability"]
    assert sorted((i, j) for i, j, _ in table) == all_edges(5)
    by_hand = sorted(table, key=lambda row: (-row[2], row[0], row[1]))[:3]
    assert result.edges == [Edge(i, j) for i, j, _ in by_hand]
    assert all(0 < p < 1 for _, _, p in table) and len({p for *_, p in table}) > 1  # gates learned
    assert [h["step"] for h in result.history] == [4, 8] and result.history[-1]["tau"] == pytest.approx(0.1)


def test_edge_switch_gates_after_two_steps_are_known(batches):
    """Two steps, no warm-up: at step 0 every adapter outputs zero (up = 0), so no gate logit gets a
    gradient; an adapter whose gate drew "off" at step 0 gets none either, so its up is still 0 at
    step 1 and its gate stays at P(on) = 1/2 exactly. Which gates drew "on" at step 0 follows from
    the seed's first Gumbel draw (logits 0: on iff noise_on > noise_off). A gate that moved did so
    by one Adam step on a gradient first non-zero at step 2: at most
    lr * (0.1 / 0.19) / sqrt(0.001 / 0.001999) = 0.7441 lr per logit, the two logits opposite."""
    gate_lr = 0.5
    result = edge_switch(small_vit(depth=2), batches, n=3, steps=2, log_every=2, lr=0.05, gate_lr=gate_lr,
                         warmup_steps=0, seed=2)
    noise = gumbel_noise((25, 2), torch.Generator().manual_seed(2))
    on_at_0 = {e for k, e in enumerate(all_edges(5)) if noise[k, 0] > noise[k, 1]}
    probability = {Edge(i, j): p for i, j, p in result.details["gate_probability"]}
    adam = (0.1 / 0.19) / math.sqrt(0.001 / 0.001999)
    widest = 1 / (1 + math.exp(-2 * adam * gate_lr)) - 0.5  # 0.1779
    assert 0 < len(on_at_0) < 25
    for e in all_edges(5):
        if e not in on_at_0:
            assert probability[e] == 0.5, e
        else:
            assert abs(probability[e] - 0.5) <= widest * (1 + 1e-6), e
        if result.graph.adapter(*e).up.weight.abs().max() == 0:  # never on: neither step trained it
            assert e not in on_at_0
    moved = [e for e in on_at_0 if probability[e] != 0.5]
    assert moved and max(abs(probability[e] - 0.5) for e in moved) > 0.5 * widest
    by_hand = sorted(all_edges(5), key=lambda e: (-probability[e], e))[:3]
    assert result.edges == by_hand


def test_edge_switch_candidates_are_the_top_scores(batches):
    result = edge_switch(small_vit(depth=2), batches, n=2, steps=2, candidates=6, fn="frobenius", lr=0.05)
    scores = score_edges(small_vit(depth=2), batches, fn="frobenius").flatten()
    top = sorted(Edge(int(f) // 5, int(f) % 5) for f in torch.argsort(scores, descending=True)[:6])
    assert [Edge(*e) for e in result.details["candidates"]] == top
    assert set(result.edges) <= set(top) and result.flops["selection"] == scoring_flops([])


# ---------------------------------------------------------------- prune and regrow

def test_top_edges_ranks_values_with_row_major_ties():
    rng = np.random.default_rng(0)
    edges = all_edges(5)
    values = dict(zip(edges, rng.integers(0, 6, len(edges)).astype(float)))  # many ties
    order = np.lexsort(([e.j for e in edges], [e.i for e in edges], [values[e] for e in edges]))
    assert top_edges(values, 7, largest=False) == [edges[k] for k in order[:7]]
    order = np.lexsort(([e.j for e in edges], [e.i for e in edges], [-values[e] for e in edges]))
    assert top_edges(values, 7) == [edges[k] for k in order[:7]]


def test_drop_count():
    assert [drop_count(24, p) for p in (0.01, 0.1, 0.3, 0.5, 0.99)] == [1, 2, 7, 12, 24]


def test_prune_and_regrow_drops_the_smallest_and_grows_at_zero(images):
    model = small_vit()
    graph = AdapterGraph(model, [(0, 1), (2, 2), (1, 4), (6, 2), (3, 5), (0, 6)], rank=4)
    randomise(graph, seed=4)
    by_hand = {e: (graph.adapter(*e).alpha.abs() * torch.linalg.matrix_norm(
        graph.adapter(*e).up.weight @ graph.adapter(*e).down.weight)).item() for e in graph.edges}
    lowest = sorted(by_hand, key=by_hand.get)[:2]
    growth_scores = torch.rand(7, 7, generator=torch.Generator().manual_seed(0))
    seen = {}

    def score(pruned):
        seen["edges"] = list(pruned.edges)
        with torch.no_grad():
            seen["output"] = pruned(images)
        return growth_scores

    dropped, grown = prune_and_regrow(graph, criterion_values(graph, "magnitude"), 2, score)
    assert sorted(dropped) == sorted(lowest) and len(graph.edges) == 6
    survivors = [e for e in by_hand if e not in lowest]
    assert seen["edges"] == survivors
    free = {e: growth_scores[e].item() for e in all_edges(7) if e not in survivors}
    assert sorted(grown) == sorted(sorted(free, key=free.get)[-2:])
    assert all(graph.adapter(*e).up.weight.abs().max() == 0 for e in grown)
    with torch.no_grad():
        after = graph(images)
        expected = vit_with_adapters(model, images, survivors, {e: graph.adapter(*e) for e in survivors})
    torch.testing.assert_close(after, seen["output"], rtol=0, atol=0)  # growth changed nothing
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)


def test_taylor_criterion_is_the_first_order_loss_change_of_removal(images):
    model = small_vit().double()
    images, targets = images.double(), torch.tensor([0, 3, 1, 4])
    graph = AdapterGraph(model, [(0, 1), (6, 2), (3, 5)], rank=4)
    randomise(graph, seed=6)
    loss = lambda: F.cross_entropy(graph(images), targets)  # noqa: E731
    loss().backward()
    sums = _TaylorSums(graph)
    sums(0)
    eps = 1e-4
    for e, value in sums.values().items():
        alpha = graph.adapter(*e).alpha
        a0 = alpha.detach().clone()
        with torch.no_grad():
            alpha.copy_(a0 * (1 + eps))
            up = loss().item()
            alpha.copy_(a0 * (1 - eps))
            down = loss().item()
            alpha.copy_(a0)
        assert value == pytest.approx(abs(up - down) / (2 * eps), rel=1e-5)


def test_taylor_sums_over_several_steps_are_the_mean_of_alpha_times_the_loss_slope(images):
    """Three steps with other weights and targets each, an edge grown after the first and a reset:
    |mean over its steps of alpha * dL/dalpha|, the slope taken by central differences here."""
    model = small_vit().double()
    images = images.double()
    graph = AdapterGraph(model, [(0, 1), (6, 2), (3, 5)], rank=4)
    randomise(graph, seed=6)
    targets = [torch.tensor([0, 3, 1, 4]), torch.tensor([2, 2, 0, 1]), torch.tensor([4, 1, 3, 0])]
    sums, by_hand = _TaylorSums(graph), {}

    def slope_times_alpha(e, y, eps=1e-5):
        alpha = graph.adapter(*e).alpha
        a0 = alpha.detach().clone()
        with torch.no_grad():
            alpha.copy_(a0 + eps)
            up = F.cross_entropy(graph(images), y).item()
            alpha.copy_(a0 - eps)
            down = F.cross_entropy(graph(images), y).item()
            alpha.copy_(a0)
        return a0.item() * (up - down) / (2 * eps)

    for step, y in enumerate(targets):
        if step == 1:
            graph.add_edges([(2, 6)])
            randomise(graph, seed=10 + step)  # new weights for every adapter, the new one included
        if step == 2:
            with torch.no_grad():
                graph.adapter(0, 1).alpha.mul_(-1.5)
        for e in graph.edges:
            by_hand.setdefault(e, []).append(slope_times_alpha(e, y))
        graph.zero_grad(set_to_none=True)
        F.cross_entropy(graph(images), y).backward()
        sums(step)
    values = sums.values()
    assert sorted(values) == sorted(graph.edges) and len(by_hand[Edge(2, 6)]) == 2
    for e, terms in by_hand.items():
        assert values[e] == pytest.approx(abs(sum(terms) / len(terms)), rel=1e-5), e
    # the mean is signed: terms of both signs cancel (their absolute values would not)
    assert any(min(t) < 0 < max(t) for t in by_hand.values())
    sums.reset()
    assert sums.values() == {e: 0.0 for e in graph.edges}  # nothing since the reset
    graph.zero_grad(set_to_none=True)
    F.cross_entropy(graph(images), targets[0]).backward()
    sums(3)
    for e in graph.edges:
        assert sums.values()[e] == pytest.approx(abs(slope_times_alpha(e, targets[0])), rel=1e-5), e


@pytest.mark.parametrize("criterion", ["magnitude", "taylor"])
def test_prune_regrow_keeps_n_and_reports_survivors(criterion, batches):
    result = prune_regrow(small_vit(depth=2), batches, n=4, steps=7, update_every=2, fraction=0.5,
                          criterion=criterion, lr=0.05, seed=3)
    assert len(result.history) == 3 and [h["step"] for h in result.history] == [2, 4, 6]
    current = [Edge(*e) for e in result.details["initial"]]
    for h in result.history:
        dropped, grown = [Edge(*e) for e in h["dropped"]], [Edge(*e) for e in h["grown"]]
        assert sorted(Edge(i, j) for i, j, _ in h["criterion"]) == sorted(current)  # every adapter judged
        assert set(dropped) <= set(current) and not set(grown) & (set(current) - set(dropped))
        current = [e for e in current if e not in dropped] + grown
        assert len(set(current)) == 4 and sorted(Edge(*e) for e in h["edges"]) == sorted(current)
    assert sorted(result.edges) == sorted(current) == sorted(result.graph.edges)
    never_dropped = [e for e in result.details["initial"]
                     if all(e not in h["dropped"] for h in result.history)]
    assert result.details["survivors"] == never_dropped


def test_prune_regrow_drops_by_the_magnitudes_the_adapters_had(batches):
    """The magnitude criterion of each update, against |alpha| ||W_up W_down||_F computed here from
    the weights the surviving adapters have when the pruned graph is scored (a global forward hook
    sees every adapter call; training forwards call 4 adapters, the scoring of a pruned graph 2)."""
    model = small_vit(depth=2)
    forwards = []
    start = model.register_forward_pre_hook(lambda *_: forwards.append([]))

    def record(module, _inputs, _output):
        if all(hasattr(module, name) for name in ("up", "down", "alpha")) and forwards:
            with torch.no_grad():
                forwards[-1].append((module.alpha.abs() * torch.linalg.matrix_norm(
                    module.up.weight.double() @ module.down.weight.double())).item())

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        result = prune_regrow(model, batches, n=4, steps=7, update_every=2, fraction=0.5, criterion="magnitude",
                              lr=0.05, seed=3, fn="frobenius")
    finally:
        hook.remove()
        start.remove()
    calls = [f for f in forwards if f]  # the plain first passes call no adapter
    assert [len(f) for f in calls].count(4) == 7  # one training forward per step
    pruned = [k for k, f in enumerate(calls) if len(f) == 2]
    assert len(pruned) == 2 * 3  # 3 updates, 2 score batches each
    for update, h in enumerate(result.history):
        first, second = calls[pruned[2 * update]], calls[pruned[2 * update + 1]]
        assert first == second  # both score batches see the same weights
        kept = sorted(v for i, j, v in h["criterion"] if [i, j] not in h["dropped"])
        dropped = [v for i, j, v in h["criterion"] if [i, j] in h["dropped"]]
        np.testing.assert_allclose(kept, sorted(first), rtol=1e-5)
        assert len(dropped) == 2 and max(dropped) <= min(first)  # the two smallest went
        assert min(first) > 0  # trained adapters: the criterion is not a tie of zeros


# ---------------------------------------------------------------- determinism, dispatch, errors

@pytest.mark.parametrize("method,options", [
    ("iterative_gga", dict(n=3, k=1, phase_steps=2, fn="frobenius", lr=0.05)),
    ("edge_switch", dict(n=3, steps=4, lr=0.05, gate_lr=0.2)),
    ("prune_regrow", dict(n=3, steps=5, update_every=2, fraction=0.4, lr=0.05)),
])
def test_same_seed_same_search(method, options, batches):
    a = run_search(method, small_vit(depth=2), batches, seed=7, **options)
    b = run_search(method, small_vit(depth=2), batches, seed=7, **options)
    assert isinstance(a, SearchResult) and len(a.edges) == 3
    assert a.edges == b.edges and a.history == b.history and a.details == b.details and a.flops == b.flops
    assert a.as_dict()["edges"] == [list(e) for e in a.edges]  # costs: the tests above, recounted


def _untouchable():
    raise AssertionError("the data was read before the arguments were checked")
    yield  # pragma: no cover


@pytest.mark.parametrize("method,options,message", [
    ("gga_plus", dict(n=3), "unknown search method 'gga_plus'"),
    ("iterative_gga", dict(n=0, k=1), "n must be"),
    ("iterative_gga", dict(n=3, k=0), "k must be"),
    ("iterative_gga", dict(n=3), r"needs option\(s\) \['k'\]"),
    ("iterative_gga", dict(n=50, k=1), r"n must be an integer in 1\.\.25"),
    ("edge_switch", dict(n=3, candidates=2), "candidates must be"),
    ("edge_switch", dict(n=3, tau_start=0.1, tau_end=1.0), "tau_end"),
    ("prune_regrow", dict(n=3, fraction=1.0), r"fraction must be in \(0, 1\)"),
    ("prune_regrow", dict(n=3, fraction=0.0), r"fraction must be in \(0, 1\)"),
    ("prune_regrow", dict(n=3, steps=50, update_every=50), "steps must be"),
    ("prune_regrow", dict(n=3, criterion="random"), "unknown pruning criterion 'random'"),
    ("prune_regrow", dict(n=3, p=0.3), r"unknown option\(s\) \['p'\]"),
    ("edge_switch", dict(n=3, activation="tanh"), "unknown activation 'tanh'"),
])
def test_run_search_rejects_bad_arguments_before_any_work(method, options, message):
    model = small_vit(depth=2)
    head = model.head.weight.clone()
    with pytest.raises(ValueError, match=message):
        run_search(method, model, _untouchable(), **options)
    assert torch.equal(model.head.weight, head) and all(p.requires_grad for p in model.parameters())


def test_run_search_dispatches_to_the_method(batches):
    a = run_search("iterative_gga", small_vit(depth=2), batches, n=2, k=2, fn="frobenius")
    b = iterative_gga(small_vit(depth=2), batches, 2, 2, fn="frobenius")
    assert a.edges == b.edges


# ---------------------------------------------------------------- FLOP model (App. K)

VIT_B = Arch(blocks=12, hidden=768, heads=12, ffn=3072, rank=8, tokens=197)
# App. K footnote 8 for ViT-B/16, written out: 12 * (F_mha + F_ffn), n_seq 197, d 768, h 12, d_k 64, d_ffn 3072
F_FFN = 197 * (2 * 768 - 1) * 3072 + 197 * (2 * 3072 - 1) * 768
F_MHA = 3 * 197 * (2 * 768 - 1) * 64 * 12 + 197 ** 2 * 2 * 64 * 12 + 197 * (2 * 197 - 1) * 64 * 12 + 197 * (2 * 64 * 12 - 1) * 768
FORWARD = 12 * (F_MHA + F_FFN)
EQ10 = 9 * 768 * 197 + 4 * 768 * 197 * 8 + 4 * 197 * 8 + 197 * 768  # one rank-8 adapter, one example
F_SCORE = 512 * 625 * (2 * 197 - 1) * 768 ** 2 + (512 * 625 * 768 ** 2 + 625 * 768 ** 2)


def test_flops_reproduce_app_k():
    assert FORWARD == 34_876_753_920 and EQ10 == 6_360_736 and F_SCORE == 74_365_378_560_000
    forward = pass_flops(VIT_B, 1, 197, backward=False)
    assert forward == FORWARD  # footnote 8 exactly; the paper prints ~34.9 G
    assert pass_flops(VIT_B, 1, 197) == 2 * FORWARD  # backward ~ forward (App. K)
    assert pass_flops(VIT_B, 512, 197, scored_edges=625) - pass_flops(VIT_B, 512, 197) == F_SCORE  # ~74.3 T
    assert pass_flops(VIT_B, 512, 197, scored_edges=625) == 512 * 2 * FORWARD + F_SCORE  # F_GGA ~110.0 T
    assert round((512 * 2 * FORWARD + F_SCORE) / 1e12, 1) == 110.1  # the paper's 110.0 adds its rounded terms
    # 24 adapters, batch 128: 15.4 GFLOPs in App. K
    assert pass_flops(VIT_B, 128, 197, 24, backward=False) == 128 * (FORWARD + 24 * EQ10)
    assert round(128 * 24 * EQ10 / 1e9, 1) == 19.5  # App. K prints 15.4; its own Eq. 10 gives 19.5
    # recurrent adapters: forward + backward + one more plain forward = 3 forwards (App. K)
    assert pass_flops(VIT_B, 1, 197, first_pass=True) == 3 * FORWARD
    assert pass_flops(VIT_B, 3, 197, 2, first_pass=True) == 3 * (2 * (FORWARD + 2 * EQ10) + FORWARD)


# ---------------------------------------------------------------- the searches' costs, recounted

# small_vit(depth=2): 2 blocks, d 32, 4 heads, FFN 64 (mlp_ratio 2), 16 patches + the class token
SMALL = Arch(blocks=2, hidden=32, heads=4, ffn=64, rank=8, tokens=17)


def step_flops(edges, examples=4):
    """One training step of a graph with ``edges``, by pass_flops: forward, backward, and the first
    pass when an edge is recurrent."""
    return pass_flops(SMALL, examples, 17, len(edges), first_pass=any(i > j for i, j in edges))


def scoring_flops(edges, batches=2, examples=4):
    """Scoring all 25 edges of a graph with ``edges``: one forward and backward per batch, a plain
    first pass when the graph has adapters, the 25 gradient products."""
    return batches * pass_flops(SMALL, examples, 17, len(edges), first_pass=bool(edges), scored_edges=25)


def test_the_small_arch_is_the_models():
    from adapter_placement.search import arch_of

    assert arch_of(small_vit(depth=2), 8) == SMALL


def test_one_shot_gga_costs_the_head_steps_and_one_scoring(batches):
    result = iterative_gga(small_vit(depth=2), batches, n=5, k=5, fn="frobenius", head_steps=3, lr=0.01)
    head = 3 * pass_flops(SMALL, 4, 17, backward=False)  # the head trains on the backbone's forward
    assert result.flops == {"selection": head + scoring_flops([]), "training": 0.0,
                            "total": head + scoring_flops([])}


def test_iterative_gga_costs_each_round(batches):
    result = iterative_gga(small_vit(depth=2), batches, n=5, k=2, phase_steps=3, gamma=0.5, fn="frobenius",
                           lr=0.05, seed=1)
    rounds = [[tuple(e) for e in r["picked"]] for r in result.history]
    first, second = rounds[0], rounds[0] + rounds[1]
    selection = scoring_flops([]) + scoring_flops(first) + scoring_flops(second)
    training = 3 * step_flops(first) + 3 * step_flops(second)  # the last round is not trained
    assert result.flops["selection"] == pytest.approx(selection, rel=1e-12)
    assert result.flops["training"] == pytest.approx(training, rel=1e-12)
    assert result.flops["total"] == pytest.approx(selection + training, rel=1e-12)


def test_edge_switch_costs_its_steps_on_the_candidates(batches):
    result = edge_switch(small_vit(depth=2), batches, n=2, steps=3, log_every=3, lr=0.05)
    # every edge carries a gated adapter (recurrent ones too), no scoring
    assert result.flops == {"selection": 0.0, "training": 3 * step_flops(all_edges(5)),
                            "total": 3 * step_flops(all_edges(5))}
    result = edge_switch(small_vit(depth=2), batches, n=2, steps=3, log_every=3, candidates=6, fn="frobenius",
                         lr=0.05)
    candidates = [tuple(e) for e in result.details["candidates"]]
    assert result.flops["selection"] == scoring_flops([])
    assert result.flops["training"] == pytest.approx(3 * step_flops(candidates), rel=1e-12)


def test_prune_regrow_costs_each_step_on_the_edges_it_had(batches):
    result = prune_regrow(small_vit(depth=2), batches, n=4, steps=7, update_every=2, fraction=0.5,
                          lr=0.05, seed=3, fn="frobenius")
    placements = [[tuple(e) for e in result.details["initial"]]] + [[tuple(e) for e in h["edges"]]
                                                                     for h in result.history]
    assert len(placements) == 4
    training = sum(step_flops(edges) * steps for edges, steps in zip(placements, [2, 2, 2, 1]))
    # each update scores the pruned graph: the 2 survivors of the placement before it
    survivors = [[e for e in before if list(e) not in h["dropped"]] for before, h in zip(placements, result.history)]
    assert all(len(s) == 2 for s in survivors)
    selection = sum(scoring_flops(s) for s in survivors)
    assert result.flops["training"] == pytest.approx(training, rel=1e-12)
    assert result.flops["selection"] == pytest.approx(selection, rel=1e-12)
    assert result.flops["total"] == pytest.approx(training + selection, rel=1e-12)


class SlowLoss:
    """Cross-entropy that takes at least ``seconds`` a call: what a search spends is then bounded
    below by its calls, whatever the machine."""

    def __init__(self, seconds=0.05):
        self.seconds, self.calls = seconds, 0

    def __call__(self, logits, targets):
        self.calls += 1
        time.sleep(self.seconds)
        return F.cross_entropy(logits, targets)


def test_measured_seconds_split_into_selection_and_training(batches):
    # the one-shot GGA: scoring only (one loss per score batch), nothing trained
    loss = SlowLoss()
    started = time.perf_counter()
    result = iterative_gga(small_vit(depth=2), batches, n=3, k=3, fn="frobenius", loss_fn=loss)
    elapsed = time.perf_counter() - started
    assert loss.calls >= 2 and result.seconds["training"] == 0.0  # a pass per score batch (or more, in blocks)
    assert loss.calls * loss.seconds <= result.seconds["selection"] <= elapsed
    assert result.seconds["total"] == pytest.approx(result.seconds["selection"], rel=1e-12)
    # the edge switch on all edges: training only (one loss per step); selection is ranking gates
    loss = SlowLoss()
    started = time.perf_counter()
    result = edge_switch(small_vit(depth=2), batches, n=2, steps=4, log_every=2, lr=0.05, loss_fn=loss)
    elapsed = time.perf_counter() - started
    assert loss.calls == 4
    assert 4 * loss.seconds <= result.seconds["training"] <= elapsed
    assert result.seconds["selection"] < loss.seconds  # no loss was computed for it
    assert result.seconds["training"] + result.seconds["selection"] <= result.seconds["total"] * (1 + 1e-12)
    assert result.seconds["total"] <= elapsed


# ---------------------------------------------------------------- rational activation

def test_rational_activation_starts_as_gelu():
    x = torch.linspace(-3, 3, 1201)
    with torch.no_grad():
        error = (RationalActivation()(x) - F.gelu(x)).abs().max().item()
    assert error < 4e-3


def test_rational_activation_is_trainable():
    act = RationalActivation()
    x = torch.linspace(-3, 3, 301)
    target = torch.tanh(x)  # far from GELU for x < 0
    opt = torch.optim.Adam(act.parameters(), lr=0.02)
    first = F.mse_loss(act(x), target).item()
    for _ in range(150):
        loss = F.mse_loss(act(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first


def test_rational_adapter_in_a_graph(images):
    adapter = make_adapter(32, 4, "rational")
    gelu = make_adapter(32, 4, "gelu")
    gelu.load_state_dict(adapter.state_dict(), strict=False)
    nn.init.normal_(adapter.up.weight)
    gelu.up.weight.data.copy_(adapter.up.weight)
    x = torch.randn(5, 32)
    torch.testing.assert_close(adapter(x), gelu(x), rtol=0, atol=0.05)
    graph = AdapterGraph(small_vit(), [(0, 3)], rank=4, activation="rational")
    randomise(graph)
    F.cross_entropy(graph(images), torch.tensor([0, 1, 2, 3])).backward()
    act = graph.adapter(0, 3).act
    assert isinstance(act, RationalActivation) and act.numerator.grad.abs().max() > 0


def test_gga_exclude_never_picks_and_never_discounts():
    scores = np.random.default_rng(1).random((5, 5))
    exclude = [(1, 1), (3, 2), (0, 4)]
    s, picked, expected = scores.copy(), set(exclude), []
    for _ in range(4):  # Algorithm 1 by hand, starting with the excluded edges taken
        best = max((e for e in all_edges(5) if e not in picked), key=lambda e: s[e])
        expected.append(best)
        picked.add(best)
        s = s * np.array([[1 - 0.6 ** (abs(i - best[0]) + abs(j - best[1])) for j in range(5)] for i in range(5)])
    assert gga_select(scores, 4, 0.6, exclude=exclude) == expected
    with pytest.raises(ValueError, match=r"n must be in 1\.\.22 \(the number of edges not excluded\)"):
        gga_select(scores, 23, 0.6, exclude=exclude)
