"""Benchmarks of training on the embedded default (see benchmarks/README_train.md).

1. sweep      : a stride-grid single-adapter sweep, train() with prefix_cache=True / without
                (cache built inside the timed sweep)                                (goal <= 0.6)
2. train step : recurrent edge (i, j) fed its first pass from a cache / parallel edge (j-1, j)
                on the same target node j; the uncached recurrent step for reference (goal <= 1.1)
3. runs       : seconds per run of every embedded task (text: minilm; vision: the pretrained
                small ViT), one parallel adapter and parallel_all, at stated step counts

Both sides of every ratio are timed in the same process, interleaved (A B, then B A, ...), and
medians over repeats are reported. Section 3 times one short run per row and extrapolates:
seconds(run) = fixed (model, data, evaluation) + steps / (measured steps per second).

    python -m adapter_placement.pretrain --out results/bench/vit.safetensors --steps 1000 --seed 0 --threads 1
    python benchmarks/bench_train.py --vit results/bench/vit.safetensors --json bench_train.json
    python benchmarks/bench_train.py --vit results/bench/vit.safetensors --threads 1   # a loaded machine

Seconds are wall clock (``time.perf_counter``); the sweep also reports the process's CPU seconds
(``time.process_time``), which a machine shared with other jobs inflates far less. With 2 threads
on 2 cores that other jobs also use, OpenMP's barriers make every op 2-5x slower than 1 thread:
use ``--threads 1`` there.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from adapter_placement import placements
from adapter_placement.data import load_task, num_classes_of
from adapter_placement.graph import AdapterGraph
from adapter_placement.models import load_model
from adapter_placement.train import TrainConfig, train

SWEEP_GOAL = 0.6
STEP_GOAL = 1.1
VISION_TASKS = ("digits_natural", "digits_count", "digits_location", "digit_pairs", "digit_scenes")

# The step counts (and batch sizes) of a sensible embedded config, per task: section 3 reports
# seconds per run at these. VTAB-1k stand-ins (800 train): 500 steps x 64, the paper's smaller
# VTAB-1k budget (40 epochs). iNat18/Places365 stand-ins (8000 train): 2000 steps x 128 (32 epochs;
# the paper: 20000 x 128). vader_sst2: 10 epochs at batch 32, vader_mnli: 3 epochs at batch 32
# (the paper's SST2 / MNLI epoch counts).
RUN_STEPS = {
    "digits_natural": (500, 64), "digits_count": (500, 64), "digits_location": (500, 64),
    "digit_pairs": (2000, 128), "digit_scenes": (2000, 128),
    "vader_sst2": (1400, 32), "vader_mnli": (1500, 32),
}
RUN_LR = {"vision": 0.01, "text": 1e-3}


# ---------------------------------------------------------------- helpers

def median(xs):
    return statistics.median(xs)


def verdict(ratio: float, goal: float) -> str:
    return "PASS" if ratio <= goal else "MISS"


def print_table(title: str, header: list[str], rows: list[list], note: str = "") -> None:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(header))]
    print(f"\n== {title}")
    for n, r in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    if note:
        for line in note.strip().splitlines():
            print(f"  {line}")
    sys.stdout.flush()


def base_config(args, dataset: str, model: str, **kw) -> TrainConfig:
    return TrainConfig(dataset=dataset, model=model, track=False, progress=False,
                       checkpoint_every=10 ** 9, **kw)


# ---------------------------------------------------------------- 1. single-adapter sweep

def sweep_configs(args, edges, cache_dir: Path, cached: bool) -> list[TrainConfig]:
    return [base_config(args, args.sweep_task, args.vit, edges=[(i, j)], steps=args.sweep_steps,
                        batch_size=args.sweep_batch, lr=0.01, seed=0, prefix_cache=cached,
                        cache_dir=str(cache_dir)) for i, j in edges]


def run_sweep(args, edges, root: Path, cache_dir: Path, cached: bool) -> dict:
    """Every edge of the sweep, one short train() each, into fresh folders under ``root``. The
    cached side fills the cache for all edges first, one pass per split, as a pipeline job does
    (``prefetch_nodes``); it is inside the timing."""
    from adapter_placement.train import prefetch_nodes

    per_edge, loop_s = {}, 0.0
    start, cpu_start = time.perf_counter(), time.process_time()
    cfgs = sweep_configs(args, edges, cache_dir, cached)
    prefetch_nodes((cfg, root / f"edge_{i}_{j}") for (i, j), cfg in zip(edges, cfgs))
    prefetch_s = time.perf_counter() - start
    for (i, j), cfg in zip(edges, cfgs):
        t0, c0 = time.perf_counter(), time.process_time()
        metrics = train(cfg, root / f"edge_{i}_{j}")
        per_edge[(i, j)] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                            "loop_s": metrics["seconds"],
                            "train_loss": metrics["train_loss"], "val_accuracy": metrics["val_accuracy"]}
        loop_s += metrics["seconds"]
    return {"total_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu_start, "loop_s": loop_s,
            "prefetch_s": prefetch_s, "per_edge": per_edge}


def prebuild_cache(args, edges, cache_dir: Path) -> float:
    """The nodes every edge of the sweep needs, on train and val, computed before any timing."""
    from adapter_placement.train import prefetch_nodes

    start = time.perf_counter()
    prefetch_nodes((cfg, cache_dir / "no-run") for cfg in sweep_configs(args, edges, cache_dir, True))
    return time.perf_counter() - start


def analytic_loop_ratio(edges, depth: int, backward: float) -> float:
    """Training-loop cost ratio cached / plain in sub-layer forwards (2 per block): the forward of
    the sub-layers run, ``backward`` x a forward per frozen sub-layer the gradient crosses (from
    the output down to the adapter's target j), and on the plain side the first pass of a
    recurrent edge (i sub-layers: it stops at node i)."""
    from adapter_placement.graph import frozen_prefix_node
    from adapter_placement.placements import Edge

    n = 2 * depth + 1
    cached = plain = 0.0
    for i, j in edges:
        bwd = backward * (n - 1 - j)
        start = frozen_prefix_node([Edge(i, j)], n) or 0
        plain += (n - 1) + bwd + (i if i > j else 0)
        cached += (n - 1 - start) + bwd
    return cached / plain


def measured_backward_factor(vit, batch: int, repeats: int = 15) -> float:
    """Backward of the frozen blocks (input gradients only) in forwards of the same blocks: the
    ``backward`` that ``analytic_loop_ratio`` takes, on this machine."""
    for p in vit.parameters():
        p.requires_grad_(False)
    tokens = vit.patch_embed.num_patches + vit.num_prefix_tokens
    x = torch.randn(batch, tokens, vit.embed_dim)
    fwd, fwd_bwd = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        with torch.no_grad():
            vit.blocks(x)
        fwd.append(time.perf_counter() - t)
        t = time.perf_counter()
        vit.blocks(x.clone().requires_grad_(True)).sum().backward()
        fwd_bwd.append(time.perf_counter() - t)
    return (median(fwd_bwd) - median(fwd)) / median(fwd)


def bench_sweep(args, workdir: Path) -> dict:
    vit = load_model(args.vit, num_classes_of(args.sweep_task)).model
    depth = len(vit.blocks)
    n = 2 * depth + 1
    edges = [tuple(e) for e in placements.grid(n, args.stride)]
    load_task(args.sweep_task, seed=0)  # the data builders' own one-off caches, outside the timing
    sides = ["cached", "plain"] + (["warm"] if args.warm else [])
    warm_dir = workdir / "sweep/warm_cache"
    build_s = prebuild_cache(args, edges, warm_dir) if args.warm else None
    for cached in (True, False):  # warm-up outside the timing: the first run of a process pays lazy inits
        warm_args = argparse.Namespace(**{**vars(args), "sweep_steps": 2})
        run_sweep(warm_args, edges[:1] + edges[-1:], workdir / f"sweep/warmup/{cached}",
                  workdir / "sweep/warmup/cache", cached)
    results = {side: [] for side in sides}
    for rep in range(args.sweep_repeats):
        for side in (sides if rep % 2 == 0 else sides[::-1]):
            root = workdir / f"sweep/rep{rep}/{side}"
            cache_dir = warm_dir if side == "warm" else root / "cache"  # cached: built inside the timing
            r = run_sweep(args, edges, root, cache_dir, side != "plain")
            results[side].append(r)
            print(f"  sweep rep {rep} {side:6s}: {r['total_s']:7.1f} s wall, {r['cpu_s']:7.1f} s CPU, "
                  f"{r['loop_s']:7.1f} s in training loops, {r['prefetch_s']:5.1f} s filling the cache "
                  f"({len(edges)} edges x {args.sweep_steps} steps)", flush=True)
    med = {side: {k: median([r[k] for r in results[side]]) for k in ("total_s", "cpu_s", "loop_s", "prefetch_s")}
           for side in sides}
    ratio = med["cached"]["total_s"] / med["plain"]["total_s"]
    ratio_cpu = med["cached"]["cpu_s"] / med["plain"]["cpu_s"]
    paired = [c["total_s"] / p["total_s"] for c, p in zip(results["cached"], results["plain"])]
    paired_cpu = [c["cpu_s"] / p["cpu_s"] for c, p in zip(results["cached"], results["plain"])]
    # the cache must not change the runs: same losses and accuracies, edge by edge
    diffs = [abs(results["cached"][0]["per_edge"][e]["train_loss"] - results["plain"][0]["per_edge"][e]["train_loss"])
             for e in edges]
    acc_diffs = [abs(results["cached"][0]["per_edge"][e]["val_accuracy"] - results["plain"][0]["per_edge"][e]["val_accuracy"])
                 for e in edges]
    kinds = {k: sum(placements.edge_kind(*e) == k for e in edges) for k in placements.EDGE_KINDS}
    per_edge_rows = []
    for e in edges:
        cells = [f"({e[0]},{e[1]}) {placements.edge_kind(*e)}"]
        for key in ("wall_s", "cpu_s"):
            c = median([r["per_edge"][e][key] for r in results["cached"]])
            p = median([r["per_edge"][e][key] for r in results["plain"]])
            cells += [f"{c:.2f}", f"{p:.2f}", f"{c / p:.2f}"]
        if args.warm:
            w = median([r["per_edge"][e]["cpu_s"] for r in results["warm"]])
            p = median([r["per_edge"][e]["cpu_s"] for r in results["plain"]])
            cells += [f"{w:.2f}", f"{w / p:.2f}"]
        per_edge_rows.append(cells)
    header = ["edge", "cached wall", "plain wall", "ratio", "cached CPU", "plain CPU", "ratio"]
    header += ["warm CPU", "ratio"] if args.warm else []
    print_table(f"1a. sweep, per edge: median s of one train() ({args.sweep_task}, {args.sweep_steps} steps x "
                f"batch {args.sweep_batch}), the cache filled before the first",
                header, per_edge_rows)
    bounds = [analytic_loop_ratio(edges, depth, b) for b in (1.0, 2.0)]
    backward = measured_backward_factor(vit, args.sweep_batch)
    at_measured = analytic_loop_ratio(edges, depth, backward)
    rows = [["whole sweep, wall (median s)", f"{med['cached']['total_s']:.1f}", f"{med['plain']['total_s']:.1f}",
             f"{ratio:.3f}", f"<= {SWEEP_GOAL}", verdict(ratio, SWEEP_GOAL)],
            ["whole sweep, CPU (median s)", f"{med['cached']['cpu_s']:.1f}", f"{med['plain']['cpu_s']:.1f}",
             f"{ratio_cpu:.3f}", f"<= {SWEEP_GOAL}", verdict(ratio_cpu, SWEEP_GOAL)],
            ["  training loops only, wall", f"{med['cached']['loop_s']:.1f}", f"{med['plain']['loop_s']:.1f}",
             f"{med['cached']['loop_s'] / med['plain']['loop_s']:.3f}", "", ""]]
    if args.warm:
        rows.append(["  cache already on disk, CPU", f"{med['warm']['cpu_s']:.1f}", f"{med['plain']['cpu_s']:.1f}",
                     f"{med['warm']['cpu_s'] / med['plain']['cpu_s']:.3f}", "", ""])
    rows.append(["  analytic training-loop ratio, backward 1x-2x", "", "", f"{bounds[0]:.3f}-{bounds[1]:.3f}", "", ""])
    rows.append([f"  analytic at the measured backward ({backward:.2f}x)", "", "", f"{at_measured:.3f}", "", ""])
    print_table(
        f"1. single-adapter sweep: grid(n={n}, stride={args.stride}) = {len(edges)} edges on {args.sweep_task}, "
        f"each train() {args.sweep_steps} steps x batch {args.sweep_batch}",
        ["what", "prefix_cache=True", "no cache", "ratio", "goal", "verdict"], rows,
        note=f"edges by kind: {kinds}\n"
             f"repeats {args.sweep_repeats}, sides interleaved; per-repeat ratios wall "
             f"{', '.join(f'{x:.3f}' for x in paired)}; CPU {', '.join(f'{x:.3f}' for x in paired_cpu)}\n"
             f"cached: a fresh cache_dir per repeat, filled inside the timed sweep (one pass per split for all "
             f"edges: {med['cached']['prefetch_s']:.1f} s wall)"
             + (f"; warm: built once before timing ({build_s:.1f} s)" if args.warm else "") + "\n"
             f"analytic: sub-layer forwards run + backward (x a forward per frozen sub-layer crossed) + the first "
             f"pass of recurrent edges (plain side)\n"
             f"cached vs plain, same edge: max |train_loss diff| {max(diffs):.2e}, max |val acc diff| {max(acc_diffs):.4f}")
    return {"edges": [list(e) for e in edges], "median": med, "ratio_wall": ratio, "ratio_cpu": ratio_cpu,
            "goal": SWEEP_GOAL, "pass_wall": ratio <= SWEEP_GOAL, "pass_cpu": ratio_cpu <= SWEEP_GOAL,
            "analytic_loop_ratio": bounds, "backward_factor": backward, "analytic_at_measured": at_measured,
            "warm_cache_build_s": build_s,
            "max_train_loss_diff": max(diffs), "max_val_accuracy_diff": max(acc_diffs),
            "runs": {side: [{"total_s": r["total_s"], "cpu_s": r["cpu_s"], "loop_s": r["loop_s"], "prefetch_s": r["prefetch_s"],
                             "per_edge": {f"{e[0]},{e[1]}": v for e, v in r["per_edge"].items()}}
                            for r in results[side]] for side in sides}}


# ---------------------------------------------------------------- 2. train step: recurrent vs parallel

def make_step(graph: AdapterGraph, images, labels, first_pass=None) -> Callable[[], None]:
    params = list(graph.adapter_parameters()) + list(graph.head_parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    kwargs = {} if first_pass is None else {"first_pass": first_pass}

    def step():
        loss = F.cross_entropy(graph(images, **kwargs), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def bench_step(args) -> dict:
    task_name = args.sweep_task
    task = load_task(task_name, seed=0, data_config=load_model(args.vit, num_classes_of(task_name)).data_config)
    inputs, labels = task.tensors("train")
    images, labels = inputs[:args.step_batch], labels[:args.step_batch]
    out = {}
    rows = []
    for i, j in args.recurrent:
        def fresh(edge):
            torch.manual_seed(0)
            return AdapterGraph(load_model(args.vit, num_classes_of(task_name)).model, [edge])
        rec_cached, rec_plain, par = fresh((i, j)), fresh((i, j)), fresh((j - 1, j))
        first_pass = rec_cached.compute_first_pass(images)  # "from a cache": computed once, outside
        # same math: the cached first pass gives the uncached output
        with torch.no_grad():
            for p in rec_cached.adapter_parameters():
                p.add_(0.01)
            for p in rec_plain.adapter_parameters():
                p.add_(0.01)
            torch.testing.assert_close(rec_cached(images, first_pass=first_pass), rec_plain(images))
        sides = {"recurrent, cached first pass": make_step(rec_cached, images, labels, first_pass),
                 "parallel": make_step(par, images, labels),
                 "recurrent, no cache": make_step(rec_plain, images, labels)}
        for run in sides.values():  # warm-up
            run(), run()
        times = {k: [] for k in sides}
        names = list(sides)
        for r in range(args.step_repeats):
            for name in names[r % 3:] + names[:r % 3]:  # rotate the order
                t0 = time.perf_counter()
                sides[name]()
                times[name].append(time.perf_counter() - t0)
        med = {k: median(v) for k, v in times.items()}
        ratio = med["recurrent, cached first pass"] / med["parallel"]
        ratio_plain = med["recurrent, no cache"] / med["parallel"]
        rows.append([f"({i},{j}) vs ({j - 1},{j})", f"{med['recurrent, cached first pass'] * 1e3:.1f}",
                     f"{med['parallel'] * 1e3:.1f}", f"{ratio:.3f}", f"<= {STEP_GOAL}", verdict(ratio, STEP_GOAL),
                     f"{med['recurrent, no cache'] * 1e3:.1f}", f"{ratio_plain:.3f}"])
        out[f"{i},{j}"] = {"median_s": med, "ratio_cached": ratio, "ratio_uncached": ratio_plain,
                          "goal": STEP_GOAL, "pass": ratio <= STEP_GOAL, "times": times}
    print_table(f"2. one train step (fwd + loss + bwd + SGD), {task_name}, batch {args.step_batch}, "
                f"median of {args.step_repeats} interleaved",
                ["recurrent vs parallel", "rec cached ms", "parallel ms", "ratio", "goal", "verdict",
                 "rec uncached ms", "uncached ratio"], rows,
                note="cached: graph(x, first_pass=...) with the first pass computed once outside the timing; "
                     "uncached: the graph runs the extra first pass itself (the paper's cost)")
    return out


# ---------------------------------------------------------------- 3. seconds per run

def bench_runs(args, workdir: Path) -> dict:
    rows, out = [], {}
    tasks = [t for t in args.run_tasks]
    for task in tasks:
        modality = "text" if task.startswith("vader") else "vision"
        model = "minilm" if modality == "text" else args.vit
        if modality == "vision" and not args.vit:
            continue
        steps, batch = RUN_STEPS[task]
        nodes = 13  # both embedded backbones have 6 blocks
        for name, edges in (("single (5,6)", [(5, 6)]), ("parallel_all", [tuple(e) for e in placements.parallel_all(nodes)])):
            cfg = base_config(args, task, model, edges=edges, steps=args.run_probe_steps, batch_size=batch,
                              lr=RUN_LR[modality], seed=0)
            t0, c0 = time.perf_counter(), time.process_time()
            m = train(cfg, workdir / f"runs/{task}/{name.split()[0]}")
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            fixed = wall - m["seconds"]
            per_step = m["seconds"] / args.run_probe_steps
            projected = fixed + steps * per_step
            # CPU seconds split between loop and the rest in the proportion of their wall times
            cpu_projected = cpu * (fixed + steps * per_step) / wall if wall > 0 else None
            rows.append([task, name, f"{steps} x {batch}", f"{per_step * 1e3:.0f}", f"{fixed:.1f}", f"{projected:.0f}",
                         f"{projected / 60:.1f}", f"{cpu_projected / 60:.1f}"])
            out[f"{task}/{name}"] = {"steps": steps, "batch_size": batch, "seconds_per_step": per_step,
                                     "fixed_s": fixed, "projected_run_s": projected,
                                     "projected_run_cpu_s": cpu_projected, "probe_cpu_s": cpu,
                                     "probe_steps": args.run_probe_steps, "probe_wall_s": wall}
            print(f"  {task} {name}: {per_step * 1e3:.0f} ms/step, fixed {fixed:.1f} s", flush=True)
    print_table(f"3. seconds per run (measured on a {args.run_probe_steps}-step run, extrapolated to the stated steps)",
                ["task", "placement", "steps x batch", "ms/step", "fixed s", "run s", "run min", "run CPU min"], rows,
                note="wall clock; fixed = model + data + evaluation on val (everything outside the training loop);\n"
                     "run CPU min: the probe's CPU seconds scaled like its wall time (~ the wall time on an idle machine);\n"
                     "lr: vision SGD 0.01, text AdamW 1e-3; prefix cache off; one process")
    return out


# ---------------------------------------------------------------- main

def parse_edge(text: str) -> tuple[int, int]:
    i, j = text.split(",")
    return int(i), int(j)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vit", help="pretrained embedded ViT (.safetensors) from adapter_placement.pretrain")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="+", choices=("sweep", "step", "runs"), default=["sweep", "step", "runs"])
    p.add_argument("--workdir", help="keep the run folders in a fresh subfolder of this (default: a temporary "
                   "folder, removed at the end)")
    p.add_argument("--sweep-task", default="digits_count")
    p.add_argument("--stride", type=int, default=6, help="grid stride (n = 13: 6 gives 9 edges, 4 gives 16)")
    p.add_argument("--sweep-steps", type=int, default=30)
    p.add_argument("--sweep-batch", type=int, default=64)
    p.add_argument("--sweep-repeats", type=int, default=3)
    p.add_argument("--warm", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the sweep with the cache already on disk (built before timing)")
    p.add_argument("--recurrent", type=parse_edge, nargs="+", default=[(10, 4), (12, 8)], metavar="I,J")
    p.add_argument("--step-batch", type=int, default=64)
    p.add_argument("--step-repeats", type=int, default=30)
    p.add_argument("--run-tasks", nargs="+", default=list(VISION_TASKS) + ["vader_sst2", "vader_mnli"])
    p.add_argument("--run-probe-steps", type=int, default=20)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if ("sweep" in args.only or "step" in args.only) and not args.vit:
        p.error("--vit is needed for the sweep and step benchmarks")
    torch.set_num_threads(args.threads)
    # a fresh folder every time: train() never redoes a finished run, so old folders would time nothing
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench_train_", dir=args.workdir))
    print(f"bench_train: torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; vit {args.vit}; workdir {workdir}", flush=True)
    started = time.perf_counter()
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
              "threads": args.threads, "args": {k: v for k, v in vars(args).items()}}
    sections = {"step": lambda: bench_step(args), "sweep": lambda: bench_sweep(args, workdir),
                "runs": lambda: bench_runs(args, workdir)}
    try:
        for name, run in sections.items():
            if name in args.only:
                report[name] = run()
                if args.json:  # after every section, so that a long run keeps what it measured
                    Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report["total_s"] = time.perf_counter() - started
    print(f"\nbench_train total {report['total_s']:.0f} s; load average now {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
