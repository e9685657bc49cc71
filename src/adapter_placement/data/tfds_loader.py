"""Paper-scale tasks streamed from prepared tensorflow-datasets (TensorFlow imported lazily, only here).

``registry`` says what each dataset and split is (``TFDS_TASKS``); this module reads them: images are
decoded and preprocessed in TensorFlow as the timm model's data config says, text is tokenised by the
model's tokenizer, and batches reach the training loop as torch tensors made (and pinned) ahead of it
by a background thread (``read_ahead``). A dataset that is not on disk fails at once with the command
that prepares it, before TensorFlow is imported.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from .registry import TfdsTaskSpec, VtabSplits, check_split, holdout_indices, vtab_split_string
from .tasks import Inputs, SplitDigests, concat_inputs
from .text import tokenize

TF_THREADS_ENV = "ADAPTER_PLACEMENT_TF_THREADS"
READ_AHEAD_BATCHES = 4  # torch batches converted (and pinned) ahead of the training loop
# Parallel decode + resize calls by default: every CPU the job may use (images are the bottleneck
# of a GPU run, see benchmarks/README.md), within a bound for unrestricted many-core hosts.
MAX_LOADER_WORKERS = 32


def usable_cpus() -> int:
    """CPUs this process may run on: a SLURM job's allocation, not the whole node's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_pin_memory(pin_memory: bool | None) -> bool:
    """None: pin when CUDA is available (page-locked batches let the trainer's copy be asynchronous)."""
    if pin_memory is None:
        return torch.cuda.is_available()
    if pin_memory and not torch.cuda.is_available():
        raise ValueError(f"pin_memory={pin_memory!r}, but torch.cuda.is_available() is False: "
                         "page-locked memory needs CUDA")
    return bool(pin_memory)


def pin_inputs(inputs: Inputs) -> Inputs:
    if isinstance(inputs, Mapping):
        return {key: value.pin_memory() for key, value in inputs.items()}
    return inputs.pin_memory()


def read_ahead(make_items: Callable[[], Iterator], depth: int = READ_AHEAD_BATCHES) -> Iterator:
    """The items of ``make_items()`` in their order, produced by a background thread up to `depth` ahead.

    tf.data already decodes and resizes in its own threads; this thread also takes the conversion to
    torch, tokenisation and pinning out of the training loop (torch kernels release the GIL). The
    thread starts at the first ``next`` and stops when the generator is closed or collected (a
    ``break``, an ``islice``), so an abandoned iterator leaves no thread behind.
    """
    import queue
    import threading

    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message) -> bool:
        while not stop.is_set():
            try:
                ready.put(message, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce():
        try:
            for item in make_items():
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as error:  # re-raised in the consumer's thread
            put(("error", error))

    thread = threading.Thread(target=produce, name="tfds-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = ready.get()
            if kind == "error":
                raise item
            if kind == "end":
                return
            yield item
    finally:
        stop.set()
        thread.join()  # at most the batch being made: the thread checks `stop` between batches


def default_tfds_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


class DatasetNotPreparedError(FileNotFoundError):
    """A paper-scale dataset is not on disk; the message says how to prepare it."""


def not_prepared_message(task: str, tfds_name: str, data_dir: str) -> str:
    return (f"dataset {tfds_name!r} (task {task!r}) is not prepared in {data_dir} "
            f"(looked for {os.path.join(data_dir, *tfds_name.split(':')[0].split('/'))}). "
            f"Prepare it once (downloads the data; some datasets need a manual download, see the tfds "
            f"catalog) with:\n  python -m adapter_placement.data prepare {task} --data-dir {data_dir}")


@functools.lru_cache(maxsize=1)
def import_tensorflow():
    """TensorFlow and tfds, configured to stay quiet, off the GPU and within a few CPU threads.

    torchvision is imported first: the other order crashes the interpreter (seen with torch 2.13,
    torchvision 0.28 and tensorflow-cpu 2.21).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:  # importing torchvision (timm does) *after* TensorFlow segfaults with these wheels
        import torchvision  # noqa: F401
    except ImportError:
        pass
    import tensorflow as tf
    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    threads = int(os.environ.get(TF_THREADS_ENV, min(4, usable_cpus())))
    try:  # only possible before TensorFlow starts its runtime
        tf.config.set_visible_devices([], "GPU")  # leave accelerators to torch
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass
    tfds.disable_progress_bar()
    return tf, tfds


def prepared_builder(task: str, spec: TfdsTaskSpec, data_dir: str | None):
    """The tfds builder of a prepared dataset, or DatasetNotPreparedError before any heavy work.

    A missing dataset folder is caught before TensorFlow is even imported.
    """
    root = data_dir or default_tfds_data_dir()
    if not os.path.isdir(os.path.join(root, *spec.tfds_name.split(":")[0].split("/"))):
        raise DatasetNotPreparedError(not_prepared_message(task, spec.tfds_name, root))
    _, tfds = import_tensorflow()
    try:
        builder = tfds.builder(spec.tfds_name, data_dir=root)
    except Exception as error:  # tfds raises its own not-found errors for unknown or partial datasets
        raise DatasetNotPreparedError(not_prepared_message(task, spec.tfds_name, root)) from error
    if not builder.is_prepared():
        raise DatasetNotPreparedError(not_prepared_message(task, spec.tfds_name, root))
    return builder


def read_split(builder, split_string: str, keep_images_encoded: bool = False):
    """A tfds split in its canonical on-disk order (the order hold-out indices refer to).

    With `keep_images_encoded`, "image" stays the encoded bytes: decode after filtering and
    shuffling, so that a 1% hold-out does not decode the other 99%.
    """
    _, tfds = import_tensorflow()
    decoders = {"image": tfds.decode.SkipDecoding()} if keep_images_encoded else None
    return builder.as_dataset(split=split_string, shuffle_files=False, decoders=decoders,
                              read_config=tfds.ReadConfig(interleave_cycle_length=1))


def tfds_raw_split(builder, spec: TfdsTaskSpec, split: str, seed: int = 0):
    """The feature dicts of one split as a tf.data.Dataset; vision images still encoded."""
    tf, _ = import_tensorflow()
    check_split(split)
    rule = spec.splits
    encoded = spec.modality == "vision"
    num_source = builder.info.splits[rule.source_split].num_examples
    if isinstance(rule, VtabSplits):
        return read_split(builder, vtab_split_string(rule, split, num_source), encoded)
    if split == "test":
        return read_split(builder, rule.test_split, encoded)
    source = read_split(builder, rule.source_split, encoded)
    if split == "train+val":
        return source
    is_val = np.zeros(num_source, bool)
    is_val[holdout_indices(num_source, rule.val_fraction, seed)] = True
    is_val, want_val = tf.constant(is_val), split == "val"
    return (source.enumerate()
            .filter(lambda i, features: tf.equal(tf.gather(is_val, i), want_val))
            .map(lambda i, features: features))


def tfds_split_sizes(builder, spec: TfdsTaskSpec, seed: int = 0) -> dict[str, int]:
    rule = spec.splits
    num_source = builder.info.splits[rule.source_split].num_examples
    if isinstance(rule, VtabSplits):
        test = builder.info.splits[vtab_split_string(rule, "test", num_source)].num_examples
        return {"train": rule.num_train, "val": rule.num_val, "test": test,
                "train+val": rule.num_train + rule.num_val}
    num_val = len(holdout_indices(num_source, rule.val_fraction, seed))
    return {"train": num_source - num_val, "val": num_val,
            "test": builder.info.splits[rule.test_split].num_examples, "train+val": num_source}


TF_RESIZE_METHOD = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest",
                    "lanczos": "lanczos3", "area": "area"}


def eval_resize_rule(data_config: Mapping[str, Any]) -> tuple[str, tuple[int, int] | int]:
    """How timm's eval transform resizes before its centre crop (torchvision ``Resize`` semantics).

    ("squash", (h, w)): both sides to size / crop_pct; ("shorter", s): the shorter side to s, keeping
    the aspect ratio. timm's "border" mode and non-square centre crops are not implemented.
    """
    _, out_h, out_w = data_config["input_size"]
    crop_pct = data_config.get("crop_pct") or 0.875
    scale_h, scale_w = int(np.floor(out_h / crop_pct)), int(np.floor(out_w / crop_pct))
    mode = data_config.get("crop_mode") or "center"
    if mode == "squash":
        return "squash", (scale_h, scale_w)
    if mode != "center" or scale_h != scale_w:
        raise NotImplementedError(f"crop_mode {mode!r} with input_size {data_config['input_size']}")
    return "shorter", scale_h


def tf_preprocess_image(image, data_config: Mapping[str, Any], fit: str):
    """uint8 HWC -> float32 CHW, resized/cropped as `fit` says and normalised by the data config.

    "timm_eval" mirrors ``timm.data.create_transform(**data_config)`` (resize shorter side to
    size / crop_pct, centre crop); "resize" maps the whole image to the input size (VTAB).
    """
    tf, _ = import_tensorflow()
    _, out_h, out_w = data_config["input_size"]
    method = TF_RESIZE_METHOD[data_config.get("interpolation", "bilinear")]
    x = tf.cast(image, tf.float32)
    if fit == "resize":
        x = tf.image.resize(x, (out_h, out_w), method=method, antialias=True)
    elif fit == "timm_eval":
        rule, target = eval_resize_rule(data_config)
        if rule == "squash":
            x = tf.image.resize(x, target, method=method, antialias=True)
        else:
            short = target
            height, width = tf.shape(x)[0], tf.shape(x)[1]
            long_side = tf.cast(tf.cast(tf.maximum(height, width), tf.float32) * short
                                / tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
            size = tf.cond(height <= width, lambda: tf.stack([short, long_side]),
                           lambda: tf.stack([long_side, short]))
            x = tf.image.resize(x, size, method=method, antialias=True)
        height, width = tf.shape(x)[0], tf.shape(x)[1]
        top = tf.cast(tf.round(tf.cast(height - out_h, tf.float32) / 2.0), tf.int32)
        left = tf.cast(tf.round(tf.cast(width - out_w, tf.float32) / 2.0), tf.int32)
        x = x[top:top + out_h, left:left + out_w, :]
    else:
        raise ValueError(f"unknown image_fit {fit!r}; expected 'timm_eval' or 'resize'")
    x = tf.clip_by_value(x, 0.0, 255.0) / 255.0
    x = (x - tf.constant(data_config["mean"], tf.float32)) / tf.constant(data_config["std"], tf.float32)
    return tf.ensure_shape(tf.transpose(x, [2, 0, 1]), (3, out_h, out_w))


@dataclass
class TfdsTask(SplitDigests):
    """A paper-scale task streamed from a prepared tfds dataset; batches are torch tensors."""

    name: str
    modality: str
    num_classes: int
    spec: TfdsTaskSpec
    builder: Any = field(repr=False)
    seed: int = 0
    tokenizer: Any = field(default=None, repr=False)
    data_config: Mapping[str, Any] | None = None
    num_workers: int = 4
    shuffle_buffer: int = 10_000
    _digests: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def split_sizes(self) -> dict[str, int]:
        return tfds_split_sizes(self.builder, self.spec, self.seed)

    def raw(self, split: str):
        return tfds_raw_split(self.builder, self.spec, split, self.seed)

    def _examples(self, features):
        """features -> (model input fields..., label), still in TensorFlow."""
        tf, _ = import_tensorflow()
        label = (self.spec.label_fn(features) if self.spec.label_fn
                 else tf.cast(features["label"], tf.int64))
        if self.modality == "vision":
            features = {**features, "image": self.builder.info.features["image"].decode_example(
                features["image"])}
            image = self.spec.image_fn(features) if self.spec.image_fn else features["image"]
            return tf_preprocess_image(image, self.data_config, self.spec.image_fit), label
        return tuple(features[key] for key in self.spec.input_keys) + (label,)

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False, skip_batches: int = 0, pin_memory: bool | None = None,
                prefetch: bool = True) -> Iterator[tuple[Inputs, torch.Tensor]]:
        """Batches in an order that is a function of `seed` alone (when shuffling).

        Decoding and resizing run in tf.data's `num_workers` threads, in order (deterministic), and
        with `prefetch` the next batches are made while the caller trains: tf.data prefetches
        decoded batches and a background thread converts them to torch (``read_ahead``).
        skip_batches: start after that many batches (a resumed run) without decoding them.
        pin_memory: page-locked CPU tensors for an asynchronous copy to CUDA; None: when CUDA is
        available. The tensors stay on the CPU: the trainer moves each batch to its device.
        """
        if isinstance(skip_batches, bool) or not isinstance(skip_batches, int) or skip_batches < 0:
            raise ValueError(f"skip_batches must be an int >= 0, got {skip_batches!r}")
        pin = resolve_pin_memory(pin_memory)
        tf, tfds = import_tensorflow()
        data = self.raw(split)
        if shuffle:
            data = data.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
        # whole batches of the same shuffled stream: the order after the skip is unchanged
        data = data.skip(skip_batches * batch_size)
        options = tf.data.Options()
        options.threading.private_threadpool_size = self.num_workers
        options.deterministic = True
        data = (data.map(self._examples, num_parallel_calls=self.num_workers, deterministic=True)
                .batch(batch_size, drop_remainder=drop_last))
        if prefetch:
            data = data.prefetch(tf.data.AUTOTUNE)
        else:  # the synchronous baseline of bench_loader.py: tf.data would otherwise read ahead by
            # itself (an injected prefetch; a fused map-and-batch that makes whole batches ahead)
            options.autotune.enabled = False
            options.experimental_optimization.inject_prefetch = False
            options.experimental_optimization.map_and_batch_fusion = False
        data = data.with_options(options)

        def torch_batches():
            for batch in tfds.as_numpy(data):
                inputs, labels = self._to_torch(batch)
                yield (pin_inputs(inputs), labels.pin_memory()) if pin else (inputs, labels)

        return read_ahead(torch_batches) if prefetch else torch_batches()

    def _to_torch(self, batch) -> tuple[Inputs, torch.Tensor]:
        labels = torch.from_numpy(np.asarray(batch[-1], np.int64))
        if self.modality == "vision":
            return torch.from_numpy(batch[0]), labels
        texts = [[t.decode("utf-8") for t in column] for column in batch[:-1]]
        return tokenize(self.tokenizer, *texts, max_length=self.spec.max_length), labels

    def tensors(self, split: str) -> tuple[Inputs, torch.Tensor]:
        """The whole split in memory (sensible for VTAB-1k and GLUE, not for iNat18 / Places365)."""
        parts = list(self.batches(split, 1024, pin_memory=False))  # concatenated anyway
        return concat_inputs([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def load_tfds_task(name: str, spec: TfdsTaskSpec, *, seed: int = 0, data_dir: str | None = None,
                   tokenizer=None, data_config: Mapping[str, Any] | None = None,
                   num_workers: int | None = None) -> TfdsTask:
    if spec.modality == "vision" and data_config is None:
        raise ValueError(f"task {name!r} needs data_config, e.g. "
                         "timm.data.resolve_data_config(model=model)")
    if spec.modality == "text" and tokenizer is None:
        raise ValueError(f"task {name!r} needs the model's tokenizer")
    builder = prepared_builder(name, spec, data_dir)
    workers = num_workers or min(MAX_LOADER_WORKERS, usable_cpus())
    return TfdsTask(name, spec.modality, spec.num_classes, spec, builder, seed, tokenizer,
                    dict(data_config) if data_config else None, workers)


def prepare_dataset(tfds_name: str, data_dir: str | None = None) -> str:
    """Download and prepare a tfds dataset; returns its folder."""
    _, tfds = import_tensorflow()
    builder = tfds.builder(tfds_name, data_dir=data_dir or default_tfds_data_dir())
    builder.download_and_prepare()
    return builder.data_dir
