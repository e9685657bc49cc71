import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module", autouse=True)
def no_tracking_uri_env():
    """A tracking server configured in the developer's shell must not capture the tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield


from adapter_placement.plan import config as _plan_config  # noqa: E402  (after the offline settings)

MEASURED_HOST_PRECISION = _plan_config.host_precision  # what auto_precision_is_fp32 replaces


@pytest.fixture(scope="module", autouse=True)
def auto_precision_is_fp32():
    """``precision: auto`` plans fp32 in the tests' own process: a plan must not depend on timings
    taken while tests run, nor write a measurement into a results folder of the working copy
    (tests/test_plan.py tests the real measurement, restoring ``host_precision``)."""
    from adapter_placement.plan import config

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "host_precision", lambda results, device, threads: "fp32")
        yield


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite MLflow store per test module, for the tests that do not test creating one (that takes seconds)."""
    from adapter_placement.tracking import init_store

    return init_store(str(tmp_path_factory.mktemp("store") / "mlflow.db"))


@pytest.fixture
def experiment(request: pytest.FixtureRequest) -> str:
    """An MLflow experiment of the module's store that belongs to this test alone."""
    return request.node.name


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
