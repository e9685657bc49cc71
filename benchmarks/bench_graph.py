"""Benchmarks of the adapter graph and the one-pass edge scores (see benchmarks/README.md).

1. train step  : AdapterGraph with 24 parallel adapters / hand-written ParallelAdapterViT  (goal <= 1.05)
2. edge scores : score_edges for all n^2 edges / n^2 separate autograd passes            (goal <= 0.05)
3. memory      : peak memory of score_edges at ViT-B/16 shapes (batch 8, 224 px), in a fresh subprocess

Both sides of every ratio are timed in the same run, interleaved (A B, then B A, ...) after a
warm-up, and each side's median is reported. Before timing, the script checks that both sides
compute the same thing (allclose), so the ratios compare equal work.

    python benchmarks/bench_graph.py                       # scaled-down ViT, CPU, ~3 min on 2 busy cores
    python benchmarks/bench_graph.py --vit-b16 --device cuda --json bench.json
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # tests/reference.py: the hand-written ParallelAdapterViT

from reference import ParallelAdapterViT  # noqa: E402

from adapter_placement import AdapterGraph, edge_gradients, edge_kind, placements, score_matrix  # noqa: E402
from adapter_placement.placements import EDGE_KINDS  # noqa: E402

TRAIN_STEP_GOAL = 1.05
SCORES_GOAL = 0.05
GIB = 2 ** 30


# ---------------------------------------------------------------- models, batches, timing

@dataclass(frozen=True)
class ViTShape:
    name: str
    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    batch: int
    num_classes: int

    @property
    def num_nodes(self) -> int:
        return 2 * self.depth + 1

    @property
    def tokens(self) -> int:  # patches + class token
        return (self.img_size // self.patch_size) ** 2 + 1


SMALL = ViTShape("small ViT (12 blocks, d=192, 64 px / patch 8)", 64, 8, 192, 12, 3, 8, 10)
VIT_B16 = ViTShape("ViT-B/16 (vit_base_patch16_224)", 224, 16, 768, 12, 12, 8, 1000)


def build_vit(shape: ViTShape, device: torch.device, seed: int = 0):
    """A randomly initialised timm ViT in eval mode (no weights are downloaded)."""
    import timm
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    if shape == VIT_B16:
        model = timm.create_model("vit_base_patch16_224", pretrained=False)
    else:
        model = VisionTransformer(img_size=shape.img_size, patch_size=shape.patch_size,
                                  embed_dim=shape.embed_dim, depth=shape.depth,
                                  num_heads=shape.num_heads, num_classes=shape.num_classes)
    return model.to(device).eval()


def make_batch(shape: ViTShape, device: torch.device, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(shape.batch, 3, shape.img_size, shape.img_size, generator=g)
    targets = torch.randint(0, shape.num_classes, (shape.batch,), generator=g)
    return images.to(device), targets.to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(run: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def time_interleaved(sides: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                     warmup: Optional[dict[str, Callable[[], object]]] = None) -> dict[str, list[float]]:
    """Seconds of every side for each repeat; the order alternates (A B C, C B A, ...).

    ``warmup`` maps a side to a cheaper warm-up call (default: the side itself, once).
    """
    warmup = warmup or {}
    for name, run in sides.items():
        warmup.get(name, run)()
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(time_once(sides[name], device))
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def paired_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per-repeat ratios of two sides timed back to back: robust to slow drifts of machine load."""
    return [a / b for a, b in zip(numerator, denominator)]


def verdict(ratio: float, goal: float) -> str:
    return "PASS" if ratio <= goal else "MISS"


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n== {title}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def seconds(t: float) -> str:
    return f"{t:10.4f} s"


# ---------------------------------------------------------------- 1. train step

def randomise_adapters(graph: AdapterGraph, seed: int = 5) -> None:
    """Non-zero adapters (``up`` starts at zero), so that the output check means something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in graph.adapter_parameters():
            p.add_((torch.randn(p.shape, generator=g) * 0.05).to(p.device))


def copy_adapters_into_hand(graph: AdapterGraph, hand: ParallelAdapterViT) -> None:
    """Block b's attention adapter is edge (2b, 2b+1), its MLP adapter edge (2b+1, 2b+2)."""
    with torch.no_grad():
        for b in range(len(hand.attn_adapters)):
            for dst, (i, j) in ((hand.attn_adapters[b], (2 * b, 2 * b + 1)),
                                (hand.mlp_adapters[b], (2 * b + 1, 2 * b + 2))):
                src = graph.adapter(i, j)
                dst["norm"].load_state_dict(src.norm.state_dict())
                dst["down"].weight.copy_(src.down.weight)
                dst["up"].weight.copy_(src.up.weight)
                dst.alpha.copy_(src.alpha)


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def make_train_step(model: torch.nn.Module, images, targets, lr: float = 1e-3) -> Callable[[], None]:
    """Forward + cross-entropy + backward + SGD step on the trainable parameters."""
    optimizer = torch.optim.SGD(trainable(model), lr=lr)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), targets).backward()
        optimizer.step()
    return step


def make_engine_step(model: torch.nn.Module, images, targets, lr: float = 1e-3) -> Callable[[], None]:
    """The same step through the project's training loop (``engine.fit``, one step per call), so
    that the ratio includes what the engine adds to a hand-written loop (lr schedule, device
    moves, the finite-loss check)."""
    from adapter_placement.engine import Recipe, fit, make_optimizer

    recipe = Recipe("sgd", lr, 10 ** 9, momentum=0.0)
    optimizer = make_optimizer(recipe, trainable(model))
    device = images.device
    count = [0]

    def step():
        fit(model, None, iter([(images, targets, {})]), recipe, device=device, steps=1, first_step=count[0],
            optimizer=optimizer)
        count[0] += 1
    return step


def assert_same_output(graph, hand, images, rtol: float, atol: float, when: str) -> None:
    with torch.no_grad():
        out_graph, out_hand = graph(images), hand(images)
    torch.testing.assert_close(out_graph, out_hand, rtol=rtol, atol=atol,
                               msg=lambda m: f"AdapterGraph and ParallelAdapterViT differ {when}: {m}")


def bench_train_step(shape: ViTShape, device: torch.device, repeats: int, rank: int) -> dict:
    vit = build_vit(shape, device)
    images, targets = make_batch(shape, device)
    edges = placements.parallel_all(shape.num_nodes)
    graph = AdapterGraph(copy.deepcopy(vit), edges, rank=rank)
    hand = ParallelAdapterViT(copy.deepcopy(vit), rank=rank).to(device)
    hand.vit.eval()  # AdapterGraph keeps its backbone in eval mode too
    randomise_adapters(graph)
    copy_adapters_into_hand(graph, hand)
    sizes = [sum(p.numel() for p in trainable(m)) for m in (graph, hand)]
    assert sizes[0] == sizes[1], f"trainable parameters differ: {sizes}"
    assert_same_output(graph, hand, images, rtol=1e-4, atol=1e-5, when="before training")

    steps = {"AdapterGraph": make_engine_step(graph, images, targets),
             "ParallelAdapterViT": make_train_step(hand, images, targets)}
    times = time_interleaved(steps, repeats, device)
    # both took the same SGD steps on the same batch: they must still agree
    assert_same_output(graph, hand, images, rtol=1e-3, atol=1e-4, when=f"after {repeats + 1} steps each")

    return report_train_step(shape, len(edges), rank, sizes[0], times, repeats)


def report_train_step(shape: ViTShape, num_edges: int, rank: int, size: int,
                      times: dict[str, list[float]], repeats: int) -> dict:
    graph_s, hand_s = median(times["AdapterGraph"]), median(times["ParallelAdapterViT"])
    ratio = graph_s / hand_s
    pairs = sorted(paired_ratios(times["AdapterGraph"], times["ParallelAdapterViT"]))
    print_table(f"1. train step: {num_edges} parallel adapters (rank {rank}), {shape.name}, batch {shape.batch}", [
        ("AdapterGraph through engine.fit (median)", seconds(graph_s)),
        ("ParallelAdapterViT, hand-written (median)", seconds(hand_s)),
        ("ratio AdapterGraph / hand-written", f"{ratio:10.3f}   goal <= {TRAIN_STEP_GOAL}   {verdict(ratio, TRAIN_STEP_GOAL)}"),
        ("  check: median of per-repeat ratios [min, max]", f"{median(pairs):10.3f}   [{pairs[0]:.3f}, {pairs[-1]:.3f}]"),
        ("trainable parameters (each side)", f"{size:,}"),
        ("repeats (interleaved, after 1 warm-up)", str(repeats)),
    ])
    return {"adapter_graph_s": graph_s, "hand_written_s": hand_s, "ratio": ratio, "goal": TRAIN_STEP_GOAL,
            "pass": ratio <= TRAIN_STEP_GOAL, "median_paired_ratio": median(pairs),
            "trainable_parameters": size, "times": times}


# ---------------------------------------------------------------- 2. edge scores vs naive autograd

def edge_counts(n: int) -> dict[str, int]:
    counts = {kind: 0 for kind in EDGE_KINDS}
    for i in range(n):
        for j in range(n):
            counts[edge_kind(i, j)] += 1
    return counts


def mean_target_node(n: int) -> dict[str, float]:
    """Mean j over the edges (i, j) of every kind.

    A naive pass backpropagates from the loss down to node j only (nothing below it needs a
    gradient), so its cost falls linearly with j; a recurrent edge also runs a first pass.
    """
    sums = {kind: 0 for kind in EDGE_KINDS}
    for i in range(n):
        for j in range(n):
            sums[edge_kind(i, j)] += j
    return {kind: sums[kind] / count for kind, count in edge_counts(n).items()}


def representative_edge(kind: str, j: int, n: int) -> tuple[int, int]:
    i = {"parallel": j - 1, "sequential": j, "long-range": (j - 2) // 2, "recurrent": (j + n) // 2}[kind]
    assert edge_kind(i, j) == kind
    return i, j


def naive_edges(n: int) -> dict[tuple[int, int], float]:
    """Edges to time naively, with weights: per kind, the edges at floor and ceil of the kind's
    mean j, weighted so that their weighted time is the kind's mean time if cost is linear in j."""
    weights: dict[tuple[int, int], float] = {}
    for kind, mean_j in mean_target_node(n).items():
        low = int(mean_j)
        frac = mean_j - low
        for j, w in ((low, 1.0 - frac), (low + 1, frac)):
            if w > 1e-9:
                weights[representative_edge(kind, j, n)] = w
    return weights


def naive_edge_gradient(graph: AdapterGraph, edge, images, targets) -> torch.Tensor:
    """One ordinary autograd pass with one zero linear adapter: forward, loss, backward, .grad."""
    weight = graph.adapter(*edge).weight
    weight.grad = None
    F.cross_entropy(graph(images), targets).backward()
    return weight.grad


def extrapolate_naive(per_edge_s: dict[tuple[int, int], float], weights: dict[tuple[int, int], float],
                      n: int) -> float:
    """Seconds for all n^2 naive passes: sum over kinds of count x weighted time of its timed edges."""
    counts = edge_counts(n)
    return sum(counts[edge_kind(*e)] * w * per_edge_s[e] for e, w in weights.items())


def bench_scores(shape: ViTShape, device: torch.device, repeats: int) -> dict:
    model = build_vit(shape, device)
    images, targets = make_batch(shape, device)
    batches = [(images, targets)]
    n = shape.num_nodes
    weights = naive_edges(n)
    edges = list(weights)
    # the naive graphs freeze the backbone they wrap: give them a copy, so that edge_gradients
    # runs on the plain model as a user calls it (parameters still requiring grad)
    naive_model = copy.deepcopy(model)
    graphs = {e: AdapterGraph(naive_model, [e], kind="linear") for e in edges}  # built outside the timing

    grads = edge_gradients(model, batches)
    for e in edges:  # the one-pass gradient must be the naive one, or the ratio means nothing
        naive = naive_edge_gradient(graphs[e], e, images, targets)
        assert naive.abs().max() > 0, f"edge {e}: zero gradient"
        torch.testing.assert_close(grads[e], naive, rtol=1e-3, atol=1e-4 * naive.abs().max().item(),
                                   msg=lambda m, e=e: f"one-pass and naive gradient of edge {e} differ: {m}")

    sides = {"edge_gradients": lambda: edge_gradients(model, batches),
             "score_matrix_srank": lambda: score_matrix(grads, "srank")}
    for e in edges:
        sides[f"naive {e}"] = lambda e=e: naive_edge_gradient(graphs[e], e, images, targets)
    warmup = {"score_matrix_srank": lambda: score_matrix(grads[:1], "srank")}
    times = time_interleaved(sides, repeats, device, warmup)
    return report_scores(shape, n, weights, times, repeats)


def report_scores(shape: ViTShape, n: int, weights: dict[tuple[int, int], float],
                  times: dict[str, list[float]], repeats: int) -> dict:
    grads_s, srank_s = median(times["edge_gradients"]), median(times["score_matrix_srank"])
    per_edge = {e: median(times[f"naive {e}"]) for e in weights}
    naive_all = extrapolate_naive(per_edge, weights, n)
    ratio_grads, ratio_srank = grads_s / naive_all, (grads_s + srank_s) / naive_all
    counts = edge_counts(n)
    rows = [(f"naive pass {e} {edge_kind(*e)}, weight {weights[e]:.2f} (median)", seconds(t))
            for e, t in per_edge.items()]
    rows += [
        (f"naive, all n^2 = {n * n} edges (extrapolated)", seconds(naive_all)),
        ("  = sum over kinds of count x weighted time", ", ".join(f"{k} {c}" for k, c in counts.items())),
        ("edge_gradients, one pass (median)", seconds(grads_s)),
        ("score_matrix srank, n^2 SVDs (median)", seconds(srank_s)),
        ("ratio gradients only", f"{ratio_grads:10.4f}   goal <= {SCORES_GOAL}   {verdict(ratio_grads, SCORES_GOAL)}"),
        ("ratio gradients + srank", f"{ratio_srank:10.4f}   goal <= {SCORES_GOAL}   {verdict(ratio_srank, SCORES_GOAL)}"),
        ("repeats (interleaved, after 1 warm-up)", str(repeats)),
    ]
    print_table(f"2. edge scores: all {n}^2 edges in one pass vs one autograd pass per edge, "
                f"{shape.name}, batch {shape.batch}", rows)
    return {"naive_per_edge_s": {str(e): t for e, t in per_edge.items()},
            "naive_edge_weights": {str(e): w for e, w in weights.items()}, "naive_all_edges_s": naive_all,
            "edge_gradients_s": grads_s, "score_matrix_srank_s": srank_s,
            "ratio_gradients_only": ratio_grads, "ratio_gradients_and_srank": ratio_srank, "goal": SCORES_GOAL,
            "pass_gradients_only": ratio_grads <= SCORES_GOAL, "pass_gradients_and_srank": ratio_srank <= SCORES_GOAL,
            "edge_counts": counts, "times": times}


# ---------------------------------------------------------------- 3. peak memory (fresh subprocess)

def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def current_usage(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    import psutil
    return psutil.Process().memory_info().rss


def peak_usage(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()


@contextmanager
def count_saved_tensors(model) -> Iterator[dict[int, int]]:
    """Storages autograd saves for backward inside the block (weights excluded): data_ptr -> bytes.

    The hook keeps the tensor itself (no copy), so it changes neither the result nor the memory.
    """
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in weights:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield storages


def memory_worker(device: torch.device, fn: str, srank_rows: int) -> dict:
    """Runs in a fresh process: the peak of score_edges (= edge_gradients + score_matrix)."""
    shape = VIT_B16
    model = build_vit(shape, device)
    images, targets = make_batch(shape, device)
    baseline = current_usage(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # score_edges(model, batches, fn=fn) runs exactly these two calls; they are made separately
    # here to time them apart and to reuse the gradients for the srank timing on a few rows
    start = time.perf_counter()
    with count_saved_tensors(model) as saved:
        grads = edge_gradients(model, [(images, targets)])
    synchronize(device)
    grads_s = time.perf_counter() - start
    start = time.perf_counter()
    score_matrix(grads, fn)
    synchronize(device)
    result = {"fn": fn, "baseline_bytes": baseline, "peak_increase_bytes": peak_usage(device) - baseline,
              "edge_gradients_s": grads_s, "score_matrix_s": time.perf_counter() - start,
              "saved_activation_bytes": sum(saved.values())}
    if fn != "srank":
        start = time.perf_counter()
        score_matrix(grads[:srank_rows], "srank")
        synchronize(device)
        result.update(srank_rows=srank_rows, srank_rows_s=time.perf_counter() - start,
                      peak_increase_with_srank_bytes=peak_usage(device) - baseline)
    return result


def run_memory_worker(device: torch.device, fn: str, srank_rows: int, threads: int) -> dict:
    command = [sys.executable, __file__, "--memory-worker", "--device", str(device),
               "--memory-fn", fn, "--srank-rows", str(srank_rows), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_estimate(shape: ViTShape, saved_activations: int) -> dict:
    n, d, rows = shape.num_nodes, shape.embed_dim, shape.batch * shape.tokens
    return {"gradient_stack_bytes": n * n * d * d * 4,   # the (n, n, d, d) float32 result
            "node_captures_bytes": 3 * n * rows * d * 4,  # x_i, z_i, g_j stacked, float32
            "saved_activations_bytes": saved_activations}


def bench_memory(device: torch.device, fn: str, srank_rows: int, threads: int) -> dict:
    shape = VIT_B16
    r = run_memory_worker(device, fn, srank_rows, threads)
    est = memory_estimate(shape, r["saved_activation_bytes"])
    estimate = sum(est.values())
    what = "peak RSS increase (ru_maxrss)" if device.type == "cpu" else "torch.cuda.max_memory_allocated increase"
    n, d = shape.num_nodes, shape.embed_dim
    rows = [
        (f"measured: {what}, fn={fn}", gib(r["peak_increase_bytes"])),
        ("estimate: gradient stack n^2 d^2 x 4 B", f"{gib(est['gradient_stack_bytes'])}   (n={n}, d={d})"),
        ("estimate: node captures x, z, g: 3 n B T d x 4 B", gib(est["node_captures_bytes"])),
        ("estimate: activations autograd saved in it (counted)", gib(est["saved_activations_bytes"])),
        ("estimate: total", gib(estimate)),
        ("measured / estimate", f"{r['peak_increase_bytes'] / estimate:10.2f}"),
        ("measured / gradient stack", f"{r['peak_increase_bytes'] / est['gradient_stack_bytes']:10.2f}"),
        ("edge_gradients (one run)", seconds(r["edge_gradients_s"])),
        (f"score_matrix {fn} (one run)", seconds(r["score_matrix_s"])),
    ]
    if fn != "srank":
        per_row = r["srank_rows_s"] / r["srank_rows"]
        r["srank_all_rows_extrapolated_s"] = per_row * n
        rows += [(f"score_matrix srank on {r['srank_rows']} of {n} rows", seconds(r["srank_rows_s"])),
                 (f"score_matrix srank, all {n} rows (extrapolated)", seconds(per_row * n)),
                 ("measured peak incl. the srank rows", gib(r["peak_increase_with_srank_bytes"]))]
    print_table(f"3. peak memory of score_edges, {shape.name}, batch {shape.batch}, device {device} "
                f"(fresh subprocess; scores with fn={fn}"
                + ("" if fn == "srank" else f", srank timed on {srank_rows} row(s) and extrapolated") + ")", rows)
    return {**r, "estimate": est, "estimate_total_bytes": estimate}


def gib(nbytes: float) -> str:
    return f"{nbytes / GIB:10.3f} GiB"


# ---------------------------------------------------------------- main

def machine_info(device: torch.device) -> dict:
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
            "torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def warn_if_busy() -> None:
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores and "OMP_WAIT_POLICY" not in os.environ:
        print(f"warning: load average {load:.1f} on {cores} cores; OpenMP threads that spin-wait slow down "
              "badly on a busy machine (the SVDs most): consider OMP_WAIT_POLICY=PASSIVE (see README)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--vit-b16", action="store_true", help="benchmarks 1-2 on real ViT-B/16 shapes (224 px, d=768)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--rank", type=int, default=8, help="adapter rank for benchmark 1 (default 8)")
    p.add_argument("--train-repeats", type=int, default=40, help="timed train steps per side (default 40)")
    p.add_argument("--score-repeats", type=int, default=5, help="timed runs per side in benchmark 2 (default 5)")
    p.add_argument("--skip-memory", action="store_true", help="skip benchmark 3")
    p.add_argument("--memory-fn", default="frobenius", choices=["frobenius", "srank"],
                   help="score function for benchmark 3; frobenius (default) times srank on --srank-rows rows only")
    p.add_argument("--srank-rows", type=int, default=1, help="rows of the n x n srank timed in benchmark 3")
    p.add_argument("--only", choices=["train", "scores", "memory"], help="run one benchmark")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--memory-worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.memory_worker:
        print(json.dumps(memory_worker(device, args.memory_fn, args.srank_rows)))
        return
    shape = VIT_B16 if args.vit_b16 else SMALL
    results = {"machine": machine_info(device), "args": vars(args), "shape": asdict(shape)}
    print("machine:", ", ".join(f"{k}={v}" for k, v in results["machine"].items()))
    warn_if_busy()
    if args.only in (None, "train"):
        results["train_step"] = bench_train_step(shape, device, args.train_repeats, args.rank)
    if args.only in (None, "scores"):
        results["scores"] = bench_scores(shape, device, args.score_repeats)
    if args.only in (None, "memory") and not args.skip_memory:
        results["memory"] = bench_memory(device, args.memory_fn, args.srank_rows, args.threads)
    load = os.getloadavg()[0]
    results["machine"]["load_average_1min_at_end"] = round(load, 2)
    print(f"\nload average (1 min) at the end: {load:.2f} on {os.cpu_count()} cores"
          + ("  -- the machine was busy: timings are noisy" if load > os.cpu_count() else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
