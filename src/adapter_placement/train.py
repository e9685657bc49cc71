"""Training for every method: linear probe, full fine-tuning, adapters on any edges (App. A).

One run, from the command line or from Python::

    python -m adapter_placement.train --dataset vader_sst2 --model minilm --method adapters \\
        --edges 0,1 5,6 11,2 --steps 300 --lr 1e-3 --out results/runs/example
    metrics = train(TrainConfig(dataset="vader_sst2", model="minilm", edges=[(0, 1)]), "out/dir")

A run's folder holds ``checkpoint.pt`` while it trains, then ``adapters.safetensors`` (the trained
weights) and ``metrics.json``, the result, written last. Every file is written under a temporary
name and renamed, so a killed run never leaves a half-written one; a run started again resumes
from its last checkpoint and ends with the same metrics; a finished run is never redone.

The protocol of App. A (``run_protocol``): every learning rate of a grid on ``train``, scored
on ``val`` by accuracy averaged over seeds; then the best one trained on ``train+val`` for every
seed, reporting ``test`` accuracy (mean and std).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import atomic, engine
from .adapters import check_adapter_args
from .backbones import describe
from .cache import NodeCache, fill_together
from .data import num_classes_of
from .data.tasks import InMemoryTask, index_inputs, trim_padding
from .data.tfds_loader import TfdsTask
from .device import check_device_spec, check_precision, enable_tf32, resolve_device
from .engine import NonFiniteLossError, Recipe, default_warmup, recipe_for
from .graph import AdapterGraph

METHODS = ("linear_probe", "full_ft", "adapters")
SPLITS = ("train", "val", "test", "train+val")


@dataclass
class TrainConfig:
    dataset: str
    model: str
    method: str = "adapters"
    edges: list = field(default_factory=list)
    rank: int = 8
    activation: str = "gelu"
    adapter_kind: str = "bottleneck"
    lr: float = 1e-3
    seed: int = 0  # initialisation and batch order
    data_seed: int = 0  # the data itself (embedded tasks, seeded hold-outs)
    steps: int = 500
    batch_size: int = 64
    warmup_steps: Optional[int] = None  # None: vision min(500, steps/10), text 6% of steps
    train_split: str = "train"
    eval_splits: tuple = ("val",)
    eval_batch_size: int = 256
    checkpoint_every: int = 100
    log_every: int = 10
    prefix_cache: bool = False  # reuse the frozen prefix and first pass from disk (cache_dir)
    cache_dir: str = "results/cache"
    data_dir: Optional[str] = None  # tensorflow-datasets folder (paper scale)
    data_sizes: Optional[dict] = None  # embedded tasks only: {split: examples} (load_task's `sizes`)
    tracking_uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db
    track: bool = True
    experiment: str = "runs"
    tags: dict = field(default_factory=dict)
    progress: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (device.resolve_device)
    precision: str = "fp32"  # fp32 | bf16 (autocast; weights and optimiser state stay float32)
    micro_batch_size: Optional[int] = None  # gradient accumulation: same gradient, less memory
    group_by_length: bool = True  # text held in memory: batches of similar length (batch_indices), less padding

    def __post_init__(self):
        self.edges = [tuple(int(v) for v in e) for e in self.edges]
        self.eval_splits = tuple(self.eval_splits)
        if self.data_sizes is not None:
            self.data_sizes = {str(k): int(v) for k, v in sorted(dict(self.data_sizes).items())}

    @classmethod
    def from_spec(cls, spec, edges, lr: float, steps: int) -> "TrainConfig":
        """The config of a planned run (a ``plan.RunSpec``: its recipe and io) on ``edges``, with the
        lr and steps it was given or that the lr selection chose."""
        r, io = spec.recipe, spec.io
        return cls(dataset=r.task, model=r.model, method=r.method, edges=edges, rank=r.rank,
                   activation=r.activation, adapter_kind=r.kind, lr=lr, seed=r.seed, data_seed=r.data_seed,
                   steps=steps, batch_size=r.batch_size, train_split=r.train_split, eval_splits=r.eval_splits,
                   data_sizes=r.data_sizes, precision=r.precision, prefix_cache=io.prefix_cache,
                   cache_dir=io.cache_dir, data_dir=io.data_dir, tracking_uri=io.tracking_uri,
                   experiment=io.experiment, tags=dict(io.tags), progress=io.progress, device=io.device,
                   micro_batch_size=io.micro_batch_size)

    def check(self) -> None:
        """Every value that can be checked without loading anything; ValueError names it."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if (self.method == "adapters") != bool(self.edges):
            raise ValueError(f"method {self.method!r} with edges {self.edges}: adapters need edges, "
                             "the other methods take none")
        check_adapter_args(self.rank, self.activation, self.adapter_kind)
        for name in ("steps", "batch_size", "eval_batch_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        for split in (self.train_split, *self.eval_splits):
            if split not in SPLITS:
                raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if self.warmup_steps is not None and not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in 0..steps-1, got {self.warmup_steps!r}")
        check_device_spec(self.device)
        check_precision(self.precision)
        if self.micro_batch_size is not None and not (isinstance(self.micro_batch_size, int)
                                                      and 1 <= self.micro_batch_size <= self.batch_size):
            raise ValueError(f"micro_batch_size must be an integer in 1..batch_size ({self.batch_size}), "
                             f"got {self.micro_batch_size!r}")


# ---------------------------------------------------------------- building blocks

def build_network(cfg: TrainConfig, model: nn.Module) -> tuple[nn.Module, list[nn.Parameter]]:
    """The network to train and its trainable parameters, for each method."""
    head = describe(model).head
    if cfg.method in ("adapters", "linear_probe"):
        # a linear probe is the graph without adapters: the same frozen backbone (eval mode,
        # dropout off), and with the prefix cache its head trains on the cached last node
        graph = AdapterGraph(model, cfg.edges, cfg.rank, cfg.activation, cfg.adapter_kind)
        return graph, list(graph.adapter_parameters()) + list(graph.head_parameters())
    for p in model.parameters():
        p.requires_grad_(cfg.method == "full_ft")
    for p in head.parameters():
        p.requires_grad_(True)
    return model, [p for p in model.parameters() if p.requires_grad]


def recipe_of(cfg: TrainConfig, modality: str) -> Recipe:
    """The run's optimiser and schedule: App. A's recipe of its modality (``engine.recipe_for``)."""
    return recipe_for(modality, cfg.lr, cfg.steps, cfg.warmup_steps)


LENGTH_GROUP_BATCHES = 8  # batches of an epoch sorted together by length (group_by_length)


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int,
                  lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The examples of training step ``step``: a fresh permutation per epoch, a function of
    (seed, step) alone, so that a resumed run sees exactly the batches it would have seen.

    With ``lengths`` (tokens per example), the epoch's permutation is cut into groups of
    ``LENGTH_GROUP_BATCHES`` batches, each group is sorted by length before it is cut into batches,
    and the epoch's batches are shuffled. A text batch is padded to its longest example, so this
    spends fewer steps on padding: the SST-2 stand-in's batches of 16 hold 4.3 tokens per example
    instead of 5.8 (mean 4.0), MNLI's of 32 6.4 instead of 8.3 (mean 6.1). Ties keep the random order,
    and every example of the epoch's permutation is still seen once per epoch."""
    per_epoch = max(1, num_examples // batch_size)
    epoch, k = divmod(step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_examples, generator=generator)
    if lengths is not None:
        order = _grouped_by_length(order[:per_epoch * batch_size], lengths, batch_size, generator)
    return order[k * batch_size:(k + 1) * batch_size]


def _grouped_by_length(order: torch.Tensor, lengths: torch.Tensor, batch_size: int,
                       generator: torch.Generator) -> torch.Tensor:
    groups = order.split(LENGTH_GROUP_BATCHES * batch_size)
    batches = torch.cat([g[torch.sort(lengths[g], stable=True).indices] for g in groups]).split(batch_size)
    return torch.cat([batches[i] for i in torch.randperm(len(batches), generator=generator)])


def example_lengths(inputs) -> Optional[torch.Tensor]:
    """Tokens per example of text inputs (their attention mask); None for images."""
    if isinstance(inputs, Mapping) and "attention_mask" in inputs:
        return inputs["attention_mask"].sum(dim=1)
    return None


def trainable_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in net.named_parameters() if p.requires_grad}


# ---------------------------------------------------------------- one run

def train(cfg: TrainConfig, out_dir) -> dict:
    """Train one run into ``out_dir`` and return its metrics (also in ``out_dir/metrics.json``)."""
    cfg.check()
    out = Path(out_dir)
    finished = _finished_result(out, cfg)
    if finished is not None:  # finished before with this config: never redone, never overwritten
        return finished
    from .data import load_task
    from .models import load_model

    device = resolve_device(cfg.device)  # a missing GPU fails here, before anything is loaded
    enable_tf32(device)
    torch.manual_seed(cfg.seed)
    loaded = load_model(cfg.model, num_classes_of(cfg.dataset))
    net, params = build_network(cfg, loaded.model)  # bad edges fail here, before any data or training
    net.to(device)  # in place: ``params`` are the same Parameter objects, now on the device
    task = _load_task(cfg, loaded)
    out.mkdir(parents=True, exist_ok=True)
    with _tracked(cfg, out, task) as run:
        return _train(cfg, out, net, params, task, loaded.modality, run, device)


def prefetch_nodes(runs) -> None:
    """Fill the prefix cache for several runs, ``(cfg, out_dir)`` pairs, before they start: one
    plain pass per dataset and split computes every node the unfinished ones read (``train``
    alone fills it run by run)."""
    from .models import load_model

    groups: dict[tuple, list[TrainConfig]] = {}
    for cfg, out_dir in runs:
        if cfg.prefix_cache and cfg.method != "full_ft" and _finished_result(Path(out_dir), cfg) is None:
            key = (cfg.dataset, cfg.model, cfg.data_seed, cfg.data_dir, json.dumps(cfg.data_sizes), cfg.cache_dir)
            groups.setdefault(key, []).append(cfg)
    for group in groups.values():
        cfg = group[0]
        loaded = load_model(cfg.model, num_classes_of(cfg.dataset))
        loaded.model.to(resolve_device(cfg.device))
        task = _load_task(cfg, loaded)
        caches = [_node_cache(c, AdapterGraph(loaded.model, c.edges, rank=1), task) for c in group]
        splits = dict.fromkeys(s for c in group for s in (c.train_split, *c.eval_splits))
        fill_together([c for c in caches if c is not None and c.files], splits)


def _train(cfg, out, net, params, task, modality, run, device) -> dict:
    recipe = recipe_of(cfg, modality)
    opt = engine.make_optimizer(recipe, params)
    losses = _resume(out / "checkpoint.pt", net, opt)
    cache = _node_cache(cfg, net, task)
    started, first_step = time.perf_counter(), len(losses)

    def after_update(step, loss, opt):
        losses.append(loss)
        if run is not None and (step % cfg.log_every == 0 or step == cfg.steps - 1):
            run.log_metrics({"train_loss": loss, "lr": opt.param_groups[0]["lr"]}, step=step)
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            atomic.torch_save(out / "checkpoint.pt", _checkpoint(cfg, net, opt, losses))

    net.train()
    try:
        engine.fit(net, params, training_batches(task, cfg, first_step, cache), recipe, device=device,
                   precision=cfg.precision, first_step=first_step, optimizer=opt,
                   micro_batch_size=cfg.micro_batch_size, on_step=after_update,
                   progress=_progress(cfg, first_step))
    except NonFiniteLossError as error:
        raise NonFiniteLossError(f"run {out}: {error}") from None
    seconds = time.perf_counter() - started
    metrics = _metrics(cfg, net, task, cache, losses, seconds, cfg.steps - first_step, device)
    if run is not None:
        run.log_metrics({k: v for k, v in metrics.items() if k.endswith("_accuracy")}, step=cfg.steps)
        metrics["mlflow_run_id"] = run.run_id
    _save_weights(cfg, out, net, run)
    atomic.write_json(out / "metrics.json", metrics)
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return metrics


def training_batches(task, cfg: TrainConfig, first_step: int, cache=None):
    """(inputs, labels, extras) for steps first_step, first_step + 1, ...: a function of the seed
    and the step alone, so that a resumed run sees exactly the batches it would have seen.

    Tasks held in memory are indexed directly (and can use the node cache); streamed tasks
    (paper-scale tfds) are read epoch by epoch, skipping the batches a resumed run already saw.
    """
    if isinstance(task, InMemoryTask) or cache is not None:
        inputs, labels = task.tensors(cfg.train_split)
        lengths = example_lengths(inputs) if cfg.group_by_length else None
        for step in itertools.count(first_step):
            index = batch_indices(len(labels), cfg.batch_size, cfg.seed, step, lengths)
            extras = cache.extras(cfg.train_split, index) if cache else {}
            batch, extras = trim_padding(index_inputs(inputs, index), extras)
            yield batch, labels[index], extras
        return
    per_epoch = max(1, task.split_sizes[cfg.train_split] // cfg.batch_size)
    epoch, skip = divmod(first_step, per_epoch)
    while True:
        order_seed = cfg.seed * 100_003 + epoch
        order = dict(shuffle=True, seed=order_seed, drop_last=True)
        if isinstance(task, TfdsTask):  # skipped before decoding: a resumed iNat run decodes no batch twice
            epoch_batches = task.batches(cfg.train_split, cfg.batch_size, skip_batches=skip, **order)
        else:
            epoch_batches = itertools.islice(task.batches(cfg.train_split, cfg.batch_size, **order), skip, None)
        for inputs, labels in epoch_batches:
            yield trim_padding(inputs)[0], labels, {}
        epoch, skip = epoch + 1, 0


def eval_batches(task, split: str, batch_size: int, cache=None):
    """(inputs, labels, extras) over a whole split, every example once. Text examples go in order of
    length, so each batch is padded to about its own examples' length (an accuracy does not depend
    on the order; the SST-2 stand-in's test set of 500 then costs 5.5 tokens an example, not 7.0)."""
    if not (isinstance(task, InMemoryTask) or cache is not None):
        for inputs, labels in task.batches(split, batch_size):
            yield trim_padding(inputs)[0], labels, {}
        return
    inputs, labels = task.tensors(split)
    lengths = example_lengths(inputs)
    order = torch.arange(len(labels)) if lengths is None else torch.sort(lengths, stable=True).indices
    for index in order.split(batch_size):
        batch, extras = trim_padding(index_inputs(inputs, index), cache.extras(split, index) if cache else {})
        yield batch, labels[index], extras


def _progress(cfg: TrainConfig, first_step: int):
    from tqdm.auto import tqdm

    return tqdm(range(first_step, cfg.steps), initial=first_step, total=cfg.steps, disable=not cfg.progress,
                desc=f"{cfg.dataset} {cfg.method}", unit="step", mininterval=1.0, dynamic_ncols=True)


# fields that do not change what a run computes (the cache gives equal results within float
# tolerance); any other difference makes it a different run
NOT_RESULT_FIELDS = ("checkpoint_every", "log_every", "prefix_cache", "cache_dir", "tracking_uri", "track",
                     "experiment", "tags", "progress", "eval_batch_size", "device", "micro_batch_size")


def result_key(cfg: TrainConfig) -> dict:
    return {k: v for k, v in _plain(dataclasses.asdict(cfg)).items() if k not in NOT_RESULT_FIELDS}


def _finished_result(out: Path, cfg: TrainConfig) -> Optional[dict]:
    """The metrics of a finished run of this config in ``out``, else None. A run of another
    config found there (finished or not) is moved aside to ``out.superseded-N``, never deleted."""
    key = result_key(cfg)
    if (out / "metrics.json").exists():
        metrics = json.loads((out / "metrics.json").read_text())
        if result_key(TrainConfig(**metrics["config"])) == key:
            return metrics
    elif not (out / "checkpoint.pt").exists() or _checkpoint_key(out / "checkpoint.pt") == key:
        return None  # nothing there yet, or this very run to resume
    n = 1 + sum(1 for _ in out.parent.glob(f"{out.name}.superseded-*"))
    out.rename(out.parent / f"{out.name}.superseded-{n}")
    return None


def _checkpoint_key(path: Path) -> Optional[dict]:
    return torch.load(path, map_location="cpu", weights_only=True).get("config")


def _checkpoint(cfg, net, opt, losses) -> dict:
    # the schedule is a function of the step, and the step is len(losses): no scheduler state
    return {"config": result_key(cfg), "trainable": trainable_state(net), "optimizer": opt.state_dict(),
            "losses": list(losses)}


def _resume(path: Path, net, opt) -> list[float]:
    """Load the last checkpoint if there is one; returns the losses of the steps already done."""
    if not path.exists():
        return []
    state = torch.load(path, map_location="cpu", weights_only=True)
    params = dict(net.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    opt.load_state_dict(state["optimizer"])  # moves the state to the parameters' device
    return list(state["losses"])


def accuracy(net: nn.Module, task, split: str, batch_size: int, cache=None, device=None,
             precision: str = "fp32") -> float:
    device = device if device is not None else next(net.parameters()).device
    return engine.accuracy(net, eval_batches(task, split, batch_size, cache), device=device, precision=precision)


def _metrics(cfg, net, task, cache, losses, seconds, steps_run, device) -> dict:
    tail = losses[-max(1, len(losses) // 10):]
    metrics = {f"{split.replace('+', '_')}_accuracy":
               accuracy(net, task, split, cfg.eval_batch_size, cache, device, cfg.precision)
               for split in cfg.eval_splits}
    metrics.update(train_loss=statistics.fmean(tail), steps=cfg.steps, seconds=seconds,
                   steps_per_second=steps_run / seconds if seconds > 0 else None,
                   trainable_parameters=sum(p.numel() for p in net.parameters() if p.requires_grad),
                   config=_plain(dataclasses.asdict(cfg)))
    return metrics


def _save_weights(cfg, out: Path, net, run) -> None:
    if cfg.method == "full_ft":
        return  # a whole backbone per run is not an artefact worth keeping
    weights = trainable_state(net)
    atomic.save_safetensors(out / "adapters.safetensors", weights)
    if run is not None:
        run.log_tensors("adapters.safetensors", weights)
        run.log_json("placement.json", {"edges": cfg.edges, "rank": cfg.rank,
                                        "activation": cfg.activation, "kind": cfg.adapter_kind})


_TASKS: dict = {}  # in-memory tasks built in this process, so a batch of runs builds each once


def _load_task(cfg: TrainConfig, loaded):
    """The run's task; embedded (in-memory) tasks are deterministic, so they are built once per
    process and shared by the runs of a batch (the model's tokenizer and data config are fixed
    by the model spec, hence part of the key), and with the prefix cache, once per pipeline: the
    splits are stored beside the cached nodes (``data.stored_splits``)."""
    from .data import EMBEDDED_TASKS, load_task

    key = (cfg.dataset, cfg.model, cfg.data_seed, cfg.data_dir, json.dumps(cfg.data_sizes, sort_keys=True))
    if key in _TASKS:
        return _TASKS[key]
    task = load_task(cfg.dataset, seed=cfg.data_seed, data_dir=cfg.data_dir, tokenizer=loaded.tokenizer,
                     data_config=loaded.data_config, sizes=cfg.data_sizes,
                     cache_dir=cfg.cache_dir if cfg.prefix_cache else None)
    if cfg.dataset in EMBEDDED_TASKS:
        _TASKS.clear()  # keep one: a batch is one dataset
        _TASKS[key] = task
    return task


def _node_cache(cfg, net, task) -> Optional[NodeCache]:
    """The frozen prefix and first pass of this graph's edges, from disk (computed once)."""
    if not (cfg.prefix_cache and isinstance(net, AdapterGraph)):
        return None
    root = Path(cfg.cache_dir)
    if cfg.data_sizes:  # other sizes are other examples: never share their cached nodes
        digest = hashlib.sha256(json.dumps(cfg.data_sizes, sort_keys=True).encode()).hexdigest()[:12]
        root = root / f"sizes-{digest}"
    return NodeCache(net, task, root, cfg.model, cfg.data_seed, cfg.eval_batch_size)


@contextlib.contextmanager
def _tracked(cfg: TrainConfig, out: Path, task):
    if not cfg.track:
        yield None
        return
    from .tracking import task_datasets, tracked_run

    params = {k: v for k, v in _plain(dataclasses.asdict(cfg)).items()
              if k not in ("tags", "progress", "track", "tracking_uri")}
    with tracked_run(cfg.experiment, run_key=str(out), params=params,
                     tags={k: str(v) for k, v in cfg.tags.items()}, uri=cfg.tracking_uri,
                     datasets=task_datasets(task, [cfg.train_split, *cfg.eval_splits])) as run:
        yield run


def _plain(config: dict) -> dict:
    return json.loads(json.dumps(config, default=list))


# ---------------------------------------------------------------- the protocol of App. A

def select_lr(val_accuracy: dict[float, list[float]]) -> float:
    """The learning rate with the best validation accuracy averaged over seeds (ties: smaller)."""
    return max(sorted(val_accuracy), key=lambda lr: statistics.fmean(val_accuracy[lr]))


def run_protocol(base: TrainConfig, lrs, seeds, out_dir) -> dict:
    """Select the lr on ``val`` over seeds, then train on ``train+val`` and report ``test``."""
    out = Path(out_dir)
    val = {lr: [train(dataclasses.replace(base, lr=lr, seed=s, train_split="train", eval_splits=("val",)),
                      out / f"select/lr{lr:g}/seed{s}")["val_accuracy"] for s in seeds] for lr in lrs}
    best = select_lr(val)
    test = [train(dataclasses.replace(base, lr=best, seed=s, train_split="train+val", eval_splits=("test",)),
                  out / f"final/seed{s}")["test_accuracy"] for s in seeds]
    summary = {"lr": best, "val_accuracy": {f"{lr:g}": v for lr, v in val.items()}, "test_accuracy": test,
               "test_mean": statistics.fmean(test), "test_std": statistics.pstdev(test)}
    atomic.write_json(out / "summary.json", summary)
    return summary


# ---------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m adapter_placement.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the run's folder")
    p.add_argument("--lrs", type=float, nargs="+", help="run the App. A protocol over this lr grid")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the protocol")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "edges":
            p.add_argument(flag, nargs="*", default=[], metavar="I,J", help="adapter edges, e.g. 0,1 5,5")
        elif f.name in ("eval_splits",):
            p.add_argument(flag, nargs="+", default=["val"])
        elif f.name == "tags":
            p.add_argument(flag, nargs="*", default=[], metavar="KEY=VALUE")
        elif f.name == "data_sizes":
            p.add_argument(flag, type=json.loads, default=None, metavar="JSON", help='e.g. \'{"train": 800}\'')
        elif f.type in ("bool",):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float, "Optional[int]": int}.get(f.type, str)
            default = None if f.default is dataclasses.MISSING else f.default
            p.add_argument(flag, type=kind, default=default, required=f.default is dataclasses.MISSING)
    return p


def main(argv=None) -> None:
    args = vars(_parser().parse_args(argv))
    out, lrs, seeds = args.pop("out"), args.pop("lrs"), args.pop("seeds")
    args["edges"] = [tuple(int(v) for v in e.split(",")) for e in args["edges"]]
    args["tags"] = dict(t.split("=", 1) for t in args["tags"])
    cfg = TrainConfig(**args)
    result = run_protocol(cfg, lrs, seeds, out) if lrs else train(cfg, out)
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    main()
