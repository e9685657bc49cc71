"""The frozen-prefix cache on text encoders: padded batches, attention masks, token types, RoBERTa's
padding-aware positions, and the split digest of token dicts. The cached pass must equal the plain
one (tests/test_train.py checks the ViT)."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from adapter_placement.cache import NodeCache
from adapter_placement.data.tasks import InMemoryTask, index_inputs
from adapter_placement.graph import AdapterGraph
from adapter_placement.train import TrainConfig, train
from conftest import small_text_model

torch.set_num_threads(1)

# MiniLM: 6 layers, n = 13. The first target is 5, so the pass starts at block input 4 (z_4);
# node 2 is a long-range source before it (from the cache), node 12 a recurrent source.
MINILM_EDGES = [(2, 7), (12, 5), (6, 6), (4, 9)]


def minilm_config(tmp_path, **overrides):
    base = dict(dataset="vader_mnli", model="minilm", edges=MINILM_EDGES, rank=2, lr=3e-3, steps=4, batch_size=8,
                eval_splits=("val",), eval_batch_size=16, checkpoint_every=100, progress=False, track=False,
                cache_dir=str(tmp_path / "cache"), data_sizes={"train": 24, "val": 20, "test": 8})
    return TrainConfig(**{**base, **overrides})


def test_minilm_sentence_pairs_train_the_same_with_the_cache(tmp_path):
    from adapter_placement.data import load_task
    from adapter_placement.data.text import minilm_tokenizer

    task = load_task("vader_mnli", seed=0, tokenizer=minilm_tokenizer(), sizes={"train": 24, "val": 20, "test": 8})
    inputs, _ = task.tensors("val")
    # what makes text different: padding, masks and token types really occur in these splits
    assert (inputs["attention_mask"] == 0).any() and (inputs["token_type_ids"] == 1).any()
    plain = train(minilm_config(tmp_path), tmp_path / "plain")
    cached = train(minilm_config(tmp_path, prefix_cache=True), tmp_path / "cached")
    files = sorted(p.name for p in (tmp_path / "cache").rglob("*.pt"))
    assert files == sorted(["node2.pt", "node12.pt", "pre4.pt"] * 2)  # train and val
    assert cached["val_accuracy"] == pytest.approx(plain["val_accuracy"], abs=1e-9)
    assert cached["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-4)
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "plain/adapters.safetensors"), load_file(tmp_path / "cached/adapters.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-6)
    assert any(wa[k].abs().max() > 0 for k in wa if k.endswith("up.weight"))  # trained: not a comparison of zeros


# ---------------------------------------------------------------- RoBERTa, through NodeCache itself

def roberta_task(seed=0):
    """Token dicts as a tokenizer pads them for RoBERTa: <s> = 0 first, padding id 1 on the right
    with attention mask 0; lengths differ within every batch."""
    g = torch.Generator().manual_seed(seed)
    splits = {}
    for split, size in (("train", 10), ("val", 6), ("test", 6)):
        ids = torch.randint(3, 60, (size, 9), generator=g)
        ids[:, 0] = 0
        mask = torch.ones_like(ids)
        for k in range(size):
            length = 4 + (k * 3) % 6
            ids[k, length:] = 1
            mask[k, length:] = 0
        splits[split] = ({"input_ids": ids, "attention_mask": mask}, torch.randint(0, 3, (size,), generator=g))
    return InMemoryTask("roberta_toy", "text", 3, splits)


@pytest.mark.parametrize("edges", [[(3, 5), (6, 4)], [(2, 2), (1, 4)], [(1, 6), (4, 3)], [(5, 6)]])
def test_roberta_cached_pass_equals_the_plain_pass(edges, tmp_path):
    model = small_text_model("roberta")
    task = roberta_task()
    graph = AdapterGraph(model, edges, rank=4)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in graph.adapter_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    cache = NodeCache(graph, task, tmp_path, "small-roberta", 0, batch_size=4)  # fills in 3 batches
    assert cache.prefix_node is not None and cache.prefix_node > 0
    inputs, labels = task.tensors("train")
    index = torch.tensor([7, 0, 3, 9])  # an unsorted batch: the cache is indexed by example
    batch = index_inputs(inputs, index)
    assert (batch["attention_mask"] == 0).any()

    def loss_and_grads(**extras):
        graph.zero_grad(set_to_none=True)
        logits = graph(**batch, **extras).logits
        loss = F.cross_entropy(logits, labels[index])
        loss.backward()
        return logits.detach(), [p.grad.clone() for p in graph.adapter_parameters()]

    plain, plain_grads = loss_and_grads()
    cached, cached_grads = loss_and_grads(**cache.extras("train", index))
    torch.testing.assert_close(cached, plain, rtol=1e-5, atol=1e-6)
    for a, b in zip(cached_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert max(g.abs().max() for g in plain_grads) > 0
    # the cached values are read: a cache of other examples gives another result
    other = cache.extras("train", torch.tensor([1, 2, 4, 5]))
    with torch.no_grad():
        assert not torch.allclose(graph(**batch, **other).logits, plain, atol=1e-4)


def test_text_split_digest_sees_every_tensor_of_the_token_dict(tmp_path):
    task = roberta_task()
    graph = AdapterGraph(small_text_model("roberta"), [(4, 4)], rank=2)
    path = lambda t: NodeCache(graph, t, tmp_path, "small-roberta", 0).path("train", "pre4")  # noqa: E731
    inputs, labels = task.splits["train"]

    def changed(**tensors):
        return dataclasses.replace(task, splits={**task.splits, "train": ({**inputs, **tensors}, labels)})

    mask = inputs["attention_mask"].clone()
    mask[0, -1] = 1 - mask[0, -1]  # one mask bit: the same token ids, another example
    ids = inputs["input_ids"].clone()
    ids[2, 1] = 3 if ids[2, 1] != 3 else 4  # one token
    types = torch.zeros_like(inputs["input_ids"])  # token types added (all 0) are another input dict
    base = path(task)
    assert path(roberta_task()) == base  # the same examples: the same folder
    for other in (changed(attention_mask=mask), changed(input_ids=ids), changed(token_type_ids=types),
                  dataclasses.replace(task, splits={**task.splits, "train": (inputs, (labels + 1) % 3)})):
        assert path(other) != base
        assert path(other).parent.parent == base.parent.parent  # same task folder, another split folder
    assert NodeCache(graph, changed(attention_mask=mask), tmp_path, "small-roberta", 0).path("val", "pre4") == \
        NodeCache(graph, task, tmp_path, "small-roberta", 0).path("val", "pre4")  # other splits unchanged


# ---------------------------------------------------------------- batches cut to their own longest example

def test_trim_padding_cuts_only_the_trailing_columns_no_example_attends_to():
    from adapter_placement.data.tasks import trim_padding

    mask = torch.tensor([[1, 1, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0]])  # column 2 is padding of row 0 only
    inputs = {"input_ids": torch.arange(12).view(2, 6), "attention_mask": mask}
    extras = {"prefix": torch.zeros(2, 6, 5), "first_pass": {3: torch.ones(2, 6, 5)}}
    cut, cut_extras = trim_padding(inputs, extras)
    assert cut["input_ids"].tolist() == [[0, 1, 2, 3], [6, 7, 8, 9]]
    assert cut_extras["prefix"].shape == (2, 4, 5) and cut_extras["first_pass"][3].shape == (2, 4, 5)
    images = torch.zeros(2, 3, 8, 8)
    assert trim_padding(images)[0] is images  # vision passes unchanged
    full = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    assert trim_padding(full)[0] is full


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_a_cut_batch_gives_the_logits_of_the_padded_one(family, tmp_path):
    """The cut columns are padding: with cached prefix and first-pass states cut alike, every
    example's logits equal those of the batch padded to the split's longest example."""
    from adapter_placement.data.tasks import trim_padding

    model = small_text_model(family)
    task = roberta_task()
    if family == "bert":  # BERT pads with 0
        for inputs, _ in task.splits.values():
            inputs["input_ids"][inputs["attention_mask"] == 0] = 0
    inputs, _ = task.tensors("train")
    inputs["input_ids"][:, -2:], inputs["attention_mask"][:, -2:] = (0 if family == "bert" else 1), 0
    graph = AdapterGraph(model, [(3, 5), (1, 6), (6, 4)], rank=4)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in graph.adapter_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        cache = NodeCache(graph, task, tmp_path, "toy", 0)
        index = torch.tensor([0, 2, 3])
        batch, extras = index_inputs(inputs, index), cache.extras("train", index)
        cut, cut_extras = trim_padding(batch, extras)
        assert cut["input_ids"].shape[1] < batch["input_ids"].shape[1]
        torch.testing.assert_close(graph(**cut, **cut_extras).logits, graph(**batch, **extras).logits,
                                   rtol=1e-5, atol=1e-6)
