"""The embedded vision tasks: MNIST and scikit-learn digits rendered as stand-ins for the paper's.

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
                                        (100 fine-grained classes: digit_pairs did not leave
                                        chance in 200 steps; the hues stay near chance too)
digit_poses        iNaturalist18        one grey MNIST digit (16 px, anywhere) on a dark ground,  8000/1000/2000
                                        rotated to one of 10 poses from -60 to +60 degrees
                                        (jittered); label = 10 * digit + pose (100 fine-grained
                                        classes: neighbouring poses are 13 degrees apart; the
                                        embedded default's iNat18 stand-in: the grey-pre-trained
                                        ViT sees shape, not the hues of digit_species)
digit_scenes       Places365            two distinct MNIST digits of random size at random non-   8000/1000/2000
                                        overlapping places on a cluttered background; label = the
                                        unordered pair (45 "scene" classes: what is in the
                                        picture, not where)
=================  ===================  ========================================================  ============

Inputs are 32x32 RGB, normalised with ``EMBEDDED_VISION_DATA_CONFIG`` (mean = std = 0.5) for the small
ViT that ``adapter_placement.pretrain`` pre-trains on MNIST digit classification, the source task
here (``render_source_batch``). Every task is a deterministic function of its seed: ``build_*(seed)``
draws the split pools and every example from one generator per task.
"""
from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np

from .render import (CANVAS, MNIST_CORE, by_class, composite, contrasting_colour, gradient_background,
                     mnist_digits, mnist_partition, render_examples, render_splits, resize_sprites,
                     sklearn_digits, solid_background, split_pool, sprites_at_sizes, VisionSplits)

# ---------------------------------------------------------------------------------------------------
# The pre-training source task (MNIST digit classification)
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

    def render_one(r, i):
        return render_source_example(sprites[sizes[i]][picks[i]], r), labels[picks[i]]
    return render_examples(batch_size, render_one, rng, noise=0.03)


# ---------------------------------------------------------------------------------------------------
# Transfer tasks (pure builders; each returns {split: (uint8 images, int64 labels)})
# ---------------------------------------------------------------------------------------------------

VTAB_LIKE_SIZES = {"train": 800, "val": 200, "test": 1000}
LARGE_SIZES = {"train": 8000, "val": 1000, "test": 2000}

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

    def render_one(r, i, pool):
        centre = pool[i]
        flankers = [sprites[r.choice(pool)] if r.random() < 0.8 else None for _ in range(2)]
        return render_house_number(sprites[centre], flankers, r), labels[centre]
    return render_splits(pools, {split: len(pool) for split, pool in pools.items()}, render_one, rng, noise=0.04)


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

    def render_one(r, _, pool):
        count = int(r.integers(COUNT_RANGE[0], COUNT_RANGE[1] + 1))
        background = gradient_background(r)
        mean_bg = background.mean(axis=(1, 2))
        sprites = [small[int(r.choice(COUNT_SPRITE_SIZES))][r.choice(pool)] for _ in range(count)]
        colours = [contrasting_colour(r, mean_bg) for _ in range(count)]
        image, _ = render_count_scene(sprites, colours, background, r)
        return image, count - COUNT_RANGE[0]
    return render_splits(pools, sizes, render_one, rng, noise=0.03)


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

    def render_one(r, _, pool):
        size = int(r.choice(LOCATION_SPRITE_SIZES))
        position = int(r.integers(0, LOCATION_POSITIONS))
        top = int(r.integers(0, CANVAS - size + 1))
        image = render_location_scene(scaled[size][r.choice(pool)], position, top, r.uniform(0.7, 1.0))
        return image, location_label(position)
    return render_splits(pools, sizes, render_one, rng, noise=0.02)


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

    def render_one(r, _, classes):
        label = int(r.integers(0, 100))
        left, right = divmod(label, 10)
        image = render_digit_pair(sprites[r.choice(classes[left])], sprites[r.choice(classes[right])], r)
        return image, label
    return render_splits(pools_by_class(pools, labels), sizes, render_one, rng, noise=0.04)


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

    def render_one(r, _, classes):
        label = int(r.integers(0, 10 * SPECIES_HUES))
        digit, hue_class = divmod(label, SPECIES_HUES)
        size = int(r.choice(SPECIES_SPRITE_SIZES))
        return render_species(scaled[size][r.choice(classes[digit])], hue_class, r), label
    return render_splits(pools_by_class(pools, labels), sizes, render_one, rng, noise=0.04)


POSES = 10                      # rotations per digit: 10 digit "genera" x 10 pose "species" = 100 classes
POSE_RANGE = (-60.0, 60.0)      # degrees; beyond +-90 some digits turn into others (6 and 9)
POSE_JITTER = 2.0               # degrees either way; neighbouring poses are 13.3 degrees apart
POSE_SPRITE = 16


def pose_angle(pose: int) -> float:
    """The rotation (degrees, counter-clockwise) of pose class ``pose`` before jitter."""
    low, high = POSE_RANGE
    return low + (high - low) * pose / (POSES - 1)


def rotate_sprite(sprite: np.ndarray, degrees: float) -> np.ndarray:
    """The sprite turned counter-clockwise, on a canvas grown to hold all of it (bilinear)."""
    from scipy import ndimage

    return np.clip(ndimage.rotate(sprite, degrees, reshape=True, order=1), 0.0, 1.0).astype(np.float32)


def render_pose(sprite: np.ndarray, pose: int, rng: np.random.Generator) -> np.ndarray:
    """One grey digit anywhere on a dark ground, turned to its pose: the class is in the shape and
    in its orientation, which neighbouring poses share in part (fine-grained, like species)."""
    canvas = solid_background(np.full(3, rng.uniform(0.0, 0.35), np.float32))
    turned = rotate_sprite(sprite, pose_angle(pose) + rng.uniform(-POSE_JITTER, POSE_JITTER))
    top = int(rng.integers(0, CANVAS - turned.shape[0] + 1))
    left = int(rng.integers(0, CANVAS - turned.shape[1] + 1))
    composite(canvas, turned, np.full(3, rng.uniform(0.7, 1.0), np.float32), top, left)
    return canvas


def make_digit_poses(cores: np.ndarray, labels: np.ndarray, pools: Mapping[str, np.ndarray],
                     rng: np.random.Generator, sizes: Mapping[str, int] = LARGE_SIZES) -> VisionSplits:
    """iNaturalist18 stand-in: label = 10 * digit + pose class (100 fine-grained classes, uniform)."""
    sprites = resize_sprites(cores, POSE_SPRITE)

    def render_one(r, _, classes):
        label = int(r.integers(0, 10 * POSES))
        digit, pose = divmod(label, POSES)
        return render_pose(sprites[r.choice(classes[digit])], pose, r), label
    return render_splits(pools_by_class(pools, labels), sizes, render_one, rng, noise=0.04)


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

    def render_one(r, _, classes):
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
    return render_splits(pools_by_class(pools, labels), sizes, render_one, rng, noise=0.04)


def pools_by_class(pools: Mapping[str, np.ndarray], labels: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Each split's pool as its digits of each class (for tasks whose label names the digits)."""
    return {split: by_class(pool, labels) for split, pool in pools.items()}


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


def build_digit_poses(seed: int, sizes=None) -> VisionSplits:
    cores, labels, pools, rng = _transfer_mnist(seed, 7)
    return make_digit_poses(cores, labels, pools, rng, sizes or LARGE_SIZES)


def build_digit_scenes(seed: int, sizes=None) -> VisionSplits:
    cores, labels, pools, rng = _transfer_mnist(seed, 5)
    return make_digit_scenes(cores, labels, pools, rng, sizes or LARGE_SIZES)
