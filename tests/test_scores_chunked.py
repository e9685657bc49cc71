"""Scores a block of source rows at a time: the same gradients and scores as the whole stack, checked
against autograd on real adapters and against numpy's norms, for every edge kind, a ViT and a BERT,
plain or with trained adapters; budgets, passes over the batches, bf16."""
import math

import numpy as np
import pytest
import torch

from adapter_placement import AdapterGraph, edge_gradients, score_edges
from adapter_placement import pipeline
from adapter_placement.device import PRECISIONS
from adapter_placement.scores import SCORE_FUNCTIONS, reduce_gradient_blocks
from conftest import small_text_model, small_vit
from test_errors import NoData
from test_scores import EDGES, autograd_gradient, srank_by_svd
from test_search import PROBES, TRAINED, autograd_on_graph, randomise

N, D = 7, 32  # every model here: 3 blocks (n = 2 * 3 + 1 nodes), hidden size 32
ROW_BYTES = N * D * D * 4  # one source row of float32 gradients


def setup(family, trained):
    """(net, batches, tokens per batch, base model): two unequal batches, the larger first (it
    sizes the blocks); ``trained`` wraps the model in a graph of every edge kind with non-zero
    adapters, whose recurrent edge needs the first pass."""
    if family == "vit":
        model = small_vit()
        images = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        targets = torch.tensor([0, 3, 1, 4, 2])
        batches = [(images[:3], targets[:3]), (images[3:], targets[3:])]
        tokens = 3 * 17  # 16 patches and the class token
    else:
        model = small_text_model("bert")
        g = torch.Generator().manual_seed(2)
        ids = torch.randint(3, 60, (4, 9), generator=g)
        mask = torch.ones_like(ids)
        mask[1, 6:] = 0
        targets = torch.tensor([2, 0, 1, 1])
        batches = [({"input_ids": ids[:3], "attention_mask": mask[:3]}, targets[:3]),
                   ({"input_ids": ids[3:], "attention_mask": mask[3:]}, targets[3:])]
        tokens = 3 * 9
    if not trained:
        return model, batches, tokens, model
    graph = AdapterGraph(model, TRAINED, rank=4)
    randomise(graph, seed=5)
    return graph, batches, tokens, model


def one_batch(batches):
    """The two batches as one (autograd's mean over all examples is what the blocks average)."""
    (a, ta), (b, tb) = batches
    inputs = ({k: torch.cat([a[k], b[k]]) for k in a} if isinstance(a, dict) else torch.cat([a, b]))
    return inputs, torch.cat([ta, tb])


def budget_for(rows, tokens, trained):
    """The bytes that give blocks of ``rows`` rows, by hand: the block, and the larger of one batch's
    captures (x, z, g, a copy of g, and the first pass of a graph with adapters) with the row being
    formed and its recurrent part, and a row's float64 copy with the SVD's copy of it."""
    captures = (5 if trained else 4) * N * tokens * D * 4
    return rows * ROW_BYTES + max(captures + 2 * ROW_BYTES, 4 * ROW_BYTES)


class Counted:
    """A list of batches that counts how often it is read."""

    def __init__(self, batches):
        self.batches, self.passes = batches, 0

    def __iter__(self):
        self.passes += 1
        return iter(self.batches)


CASES = [(family, trained) for family in ("vit", "bert") for trained in (False, True)]


@pytest.mark.parametrize("family, trained", CASES)
def test_blocks_of_rows_are_the_gradients_of_real_adapters(family, trained):
    net, batches, _, model = setup(family, trained)
    whole = edge_gradients(net, batches)
    inputs, targets = one_batch(batches)
    probes = PROBES if trained else EDGES  # parallel, sequential, long-range, recurrent
    expected = {e: (autograd_on_graph(model, net, e, inputs, targets) if trained
                    else autograd_gradient(model, e, inputs, targets)) for e in probes}
    for rows in (1, 3, N):
        sizes = []
        blocks = reduce_gradient_blocks(net, batches, lambda b: sizes.append(len(b)) or b, block_rows=rows)
        assert sizes == [rows] * (N // rows) + ([N % rows] if N % rows else [])
        stacked = torch.cat(blocks)
        torch.testing.assert_close(stacked, whole, rtol=1e-5, atol=1e-5)
        for edge, grad in expected.items():
            assert grad.abs().max() > 0
            torch.testing.assert_close(stacked[edge], grad, rtol=1e-4, atol=1e-6, msg=f"edge {edge}, {rows} rows")


def numpy_scores(grads: torch.Tensor, fn: str, eta: float) -> np.ndarray:
    """The score of every edge from numpy's SVD and norms (independent of apply_score)."""
    a = grads.double().numpy()
    if fn == "srank":
        return np.array([[srank_by_svd(a[i, j], eta) for j in range(N)] for i in range(N)], dtype=float)
    if fn in ("min_col", "max_col"):
        columns = np.abs(a).sum(-2)
        return columns.min(-1) if fn == "min_col" else columns.max(-1)
    order = {"frobenius": "fro", "spectral": 2, "nuclear": "nuc"}[fn]
    return np.linalg.norm(a, order, axis=(-2, -1))


@pytest.mark.parametrize("family, trained", CASES)
def test_scores_within_a_budget_equal_the_whole_stacks_for_every_function(family, trained):
    net, batches, tokens, _ = setup(family, trained)
    whole = edge_gradients(net, batches)
    expected = {fn: numpy_scores(whole, fn, 0.05) for fn in SCORE_FUNCTIONS}
    for rows in (1, 3, N):
        counted = Counted(batches)
        scores = score_edges(net, counted, fn=list(SCORE_FUNCTIONS), eta=0.05,
                             max_memory=budget_for(rows, tokens, trained))
        assert counted.passes == math.ceil(N / rows)
        for fn in SCORE_FUNCTIONS:
            assert scores[fn].shape == (N, N) and scores[fn].device.type == "cpu"
            np.testing.assert_allclose(scores[fn].numpy(), expected[fn], rtol=1e-5, atol=1e-7,
                                       err_msg=f"{fn}, {rows} rows")


def test_a_tiny_budget_gives_one_row_blocks_and_the_same_scores():
    net, batches, tokens, _ = setup("vit", trained=False)
    tiny = budget_for(1, tokens, trained=False)
    sizes, counted = [], Counted(batches)
    blocks = reduce_gradient_blocks(net, counted, lambda b: sizes.append(len(b)) or b.clone(), max_memory=tiny)
    assert sizes == [1] * N and counted.passes == N
    torch.testing.assert_close(torch.cat(blocks), edge_gradients(net, batches), rtol=1e-5, atol=1e-5)
    # one byte less and even one row does not fit with the first batch's captures
    with pytest.raises(ValueError, match=rf"budget of {tiny - 1} bytes .* needs {tiny} bytes"):
        score_edges(net, batches, fn="frobenius", max_memory=tiny - 1)


def test_an_impossible_budget_fails_before_reading_data_naming_both_numbers():
    one_row = ROW_BYTES + 4 * ROW_BYTES  # without captures: the row and a row's SVD workspace
    assert one_row == 143_360
    with pytest.raises(ValueError, match=r"budget of 1000 bytes cannot hold one row .* needs 143360 bytes"):
        score_edges(small_vit(), NoData(), fn="srank", max_memory=1000)


def test_pipeline_scores_in_blocks_are_all_scores_of_the_whole_stack():
    net, batches, tokens, _ = setup("vit", trained=False)
    etas = [0.01, 0.1]
    by_fn, by_eta = pipeline.all_scores(edge_gradients(net, batches), list(SCORE_FUNCTIONS), 0.05, etas)
    counted = Counted(batches)
    got_fn, got_eta, seconds = pipeline.all_scores_in_blocks(net, counted, list(SCORE_FUNCTIONS), 0.05, etas,
                                                              max_memory=budget_for(2, tokens, False))
    assert counted.passes == 4 and seconds > 0
    assert got_fn == by_fn and got_eta == by_eta  # the same numbers, bit for bit


def test_a_one_shot_iterator_is_read_once_and_scored_in_several_passes():
    net, batches, tokens, _ = setup("vit", trained=False)
    scores = score_edges(net, iter(batches), fn="nuclear", max_memory=budget_for(3, tokens, False))
    np.testing.assert_allclose(scores.numpy(), numpy_scores(edge_gradients(net, batches), "nuclear", 0.01),
                               rtol=1e-5)


class Reshuffled:
    """A loader that shuffles on every pass: blocks would average different examples."""

    def __init__(self, batches):
        self.batches, self.passes = batches, 0

    def __iter__(self):
        self.passes += 1
        return iter(self.batches if self.passes == 1 else self.batches[::-1])


def test_batches_that_change_between_passes_are_refused():
    net, batches, _, _ = setup("vit", trained=False)
    with pytest.raises(ValueError, match=r"batches changed between passes"):
        score_edges(net, Reshuffled(batches), fn="frobenius", max_memory=budget_for(3, 3 * 17, False))


@pytest.mark.parametrize("kwargs, match", [
    (dict(block_rows=0), r"block_rows must be an integer in 1\.\.7 \(the nodes\), got 0"),
    (dict(block_rows=8), r"got 8"),
    (dict(block_rows=2, max_memory=10 ** 9), r"max_memory or block_rows, not both"),
    (dict(max_memory=-5), r"max_memory must be a positive number of bytes, got -5"),
    (dict(precision="fp16"), r"unknown precision 'fp16'"),
])
def test_bad_block_arguments_fail_before_reading_data(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reduce_gradient_blocks(small_vit(), NoData(), lambda b: None, **kwargs)


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_bf16_scores_on_the_cpu_are_close_to_fp32(family):
    net, batches, _, _ = setup(family, trained=True)
    was_training = net.training
    fp32 = edge_gradients(net, batches)
    bf16 = edge_gradients(net, batches, precision="bf16")
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # the forward did run in bf16
    # measured (ViT, BERT; plain and trained): relative Frobenius error of the whole stack
    # 0.004-0.016, of single edges at most 0.028; frobenius, spectral, nuclear scores within 1.5%,
    # srank identical (min_col is not compared: near-zero minima of the ViT differ by up to 80%)
    whole = ((bf16 - fp32).norm() / fp32.norm()).item()
    assert whole < 0.05, whole
    scores = {p: score_edges(net, batches, fn=["frobenius", "nuclear", "srank"], precision=p) for p in PRECISIONS}
    for fn in ("frobenius", "nuclear"):
        np.testing.assert_allclose(scores["bf16"][fn].numpy(), scores["fp32"][fn].numpy(), rtol=0.05, err_msg=fn)
    assert (scores["bf16"]["srank"] - scores["fp32"]["srank"]).abs().max() <= 1
    assert net.training == was_training and all(p.requires_grad for p in net.adapter_parameters())


def test_scoring_on_a_named_device_leaves_the_model_where_it_was():
    net, batches, _, model = setup("vit", trained=False)
    model.train()
    scores = score_edges(net, batches, fn="frobenius", device="cpu")
    assert model.training and next(model.parameters()).device.type == "cpu"
    np.testing.assert_allclose(scores.numpy(), numpy_scores(edge_gradients(net, batches), "frobenius", 0.01),
                               rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_scores_on_a_gpu_equal_the_cpus():
    net, batches, tokens, _ = setup("vit", trained=True)
    cpu = score_edges(net, batches, fn=["frobenius", "nuclear"])
    gpu = score_edges(net, batches, fn=["frobenius", "nuclear"], device="cuda",
                      max_memory=budget_for(3, tokens, True))
    assert next(net.parameters()).device.type == "cpu"  # moved back
    for fn in cpu:
        assert gpu[fn].device.type == "cpu"
        np.testing.assert_allclose(gpu[fn].numpy(), cpu[fn].numpy(), rtol=1e-4, err_msg=fn)
