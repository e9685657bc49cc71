"""The one-pass scores against autograd on real linear adapters, and srank against a direct SVD."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adapter_placement import AdapterGraph, edge_gradients, score_edges, srank, train_head
from adapter_placement.scores import apply_score
from conftest import small_text_model, small_vit

# several edges of every kind on n = 7 nodes
EDGES = [(0, 1), (3, 4), (0, 0), (4, 4), (6, 6), (0, 5), (1, 3), (6, 0), (5, 2), (3, 1)]


def autograd_gradient(model, edge, inputs, targets):
    """dL/dW of a real zero-initialised linear adapter on ``edge``, by backpropagation."""
    graph = AdapterGraph(model, [edge], kind="linear")
    out = graph(**inputs) if isinstance(inputs, dict) else graph(inputs)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    F.cross_entropy(logits, targets).backward()
    return graph.adapter(*edge).weight.grad


def test_vit_closed_form_equals_autograd_on_every_kind(images):
    model = small_vit()
    targets = torch.tensor([0, 3, 1, 4])
    # the closed form gets two unequal batches; autograd sees them as one batch of 4
    batches = [(images[:1], targets[:1]), (images[1:], targets[1:])]
    grads = edge_gradients(model, batches)
    assert grads.shape == (7, 7, 32, 32)
    for edge in EDGES:
        expected = autograd_gradient(small_vit(), edge, images, targets)
        assert expected.abs().max() > 0
        torch.testing.assert_close(grads[edge], expected, rtol=1e-4, atol=1e-6, msg=f"edge {edge}")


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_post_ln_closed_form_equals_autograd(family, text_batch):
    targets = torch.tensor([2, 0, 1])
    grads = edge_gradients(small_text_model(family), [(text_batch, targets)])
    for edge in EDGES:
        expected = autograd_gradient(small_text_model(family), edge, text_batch, targets)
        assert expected.abs().max() > 0
        torch.testing.assert_close(grads[edge], expected, rtol=1e-4, atol=1e-6, msg=f"edge {edge}")


def srank_by_svd(matrix: np.ndarray, eta: float) -> int:
    """Footnote 6 read literally: the smallest k with sum_{j>k} s_j / sum_j s_j <= eta."""
    s = np.linalg.svd(matrix, compute_uv=False)
    for k in range(len(s) + 1):
        if s[k:].sum() <= eta * s.sum():
            return k
    raise AssertionError


@pytest.mark.parametrize("eta", [0.01, 0.05, 0.1, 0.15])
def test_srank_matches_a_direct_svd(eta):
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((12, 3)) @ rng.standard_normal((3, 12)),  # rank 3
            rng.standard_normal((12, 12)) * np.logspace(0, -4, 12),  # decaying spectrum
            np.diag([5.0, 1.0, 0.05] + [0.0] * 9), np.zeros((12, 12))]
    got = apply_score(torch.tensor(np.stack(mats)), "srank", eta)
    assert got.tolist() == [srank_by_svd(m, eta) for m in mats]


def test_score_functions_match_numpy():
    g = torch.randn(3, 9, 9, dtype=torch.float64)
    a = g.numpy()
    expected = {
        "frobenius": np.linalg.norm(a, "fro", axis=(1, 2)),
        "spectral": np.linalg.norm(a, 2, axis=(1, 2)),
        "nuclear": np.linalg.norm(a, "nuc", axis=(1, 2)),
        "max_col": np.abs(a).sum(1).max(1),
        "min_col": np.abs(a).sum(1).min(1),
    }
    for fn, value in expected.items():
        np.testing.assert_allclose(apply_score(g, fn).numpy(), value, rtol=1e-10, err_msg=fn)


def test_score_edges_reduces_the_gradients(images):
    model, targets = small_vit(), torch.tensor([0, 1, 2, 3])
    scores = score_edges(model, [(images, targets)], fn=["srank", "frobenius"], eta=0.05)
    grads = edge_gradients(model, [(images, targets)])
    assert scores["srank"].shape == (7, 7)
    for i, j in [(0, 0), (2, 5), (6, 1)]:
        assert scores["srank"][i, j] == srank_by_svd(grads[i, j].double().numpy(), 0.05)
        assert scores["frobenius"][i, j] == pytest.approx(grads[i, j].double().norm().item(), rel=1e-6)
    single = score_edges(model, [(images, targets)], fn="srank", eta=0.05)
    assert torch.equal(single, scores["srank"])


def test_train_head_trains_only_the_head(images):
    model = small_vit()
    before = {n: p.clone() for n, p in model.named_parameters()}
    targets = torch.tensor([0, 1, 2, 3])
    losses = train_head(model, [(images, targets)], steps=20, lr=0.5)
    assert len(losses) == 20 and losses[-1] < losses[0]
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"head.weight", "head.bias"}
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_train_head_adamw_on_text(text_batch):
    model = small_text_model("roberta")
    losses = train_head(model, [(text_batch, torch.tensor([0, 1, 2]))], steps=15, lr=1e-2, optimizer="adamw")
    assert losses[-1] < losses[0]
