"""Scores a block of source rows at a time vs the whole gradient stack: peak memory and seconds.

"full" is what score_edges did before blocks existed: ``edge_gradients`` (the (n, n, d, d) stack)
then ``score_matrix`` per function. "rows=k" is ``score_edges`` under a ``max_memory`` that fits
k source rows (``score_memory_bytes`` with the first batch's captures): ceil(n / k) passes over the
scoring batches. Each side's peak memory is measured alone in a fresh process (CPU, Linux: VmHWM above
the RSS before the call; CUDA: max_memory_allocated above the allocation before it); seconds are
the median of ``--repeats`` in-process runs, sides interleaved. Every side's scores are checked
against the full side's first (allclose), so the ratios compare equal work. Random weights.

    .venv/bin/python benchmarks/bench_scores.py                    # the embedded ViT (n = 13, d = 64)
    .venv/bin/python benchmarks/bench_scores.py --shape vit_b16 --rows 25,5 --fn frobenius --repeats 1
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import torch

from adapter_placement import edge_gradients, score_edges, score_matrix
from adapter_placement.device import resolve_device
from adapter_placement.scores import score_memory_bytes

# (ViT kwargs, scoring examples, examples per batch); embedded: pretrain.DEFAULT_VIT_KWARGS and the
# pipeline's scoring batches (score_examples 256 in chunks of 64)
SHAPES = {
    "embedded": (dict(img_size=32, patch_size=8, embed_dim=64, depth=6, num_heads=4, mlp_ratio=4.0), 256, 64),
    "vit_b16": (dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0), 2, 1),
}


def build(shape: str, device: torch.device):
    """A random-init ViT and its scoring batches on ``device``."""
    from timm.models.vision_transformer import VisionTransformer

    kwargs, examples, chunk = SHAPES[shape]
    torch.manual_seed(0)
    model = VisionTransformer(num_classes=10, **kwargs).eval().to(device)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(examples, 3, kwargs["img_size"], kwargs["img_size"], generator=g)
    targets = torch.randint(0, 10, (examples,), generator=g)
    batches = [(images[s:s + chunk].to(device), targets[s:s + chunk].to(device)) for s in range(0, examples, chunk)]
    return model, batches


def geometry(model, batches) -> tuple[int, int, int]:
    """(n nodes, d, bytes of the first batch's captures: x, z, g and the side-by-side copy of g)."""
    n, d = 2 * len(model.blocks) + 1, model.embed_dim
    tokens = model.patch_embed.num_patches + 1
    return n, d, 4 * n * len(batches[0][1]) * tokens * d * 4


def run_side(side: str, model, batches, fns: list[str]) -> dict:
    if side == "full":
        grads = edge_gradients(model, batches)
        return {fn: score_matrix(grads, fn) for fn in fns}
    n, d, captures = geometry(model, batches)
    rows = int(side.split("=")[1])
    return score_edges(model, batches, fn=fns, max_memory=score_memory_bytes(rows, n, d, captures))


def usage(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _status_bytes("VmRSS")


def peak(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    # the high-water mark of this process's own memory: getrusage's ru_maxrss would not do, Linux
    # keeps it across exec, so a worker would start at its parent's (this benchmark's) peak
    return _status_bytes("VmHWM")


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def memory_worker(args) -> None:
    """One side, in a fresh process, nothing run before it: the peak it adds."""
    device = resolve_device(args.device)
    model, batches = build(args.shape, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = usage(device)
    run_side(args.memory_worker, model, batches, args.fn.split(","))
    print(json.dumps({"peak_increase_bytes": peak(device) - before}))


def measure_memory(side: str, args) -> int:
    command = [sys.executable, __file__, "--memory-worker", side, "--shape", args.shape, "--fn", args.fn,
               "--device", args.device, "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker for {side} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_increase_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="embedded")
    parser.add_argument("--rows", default="13,4,1", help="block sizes of the chunked sides")
    parser.add_argument("--fn", default="srank,frobenius", help="score functions, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        return memory_worker(args)

    device = resolve_device(args.device)
    model, batches = build(args.shape, device)
    n, d, captures = geometry(model, batches)
    fns = args.fn.split(",")
    sides = ["full"] + [f"rows={int(r)}" for r in args.rows.split(",")]
    reference = run_side("full", model, batches, fns)
    for side in sides[1:]:  # equal work: the same scores
        got = run_side(side, model, batches, fns)
        for fn in fns:
            torch.testing.assert_close(got[fn], reference[fn], rtol=1e-5, atol=1e-7, msg=f"{side} {fn}")
    seconds = {side: [] for side in sides}
    for r in range(args.repeats):
        for side in sides if r % 2 == 0 else sides[::-1]:
            start = time.perf_counter()
            run_side(side, model, batches, fns)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[side].append(time.perf_counter() - start)
    memory = {side: measure_memory(side, args) for side in sides}

    examples = sum(len(t) for _, t in batches)
    print(f"scores of all {n * n} edges: {args.shape} ViT (n = {n}, d = {d}), {examples} examples in "
          f"{len(batches)} batches, fn {args.fn}, {device}, {args.threads} thread(s), median of {args.repeats}")
    print(f"whole float32 stack n^2 d^2 x 4 B = {n * n * d * d * 4 / 2**20:.2f} MiB; "
          f"one batch's captures = {captures / 2**20:.2f} MiB")
    print(f"{'side':>8} {'passes':>6} {'budget MiB':>10} {'peak MiB':>9} {'x full':>7} {'seconds':>8} {'x full':>7}")
    full_s, full_m = statistics.median(seconds["full"]), memory["full"]
    for side in sides:
        rows = n if side == "full" else int(side.split("=")[1])
        budget = "-" if side == "full" else f"{score_memory_bytes(rows, n, d, captures) / 2**20:.2f}"
        s = statistics.median(seconds[side])
        print(f"{side:>8} {math.ceil(n / rows):>6} {budget:>10} {memory[side] / 2**20:>9.2f} "
              f"{memory[side] / full_m:>7.3f} {s:>8.3f} {s / full_s:>7.3f}")


if __name__ == "__main__":
    main()
