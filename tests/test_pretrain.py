"""Tests of adapter_placement.pretrain: a few steps of real pre-training, saving and loading."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import timm.data
import torch

from adapter_placement import pretrain, vit
from adapter_placement.data.render import EMBEDDED_VISION_DATA_CONFIG

TINY = pretrain.PretrainConfig(steps=3, batch_size=16, seed=0)
SMALL_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2}  # keeps the loop tests to seconds


def run(config=TINY, **kwargs):
    return pretrain.pretrain_vit(config, vit_kwargs=SMALL_VIT, log=None, **kwargs)


@pytest.fixture(scope="module")
def tiny_run():
    return run()


def test_warmup_cosine_rises_then_decays_to_zero():
    from adapter_placement.engine import lr_factor  # pre-training uses the engine's schedule

    values = [lr_factor(step, 100, 10, "cosine") for step in range(101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))
    assert values[100] == pytest.approx(0.0, abs=1e-12)


def test_default_vit_is_a_small_pre_ln_vit_with_a_class_token():
    model = vit.build_vit()
    assert len(model.blocks) == 6 and model.embed_dim == 64 and model.cls_token is not None
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert model.patch_embed.num_patches == 16  # 8x8 patches: 17 tokens with the class token


def test_pretraining_is_deterministic_for_a_seed(tiny_run):
    model, summary = tiny_run
    again, _ = run()
    other, _ = run(pretrain.PretrainConfig(steps=3, batch_size=16, seed=1))
    for (name, a), b, c in zip(model.state_dict().items(), again.state_dict().values(),
                               other.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(model.pos_embed, other.pos_embed)
    assert len(summary["losses"]) == 3 and 0.0 <= summary["source_heldout_accuracy"] <= 1.0


def test_pretraining_does_not_touch_the_callers_random_state(tiny_run):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run(pretrain.PretrainConfig(steps=1, batch_size=4))
    assert torch.equal(torch.rand(3), expected)


def test_training_loop_fits_a_fixed_source_batch(monkeypatch):
    """Optimiser, schedule and gradients are wired up: one repeated batch gets memorised."""
    fixed = pretrain.SourceTask(seed=0).batch(32)
    monkeypatch.setattr(pretrain.SourceTask, "batch", lambda self, batch_size: fixed)
    _, summary = run(pretrain.PretrainConfig(steps=40, batch_size=32, lr=3e-3, warmup_steps=4))
    assert summary["losses"][0] > 2.0 and np.mean(summary["losses"][-5:]) < 0.8 * summary["losses"][0]


def test_source_batches_are_fresh_and_held_out_set_is_fixed():
    source = pretrain.SourceTask(seed=0)
    (a, _), (b, _) = source.batch(8), source.batch(8)
    assert a.shape == (8, 3, 32, 32) and not torch.equal(a, b)
    (h1, y1), (h2, y2) = source.heldout(), pretrain.SourceTask(seed=5).heldout()
    assert torch.equal(h1, h2) and torch.equal(y1, y2) and len(y1) == 600


def test_save_and_load_round_trip_with_a_fresh_zero_head(tiny_run, tmp_path):
    model, summary = tiny_run
    path = tmp_path / "vit" / "vit.safetensors"
    kwargs = {**vit.DEFAULT_VIT_KWARGS, **SMALL_VIT}
    vit.save_pretrained_vit(model, path, kwargs, {"source_heldout_accuracy": 0.5})
    assert sorted(os.listdir(path.parent)) == ["vit.json", "vit.safetensors"]  # no temporary files left
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    record = json.loads(vit.config_path(path).read_text())
    assert record["model_kwargs"] == {**vit.DEFAULT_VIT_KWARGS, **SMALL_VIT}
    assert record["pretraining"]["source_heldout_accuracy"] == 0.5

    images = torch.randn(4, 3, 32, 32)
    same = vit.load_pretrained_vit(path)
    assert torch.equal(same(images), model(images))
    loaded = vit.load_pretrained_vit(path, num_classes=8)
    assert loaded.head.weight.shape == (8, 32) and not loaded.head.weight.any() and not loaded.head.bias.any()
    assert torch.equal(loaded.forward_features(images), model.forward_features(images))
    assert not loaded.training
    config = timm.data.resolve_data_config(model=loaded)
    assert config["input_size"] == (3, 32, 32)
    assert tuple(config["mean"]) == tuple(EMBEDDED_VISION_DATA_CONFIG["mean"])


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    from adapter_placement.atomic import atomic_path

    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "w.safetensors") as target:
            with open(target, "w") as handle:
                handle.write("half")
            raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == []


def test_command_line_writes_weights_and_config(tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    assert pretrain.main(["--out", str(out), "--steps", "1", "--batch-size", "4", "--seed", "3"]) == 0
    record = json.loads(vit.config_path(out).read_text())
    assert record["pretraining"]["config"]["steps"] == 1 and record["pretraining"]["config"]["seed"] == 3
    assert "losses" not in record["pretraining"]
    assert vit.load_pretrained_vit(out, num_classes=3)(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    assert "saved" in capsys.readouterr().out


# ------------------------------------------------------------------ the committed pre-trained ViT

COMMITTED = os.path.join(os.path.dirname(__file__), "..", "models", "vit_digits.safetensors")


@pytest.fixture(scope="module")
def committed_record():
    with open(vit.config_path(COMMITTED)) as handle:
        return json.load(handle)


def test_committed_vit_has_the_recorded_held_out_accuracy(committed_record):
    """Re-evaluating the committed weights on the held-out digits gives what the record says: the
    file and its JSON belong together."""
    torch.set_num_threads(1)
    model = vit.load_pretrained_vit(COMMITTED)
    recorded = committed_record["pretraining"]["source_heldout_accuracy"]
    images, labels = pretrain.SourceTask(seed=0).heldout()
    # another CPU's float rounding may flip a near-tie: two of the 600 examples at most
    assert pretrain.accuracy(model, images, labels) == pytest.approx(recorded, abs=2 / len(labels) + 1e-9)


def test_committed_vit_reaches_the_issues_source_accuracy(committed_record):
    assert committed_record["pretraining"]["source_heldout_accuracy"] >= 0.95


def test_committed_vit_was_made_from_todays_source_data_and_the_configs_recipe(committed_record):
    import yaml

    assert committed_record["pretraining"]["data_digest"] == pretrain.SourceTask(seed=0).digest()
    with open(os.path.join(os.path.dirname(__file__), "..", "config.yaml")) as handle:
        entry = yaml.safe_load(handle)["models"]["vit"]
    assert entry["spec"] == "models/vit_digits.safetensors"
    recipe = committed_record["pretraining"]["config"]
    assert {key: recipe[key] for key in entry["pretrain"]} == entry["pretrain"]
    assert committed_record["model_kwargs"] == vit.DEFAULT_VIT_KWARGS


def test_source_digest_changes_with_the_source_digits():
    source = pretrain.SourceTask(seed=0)
    before = source.digest()
    source.train_labels = source.train_labels[::-1].copy()
    assert source.digest() != before
