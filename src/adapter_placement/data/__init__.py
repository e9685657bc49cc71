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
from .registry import (EMBEDDED_TASKS, STAND_IN, TASKS, TFDS_TASKS, TaskRegistry, known_tasks, load_task,
                       num_classes_of, prepare_tfds_dataset)

__all__ = ["EMBEDDED_TASKS", "STAND_IN", "TASKS", "TFDS_TASKS", "TaskRegistry", "known_tasks", "load_task",
           "num_classes_of", "prepare_tfds_dataset"]
