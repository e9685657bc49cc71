"""GPU check at paper shapes (random initialisation, random data: no weights, no datasets needed).

    python benchmarks/gpu_check.py --out gpu_check.json          # on a CUDA GPU, ~3-5 min on an H100/H200
    python benchmarks/gpu_check.py --smoke --out smoke.json      # tiny shapes on the CPU, seconds

Sections (each prints its seconds; the figures are written to --out after every section, so a run
cut short keeps them, and printed as one JSON object at the end; a section that fails is recorded
under "errors" and the next one runs, exit status 1):

a. ViT-B/16, the 24 parallel adapters (rank 8), 200 steps at batch 128 through ``engine.fit``, once
   in bf16 and once in fp32 (TF32 matmuls, as the pipeline runs fp32 on a GPU), same init, same
   batches: images/s and step time over the steps after a warm-up, MFU = analytic FLOPs per second
   (``flops.pass_flops``, App. K) / the GPU's peak dense bf16 TFLOP/s (for both precisions, so the
   two are comparable), peak memory, and the final losses (mean of the last 10 steps), which must
   agree within ``LOSS_TOLERANCE``.
b. ``score_edges`` of all 625 ViT-B/16 edges (srank) over 512 examples in chunks of 64, as the
   paper-scale scores job does: seconds and peak memory.
c. ViT-g/14 (257 tokens, d = 1408, 40 blocks, FFN 6144; n = 81, 6561 edges): the gradient stack
   (52 GB in float32) is accumulated a block of source rows at a time under ``max_memory``; here
   one block of rows is scored (srank), and the seconds of the whole matrix are extrapolated.
d. 20 ViT-g/14 training steps at batch 128 (the 40 FFN parallel adapters of Fig. 6c, bf16) in
   micro-batches: peak memory, which must stay under 80 GB (an A100/H100 80GB).

Random labels over the task's classes give a loss that starts near ln(classes) and falls as the
head and adapters memorise the few fixed batches, so bf16 and fp32 can be compared on it.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from adapter_placement import engine, placements
from adapter_placement.device import enable_tf32, resolve_device
from adapter_placement.flops import Arch, pass_flops
from adapter_placement.graph import AdapterGraph
from adapter_placement.scores import reduce_gradient_blocks, score_edges, score_matrix

# Peak dense bf16 tensor TFLOP/s (vendor data sheets); the first name contained in
# torch.cuda.get_device_name() wins, so the PCIe H100 comes before the SXM one.
PEAK_BF16_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0),
                    ("L40S", 362.0), ("A10G", 70.0), ("L4", 121.0)]
LOSS_TOLERANCE = 0.05  # |bf16 - fp32| / fp32 of the final loss (mean of the last 10 steps)
GB = 1e9
# Section c's block budget. ViT-g's whole stack is 52 GB (81 source rows of 0.64 GB); the captures
# of a 16-example chunk take 7.5 GB of the budget, so 24 GB holds ~23 rows: 4 passes over the
# batches, ~40 GB with the model and the forward. The smoke budget also makes several blocks.
SCORE_MEMORY = {False: 24 * 10**9, True: 7 * 10**5}


@dataclass(frozen=True)
class Shapes:
    """One model size of the check and how much work each section does with it."""

    name: str
    img_size: int
    patch: int
    dim: int
    depth: int
    heads: int
    ffn: int
    classes: int
    batch: int
    steps: int
    warmup_steps: int  # not timed: allocation, cuBLAS heuristics
    score_examples: int
    score_chunk: int
    micro_batch: int | None = None

    @property
    def tokens(self) -> int:
        return (self.img_size // self.patch) ** 2 + 1

    @property
    def num_nodes(self) -> int:
        return 2 * self.depth + 1


PAPER = {
    "vit_b": Shapes("ViT-B/16", 224, 16, 768, 12, 12, 3072, 8142, batch=128, steps=200, warmup_steps=20,
                    score_examples=512, score_chunk=64),
    "vit_g": Shapes("ViT-g/14", 224, 14, 1408, 40, 16, 6144, 8142, batch=128, steps=20, warmup_steps=3,
                    score_examples=64, score_chunk=16, micro_batch=32),
}
SMOKE = {
    "vit_b": Shapes("smoke-B", 16, 4, 32, 2, 4, 64, 10, batch=8, steps=8, warmup_steps=2,
                    score_examples=16, score_chunk=8),
    "vit_g": Shapes("smoke-g", 16, 4, 48, 3, 4, 96, 10, batch=8, steps=3, warmup_steps=1,
                    score_examples=8, score_chunk=4, micro_batch=4),
}


# ---------------------------------------------------------------- measuring

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def section(name: str, device: torch.device, report: dict):
    """Time a section and record its peak memory: CUDA's max allocated bytes since the section
    began, or on the CPU the process's peak resident set so far (it cannot be reset)."""
    sync(device)
    gc.collect()  # the previous section's model (hooks hold reference cycles)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    print(f"[gpu_check] {name} ...", flush=True)
    start = time.perf_counter()
    figures: dict = {}
    yield figures
    sync(device)
    figures["seconds"] = round(time.perf_counter() - start, 2)
    figures["peak_memory_gb"] = round(peak_memory_bytes(device) / GB, 3)
    report[name] = figures
    print(f"[gpu_check] {name}: {figures['seconds']} s, peak memory {figures['peak_memory_gb']} GB", flush=True)


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    with open("/proc/self/status") as f:  # not ru_maxrss: it keeps the parent's peak across exec
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


# ---------------------------------------------------------------- models and data

def make_vit(shapes: Shapes, device: torch.device, seed: int = 0):
    """A timm ViT of these shapes with random weights, created on `device` directly (ViT-g's 1B
    parameters would take long to initialise on the CPU)."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    with device:
        model = VisionTransformer(img_size=shapes.img_size, patch_size=shapes.patch, embed_dim=shapes.dim,
                                  depth=shapes.depth, num_heads=shapes.heads, mlp_ratio=shapes.ffn / shapes.dim,
                                  num_classes=shapes.classes)
    return model.eval()


def random_batches(shapes: Shapes, count: int, size: int, device: torch.device, seed: int = 1):
    """`count` fixed (images, labels) batches on the device (the loader is measured separately)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return [(torch.randn(size, 3, shapes.img_size, shapes.img_size, device=device, generator=generator),
             torch.randint(0, shapes.classes, (size,), device=device, generator=generator))
            for _ in range(count)]


def arch_of(shapes: Shapes, rank: int) -> Arch:
    return Arch(shapes.depth, shapes.dim, shapes.heads, shapes.ffn, rank, shapes.tokens)


# ---------------------------------------------------------------- sections

def train_run(shapes: Shapes, edges, rank: int, precision: str, device: torch.device) -> dict:
    """`shapes.steps` steps of adapters + head through engine.fit; throughput after the warm-up."""
    graph = AdapterGraph(make_vit(shapes, device), edges, rank=rank)
    params = list(graph.adapter_parameters()) + list(graph.head_parameters())
    recipe = engine.recipe_for("vision", lr=1e-2, steps=shapes.steps)
    stamps: list[float] = []
    graph.train()
    losses = engine.fit(graph, params, engine.cycle(random_batches(shapes, 4, shapes.batch, device)), recipe,
                        device=device, precision=precision, micro_batch_size=shapes.micro_batch,
                        on_step=lambda step, loss, opt: stamps.append(time.perf_counter()))
    # fit reads each step's loss (.item()), so the stamps are taken after the GPU finished the step
    timed = stamps[shapes.warmup_steps:]
    step_s = (timed[-1] - timed[0]) / (len(timed) - 1)
    flops = pass_flops(arch_of(shapes, rank), shapes.batch, shapes.tokens, adapters=len(edges))
    peak = peak_tflops(device)
    tail = losses[-10:]
    return {"steps": len(losses), "batch": shapes.batch, "micro_batch": shapes.micro_batch,
            "adapters": len(edges), "rank": rank, "step_ms": round(1e3 * step_s, 2),
            "images_per_s": round(shapes.batch / step_s, 1), "tflops_per_s": round(flops / step_s / 1e12, 4),
            "mfu_vs_peak_bf16": None if peak is None else round(flops / step_s / 1e12 / peak, 4),
            "first_loss": losses[0], "final_loss": statistics.fmean(tail),
            "finite": all(math.isfinite(x) for x in losses)}


def vit_b_training(shapes: Shapes, device: torch.device, report: dict) -> None:
    edges = placements.parallel_all(shapes.num_nodes)
    runs = {}
    for precision in ("bf16", "fp32"):
        with section(f"a_vit_b_train_{precision}", device, report) as figures:
            figures.update(train_run(shapes, edges, 8, precision, device))
        runs[precision] = figures
    bf16, fp32 = runs["bf16"]["final_loss"], runs["fp32"]["final_loss"]
    # a difference of exactly 0 would mean that autocast did not run in bf16
    report["a_loss_agreement"] = {"bf16": bf16, "fp32": fp32, "relative_difference": abs(bf16 - fp32) / abs(fp32),
                                  "tolerance": LOSS_TOLERANCE,
                                  "agree": abs(bf16 - fp32) <= LOSS_TOLERANCE * abs(fp32)}


def vit_b_scores(shapes: Shapes, device: torch.device, report: dict) -> None:
    """srank of all n^2 edges as the paper-scale scores job computes them (bf16 forward, float32
    sums, the default memory budget: one block on a large GPU)."""
    model = make_vit(shapes, device)
    data = random_batches(shapes, shapes.score_examples // shapes.score_chunk, shapes.score_chunk, device, seed=2)
    with section("b_vit_b_scores", device, report) as figures:
        scores = score_edges(model, data, fn="srank", precision="bf16")
        figures.update({"edges": int(scores.numel()), "examples": shapes.score_examples,
                        "chunk": shapes.score_chunk, "finite": bool(torch.isfinite(scores).all()),
                        "mean_srank": round(float(scores.mean()), 2)})


def vit_g_scores(shapes: Shapes, device: torch.device, report: dict, max_memory: int) -> None:
    """The whole ViT-g gradient matrix, a block of source rows at a time within `max_memory`
    (``reduce_gradient_blocks``, as ``score_edges`` runs it), reduced by the cheap Frobenius norm;
    srank (an SVD per edge) on the first source row only, its seconds extrapolated to all rows."""
    model = make_vit(shapes, device)
    data = random_batches(shapes, shapes.score_examples // shapes.score_chunk, shapes.score_chunk, device, seed=2)
    srank_seconds: list[float] = []

    def reduce(rows: torch.Tensor) -> torch.Tensor:
        if not srank_seconds:
            sync(device)
            start = time.perf_counter()
            score_matrix(rows[:1], "srank")
            srank_seconds.append(time.perf_counter() - start)  # score_matrix returns on the CPU: synced
        return score_matrix(rows, "frobenius")

    with section("c_vit_g_scores", device, report) as figures:
        blocks = reduce_gradient_blocks(model, data, reduce, max_memory=max_memory, precision="bf16")
        scores = torch.cat(blocks)
        figures.update({"edges": int(scores.numel()), "examples": shapes.score_examples,
                        "chunk": shapes.score_chunk, "max_memory_gb": round(max_memory / GB, 3),
                        "blocks": len(blocks), "rows_per_block": len(blocks[0]),
                        "finite": bool(torch.isfinite(scores).all()),
                        "srank_seconds_one_row": round(srank_seconds[0], 2),
                        "srank_seconds_all_rows_estimate": round(srank_seconds[0] * shapes.num_nodes, 1)})


def vit_g_training(shapes: Shapes, device: torch.device, report: dict) -> None:
    with section("d_vit_g_train_bf16", device, report) as figures:
        figures.update(train_run(shapes, placements.ffn_parallel(shapes.num_nodes), 8, "bf16", device))
    figures["fits_80gb"] = figures["peak_memory_gb"] < 80.0


# ---------------------------------------------------------------- entry point

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and a few steps (CPU, seconds)")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --smoke")
    parser.add_argument("--out", default="gpu_check.json", help="where the JSON figures go")
    args = parser.parse_args(argv)
    spec = args.device or ("cpu" if args.smoke else "cuda")
    try:
        device = resolve_device(spec)
    except ValueError as error:
        parser.exit(2, f"gpu_check: {error}\n  (without a GPU, run the CPU smoke test: --smoke)\n")
    if device.type != "cuda" and not args.smoke:
        parser.exit(2, f"gpu_check: paper shapes need a CUDA GPU, got device {spec!r}; use --smoke on a CPU\n")
    shapes = SMOKE if args.smoke else PAPER
    if device.type == "cpu":
        torch.set_num_threads(1)  # a smoke test on a shared CPU
    enable_tf32(device)
    started = time.perf_counter()
    report: dict = {"smoke": args.smoke, "device": str(device),
                    "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "peak_bf16_tflops": peak_tflops(device), "torch": torch.__version__,
                    "fp32_matmuls": "tf32" if torch.backends.cuda.matmul.allow_tf32 and device.type == "cuda" else "fp32",
                    "memory": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS (VmHWM)"}
    sections = {"a": lambda: vit_b_training(shapes["vit_b"], device, report),
                "b": lambda: vit_b_scores(shapes["vit_b"], device, report),
                "c": lambda: vit_g_scores(shapes["vit_g"], device, report, SCORE_MEMORY[args.smoke]),
                "d": lambda: vit_g_training(shapes["vit_g"], device, report)}
    for name, run_section in sections.items():
        try:
            run_section()
        except Exception as error:  # recorded, and the next section runs: GPU time is scarce
            report.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}"
            print(f"[gpu_check] section {name} failed: {report['errors'][name]}", flush=True)
        report["total_seconds"] = round(time.perf_counter() - started, 1)
        write_report(report, args.out)  # after every section, so a run cut short keeps its figures
    print(json.dumps(report, indent=2))
    return 1 if "errors" in report else 0


def write_report(report: dict, path: str) -> None:
    with open(path, "w") as f:
        f.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
