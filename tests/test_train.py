"""The training loop: determinism, the frozen-prefix cache, kill and resume, NaN, bad configs."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from adapter_placement.engine import lr_factor
from adapter_placement.train import (NonFiniteLossError, TrainConfig, batch_indices, select_lr,
                                     train)


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    """A small ViT pre-trained for a few steps on the embedded source task, saved as safetensors."""
    from adapter_placement.pretrain import PretrainConfig, pretrain_vit
    from adapter_placement.vit import save_pretrained_vit

    kwargs = dict(embed_dim=32, depth=3, num_heads=2)
    model, summary = pretrain_vit(PretrainConfig(steps=4, batch_size=16), vit_kwargs=kwargs, log=None)
    from adapter_placement.vit import DEFAULT_VIT_KWARGS

    return str(save_pretrained_vit(model, tmp_path_factory.mktemp("vit") / "vit.safetensors",
                                   {**DEFAULT_VIT_KWARGS, **kwargs}))


def config(model, tmp_path, **overrides):
    base = dict(dataset="digits_location", model=model, edges=[(2, 5), (6, 3), (4, 4)], rank=4, lr=0.05,
                steps=24, batch_size=16, eval_splits=("val",), checkpoint_every=5, progress=False,
                track=False, cache_dir=str(tmp_path / "cache"))
    return TrainConfig(**{**base, **overrides})


def test_a_cached_linear_probe_trains_the_head_on_the_last_node(tiny_vit, tmp_path):
    """A linear probe is the graph without adapters: with the cache, only the head runs."""
    lp = dict(method="linear_probe", edges=[])
    plain = train(config(tiny_vit, tmp_path, **lp), tmp_path / "plain")
    cached = train(config(tiny_vit, tmp_path, prefix_cache=True, **lp), tmp_path / "cached")
    assert cached["val_accuracy"] == pytest.approx(plain["val_accuracy"], abs=1e-9)
    assert cached["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-4)
    last = 2 * 3  # tiny_vit has 3 blocks
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*.pt")) == [f"pre{last}.pt"] * 2


def test_prefetching_the_cache_for_a_batch_takes_one_pass_per_split(tiny_vit, tmp_path, monkeypatch):
    """A batch of runs fills the cache together: the files each run needs, in one plain pass per
    split, equal to what each run computes on its own."""
    from adapter_placement import graph as graph_module
    from adapter_placement.train import prefetch_nodes

    edges = [[(2, 5)], [(6, 3)], [(4, 4), (1, 6)], [(5, 2)]]
    sizes = {"train": 300, "val": 60, "test": 60}
    cfgs = [config(tiny_vit, tmp_path, edges=e, prefix_cache=True, cache_dir=str(tmp_path / "together"),
                   data_sizes=sizes) for e in edges]
    passes = []
    plain_pass = graph_module.AdapterGraph.plain_pass
    monkeypatch.setattr(graph_module.AdapterGraph, "plain_pass",
                        lambda self, *a, **k: passes.append(1) or plain_pass(self, *a, **k))
    prefetch_nodes((cfg, tmp_path / f"run{k}") for k, cfg in enumerate(cfgs))
    assert len(passes) == 2 + 1  # batches of 256 (eval_batch_size): 2 of train, 1 of val
    together = {p.relative_to(tmp_path / "together"): p for p in (tmp_path / "together").rglob("*.pt")
                if p.parent.name != "tasks"}
    assert len(list((tmp_path / "together" / "tasks").glob("*.pt"))) == 1  # the task, rendered once
    # sources before the start (1, 2) and recurrent ones (5, 6); the starts z_2 and z_4
    assert sorted(p.name for p in together) == sorted(["node1.pt", "node2.pt", "node5.pt", "node6.pt", "pre2.pt", "pre4.pt"] * 2)
    monkeypatch.setattr(graph_module.AdapterGraph, "plain_pass", plain_pass)
    for e in edges:  # one by one into another folder: the same tensors
        train(config(tiny_vit, tmp_path, edges=e, prefix_cache=True, cache_dir=str(tmp_path / "alone"), steps=1,
                     data_sizes=sizes), tmp_path / f"alone-{e}")
    for rel, path in together.items():
        torch.testing.assert_close(torch.load(path), torch.load(tmp_path / "alone" / rel), rtol=0, atol=0)


def test_a_cache_made_from_other_examples_is_never_read(tiny_vit, tmp_path):
    """The cache folder of a split carries a digest of its examples and labels: a task whose
    construction changed (same name, same seed) gets a fresh folder."""
    import dataclasses

    from adapter_placement.cache import NodeCache
    from adapter_placement.data import load_task
    from adapter_placement.graph import AdapterGraph
    from adapter_placement.models import load_model

    loaded = load_model(tiny_vit, 16)
    task = load_task("digits_location", seed=0, sizes={"train": 40, "val": 10, "test": 10},
                     data_config=loaded.data_config)
    images, labels = task.splits["train"]
    changed = dataclasses.replace(task, splits={**task.splits, "train": (images, (labels + 1) % 16)})
    graph = AdapterGraph(loaded.model, [(4, 4)], rank=2)
    a, b = (NodeCache(graph, t, tmp_path, tiny_vit, 0) for t in (task, changed))
    assert a.path("train", "pre4") != b.path("train", "pre4")
    assert a.path("val", "pre4") == b.path("val", "pre4")
    assert a.path("train", "pre4") == NodeCache(graph, task, tmp_path, tiny_vit, 0).path("train", "pre4")


def test_same_seed_same_metrics(tiny_vit, tmp_path):
    a = train(config(tiny_vit, tmp_path), tmp_path / "a")
    b = train(config(tiny_vit, tmp_path), tmp_path / "b")
    c = train(config(tiny_vit, tmp_path, seed=1), tmp_path / "c")
    assert a["val_accuracy"] == b["val_accuracy"] and a["train_loss"] == b["train_loss"]
    assert c["train_loss"] != a["train_loss"]
    wa, wb = load_file(tmp_path / "a/adapters.safetensors"), load_file(tmp_path / "b/adapters.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not (tmp_path / "a/checkpoint.pt").exists()


def test_prefix_cache_gives_the_same_run(tiny_vit, tmp_path):
    plain = train(config(tiny_vit, tmp_path), tmp_path / "plain")
    cached = train(config(tiny_vit, tmp_path, prefix_cache=True), tmp_path / "cached")
    assert cached["val_accuracy"] == pytest.approx(plain["val_accuracy"], abs=1e-9)
    assert cached["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-4)
    files = sorted(p.name for p in (tmp_path / "cache").rglob("*.pt"))
    # the recurrent source (node 6) and the start of the pass (z_2: the first target is 3), 2 splits
    assert files == ["node6.pt", "node6.pt", "pre2.pt", "pre2.pt"]
    wa, wb = load_file(tmp_path / "plain/adapters.safetensors"), load_file(tmp_path / "cached/adapters.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def test_a_finished_run_is_never_redone(tiny_vit, tmp_path):
    first = train(config(tiny_vit, tmp_path, steps=6), tmp_path / "run")
    stamp = os.stat(tmp_path / "run/metrics.json").st_mtime_ns
    assert train(config(tiny_vit, tmp_path, steps=6), tmp_path / "run") == first
    assert os.stat(tmp_path / "run/metrics.json").st_mtime_ns == stamp


def _cli(model, tmp_path, out):
    return [sys.executable, "-m", "adapter_placement.train", "--dataset", "digits_location", "--model", model,
            "--edges", "2,5", "6,3", "4,4", "--rank", "4", "--lr", "0.05", "--steps", "60", "--batch-size", "16",
            "--checkpoint-every", "4", "--no-progress", "--no-track", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(out)]


def test_sigkill_and_restart_resumes_to_the_same_metrics(tiny_vit, tmp_path):
    reference = train(config(tiny_vit, tmp_path, steps=60, checkpoint_every=4), tmp_path / "reference")
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(tiny_vit, tmp_path, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # kill on an event the run writes, the first checkpoint (step 4 of 60, written atomically), at
    # once: no fixed sleep that a fast machine could outrun, 56 steps and the evaluation still to go
    deadline = time.time() + 240
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "no checkpoint written"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "killed too late to test a resume"
    done = torch.load(out / "checkpoint.pt", weights_only=True)["losses"]
    assert 0 < len(done) < 60
    subprocess.run(_cli(tiny_vit, tmp_path, out), check=True, stdout=subprocess.DEVNULL)
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["val_accuracy"] == reference["val_accuracy"]
    assert resumed["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-6)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_nan_loss_stops_the_run_and_writes_no_result(tiny_vit, tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"run .*nan: training loss is (nan|inf) at step \d+"):
        train(config(tiny_vit, tmp_path, lr=1e38, method="linear_probe", edges=[]), tmp_path / "nan")
    assert not (tmp_path / "nan/metrics.json").exists()


@pytest.mark.parametrize("overrides, match", [
    (dict(method="lora"), "unknown method 'lora'"),
    (dict(method="linear_probe"), "adapters need edges"),
    (dict(rank=0), "rank must be an integer >= 1, got 0"),
    (dict(lr=-1.0), "lr must be a positive number, got -1.0"),
    (dict(steps=0), "steps must be a positive integer, got 0"),
    (dict(train_split="dev"), "unknown split 'dev'"),
    (dict(edges=[(0, 99)]), r"edge \(0, 99\) is outside the nodes 0..6"),
    (dict(dataset="imagenet"), "unknown task 'imagenet'"),
])
def test_bad_configs_fail_before_training(tiny_vit, tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        train(config(tiny_vit, tmp_path, **overrides), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_missing_model_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m adapter_placement.pretrain --out .*nope.safetensors"):
        train(config(str(tmp_path / "nope.safetensors"), tmp_path), tmp_path / "x")


def test_schedules():
    # vision: linear warm-up then cosine to zero; text: linear decay to zero
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0)
    assert lr_factor(55, 100, 10, "linear") == pytest.approx(0.5)


def test_batches_are_a_function_of_seed_and_step():
    epoch = torch.cat([batch_indices(100, 30, seed=3, step=s) for s in range(3)])
    assert len(set(epoch.tolist())) == 90  # no example twice within an epoch
    assert torch.equal(batch_indices(100, 30, 3, 4), batch_indices(100, 30, 3, 4))
    assert not torch.equal(batch_indices(100, 30, 3, 0), batch_indices(100, 30, 3, 3))  # new epoch, new order


def test_length_grouped_batches_cover_the_epoch_and_are_padded_less():
    lengths = torch.randint(3, 12, (200,), generator=torch.Generator().manual_seed(0))
    epoch = [batch_indices(200, 16, seed=5, step=s, lengths=lengths) for s in range(12)]
    seen = torch.cat(epoch).tolist()
    assert len(seen) == 192 and len(set(seen)) == 192  # 12 full batches, no example twice
    assert all(torch.equal(a, batch_indices(200, 16, 5, s, lengths)) for s, a in enumerate(epoch))
    plain = [batch_indices(200, 16, seed=5, step=s) for s in range(12)]
    assert set(seen) == set(torch.cat(plain).tolist())  # the same examples this epoch, grouped
    padded = {name: sum(int(lengths[b].max()) for b in batches) / len(batches)
              for name, batches in (("grouped", epoch), ("random", plain))}
    assert padded["grouped"] < padded["random"] - 1.5
    lengths_in_order = [int(lengths[b].max()) for b in epoch]
    assert lengths_in_order != sorted(lengths_in_order)  # the epoch's batches are shuffled
    assert not torch.equal(batch_indices(200, 16, 5, 0, lengths), batch_indices(200, 16, 5, 12, lengths))


def test_text_evaluation_sees_every_example_once_in_order_of_length():
    from adapter_placement.data.tasks import InMemoryTask
    from adapter_placement.train import eval_batches

    mask = (torch.arange(6)[None, :] < torch.tensor([6, 2, 4, 3, 5, 2])[:, None]).long()
    ids = torch.arange(36).reshape(6, 6) * mask
    task = InMemoryTask("toy", "text", 6, {"test": ({"input_ids": ids, "attention_mask": mask}, torch.arange(6))})
    batches = list(eval_batches(task, "test", batch_size=2))
    assert [b["input_ids"].shape[1] for b, _, _ in batches] == [2, 4, 6]  # each cut to its own longest
    labels = torch.cat([y for _, y, _ in batches])
    assert sorted(labels.tolist()) == list(range(6))
    for batch, y, _ in batches:  # every example keeps its own label
        assert torch.equal(batch["input_ids"], ids[y][:, :batch["input_ids"].shape[1]])


def test_select_lr_by_mean_validation_accuracy():
    assert select_lr({1e-3: [0.5, 0.9], 1e-2: [0.7, 0.71], 1e-1: [0.2, 0.3]}) == 1e-2
    assert select_lr({1e-2: [0.5], 1e-3: [0.5]}) == 1e-3  # ties: the smaller lr


def test_streamed_batches_resume_where_they_left_off():
    """Paper-scale tasks are streamed epoch by epoch; a resumed run must see the same batches."""
    import itertools

    from adapter_placement.data import load_task
    from adapter_placement.train import training_batches

    class Streamed:  # a real embedded task, read only through the streaming interface
        def __init__(self, task):
            self.batches, self.split_sizes = task.batches, task.split_sizes

    task = Streamed(load_task("digits_location", seed=0, sizes={"train": 50, "val": 10, "test": 10}))
    cfg = TrainConfig(dataset="digits_location", model="x", edges=[(0, 1)], batch_size=16, steps=12)
    full = [labels for _, labels, _ in itertools.islice(training_batches(task, cfg, 0), 12)]
    resumed = [labels for _, labels, _ in itertools.islice(training_batches(task, cfg, 7), 5)]
    assert all(torch.equal(a, b) for a, b in zip(full[7:], resumed))
    assert not torch.equal(full[0], full[3])  # epoch 2 (3 batches an epoch) is reshuffled


def test_a_changed_config_moves_the_old_run_aside(tiny_vit, tmp_path):
    old = train(config(tiny_vit, tmp_path, steps=6), tmp_path / "run")
    # fields that do not change the result reuse it ...
    assert train(config(tiny_vit, tmp_path, steps=6, log_every=3, prefix_cache=True), tmp_path / "run") == old
    # ... any other change is a new run; the old one is kept beside it
    new = train(config(tiny_vit, tmp_path, steps=7), tmp_path / "run")
    assert new["steps"] == 7
    kept = json.loads((tmp_path / "run.superseded-1/metrics.json").read_text())
    assert kept == old
