"""Bad input gets a ValueError naming the bad value, before any work starts."""
import numpy as np
import pytest
import torch
from torch import nn

from adapter_placement import AdapterGraph, gga_select, placements, score_edges
from conftest import small_vit


class NoData:
    """An iterable that fails if touched: the error must come before any batch is read."""

    def __iter__(self):
        raise AssertionError("batches were read before the arguments were checked")


@pytest.mark.parametrize("edges, match", [
    ([(0, 7)], r"edge \(0, 7\) is outside the nodes 0\.\.6"),
    ([(-1, 2)], r"edge \(-1, 2\) is outside"),
    ([(1, 2), (1, 2)], r"edge \(1, 2\) appears more than once"),
    ([(1, 2, 3)], r"pair"),
    ([(1.0, 2)], r"integer"),
])
def test_bad_edges(vit, edges, match):
    with pytest.raises(ValueError, match=match):
        AdapterGraph(vit, edges)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rank=0), r"rank must be an integer >= 1, got 0"),
    (dict(rank=2.5), r"got 2\.5"),
    (dict(activation="tanh"), r"unknown activation 'tanh'"),
    (dict(kind="lora"), r"unknown adapter kind 'lora'"),
])
def test_bad_adapter_arguments(vit, kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdapterGraph(vit, [(0, 1)], **kwargs)


def test_unsupported_models_are_named_with_the_supported_ones():
    with pytest.raises(ValueError, match=r"unsupported model type Sequential; supported: timm VisionTransformer.*Bert"):
        AdapterGraph(nn.Sequential(nn.Linear(2, 2)), [(0, 1)])
    with pytest.raises(ValueError, match=r"unsupported model type Linear"):
        score_edges(nn.Linear(2, 2), NoData(), torch.nn.functional.cross_entropy)
    from transformers import GPT2Config, GPT2Model

    with pytest.raises(ValueError, match=r"unsupported model type GPT2Model"):
        AdapterGraph(GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2)), [(0, 1)])


def test_unsupported_vit_block_is_named():
    from timm.models.vision_transformer import ResPostBlock, VisionTransformer

    m = VisionTransformer(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2, block_fn=ResPostBlock)
    with pytest.raises(ValueError, match=r"unsupported ViT block type\(s\) \['ResPostBlock'\]"):
        AdapterGraph(m, [(0, 1)])


@pytest.mark.parametrize("kwargs, match", [
    (dict(fn="l2"), r"unknown score function 'l2'"),
    (dict(fn=["srank", "trace"]), r"unknown score function 'trace'"),
    (dict(eta=0.0), r"eta must be in \(0, 1\), got 0\.0"),
    (dict(eta=1), r"got 1"),
])
def test_bad_score_arguments_fail_before_reading_data(kwargs, match):
    with pytest.raises(ValueError, match=match):
        score_edges(small_vit(), NoData(), torch.nn.functional.cross_entropy, **kwargs)


def test_empty_batches():
    with pytest.raises(ValueError, match="empty"):
        score_edges(small_vit(), [], torch.nn.functional.cross_entropy)


@pytest.mark.parametrize("n, gamma, match", [
    (50, 0.6, r"n must be in 1\.\.49 \(the number of edges\), got 50"),
    (0, 0.6, r"got 0"),
    (3, 1.0, r"gamma must be in \[0, 1\), got 1\.0"),
    (3, -0.1, r"got -0\.1"),
])
def test_bad_gga_arguments(n, gamma, match):
    with pytest.raises(ValueError, match=match):
        gga_select(np.ones((7, 7)), n, gamma)


def test_bad_score_matrix():
    with pytest.raises(ValueError, match=r"square"):
        gga_select(np.ones((3, 4)), 1)
    with pytest.raises(ValueError, match=r"NaN"):
        gga_select(np.full((3, 3), np.nan), 1)


@pytest.mark.parametrize("call, match", [
    (lambda: placements.random(25, 626, seed=0), r"count must be in 1\.\.625.*got 626"),
    (lambda: placements.first_k(25, 25), r"k must be in 1\.\.24.*got 25"),
    (lambda: placements.last_k(25, 0), r"got 0"),
    (lambda: placements.grid(25, 0), r"stride must be a positive integer, got 0"),
    (lambda: placements.parallel_all(24), r"num_nodes must be an odd integer.*got 24"),
])
def test_bad_placement_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
