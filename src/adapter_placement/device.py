"""Where a job computes and in which precision: one place that turns a config value into a device.

Every part that trains or scores (``engine.fit``, ``scores.score_edges``, the searches) takes a
``torch.device`` resolved here and a precision name, so moving the whole pipeline to a GPU is one
config value (``device: auto``) and bf16 is another (``precision: bf16``).

bf16 is autocast only: weights and optimiser state stay float32 (the "master weights"), matmuls run
in bfloat16, and losses and gradients come back in float32.

Whether bf16 is faster depends on the chip, not only on the device type: on the CPUs of this project's
2-core machines a MiniLM step in bf16 autocast took 0.58x the fp32 one on one machine and 1.48x on
another, both with AVX512-BF16 (benchmarks/bench_text_step.py). ``precision: auto`` in a config
therefore measures once (``measure_precisions``) and keeps the faster (``choose_precision``).
"""
from __future__ import annotations

import contextlib
import re
import statistics
import time
from typing import Any

import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("fp32", "bf16")
BF16_MIN_GAIN = 0.9  # on a CPU, bf16 is chosen when it takes under 0.9x the fp32 time
_DEVICE_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_spec(spec: str) -> None:
    """The spelling alone (no hardware is asked): ValueError naming the value otherwise."""
    if not isinstance(spec, str) or not _DEVICE_SPEC.match(spec):
        raise ValueError(f"unknown device {spec!r}; expected one of {', '.join(DEVICES)}")


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto``: the first CUDA GPU, else Apple's MPS, else the CPU. A device that is asked for by
    name but is not there fails here, before any model is loaded."""
    check_device_spec(spec)
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} was asked for, but torch.cuda.is_available() is False "
                             f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); "
                             "use device: auto or cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {spec!r} was asked for, but this machine has {count} CUDA device(s)")
    if device.type == "mps" and not _mps_available():
        raise ValueError(f"device {spec!r} was asked for, but torch.backends.mps.is_available() is False")
    return device


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")


def measure_precisions(device: torch.device, threads: int = 1, tokens: int = 128, width: int = 384,
                       repeats: int = 15) -> dict[str, float]:
    """Median seconds of a forward + backward of a transformer MLP block (MiniLM's widths) on
    ``tokens`` rows, in fp32 and in bf16 autocast, interleaved, with ``threads`` torch threads
    (a job's)."""
    from torch import nn

    generator = torch.Generator().manual_seed(0)
    block = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)).to(device)
    x = torch.randn(tokens, width, generator=generator).to(device).requires_grad_()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)

    def seconds(precision: str) -> float:
        started = time.perf_counter()
        with autocast(device, precision):
            out = block(x)
        out.float().square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    try:
        times = {p: [] for p in PRECISIONS}
        for p in PRECISIONS:
            seconds(p)  # warm-up: kernels chosen, memory allocated
        for k in range(repeats):
            for p in PRECISIONS if k % 2 == 0 else PRECISIONS[::-1]:
                times[p].append(seconds(p))
    finally:
        torch.set_num_threads(previous)
    return {p: statistics.median(t) for p, t in times.items()}


def choose_precision(device: torch.device, threads: int = 1) -> tuple[str, dict[str, float]]:
    """``precision: auto`` resolved on this machine: bf16 on CUDA GPUs that support it, fp32 on
    other accelerators, and on a CPU the faster of the two as measured (bf16 only when it takes
    under ``BF16_MIN_GAIN`` of the fp32 time). Returns the choice and the seconds measured."""
    if device.type == "cuda":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp32"), {}
    if device.type != "cpu":
        return "fp32", {}
    seconds = measure_precisions(device, threads)
    return ("bf16" if seconds["bf16"] < BF16_MIN_GAIN * seconds["fp32"] else "fp32"), seconds


def autocast(device: torch.device, precision: str):
    """The forward pass's precision: bf16 autocast, or nothing at all for fp32 (so that fp32 runs
    compute exactly what they computed before devices existed)."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def enable_tf32(device: torch.device) -> None:
    """TF32 matmuls on CUDA GPUs that have them (Ampere and newer): float32 weights, 10-bit
    mantissa products, the usual trade for 2-8x faster fp32 training."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def to_device(batch: Any, device: torch.device) -> Any:
    """The same nesting of tensors (tensor, dict, tuple, list) on ``device``. A pinned host tensor
    is copied asynchronously, so the next batch's copy overlaps this step's compute."""
    if isinstance(batch, torch.Tensor):
        if batch.device == device:
            return batch
        return batch.to(device, non_blocking=batch.is_pinned())
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def pin(batch: Any, device: torch.device) -> Any:
    """Page-locked host copies for a CUDA device (a no-op elsewhere), for ``to_device``'s overlap."""
    if device.type != "cuda":
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory() if batch.device.type == "cpu" else batch
    if isinstance(batch, dict):
        return {k: pin(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(pin(v, device) for v in batch)
    return batch


def memory_of(device: torch.device) -> int:
    """Bytes the device can hold: a GPU's total memory, else the machine's physical memory."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
