"""AdapterGraph against independent, hand-written forwards (tests/reference.py)."""
import pytest
import torch

from adapter_placement import AdapterGraph, placements
from conftest import small_text_model, small_vit
from reference import (ParallelAdapterViT, bert_forward, bert_with_adapters, roberta_forward,
                       roberta_with_adapters, vit_with_adapters)

# n = 7 nodes for 3 blocks; one placement per kind, then a mix with several adapters into a node
KIND_EDGES = {
    "parallel": [(0, 1), (3, 4), (5, 6)],
    "sequential": [(0, 0), (2, 2), (5, 5)],
    "long-range": [(0, 3), (1, 6), (2, 5)],
    "recurrent": [(6, 0), (4, 1), (5, 3)],
    "mix": [(0, 1), (0, 3), (1, 3), (3, 3), (6, 3), (4, 2), (2, 6), (6, 6), (5, 6), (6, 0)],
}


def randomise(graph, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in graph.adapter_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def adapters_by_edge(graph):
    return {tuple(e): graph.adapter(*e) for e in graph.edges}


@pytest.mark.parametrize("kind", KIND_EDGES)
@pytest.mark.parametrize("family", ["vit", "bert", "roberta"])
def test_fresh_graph_is_the_backbone(family, kind, images, text_batch):
    model = small_vit() if family == "vit" else small_text_model(family)
    inputs = (images,) if family == "vit" else ()
    kwargs = {} if family == "vit" else text_batch
    with torch.no_grad():
        expected = model(*inputs, **kwargs)
        got = AdapterGraph(model, KIND_EDGES[kind], rank=4)(*inputs, **kwargs)
    if family != "vit":
        expected, got = expected.logits, got.logits
    assert torch.equal(got, expected)


@pytest.mark.parametrize("kind", KIND_EDGES)
@pytest.mark.parametrize("adapter_kind", ["bottleneck", "linear"])
def test_vit_semantics_match_hand_written_forward(kind, adapter_kind, vit, images):
    graph = AdapterGraph(vit, KIND_EDGES[kind], rank=4, kind=adapter_kind)
    randomise(graph)
    with torch.no_grad():
        got = graph(images)
        expected = vit_with_adapters(vit, images, graph.edges, adapters_by_edge(graph))
        plain = vit(images)
    assert not torch.allclose(got, plain, atol=1e-3), "adapters should change the output"
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def _hand_written(family, model, batch, edges=(), adapters=None):
    """The reference forward of ``family``, with adapters (two passes) or without (one)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if family == "roberta":
        return roberta_with_adapters(model, ids, mask, edges, adapters) if adapters else roberta_forward(model, ids, mask)[0]
    types = batch.get("token_type_ids")
    if adapters:
        return bert_with_adapters(model, ids, mask, edges, adapters, token_type_ids=types)
    return bert_forward(model, ids, mask, token_type_ids=types)[0]


def _pair_batch(text_batch):
    """The text batch as sentence pairs: token type 1 from position 4 on (padding keeps 0)."""
    types = torch.zeros_like(text_batch["input_ids"])
    types[:, 4:] = 1
    return {**text_batch, "token_type_ids": types * text_batch["attention_mask"]}


@pytest.mark.parametrize("kind", KIND_EDGES)
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_post_ln_semantics_match_hand_written_forward(family, kind, text_batch):
    model = small_text_model(family)
    batch = _pair_batch(text_batch) if family == "bert" else text_batch
    graph = AdapterGraph(model, KIND_EDGES[kind], rank=4, activation="relu")
    randomise(graph, seed=3)
    with torch.no_grad():
        got = graph(**batch).logits
        plain = model(**batch).logits
        expected = _hand_written(family, model, batch, graph.edges, adapters_by_edge(graph))
    assert (got - plain).abs().max() > 1e-4  # 10x the tolerance below (RoBERTa's head gives small logits)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family, pairs", [("bert", False), ("bert", True), ("roberta", False)])
def test_reference_post_ln_encoders_match_hugging_face(family, pairs, text_batch):
    """The hand-written encoders are only valid references if, without adapters, they are BERT and
    RoBERTa: padding (RoBERTa's positions skip it), attention masks, token types; logits and
    every layer's output (node 2b + 2 is hidden state b + 1)."""
    model = small_text_model(family)
    batch = _pair_batch(text_batch) if pairs else text_batch
    forward = roberta_forward if family == "roberta" else bert_forward
    extra = {"token_type_ids": batch["token_type_ids"]} if pairs else {}
    with torch.no_grad():
        ours, nodes = forward(model, batch["input_ids"], batch["attention_mask"], **extra)
        theirs = model(**batch, output_hidden_states=True)
        if pairs:  # token types must matter here, or the pair case would test nothing
            assert not torch.allclose(model(**text_batch, output_hidden_states=True).hidden_states[-1],
                                      theirs.hidden_states[-1], atol=1e-2)
    torch.testing.assert_close(ours, theirs.logits, rtol=1e-5, atol=1e-5)
    for b, hidden in enumerate(theirs.hidden_states):
        torch.testing.assert_close(nodes[2 * b], hidden, rtol=1e-5, atol=1e-5, msg=f"hidden state {b}")


def test_24_parallel_adapters_equal_a_hand_written_parallel_adapter_vit(images):
    vit = small_vit(depth=12)
    graph = AdapterGraph(vit, placements.parallel_all(25), rank=4)
    hand = ParallelAdapterViT(vit, rank=4)
    randomise(graph, seed=5)
    with torch.no_grad():  # copy the graph's adapter weights into the hand-written model
        for b in range(12):
            for a, (i, j) in ((hand.attn_adapters[b], (2 * b, 2 * b + 1)),
                              (hand.mlp_adapters[b], (2 * b + 1, 2 * b + 2))):
                src = graph.adapter(i, j)
                a["norm"].load_state_dict(src.norm.state_dict())
                a["down"].weight.copy_(src.down.weight)
                a["up"].weight.copy_(src.up.weight)
                a.alpha.copy_(src.alpha)
    torch.testing.assert_close(graph(images), hand(images), rtol=1e-5, atol=1e-5)


def test_first_pass_can_be_handed_in(vit, images):
    graph = AdapterGraph(vit, KIND_EDGES["mix"], rank=4)
    randomise(graph)
    first = graph.compute_first_pass(images)
    assert sorted(first) == graph.recurrent_sources == [4, 6]
    with torch.no_grad():
        torch.testing.assert_close(graph(images, first_pass=first), graph(images), rtol=0, atol=0)
        # a wrong first pass must matter, or the argument would be ignored
        wrong = {i: torch.randn_like(t) for i, t in first.items()}  # (a constant shift would vanish in the adapter LN)
        assert not torch.allclose(graph(images, first_pass=wrong), graph(images))


def test_backbone_is_frozen_and_only_adapters_and_head_train(vit, images):
    graph = AdapterGraph(vit, [(0, 3), (4, 1)], rank=4)
    trainable = {n for n, p in graph.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in graph.named_parameters() if n.startswith(("adapters.", "model.head."))}
    graph.train()
    assert graph.training and not graph.model.training  # dropout stays off in the backbone
    loss = graph(images).logsumexp(-1).mean()
    loss.backward()
    assert graph.adapter(0, 3).up.weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in graph.model.named_parameters() if not n.startswith("head."))


def test_graph_properties_and_adapter_call(vit):
    graph = AdapterGraph(vit, [(0, 1), (2, 2)], rank=3, activation="identity")
    assert graph.num_nodes == 7
    assert graph.edges == [(0, 1), (2, 2)]
    a = graph.adapter(0, 1)
    assert a.down.weight.shape == (3, 32)
    assert torch.equal(a(torch.randn(2, 5, 32)), torch.zeros(2, 5, 32))  # zero-initialised
    assert len(list(graph.adapter_parameters())) == 2 * 5  # norm w/b, down, up, alpha
    with pytest.raises(ValueError, match=r"no adapter on edge \(1, 1\)"):
        graph.adapter(1, 1)


@pytest.mark.parametrize("family", ["vit", "bert", "roberta"])
@pytest.mark.parametrize("edges, node", [([(3, 5), (6, 4)], 4), ([(5, 6)], 6), ([(2, 2), (1, 4)], 2), ([(2, 5)], 4),
                                         ([(0, 4)], 4), ([(1, 6), (4, 3)], 2), ([(5, 3), (5, 6)], 2),
                                         ([(6, 6), (2, 6)], 6), ([(3, 2), (1, 2), (2, 2)], 2), ([], 6),
                                         ([(4, 0)], None)])
def test_skipping_the_frozen_prefix_gives_the_same_output(family, edges, node, images, text_batch):
    model = small_vit() if family == "vit" else small_text_model(family)
    args, kwargs = ((images,), {}) if family == "vit" else ((), text_batch)
    graph = AdapterGraph(model, edges, rank=4)
    randomise(graph)
    assert graph.prefix_node == node
    if node is None:
        with pytest.raises(ValueError, match="node 0"):
            graph(*args, prefix=torch.zeros(1), **kwargs)
        return
    # sources before the prefix come from the first pass; node 5 of [(5, 3), (5, 6)] must not
    # (an adapter changes it): the uncached pass is the reference for both. The pass starts from
    # z_node, the prefix node before its sub-layer closes it (post-LN: before the LayerNorm).
    cached, pre = graph.plain_pass(*args, nodes=graph.first_pass_sources(prefix=True), pre_nodes=[node], **kwargs)
    logits = lambda out: out if torch.is_tensor(out) else out.logits  # noqa: E731
    with torch.no_grad():
        full = logits(graph(*args, **kwargs))
        skipped = logits(graph(*args, first_pass=cached, prefix=pre[node], **kwargs))
        # the skipped blocks really are skipped: a wrong prefix changes the result
        wrong = logits(graph(*args, first_pass=cached, prefix=torch.randn_like(pre[node]), **kwargs))
    torch.testing.assert_close(skipped, full, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(wrong, full, atol=1e-3)
    assert len(graph.backbone.model.base_model.encoder.layer if family != "vit" else model.blocks) == 3


def test_the_pass_from_the_prefix_runs_only_the_blocks_after_it(vit, images):
    """An adapter into node 4 (block 1's output): the pass starts at block 2, the blocks before
    it never run, and the adapter is added to the cached z_4 at the start."""
    graph = AdapterGraph(vit, [(4, 4)], rank=2)
    randomise(graph)
    assert graph.prefix_node == 4
    _, pre = graph.plain_pass(images, pre_nodes=[4])
    calls = []
    handles = [block.register_forward_hook(lambda *_, b=b: calls.append(b)) for b, block in enumerate(vit.blocks)]
    try:
        with torch.no_grad():
            out = graph(images, prefix=pre[4])
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [2]
    with torch.no_grad():
        torch.testing.assert_close(out, graph(images), rtol=1e-5, atol=1e-6)


def test_the_plain_pass_pre_values(images, text_batch):
    """z_j is node j itself in a pre-LN ViT; in a post-LN BERT node j is LayerNorm(z_j)."""
    vit = small_vit()
    graph = AdapterGraph(vit, [], rank=2)
    nodes, pre = graph.plain_pass(images, nodes=[2, 4], pre_nodes=[2, 4])
    for j in (2, 4):
        torch.testing.assert_close(pre[j], nodes[j], rtol=0, atol=0)
    bert = AdapterGraph(small_text_model("bert"), [], rank=2)
    nodes, pre = bert.plain_pass(**text_batch, nodes=[2, 3], pre_nodes=[2, 3])
    layer = bert.model.base_model.encoder.layer[0]
    with torch.no_grad():
        torch.testing.assert_close(layer.output.LayerNorm(pre[2]), nodes[2])
        torch.testing.assert_close(bert.model.base_model.encoder.layer[1].attention.output.LayerNorm(pre[3]), nodes[3])
    assert not torch.allclose(pre[2], nodes[2])


def test_the_first_pass_stops_after_the_last_wanted_node(vit, images):
    graph = AdapterGraph(vit, [(6, 1)], rank=2)
    calls = []
    handles = [block.register_forward_hook(lambda *_, b=b: calls.append(b)) for b, block in enumerate(vit.blocks)]
    try:
        early = graph.compute_first_pass(images, nodes=[2])
        assert calls == [0]  # node 2 is block 1's input: blocks 1 and 2 never run
        calls.clear()
        late = graph.compute_first_pass(images, nodes=[2, 6])
        assert calls == [0, 1, 2]
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(early[2], late[2], rtol=0, atol=0)
