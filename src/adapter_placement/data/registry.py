"""The task registry: every task's name, spec and split rules, at both scales.

Nothing here imports torch or TensorFlow: the workflow's planning reads it (``known_tasks``,
``num_classes_of``); loading a task (``adapter_placement.data.load_task``) imports what it needs.

Every task has the splits ``train``, ``val``, ``test`` and ``train+val`` (the paper selects
hyper-parameters on ``val``, then trains on ``train+val`` and reports ``test``).

Paper scale (tensorflow-datasets; ``TFDS_TASKS``)
-------------------------------------------------
=================  =====================  =========================================================
task               tfds dataset           splits (DESIGN.md section 5)
=================  =====================  =========================================================
inat2018           i_naturalist2018       test = tfds ``validation``; val = 1% of ``train`` (seeded)
places365          places365_small        test = tfds ``validation``; val = 1% of ``train`` (seeded)
clevr_count        clevr                  VTAB-1k; label = number of objects - 3 (8 classes); test =
                                          tfds ``validation`` (CLEVR's test split has no labels)
dsprites_location  dsprites               VTAB-1k; label = x position (32 values) // 2 (16 classes);
                                          dSprites has one split: VTAB's test = ``train[90%:]``
svhn               svhn_cropped           VTAB-1k; test = tfds ``test``
sst2               glue/sst2              test = GLUE dev (``validation``); val = 10% of train (seeded)
mnli               glue/mnli              test = ``validation_matched``; val = 10% of train (seeded)
=================  =====================  =========================================================

VTAB-1k splits are the ones of google-research/task_adaptation: with ``k`` = 90% (SVHN, CLEVR) or 80%
(dSprites) of the source split, ``train800 = train[:800]``, ``val200 = train[k:k+200]`` and
``train800val200`` their union (our ``train``, ``val``, ``train+val``). Seeded hold-outs pick exactly
``round(fraction * N)`` indices of the source split (read in its canonical on-disk order) with
``numpy.random.default_rng(seed)``. Images are decoded and preprocessed in TensorFlow as the timm model's
data config says (``timm.data.resolve_data_config(model=...)``): iNat18 and Places365 with timm's eval
transform (resize shorter side to size / crop_pct, centre crop), VTAB tasks resized whole to the input
size as VTAB does (a centre crop would cut CLEVR objects and dSprites positions out of the picture).
Text is tokenised by the model's tokenizer (truncated to 128 tokens). A dataset that is not on disk
fails at once with the command that prepares it: ``python -m adapter_placement.data prepare NAME
--data-dir DIR``. TensorFlow is imported only by these loaders, never by the embedded tasks.

Embedded default (offline; ``EMBEDDED_TASKS``)
----------------------------------------------
Real data shipped by installed packages, small enough for 2 CPU cores: the digit tasks of
``adapter_placement.data.digits`` and the VADER text tasks of ``adapter_placement.data.text``; each
stands in for one paper task (``STAND_IN``). Every embedded task is a deterministic function of its
seed and builds in a few seconds.

Registries are values: tests and benchmarks add a task with ``TASKS.with_task(name, spec)``, which
returns a new registry, and pass it as ``registry=``; the default ``TASKS`` never changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from .digits import (COUNT_RANGE, LOCATION_BINS, POSES, SCENE_PAIRS, SPECIES_HUES, build_count_digits,
                     build_digit_pairs, build_digit_poses, build_digit_scenes, build_digit_species,
                     build_location_digits, build_natural_digits)
from .text import build_vader_mnli, build_vader_sst2

SPLITS = ("train", "val", "test", "train+val")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


# ---------------------------------------------------------------------------------------------------
# Embedded tasks
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EmbeddedTaskSpec:
    modality: str
    num_classes: int
    build: Callable  # vision: (seed, sizes) -> render.VisionSplits; text: (seed, tokenizer, sizes) -> text.TextSplits
    stands_in_for: str


EMBEDDED_TASKS: Mapping[str, EmbeddedTaskSpec] = MappingProxyType({
    "digits_natural": EmbeddedTaskSpec("vision", 10, build_natural_digits, "svhn"),
    "digits_count": EmbeddedTaskSpec("vision", COUNT_RANGE[1] - COUNT_RANGE[0] + 1, build_count_digits,
                                     "clevr_count"),
    "digits_location": EmbeddedTaskSpec("vision", LOCATION_BINS, build_location_digits, "dsprites_location"),
    "digit_pairs": EmbeddedTaskSpec("vision", 100, build_digit_pairs, "inat2018"),
    "digit_scenes": EmbeddedTaskSpec("vision", len(SCENE_PAIRS), build_digit_scenes, "places365"),
    "digit_species": EmbeddedTaskSpec("vision", 10 * SPECIES_HUES, build_digit_species, "inat2018"),
    # last of the three, so that STAND_IN["inat2018"] is the one the embedded default uses
    "digit_poses": EmbeddedTaskSpec("vision", 10 * POSES, build_digit_poses, "inat2018"),
    "vader_sst2": EmbeddedTaskSpec("text", 2, build_vader_sst2, "sst2"),
    "vader_mnli": EmbeddedTaskSpec("text", 3, build_vader_mnli, "mnli"),
})
STAND_IN = {spec.stands_in_for: name for name, spec in EMBEDDED_TASKS.items()}  # paper task -> embedded




# ---------------------------------------------------------------------------------------------------
# Paper-scale tasks (tensorflow-datasets) and their split rules
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VtabSplits:
    """VTAB-1k: train = source[:800], val = source[k:k+200] with k = train_percent% of the source."""

    train_percent: int
    val_percent: int
    test_split: str | None  # None: the source split after train_percent + val_percent (dSprites)
    source_split: str = "train"
    num_train: int = 800
    num_val: int = 200


@dataclass(frozen=True)
class HoldoutSplits:
    """test = an official split; val = a seeded `val_fraction` of the source split; train = the rest."""

    val_fraction: float
    test_split: str
    source_split: str = "train"


@dataclass(frozen=True)
class TfdsTaskSpec:
    tfds_name: str
    modality: str  # "vision" | "text"
    num_classes: int
    splits: VtabSplits | HoldoutSplits
    input_keys: tuple[str, ...]  # ("image",) | ("sentence",) | ("premise", "hypothesis")
    label_fn: Callable | None = None  # features -> int64 label tensor; default features["label"]
    image_fn: Callable | None = None  # features -> uint8 HWC RGB image; default features["image"]
    image_fit: str = "timm_eval"  # "timm_eval": resize + centre crop; "resize": whole image to size
    max_length: int = 128


def clevr_count_label(features):
    """VTAB's CLEVR count: number of objects - 3 (scenes hold 3-10 objects, 8 classes)."""
    import tensorflow as tf  # called only inside the loader's tf.data pipeline, TensorFlow set up
    return tf.cast(tf.size(features["objects"]["size"]) - COUNT_RANGE[0], tf.int64)


def dsprites_location_label(features):
    """VTAB's dSprites location: the 32 x positions grouped pairwise into 16 classes."""
    import tensorflow as tf  # called only inside the loader's tf.data pipeline, TensorFlow set up
    return tf.cast(features["label_x_position"] // 2, tf.int64)


def dsprites_image(features):
    """dSprites images are one-channel 0/1 masks; VTAB tiles them to RGB and scales to 0/255."""
    import tensorflow as tf  # called only inside the loader's tf.data pipeline, TensorFlow set up
    return tf.tile(features["image"], [1, 1, 3]) * 255


TFDS_TASKS: Mapping[str, TfdsTaskSpec] = MappingProxyType({
    "inat2018": TfdsTaskSpec("i_naturalist2018", "vision", 8142, HoldoutSplits(0.01, "validation"),
                             ("image",)),
    "places365": TfdsTaskSpec("places365_small", "vision", 365, HoldoutSplits(0.01, "validation"),
                              ("image",)),
    "clevr_count": TfdsTaskSpec("clevr", "vision", 8, VtabSplits(90, 10, "validation"), ("image",),
                                label_fn=clevr_count_label, image_fit="resize"),
    "dsprites_location": TfdsTaskSpec("dsprites", "vision", 16, VtabSplits(80, 10, None), ("image",),
                                      label_fn=dsprites_location_label, image_fn=dsprites_image,
                                      image_fit="resize"),
    "svhn": TfdsTaskSpec("svhn_cropped", "vision", 10, VtabSplits(90, 10, "test"), ("image",),
                         image_fit="resize"),
    "sst2": TfdsTaskSpec("glue/sst2", "text", 2, HoldoutSplits(0.1, "validation"), ("sentence",)),
    "mnli": TfdsTaskSpec("glue/mnli", "text", 3, HoldoutSplits(0.1, "validation_matched"),
                         ("premise", "hypothesis")),
})


def vtab_split_string(splits: VtabSplits, split: str, num_source: int) -> str:
    """The tfds split string of a VTAB-1k split, exactly as google-research/task_adaptation slices it."""
    check_split(split)
    source = splits.source_split
    boundary = num_source * splits.train_percent // 100
    train = f"{source}[:{splits.num_train}]"
    val = f"{source}[{boundary}:{boundary + splits.num_val}]"
    if split == "train":
        return train
    if split == "val":
        return val
    if split == "train+val":
        return f"{train}+{val}"
    if splits.test_split is not None:
        return splits.test_split
    return f"{source}[{boundary + num_source * splits.val_percent // 100}:]"


def holdout_indices(num_examples: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded hold-out of exactly round(fraction * num_examples) (at least 1)."""
    count = max(1, int(round(fraction * num_examples)))
    return np.sort(np.random.default_rng(seed).permutation(num_examples)[:count])


# ---------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskRegistry:
    """Task names -> specs, embedded and paper scale; immutable (``with_task`` returns a new one)."""

    embedded: Mapping[str, EmbeddedTaskSpec]
    tfds: Mapping[str, TfdsTaskSpec]

    def with_task(self, name: str, spec: EmbeddedTaskSpec | TfdsTaskSpec) -> "TaskRegistry":
        """This registry plus (or with a new) task `name`, in the table its spec's type says."""
        if isinstance(spec, EmbeddedTaskSpec):
            return TaskRegistry(MappingProxyType({**self.embedded, name: spec}), self.tfds)
        if isinstance(spec, TfdsTaskSpec):
            return TaskRegistry(self.embedded, MappingProxyType({**self.tfds, name: spec}))
        raise TypeError(f"expected an EmbeddedTaskSpec or a TfdsTaskSpec, got {type(spec).__name__}")

    def names(self) -> list[str]:
        return sorted(self.embedded) + sorted(self.tfds)

    def spec(self, name: str) -> EmbeddedTaskSpec | TfdsTaskSpec:
        if name in self.embedded:
            return self.embedded[name]
        if name in self.tfds:
            return self.tfds[name]
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(self.names())}")


TASKS = TaskRegistry(EMBEDDED_TASKS, TFDS_TASKS)
