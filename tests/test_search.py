"""The searches of issue 6 (search.py) against direct computations of their mechanics."""
import math

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
    assert len(result.history) == 1 and result.seconds["training"] == 0 and result.flops["training"] == 0
    assert result.flops["selection"] > 0


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


def test_edge_switch_candidates_are_the_top_scores(batches):
    result = edge_switch(small_vit(depth=2), batches, n=2, steps=2, candidates=6, fn="frobenius", lr=0.05)
    scores = score_edges(small_vit(depth=2), batches, fn="frobenius").flatten()
    top = sorted(Edge(int(f) // 5, int(f) % 5) for f in torch.argsort(scores, descending=True)[:6])
    assert [Edge(*e) for e in result.details["candidates"]] == top
    assert set(result.edges) <= set(top) and result.flops["selection"] > 0


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


@pytest.mark.parametrize("criterion", ["magnitude", "taylor"])
def test_prune_regrow_keeps_n_and_reports_survivors(criterion, batches):
    result = prune_regrow(small_vit(depth=2), batches, n=4, steps=7, update_every=2, fraction=0.5,
                          criterion=criterion, lr=0.05, seed=3)
    assert len(result.history) == 3 and [h["step"] for h in result.history] == [2, 4, 6]
    current = [Edge(*e) for e in result.details["initial"]]
    for h in result.history:
        dropped, grown = [Edge(*e) for e in h["dropped"]], [Edge(*e) for e in h["grown"]]
        lowest = [Edge(i, j) for i, j, _ in h["criterion"][:2]]
        assert sorted(dropped) == sorted(lowest) and set(dropped) <= set(current)
        current = [e for e in current if e not in dropped] + grown
        assert len(set(current)) == 4 and sorted(Edge(*e) for e in h["edges"]) == sorted(current)
    assert sorted(result.edges) == sorted(current) == sorted(result.graph.edges)
    never_dropped = [e for e in result.details["initial"]
                     if all(e not in h["dropped"] for h in result.history)]
    assert result.details["survivors"] == never_dropped


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
    assert a.seconds["total"] == pytest.approx(a.seconds["selection"] + a.seconds["training"])
    assert a.flops["training"] > 0 and a.as_dict()["edges"] == [list(e) for e in a.edges]


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


def test_flops_reproduce_app_k():
    forward = pass_flops(VIT_B, 1, 197, backward=False)
    assert forward == pytest.approx(34.9e9, rel=5e-3)  # footnote 8
    products = pass_flops(VIT_B, 512, 197, scored_edges=625) - pass_flops(VIT_B, 512, 197)
    assert products == pytest.approx(74.3e12, rel=2e-3)  # F_score
    assert pass_flops(VIT_B, 512, 197, scored_edges=625) == pytest.approx(110.0e12, rel=5e-3)  # F_GGA
    eq10 = 9 * 768 * 197 + 4 * 768 * 197 * 8 + 4 * 197 * 8 + 197 * 768
    assert pass_flops(VIT_B, 128, 197, 24, backward=False) - 128 * forward == pytest.approx(128 * 24 * eq10)
    # recurrent adapters: forward + backward + one more plain forward = 3 forwards (App. K)
    assert pass_flops(VIT_B, 1, 197, first_pass=True) == pytest.approx(3 * forward)


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
