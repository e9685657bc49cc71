"""The one training loop of the project, and the optimiser recipes of App. A.

Every training in the pipeline goes through ``fit``: the final runs (``train.train``), the searches'
training phases (``search``), the head pre-training before scoring (``scores.train_head``) and the
pre-training of the embedded ViT (``pretrain``). A device or precision change is made here once.

A step, read top to bottom::

    lr      = recipe.lr * lr_factor(step, ...)     # warm-up, then cosine / linear decay
    inputs  = to_device(batch, device)             # pinned host batches copy asynchronously
    loss    = sum over micro-batches of  n_m / n * loss_fn(net(inputs_m), labels_m)   (bf16 autocast)
    loss.backward(); clip; optimizer.step()

Micro-batches (``micro_batch_size``) give the gradient of the whole batch (each micro-batch's mean
loss is weighted by its share of the examples) with the activations of one micro-batch: that is
how ViT-g/14 trains at the paper's batch 128 within one GPU's memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import call_model, logits_of
from .device import autocast, to_device

OPTIMIZERS = ("sgd", "adamw")
DECAYS = ("cosine", "linear", "constant")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf: the run stops and writes no result."""


@dataclass(frozen=True)
class Recipe:
    """How the trainable parameters move: optimiser, peak learning rate and its schedule."""

    optimizer: str
    lr: float
    steps: int
    warmup: int = 0
    decay: str = "constant"
    momentum: float = 0.9       # SGD only
    weight_decay: float = 0.0
    grad_clip: Optional[float] = None  # max global gradient norm, None: no clipping

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.decay not in DECAYS:
            raise ValueError(f"unknown decay {self.decay!r}; expected one of {DECAYS}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")


def default_warmup(modality: str, steps: int) -> int:
    """App. A: vision 500 warm-up steps (at most a tenth of a short run), text 6% of the steps."""
    return round(0.06 * steps) if modality == "text" else min(500, steps // 10)


def recipe_for(modality: str, lr: float, steps: int, warmup: Optional[int] = None) -> Recipe:
    """App. A: vision SGD, momentum 0.9, no weight decay, cosine decay; text AdamW, weight decay
    0.1, linear decay."""
    warm = default_warmup(modality, steps) if warmup is None else warmup
    if modality == "vision":
        return Recipe("sgd", lr, steps, warm, "cosine", momentum=0.9, weight_decay=0.0)
    if modality == "text":
        return Recipe("adamw", lr, steps, warm, "linear", weight_decay=0.1)
    raise ValueError(f"unknown modality {modality!r}; expected 'vision' or 'text'")


def lr_factor(step: int, steps: int, warmup: int, decay: str) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine or linear decay to zero at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    if decay == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress)) if decay == "cosine" else max(0.0, 1 - progress)


FUSED_DEVICES = ("cpu", "cuda")  # where torch has a fused AdamW kernel


def make_optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    params = list(params)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    # One fused kernel over all tensors instead of a loop per tensor: on the CPU, MiniLM's full
    # fine-tuning update takes 0.14x the time (benchmarks/bench_text_step.py).
    fused = bool(params) and all(p.device.type in FUSED_DEVICES for p in params)
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=fused or None)


def set_lr(optimizer: torch.optim.Optimizer, recipe: Recipe, step: int) -> float:
    lr = recipe.lr * lr_factor(step, recipe.steps, recipe.warmup, recipe.decay)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def fit(net: nn.Module, params, batches: Iterable, recipe: Recipe, *, device: torch.device,
        precision: str = "fp32", steps: Optional[int] = None, first_step: int = 0,
        optimizer: Optional[torch.optim.Optimizer] = None, loss_fn: Callable = F.cross_entropy,
        micro_batch_size: Optional[int] = None, before_step: Optional[Callable] = None,
        after_backward: Optional[Callable] = None, on_step: Optional[Callable] = None,
        progress: Optional[Iterable[int]] = None) -> list[float]:
    """Train ``params`` of ``net`` for steps ``first_step .. first_step + steps - 1`` (default: up to
    ``recipe.steps``); returns the loss of every step run.

    ``batches`` yields ``(inputs, labels, extras)`` for those steps in order (``extras``: keyword
    arguments of the forward, e.g. the prefix cache's values). ``optimizer``: one to continue
    (resumed runs, the searches' phases), else a fresh one from ``recipe``. The learning rate of a
    step is a function of the step alone, so resuming at ``first_step`` continues the schedule.
    Hooks: ``before_step(step)``, ``after_backward(step)`` (gradients are there),
    ``on_step(step, loss, optimizer)`` after the update. ``net``'s train/eval mode is the caller's.
    """
    steps = recipe.steps - first_step if steps is None else steps
    opt = optimizer if optimizer is not None else make_optimizer(recipe, params)
    params = [p for group in opt.param_groups for p in group["params"]]
    losses: list[float] = []
    step_range = range(first_step, first_step + steps) if progress is None else progress
    for step, (inputs, labels, extras) in zip(step_range, batches):
        set_lr(opt, recipe, step)
        if before_step is not None:
            before_step(step)
        opt.zero_grad(set_to_none=True)
        loss = _forward_backward(net, to_device(inputs, device), to_device(labels, device),
                                 to_device(extras, device), device, precision, loss_fn, micro_batch_size)
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"training loss is {loss} at step {step}")
        if after_backward is not None:
            after_backward(step)
        if recipe.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        opt.step()
        losses.append(loss)
        if on_step is not None:
            on_step(step, loss, opt)
    return losses


def _forward_backward(net, inputs, labels, extras, device, precision, loss_fn, micro_batch_size) -> float:
    """Backward of the batch's mean loss, one micro-batch at a time; returns that loss."""
    n = len(labels)
    size = n if micro_batch_size is None else micro_batch_size
    total = 0.0
    for start in range(0, n, size):
        part = slice(start, min(n, start + size))
        with autocast(device, precision):
            logits = logits_of(call_model(net, _slice(inputs, part), **_slice(extras, part)))
        loss = loss_fn(logits.float(), labels[part])
        share = (part.stop - part.start) / n
        (loss * share if share != 1 else loss).backward()
        total += loss.item() * share
    return total


def _slice(batch: Any, part: slice) -> Any:
    """The examples ``part`` of a batch: tensors along their first axis, dicts and sequences inside."""
    if isinstance(batch, torch.Tensor):
        return batch[part]
    if isinstance(batch, dict):
        return {k: _slice(v, part) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_slice(v, part) for v in batch)
    return batch


@torch.no_grad()
def predict(net: nn.Module, batches: Iterable, *, device: torch.device, precision: str = "fp32"):
    """(predicted class, label) tensors of every example of ``(inputs, labels, extras)`` batches."""
    predicted, labels = [], []
    for inputs, targets, extras in batches:
        with autocast(device, precision):
            logits = logits_of(call_model(net, to_device(inputs, device), **to_device(extras, device)))
        predicted.append(logits.argmax(-1).cpu())
        labels.append(targets.cpu())
    return torch.cat(predicted), torch.cat(labels)


def accuracy(net: nn.Module, batches: Iterable, *, device: torch.device, precision: str = "fp32") -> float:
    """Share of correct predictions, in eval mode (the mode is restored)."""
    was_training = net.training
    net.eval()
    try:
        predicted, labels = predict(net, batches, device=device, precision=precision)
    finally:
        net.train(was_training)
    return (predicted == labels).double().mean().item()


def cycle(batches: list) -> Iterable:
    """``(inputs, labels)`` pairs of a list as the ``(inputs, labels, extras)`` stream ``fit`` reads,
    over and over (head pre-training and the searches cycle over a fixed list of batches)."""
    while True:
        if not batches:
            raise ValueError("batches is empty: no data to train on")
        for inputs, labels in batches:
            yield inputs, labels, {}
