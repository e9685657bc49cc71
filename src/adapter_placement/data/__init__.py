"""Transfer tasks for the adapter-placement experiments, at paper scale and as an offline default.

One entry point serves both scales::

    task = load_task("digits_count", seed=0)                  # embedded, in memory, offline
    task = load_task("clevr_count", data_dir=..., data_config=timm.data.resolve_data_config(model=vit))
    for inputs, labels in task.batches("train", 64, shuffle=True, seed=epoch_seed):
        ...

Every task is a ``tasks.Task``: ``name``, ``modality``, ``num_classes``, ``split_sizes``,
``batches(split, ...)``, ``tensors(split)`` and ``digest(split)`` over the splits ``train``, ``val``,
``test`` and ``train+val``. The modules:

=================  ======================================================================
``registry``       every task's spec and split rules (``EMBEDDED_TASKS``, ``TFDS_TASKS``),
                   ``TaskRegistry``; imports neither torch nor TensorFlow
``tasks``          the ``Task`` protocol, ``InMemoryTask`` and batching of tensors
``render``         the digit sources, canvas primitives and ``render_splits``
``digits``         the embedded vision tasks and the pre-training source task
``text``           the embedded VADER text tasks and the MiniLM tokenizer
``tfds_loader``    paper-scale tasks streamed from prepared tensorflow-datasets
=================  ======================================================================

Paper-scale datasets are prepared once with ``python -m adapter_placement.data prepare NAME
--data-dir DIR``; ``python -m adapter_placement.data list`` lists the tasks.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from .registry import EMBEDDED_TASKS, STAND_IN, TASKS, TFDS_TASKS, EmbeddedTaskSpec, TaskRegistry


def known_tasks(registry: TaskRegistry = TASKS) -> list[str]:
    return registry.names()


def num_classes_of(name: str, registry: TaskRegistry = TASKS) -> int:
    return registry.spec(name).num_classes


def load_task(name: str, *, seed: int = 0, data_dir: str | None = None, tokenizer=None,
              data_config: Mapping[str, Any] | None = None, sizes: Mapping[str, int] | None = None,
              num_workers: int | None = None, registry: TaskRegistry = TASKS, cache_dir: str | None = None):
    """A transfer task by name: embedded (an ``InMemoryTask``, offline) or paper scale (a
    ``TfdsTask``, streamed); both are ``tasks.Task``s.

    seed: fixes the embedded data (images, word splits) and the paper-scale seeded hold-outs; the
        batch order has its own seed in ``batches``.
    data_config: timm data config (input_size, mean, std, interpolation, crop_pct); required for
        paper-scale vision, defaults to ``EMBEDDED_VISION_DATA_CONFIG`` for embedded vision.
    tokenizer: the text model's tokenizer; required at paper scale, defaults to MiniLM's embedded.
    sizes: embedded only, {split: count} to shrink or grow a task.
    registry: where `name` is looked up (tests pass ``TASKS.with_task(...)``).
    cache_dir: embedded only, where the built splits are kept (``stored_splits``), so that the
        pipeline's jobs render a task once rather than once per job.
    """
    spec = registry.spec(name)
    if isinstance(spec, EmbeddedTaskSpec):
        return load_embedded_task(name, spec, seed=seed, tokenizer=tokenizer, data_config=data_config,
                                  sizes=sizes, cache_dir=cache_dir)
    from .tfds_loader import load_tfds_task

    return load_tfds_task(name, spec, seed=seed, data_dir=data_dir, tokenizer=tokenizer,
                          data_config=data_config, num_workers=num_workers)


def load_embedded_task(name: str, spec: EmbeddedTaskSpec, *, seed: int = 0, tokenizer=None,
                       data_config: Mapping[str, Any] | None = None,
                       sizes: Mapping[str, int] | None = None, cache_dir: str | None = None):
    from .render import EMBEDDED_VISION_DATA_CONFIG
    from .tasks import in_memory_task  # torch, only once a task is built
    from .text import minilm_tokenizer

    if spec.modality == "text":
        tokenizer = tokenizer or minilm_tokenizer()
        splits = stored_splits(name, seed, sizes, cache_dir, lambda: spec.build(seed, tokenizer, sizes),
                               tokenizer=getattr(tokenizer, "name_or_path", type(tokenizer).__name__))
        return in_memory_task(name, "text", spec.num_classes, splits)
    splits = stored_splits(name, seed, sizes, cache_dir, lambda: spec.build(seed, sizes))
    return in_memory_task(name, "vision", spec.num_classes, splits, data_config or EMBEDDED_VISION_DATA_CONFIG)


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """A digest of this package's source: the builders' output is a function of it (and of the
    seed, sizes and tokenizer), so stored splits of other code are never read."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def stored_splits(name: str, seed: int, sizes, cache_dir: str | None, build, tokenizer: str = "") -> dict:
    """The splits ``build()`` returns, read from ``cache_dir/tasks`` when an earlier job stored them
    (a 3,000-image stand-in takes up to 7 s to render, as long as a job's imports); without a
    ``cache_dir``, built. Keyed by task, seed, sizes, tokenizer and the data code (``_code_digest``);
    written atomically, so jobs that build the same splits at once leave one whole file."""
    if cache_dir is None:
        return build()
    import numpy as np
    import torch

    from .. import atomic

    key = json.dumps({"sizes": sizes, "tokenizer": tokenizer, "code": _code_digest()}, sort_keys=True)
    path = Path(cache_dir) / "tasks" / f"{name}-seed{seed}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"
    if path.exists():
        stored = torch.load(path, weights_only=True)
        return {split: (inputs if isinstance(inputs, dict) else inputs.numpy(), labels.numpy())
                for split, (inputs, labels) in stored.items()}
    splits = build()
    atomic.torch_save(path, {split: (inputs if isinstance(inputs, dict) else torch.from_numpy(np.ascontiguousarray(inputs)),
                                     torch.from_numpy(np.ascontiguousarray(labels)))
                             for split, (inputs, labels) in splits.items()})
    return splits


def prepare_tfds_dataset(name: str, data_dir: str | None = None, registry: TaskRegistry = TASKS) -> str:
    """Download and prepare a paper-scale dataset (task or tfds name); returns its folder."""
    from .tfds_loader import prepare_dataset

    return prepare_dataset(registry.tfds[name].tfds_name if name in registry.tfds else name, data_dir)


__all__ = ["EMBEDDED_TASKS", "STAND_IN", "TASKS", "TFDS_TASKS", "TaskRegistry", "known_tasks", "load_task",
           "num_classes_of", "prepare_tfds_dataset"]
