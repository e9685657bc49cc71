"""Can the paper's qualitative findings show at all on the embedded vision tasks?

A. Linear probe (LP) clearly below adapters (parallel_all, PA) on the structured tasks
   (digits_count, digits_location; digits_natural for reference), full fine-tuning (FT) alongside.
B. The placement of a single adapter changes accuracy by more than the seed-to-seed spread.

Every run is an ordinary ``train()`` run (SGD momentum 0.9, cosine schedule, App. A) on the
``train`` split, evaluated on ``val`` and ``test``. Protocol, cut to fit a 2-core CPU (300 steps x
batch 32 = 12 epochs of the 800 training images, where the paper's VTAB-1k runs use 500-2000 x 64):

- A: each method's lr is picked from a small grid by val accuracy of seed 0; seeds 1 and 2 are
  trained at the picked lr; the table reports test accuracy of the 3 seeds at that lr.
- B: single adapters on a few edges (parallel edges spread over the depth, plus recurrent and
  long-range edges) with 3 seeds at the lr picked for PA on the same task (or ``--lr-b TASK=LR``),
  using the frozen-prefix cache (``prefix_cache=True``; it does not change the runs, only their cost).

Verdicts (std: sample std over the 3 seeds, ddof = 1):

- A, per task: PASS if mean(PA) - mean(LP) > 5 points and > 3 x the larger of the two stds.
- B, per task: range of the per-edge means (max - min) against the pooled seed std (root mean of
  the per-edge variances). SHOWS if range > pooled std (the issue's criterion); CLEARLY if the best
  and worst edges also differ by a Welch t-test at p < 0.05 (with 3 seeds per edge). NOT
  MEANINGFUL if even the best edge is within 5 points of chance (1 / classes).

    python benchmarks/check_findings.py --steps 150 --lrs-adapters 0.03 0.1 --lrs-ft 0.003 0.01 \
        | tee benchmarks/findings_embedded.txt      # the committed models/vit_digits.safetensors

Verdict A is issue 12's bar: PA >= chance + 15 points, PA - LP > 2 pooled seed std, FT >= LP.
Text tasks (vader_sst2, vader_mnli) run on ``--text-model`` (MiniLM).

Runs land in ``--workdir`` (default ``results/findings_embedded``); a finished run is never
redone, so a second invocation only prints the tables (and runs what a changed grid adds).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import os
import statistics
import sys
import time
from pathlib import Path

EDGES_B = ((0, 1), (3, 4), (7, 8), (11, 12), (12, 2), (2, 10))


def run_one(job: dict) -> dict:
    """One train() run in a worker process."""
    import torch

    torch.set_num_threads(job.pop("threads"))
    from adapter_placement.train import TrainConfig, train

    out = job.pop("out")
    reused = (Path(out) / "metrics.json").exists()  # finished by an earlier invocation
    started = time.perf_counter()
    metrics = train(TrainConfig(**job), out)
    return {"val": metrics["val_accuracy"], "test": metrics["test_accuracy"], "loss": metrics["train_loss"],
            "wall_s": time.perf_counter() - started, "loop_s": metrics["seconds"], "reused": reused}


def mean_std(xs):
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def welch_p(a, b) -> float:
    """Two-sided p-value of Welch's t-test (scipy if present, else a normal approximation)."""
    try:
        import warnings

        from scipy import stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        return p if math.isfinite(p) else float(statistics.fmean(a) == statistics.fmean(b))
    except Exception:  # pragma: no cover
        ma, sa = mean_std(a)
        mb, sb = mean_std(b)
        se = math.sqrt(sa ** 2 / len(a) + sb ** 2 / len(b)) or 1e-12
        return math.erfc(abs(ma - mb) / se / math.sqrt(2))


def pct(x) -> str:
    return f"{100 * x:5.1f}"


class Runner:
    """Submits runs to a process pool and lets follow-up runs start as soon as their inputs are done."""

    def __init__(self, args):
        self.args = args
        import multiprocessing

        self.pool = cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"))
        import signal

        def stop(signum, _frame):  # a killed script takes its worker processes with it
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, stop)
        self.pending: dict[cf.Future, tuple] = {}
        self.results: dict[tuple, dict] = {}

    def submit(self, key: tuple, **cfg) -> None:
        if key in self.results or any(k == key for k in self.pending.values()):
            return
        a = self.args
        from adapter_placement.data import EMBEDDED_TASKS

        model = a.vit if EMBEDDED_TASKS[cfg["dataset"]].modality == "vision" else a.text_model
        job = dict(model=model, steps=a.steps, batch_size=a.batch, eval_splits=("val", "test"), track=False,
                   progress=False, checkpoint_every=10 ** 9, data_seed=0, cache_dir=str(Path(a.workdir) / "cache"),
                   threads=a.threads, **cfg)
        job["out"] = str(Path(a.workdir) / f"steps{a.steps}_batch{a.batch}" / "/".join(str(k) for k in key))
        self.pending[self.pool.submit(run_one, job)] = key

    def wait_some(self) -> list[tuple]:
        done, _ = cf.wait(list(self.pending), return_when=cf.FIRST_COMPLETED)
        keys = []
        for f in done:
            key = self.pending.pop(f)
            self.results[key] = f.result()
            r = self.results[key]
            if not r["reused"]:
                print(f"  [{time.perf_counter() - self.args.t0:6.0f} s] {'/'.join(map(str, key)):45s} val {pct(r['val'])} "
                      f"test {pct(r['test'])}  ({r['wall_s']:.0f} s)", flush=True)
            keys.append(key)
        return keys


def lr_key(lr: float) -> str:
    return f"lr{lr:g}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vit", default="models/vit_digits.safetensors", help="pretrained embedded ViT (.safetensors)")
    p.add_argument("--text-model", default="minilm", help="model of text tasks (vader_sst2, vader_mnli)")
    p.add_argument("--workdir", default="results/findings_embedded")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks-a", nargs="+", default=["digits_count", "digits_location", "digits_natural"])
    p.add_argument("--tasks-b", nargs="*", default=["digits_count", "digits_location"])
    p.add_argument("--lrs-adapters", type=float, nargs="+", default=[0.01, 0.03, 0.1], help="lr grid of LP and PA")
    p.add_argument("--lrs-ft", type=float, nargs="+", default=[0.001, 0.01])
    p.add_argument("--lr-b", nargs="*", default=[], metavar="TASK=LR",
                   help="B's lr for a task (default: the lr picked for PA on that task)")
    p.add_argument("--edges-b", nargs="+", default=[f"{i},{j}" for i, j in EDGES_B], metavar="I,J")
    args = p.parse_args(argv)
    args.t0 = time.perf_counter()
    edges_b = [tuple(int(v) for v in e.split(",")) for e in args.edges_b]
    lr_b = {t: float(v) for t, v in (x.split("=") for x in args.lr_b)}
    n = 13
    from adapter_placement import placements

    pa_edges = [tuple(e) for e in placements.parallel_all(n)]
    methods = {"LP": dict(method="linear_probe"), "PA": dict(method="adapters", edges=pa_edges),
               "FT": dict(method="full_ft")}
    grids = {"LP": args.lrs_adapters, "PA": args.lrs_adapters, "FT": args.lrs_ft}
    seed0, others = args.seeds[0], args.seeds[1:]
    print(f"check_findings: vit {args.vit}; {args.steps} steps x batch {args.batch}, SGD (App. A); seeds {args.seeds}; "
          f"{args.jobs} processes x {args.threads} threads; workdir {args.workdir}", flush=True)

    from adapter_placement.data import load_task

    for task in sorted(set(args.tasks_a) | set(args.tasks_b)):
        load_task(task, seed=0)  # fail early on a bad name

    runner = Runner(args)
    best: dict[tuple, float] = {}
    # B's tasks first (they wait on PA's lr), the largest runs first within each
    order = sorted(args.tasks_a, key=lambda t: t not in args.tasks_b)
    for task in order:
        for m in ("PA", "FT", "LP"):
            for lr in grids[m]:
                runner.submit((task, m, lr_key(lr), f"seed{seed0}"), dataset=task, lr=lr, seed=seed0, **methods[m])
    b_only = [t for t in args.tasks_b if t not in args.tasks_a]
    for task in b_only:  # B on a task without A: PA's lr grid still picks B's lr
        for lr in args.lrs_adapters:
            runner.submit((task, "PA", lr_key(lr), f"seed{seed0}"), dataset=task, lr=lr, seed=seed0, **methods["PA"])
    all_tasks = order + b_only

    def grid_done(task, m):
        return all((task, m, lr_key(lr), f"seed{seed0}") in runner.results for lr in grids[m])

    while runner.pending:
        runner.wait_some()
        for task in all_tasks:
            for m in methods:
                if (task, m) in best or not grid_done(task, m):
                    continue
                val = {lr: runner.results[(task, m, lr_key(lr), f"seed{seed0}")]["val"] for lr in grids[m]}
                best[(task, m)] = max(sorted(val), key=lambda lr: val[lr])  # ties: the smaller lr
                lr = best[(task, m)]
                if m == "PA" and task in args.tasks_b:
                    lrb = lr_b.get(task, lr)
                    for s in args.seeds:  # B first: more runs, and they share the cache
                        for e in edges_b:
                            runner.submit((task, "single", f"e{e[0]}_{e[1]}", lr_key(lrb), f"seed{s}"), dataset=task,
                                          lr=lrb, seed=s, method="adapters", edges=[e], prefix_cache=True)
                if task in args.tasks_a:
                    for s in others:
                        runner.submit((task, m, lr_key(lr), f"seed{s}"), dataset=task, lr=lr, seed=s, **methods[m])
    runner.pool.shutdown()
    R = runner.results
    from adapter_placement.data import num_classes_of

    chance = {t: 1 / num_classes_of(t) for t in all_tasks}
    total = time.perf_counter() - args.t0

    # ------------------------------------------------------------ A
    print(f"\n== A. linear probe vs adapters (parallel_all, rank 8) vs full fine-tuning; test accuracy (%), "
          f"{args.steps} steps x batch {args.batch}")
    print(f"  {'task':16s} {'method':6s} {'val acc seed0 per lr':28s} {'lr':>6s}  {'test per seed':20s} {'mean':>6s} {'std':>5s}")
    verdicts_a = {}
    for task in args.tasks_a:
        stats = {}
        for m in ("LP", "PA", "FT"):
            lr = best[(task, m)]
            grid = "  ".join(f"{g:g}:{pct(R[(task, m, lr_key(g), f'seed{seed0}')]['val'])}" for g in grids[m])
            tests = [R[(task, m, lr_key(lr), f"seed{s}")]["test"] for s in args.seeds]
            stats[m] = mean_std(tests)
            print(f"  {task:16s} {m:6s} {grid:28s} {lr:6g}  {' '.join(pct(t) for t in tests):20s} "
                  f"{pct(stats[m][0])} {pct(stats[m][1])}")
        # issue 12's bar: PA clearly above chance; PA - LP beyond 2 pooled seed std; FT not below LP
        gap = stats["PA"][0] - stats["LP"][0]
        pooled = math.sqrt((stats["PA"][1] ** 2 + stats["LP"][1] ** 2) / 2)
        learnt = stats["PA"][0] >= chance[task] + 0.15
        ok = learnt and gap > 2 * pooled and stats["FT"][0] >= stats["LP"][0]
        verdicts_a[task] = ok
        print(f"  {task:16s} PA - LP = {100 * gap:+.1f} points (2 x pooled std = {200 * pooled:.1f}); "
              f"FT - LP = {100 * (stats['FT'][0] - stats['LP'][0]):+.1f}; chance {pct(chance[task])}, "
              f"PA {'>=' if learnt else '<'} chance + 15  ->  {'PASS' if ok else 'MISS'}")
    # ------------------------------------------------------------ B
    verdicts_b = {}
    for task in args.tasks_b:
        lr = lr_b.get(task, best[(task, "PA")])
        source = "set by --lr-b" if task in lr_b else "picked for PA"
        print(f"\n== B. one adapter (rank 8) per edge, {task}, lr {lr:g} ({source}; PA's pick: {best[(task, 'PA')]:g}), "
              f"prefix cache on; test accuracy (%)")
        print(f"  {'edge':8s} {'kind':11s} {'test per seed':20s} {'mean':>6s} {'std':>5s}")
        per_edge = {}
        for e in edges_b:
            tests = [R[(task, "single", f"e{e[0]}_{e[1]}", lr_key(lr), f"seed{s}")]["test"] for s in args.seeds]
            per_edge[e] = tests
            mu, sd = mean_std(tests)
            print(f"  {str(e):8s} {placements.edge_kind(*e):11s} {' '.join(pct(t) for t in tests):20s} {pct(mu)} {pct(sd)}")
        means = {e: statistics.fmean(v) for e, v in per_edge.items()}
        pooled = math.sqrt(statistics.fmean([statistics.variance(v) for v in per_edge.values()])) if len(args.seeds) > 1 else 0.0
        hi, lo = max(means, key=means.get), min(means, key=means.get)
        rng = means[hi] - means[lo]
        pval = welch_p(per_edge[hi], per_edge[lo]) if len(args.seeds) > 1 else float("nan")
        shows, clearly = rng > pooled, rng > pooled and pval < 0.05
        near_chance = means[hi] < chance[task] + 0.05  # no edge learns: differences mean nothing
        verdicts_b[task] = (shows and not near_chance, clearly and not near_chance, near_chance)
        print(f"  range of means {100 * rng:.1f} points (best {hi}, worst {lo}); pooled seed std {100 * pooled:.1f}; "
              f"range/std {rng / pooled if pooled else float('inf'):.1f}; Welch p(best vs worst) {pval:.3g}; "
              f"chance {pct(chance[task])}")
        if near_chance:
            print(f"  -> NOT MEANINGFUL: the best edge is within 5 points of chance (nothing was learnt)")
        else:
            print(f"  -> {'SHOWS' if shows else 'DOES NOT SHOW'}{' (CLEARLY)' if clearly else ''}")
    # ------------------------------------------------------------ verdicts
    print("\n== verdicts")
    for task, ok in verdicts_a.items():
        kind = "structured" if task in ("digits_count", "digits_location") else "natural (reference)"
        print(f"  A {task:16s} ({kind}): LP clearly below adapters: {'yes' if ok else 'NO'}")
    for task, (shows, clearly, near_chance) in verdicts_b.items():
        print(f"  B {task:16s}: single-adapter placement moves accuracy beyond the seed spread: "
              f"{'yes' if shows else 'NO'}{', clearly (p < 0.05)' if clearly else ''}"
              f"{' (all edges near chance: not meaningful)' if near_chance else ''}")
    fresh = [r for r in R.values() if not r["reused"]]
    print(f"\n{len(R)} runs ({len(R) - len(fresh)} reused from earlier invocations); training loops of all runs "
          f"{sum(r['loop_s'] for r in R.values()) / 60:.1f} min; this invocation: {len(fresh)} runs, "
          f"{sum(r['wall_s'] for r in fresh) / 60:.1f} min of run time in {args.jobs} processes, wall {total / 60:.1f} min, "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
