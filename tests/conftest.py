import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


def small_vit(depth=3, embed_dim=32, num_classes=5, seed=0):
    """A small timm ViT built from a config (no weights needed): n = 2 * depth + 1 nodes."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=embed_dim, depth=depth, num_heads=4,
                             mlp_ratio=2.0, num_classes=num_classes).eval()


def small_text_model(family="bert", layers=3, num_labels=3, seed=0):
    from transformers import (BertConfig, BertForSequenceClassification, RobertaConfig,
                              RobertaForSequenceClassification)

    torch.manual_seed(seed)
    kw = dict(vocab_size=60, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
              intermediate_size=64, num_labels=num_labels, attn_implementation="eager")
    if family == "bert":
        return BertForSequenceClassification(BertConfig(**kw)).eval()
    return RobertaForSequenceClassification(RobertaConfig(**kw, pad_token_id=1)).eval()


@pytest.fixture
def vit():
    return small_vit()


@pytest.fixture
def images():
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def text_batch():
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 60, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # a padded example: attention masks must be honoured
    ids[1, 6:] = 1
    return {"input_ids": ids, "attention_mask": mask}
