"""The paper-scale image loader alone: images per second at ViT-B/16 preprocessing on this CPU.

A synthetic iNat-style tfds dataset (JPEG images of 500x375 and 375x500 by default, ``--image-size``
to change, smooth structure plus noise, so that they compress like photographs) is written to a folder the way tests/test_data.py
makes one, registered as a task, and read through ``TfdsTask.batches`` exactly as a training run
reads it: shuffled, decoded, resized (shorter side to 224 / 0.9 = 248, bicubic, antialiased),
centre-cropped to 224 and normalised with timm's data config of
``vit_base_patch16_224.augreg_in21k`` (mean = std = 0.5, crop_pct 0.9, bicubic).

Sides, each timed over whole passes, alternating (A B C D, then D C B A, ...) after a warm-up pass:

- ``workers`` 1 or 2: tf.data's parallel map calls (and its private thread pool);
- ``prefetch`` on / off: tf.data prefetch plus the read-ahead thread, or a synchronous loop (no
  prefetch, no fused map-and-batch, no autotune: each batch is made when it is asked for);
- ``consumer``: ``none`` (the loader alone), or ``sleep``: the loop sleeps 1.5x the loader's own
  time per batch, as a GPU step would (a GPU step takes no CPU). Without prefetch the two add up
  and the consumer waits for every batch; with it they overlap and the wait is ~0 ms.

images/s is wall-clock and depends on how much of the CPU the machine leaves to the loader;
images per CPU-second (the process's CPU time, all threads) is the loader's cost, which a cost
model multiplies by the cores a job has.

    python benchmarks/bench_loader.py                      # ~2 min on 2 busy cores
    python benchmarks/bench_loader.py --images 512 --repeats 5 --json loader.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from adapter_placement import data
from adapter_placement.data import tfds_loader

VIT_B16_IN21K = "vit_base_patch16_224.augreg_in21k"


def vit_b16_data_config() -> dict:
    """timm's data config of the paper's ViT-B/16 (from its pretrained config: no weights needed)."""
    import timm
    import timm.data

    return timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(VIT_B16_IN21K).to_dict())


def photo_like(i: int, height: int, width: int) -> np.ndarray:
    """A smooth random field (bilinear upsampling of 12x16 noise) plus pixel noise, uint8 HWC."""
    rng = np.random.default_rng(i)
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, 12, 16)).astype(np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")[0]
    image = smooth.permute(1, 2, 0).numpy() + rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def build_dataset(root: str, count: int, size: tuple[int, int] = (375, 500)) -> data.TaskRegistry:
    """Prepare the synthetic dataset of `count` images of `size` (height, width; every other one
    turned to portrait) in `root`; returns the registry that names it task "bench_inat"."""
    height, width = size
    dataset = f"bench_inat_{height}x{width}"  # one prepared folder per image size
    _, tfds = tfds_loader.import_tensorflow()
    features = tfds.features

    class BenchINat(tfds.core.GeneratorBasedBuilder):
        name = dataset
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=features.FeaturesDict({
                "image": features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "label": features.ClassLabel(num_classes=100)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(count), "validation": self._generate_examples(8)}

        def _generate_examples(self, n):
            for i in range(n):  # both orientations, as in iNat
                yield i, {"image": photo_like(i, *((height, width) if i % 2 else (width, height))), "label": i % 100}

    spec = dataclasses.replace(data.TFDS_TASKS["inat2018"], tfds_name=dataset, num_classes=100)
    registry = data.TASKS.with_task("bench_inat", spec)
    data.prepare_tfds_dataset("bench_inat", root, registry)
    return registry


def one_pass(task, batch_size: int, prefetch: bool, step_s: float, seed: int) -> tuple[float, int, list, float]:
    """Seconds and images of one shuffled pass over train+val, the consumer's wait for each batch
    after the first, and the CPU-seconds of the process (all threads; sleeping takes none)."""
    start, cpu, images, waits = time.perf_counter(), time.process_time(), 0, []
    stream = task.batches("train+val", batch_size, shuffle=True, seed=seed, prefetch=prefetch)
    while True:
        asked = time.perf_counter()
        batch = next(stream, None)
        if batch is None:
            break
        waits.append(time.perf_counter() - asked)
        images += len(batch[0])
        if step_s:
            time.sleep(step_s)
    return time.perf_counter() - start, images, waits[1:], time.process_time() - cpu


def measure(tasks: dict, batch_size: int, repeats: int, step_factor: float) -> list[dict]:
    """Median images/s and batch wait of every side, the sides timed alternately. The sleeping
    consumer's step is `step_factor` x the loader's own median seconds per batch (most workers,
    prefetch), so a loader that keeps up makes it wait ~0 ms."""
    results = []
    sides = [(w, p) for w in sorted(tasks) for p in (True, False)]
    for w, p in sides:  # warm-up: TensorFlow traces the map function once per pipeline
        one_pass(tasks[w], batch_size, p, 0.0, seed=12345)
    for consumer in ("none", "sleep"):
        step_s = 0.0
        if consumer == "sleep":
            alone = next(r for r in results if r["workers"] == max(tasks) and r["prefetch"])
            step_s = step_factor * batch_size / alone["images_per_s"]
        passes = {side: [] for side in sides}
        for r in range(repeats):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                passes[side].append(one_pass(tasks[side[0]], batch_size, side[1], step_s, seed=r))
        for (w, p), runs in passes.items():
            seconds = [s for s, _, _, _ in runs]
            results.append({"consumer": consumer, "step_ms": round(1e3 * step_s, 1), "workers": w,
                            "prefetch": p, "images": runs[0][1], "seconds": seconds,
                            "images_per_s": runs[0][1] / statistics.median(seconds),
                            "wait_ms": 1e3 * statistics.median([x for _, _, ws, _ in runs for x in ws]),
                            "images_per_cpu_s": runs[0][1] / statistics.median([c for *_, c in runs])})
    return results


def print_table(results: list[dict]) -> None:
    print(f"\n{'consumer':>9} {'step ms':>8} {'workers':>8} {'prefetch':>9} {'images/s':>9} "
          f"{'wait ms/batch':>14} {'images/CPU-s':>13}   (medians)")
    for r in results:
        print(f"{r['consumer']:>9} {r['step_ms']:>8} {r['workers']:>8} {str(r['prefetch']):>9} "
              f"{r['images_per_s']:>9.1f} {r['wait_ms']:>14.1f} {r['images_per_cpu_s']:>13.1f}")


def image_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must be HxW, e.g. 375x500, got {text!r}") from None
    if min(height, width) < 16:
        raise argparse.ArgumentTypeError(f"image sides must be >= 16, got {text!r}")
    return height, width


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="images in the synthetic dataset")
    parser.add_argument("--image-size", type=image_size, default=(375, 500),
                        help="HxW of the landscape images (default 375x500; iNat18's largest: 600x800)")
    parser.add_argument("--batch-size", type=int, default=32, help="8 batches a pass at 256 images")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per side")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--step-factor", type=float, default=1.5,
                        help="the sleeping consumer's step, in loader seconds per batch")
    parser.add_argument("--data-dir", default=None, help="keep the dataset here (default: a temp folder)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    for name in ("images", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.workers) < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    torch.set_num_threads(1)  # the loader's threads are what is measured
    config = vit_b16_data_config()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.data_dir or scratch
        registry = build_dataset(root, args.images, args.image_size)
        tasks = {w: data.load_task("bench_inat", data_dir=root, data_config=config, num_workers=w, registry=registry)
                 for w in args.workers}
        results = measure(tasks, args.batch_size, args.repeats, args.step_factor)
    print_table(results)
    report = {"data_config": config, "images": args.images, "image_size": args.image_size,
              "batch_size": args.batch_size,
              "repeats": args.repeats, "step_factor": args.step_factor, "cpu_count": os.cpu_count(), "load_avg": os.getloadavg(),
              "machine": platform.platform(), "tf_threads": os.environ.get(tfds_loader.TF_THREADS_ENV),
              "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
