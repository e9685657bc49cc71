"""Two costs of a MiniLM training step on the embedded text tasks, each measured side by side.

1. optimiser : one AdamW step over all of MiniLM's parameters (full fine-tuning), torch's per-tensor
               loop against the fused kernel that ``engine.make_optimizer`` picks on CPU and CUDA
2. padding   : forward + backward of parallel adapters on MNLI-stand-in batches padded to the
               split's longest example against the same batches cut to their own longest
               (``data.tasks.trim_padding``)
3. precision : the same cut batches in fp32 against bf16 autocast (config.yaml's ``precision: bf16``
               of MiniLM: worth it on CPUs with AVX512-BF16 or AMX, slower on those without)
4. grouping  : bf16 steps of parallel adapters on the batches of a run's first steps, drawn at random
               against grouped by length (``train.batch_indices`` with lengths, the default
               ``group_by_length``), on the SST-2 stand-in (batch 16) and the MNLI one (batch 32)

Both sides of a ratio run in the same process, interleaved (A B, B A, ...); medians over repeats.

    python benchmarks/bench_text_step.py --threads 1 --repeats 15
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from adapter_placement.backbones import call_model
from adapter_placement.data import load_task
from adapter_placement.data.tasks import index_inputs, trim_padding
from adapter_placement.engine import logits_of
from adapter_placement.graph import AdapterGraph
from adapter_placement.models import load_model
from adapter_placement.placements import parallel_all
from adapter_placement.train import batch_indices, example_lengths
from bench_graph import time_interleaved  # the benchmarks' one side-by-side timer


CPU = torch.device("cpu")


def interleaved(a, b, repeats: int) -> tuple[float, float]:
    """Median seconds of a() and b() after one warm-up call each, alternating which goes first."""
    times = time_interleaved({"a": a, "b": b}, repeats, CPU)
    return statistics.median(times["a"]), statistics.median(times["b"])


def bench_optimiser(repeats: int) -> tuple[float, float]:
    model = load_model("minilm", 3).model
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    loop = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1, foreach=False)
    fused = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1, fused=True)
    return interleaved(loop.step, fused.step, repeats)


def bench_padding(repeats: int, batch_size: int) -> tuple[float, float, float, float]:
    loaded = load_model("minilm", 3)
    graph = AdapterGraph(loaded.model, parallel_all(13), rank=8).train()
    task = load_task("vader_mnli", seed=0, sizes={"train": 3000, "val": 300, "test": 1000})
    inputs, labels = task.tensors("train")
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, len(labels), (batch_size,), generator=g) for _ in range(repeats)]
    state = {"k": 0}

    def step(cut: bool, bf16: bool = False):
        index = batches[state["k"] % repeats]
        state["k"] += 1
        batch = index_inputs(inputs, index)
        if cut:
            batch = trim_padding(batch)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = logits_of(call_model(graph, batch))
        loss = F.cross_entropy(logits.float(), labels[index])
        loss.backward()
        graph.zero_grad(set_to_none=True)

    widths = [trim_padding(index_inputs(inputs, i))[0]["input_ids"].shape[1] for i in batches]
    padded, cut = interleaved(lambda: step(False), lambda: step(True), repeats)
    fp32, bf16 = interleaved(lambda: step(True), lambda: step(True, bf16=True), repeats)
    return padded, cut, float(inputs["input_ids"].shape[1]), statistics.mean(widths), fp32, bf16


TEXT_TASKS = {"vader_sst2": ({"train": 1200, "val": 500, "test": 500}, 16),
              "vader_mnli": ({"train": 3000, "val": 300, "test": 1000}, 32)}  # config.yaml's sizes


def bench_grouping(repeats: int, task_name: str) -> tuple[float, float, float, float]:
    """Seconds of a step on the batches of steps 0.. of seed 0, random and grouped by length, and
    the mean tokens an example of each (after trim_padding)."""
    sizes, batch_size = TEXT_TASKS[task_name]
    loaded = load_model("minilm", 3 if task_name == "vader_mnli" else 2)
    graph = AdapterGraph(loaded.model, parallel_all(13), rank=8).train()
    inputs, labels = load_task(task_name, seed=0, sizes=sizes).tensors("train")
    lengths = example_lengths(inputs)
    sides = {"random": [batch_indices(len(labels), batch_size, 0, k) for k in range(repeats)],
             "grouped": [batch_indices(len(labels), batch_size, 0, k, lengths) for k in range(repeats)]}
    state = dict.fromkeys(sides, 0)

    def step(side: str):
        index = sides[side][state[side] % repeats]
        state[side] += 1
        batch = trim_padding(index_inputs(inputs, index))[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = logits_of(call_model(graph, batch))
        F.cross_entropy(logits.float(), labels[index]).backward()
        graph.zero_grad(set_to_none=True)

    def tokens(side: str) -> float:
        return statistics.mean(trim_padding(index_inputs(inputs, i))[0]["input_ids"].shape[1] for i in sides[side])

    random, grouped = interleaved(lambda: step("random"), lambda: step("grouped"), repeats)
    return random, grouped, tokens("random"), tokens("grouped")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    loop, fused = bench_optimiser(args.repeats)
    print(f"AdamW step, MiniLM (22.7M parameters): loop {1e3 * loop:.1f} ms, fused {1e3 * fused:.1f} ms, "
          f"fused / loop = {fused / loop:.2f}")
    padded, cut, width, mean_width, fp32, bf16 = bench_padding(args.repeats, args.batch_size)
    print(f"PA forward + backward, MNLI stand-in, batch {args.batch_size}: padded to {width:.0f} tokens "
          f"{1e3 * padded:.1f} ms, cut (mean {mean_width:.1f} tokens) {1e3 * cut:.1f} ms, "
          f"cut / padded = {cut / padded:.2f}")
    print(f"the cut batches in fp32 {1e3 * fp32:.1f} ms, in bf16 autocast {1e3 * bf16:.1f} ms, "
          f"bf16 / fp32 = {bf16 / fp32:.2f}")
    for task_name in TEXT_TASKS:
        random, grouped, width_random, width_grouped = bench_grouping(args.repeats, task_name)
        print(f"PA bf16 step, {task_name}, batch {TEXT_TASKS[task_name][1]}: random batches "
              f"({width_random:.1f} tokens) {1e3 * random:.1f} ms, grouped by length ({width_grouped:.1f} tokens) "
              f"{1e3 * grouped:.1f} ms, grouped / random = {grouped / random:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
