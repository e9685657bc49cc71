"""The paper-scale tfds loader off the training loop: read-ahead thread, resumable skips, pinning.

A tiny iNat-style tfds dataset (JPEG images of varying size, a seeded 1% style hold-out) is prepared
offline in a temporary folder, as tests/test_data.py does for the other tasks.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import time

import numpy as np
import pytest
import torch

from adapter_placement import data
from adapter_placement.data import registry, tfds_loader

CONFIG = {"input_size": (3, 32, 32), "interpolation": "bicubic", "mean": (0.5, 0.5, 0.5),
          "std": (0.5, 0.5, 0.5), "crop_pct": 0.9, "crop_mode": "center"}


TINY = data.TASKS.with_task("test_inat", dataclasses.replace(
    data.TFDS_TASKS["inat2018"], tfds_name="test_i_nat", num_classes=7,
    splits=registry.HoldoutSplits(0.1, "validation")))


@pytest.fixture(scope="module")
def inat(tmp_path_factory):
    _, tfds = tfds_loader.import_tensorflow()
    features = tfds.features

    class TestINat(tfds.core.GeneratorBasedBuilder):  # registered as "test_i_nat"
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=features.FeaturesDict({
                "id": features.Text(), "label": features.ClassLabel(num_classes=7),
                "image": features.Image(shape=(None, None, 3), encoding_format="jpeg")}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 120), "validation": self._generate_examples(1000, 20)}

        def _generate_examples(self, offset, count):
            for i in range(offset, offset + count):
                image = np.random.default_rng(i).integers(0, 256, (30 + i % 9, 40 - i % 5, 3), np.uint8)
                yield i, {"id": str(i), "label": i % 7, "image": image}

    root = str(tmp_path_factory.mktemp("tfds"))
    data.prepare_tfds_dataset("test_inat", root, TINY)
    return data.load_task("test_inat", data_dir=root, data_config=CONFIG, num_workers=2, registry=TINY)


def _labels_and_sums(batches):
    """What identifies a batch: its labels and each image's pixel sum."""
    return [(y.tolist(), x.sum(dim=(1, 2, 3)).tolist()) for x, y in batches]


def _read_ahead_threads():
    return [t for t in threading.enumerate() if t.name == "tfds-read-ahead"]


def test_read_ahead_gives_the_batches_of_the_plain_loop_in_order(inat):
    kwargs = dict(shuffle=True, seed=5, drop_last=True)
    ahead = _labels_and_sums(inat.batches("train", 16, **kwargs))
    plain = _labels_and_sums(inat.batches("train", 16, prefetch=False, **kwargs))
    assert len(ahead) == 108 // 16 and ahead == plain
    assert ahead == _labels_and_sums(inat.batches("train", 16, **kwargs))  # a function of the seed
    assert ahead != _labels_and_sums(inat.batches("train", 16, shuffle=True, seed=6, drop_last=True))


@pytest.mark.parametrize("drop_last", [True, False])
def test_skip_batches_resumes_the_same_stream(inat, drop_last):
    kwargs = dict(shuffle=True, seed=3, drop_last=drop_last)
    full = _labels_and_sums(inat.batches("train", 10, **kwargs))
    assert _labels_and_sums(inat.batches("train", 10, skip_batches=4, **kwargs)) == full[4:]
    assert _labels_and_sums(inat.batches("train", 10, skip_batches=len(full), **kwargs)) == []


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_skip_batches_is_named_before_any_work(inat, bad):
    with pytest.raises(ValueError, match=f"skip_batches.*{bad!r}"):
        inat.batches("train", 10, skip_batches=bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_pinning_without_cuda_says_so(inat):
    with pytest.raises(ValueError, match=r"pin_memory=True.*torch.cuda.is_available\(\) is False"):
        inat.batches("train", 10, pin_memory=True)
    x, _ = next(inat.batches("train", 10))  # auto: no CUDA, no pinning
    assert not x.is_pinned()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_batches_are_pinned_when_cuda_is_there(inat):
    x, y = next(inat.batches("train", 10))
    assert x.is_pinned() and y.is_pinned() and x.device.type == "cpu"


def test_read_ahead_makes_items_before_they_are_asked_for():
    made = []

    def items():
        for i in range(10):
            made.append(i)
            yield i

    stream = tfds_loader.read_ahead(items, depth=3)
    assert made == [] and not _read_ahead_threads()  # nothing starts before the first next()
    assert next(stream) == 0
    deadline = time.monotonic() + 10
    while len(made) < 4 and time.monotonic() < deadline:  # 1 taken + 3 waiting in the queue
        time.sleep(0.01)
    assert len(made) >= 4
    assert list(stream) == list(range(1, 10))


def test_an_abandoned_stream_stops_its_thread(inat):
    stream = inat.batches("train", 4, shuffle=True, seed=0)
    first = list(itertools.islice(stream, 2))
    assert len(first) == 2 and _read_ahead_threads()
    stream.close()
    assert not _read_ahead_threads()


def test_read_ahead_raises_the_producers_error_in_the_consumer():
    def items():
        yield 1
        raise KeyError("broken record 7")

    stream = tfds_loader.read_ahead(items)
    assert next(stream) == 1
    with pytest.raises(KeyError, match="broken record 7"):
        next(stream)
    assert not _read_ahead_threads()


def test_a_resumed_run_reads_the_same_tfds_batches(inat):
    """train.training_batches skips inside the tfds pipeline (before decoding) for tfds tasks."""
    from adapter_placement.train import TrainConfig, training_batches

    cfg = TrainConfig(dataset="test_inat", model="x", edges=[(0, 1)], batch_size=16, steps=14)
    assert inat.split_sizes[cfg.train_split] // 16 == 6  # 6 batches an epoch: step 7 is epoch 2's second

    def steps(first, count):
        return [(x.sum().item(), y.tolist()) for x, y, _ in itertools.islice(training_batches(inat, cfg, first), count)]

    full = steps(0, 14)
    assert steps(7, 7) == full[7:] and steps(6, 1) == full[6:7]
    assert full[0] != full[6]  # the second epoch is reshuffled


def test_default_workers_are_the_cpus_the_job_may_use(inat, monkeypatch):
    monkeypatch.setattr(tfds_loader.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert tfds_loader.usable_cpus() == 3  # a SLURM allocation of 3 CPUs on a larger node
    root = os.path.dirname(os.path.dirname(inat.builder.data_dir))  # root/test_i_nat/1.0.0
    task = data.load_task("test_inat", data_dir=root, data_config=CONFIG, registry=TINY)
    assert task.num_workers == 3
