"""The jobs of the Snakemake workflow: ``python -m adapter_placement.pipeline <command> JOB_JSON``.

Each rule hands its job to one command as a JSON object (its ``params.job``): what to compute
(``spec``, a pure function of the config, see ``plan``), the paths of its ``input`` and its
``output``. The commands do the I/O; the logic is in ``plan`` (what runs), ``train``,
``scores``, ``gga``, ``analysis`` (tables), ``figures`` and ``report``.

========================  ===================================================================
command                   job
========================  ===================================================================
``prepare-data``          build (embedded) or download (tfds) a dataset, record its splits
``model-info``            load a model once: blocks, width, heads, parameters (App. K)
``pretrain``              pre-train the embedded ViT (``adapter_placement.pretrain``)
``train-batch``           train a batch of runs or lr trials, one after the other
``select-lr``             the lr (and steps) with the best mean validation accuracy
``scores``                head pre-training, then every score function of every edge
``select-placements``     GGA and top-k placements from the scores
``best-placement``        the best random placement of Table 1 (by train loss)
``search-batch``          placement searches beyond the paper (``adapter_placement.search``)
``table`` / ``figure``    one table (CSV + Markdown) / one figure (PNG + PDF + its data CSV)
``report``                results/REPORT.md
========================  ===================================================================
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from . import atomic


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def read_json(path) -> Any:
    return json.loads(Path(path).read_text())


def set_threads(threads: Optional[int]) -> None:
    import torch

    if threads:
        torch.set_num_threads(int(threads))


# ---------------------------------------------------------------- data and models

def prepare_data(job: Mapping) -> dict:
    """Embedded tasks are built (up to 7 s), stored for the later jobs (``data.stored_splits``) and
    described; tfds datasets are downloaded and prepared once (``data.prepare_tfds_dataset``), which
    needs network."""
    from .data import EMBEDDED_TASKS, load_task, prepare_tfds_dataset

    spec = job["spec"]
    if spec["task"] in EMBEDDED_TASKS:
        task = load_task(spec["task"], seed=spec["data_seed"], sizes=spec.get("sizes"), cache_dir=spec.get("cache_dir"))
        info = {"task": spec["task"], "kind": "embedded", "modality": task.modality,
                "num_classes": task.num_classes, "split_sizes": task.split_sizes,
                "stands_in_for": EMBEDDED_TASKS[spec["task"]].stands_in_for}
    else:
        folder = prepare_tfds_dataset(spec["task"], spec.get("data_dir"))
        info = {"task": spec["task"], "kind": "tfds", "prepared_at": str(folder)}
    info["dataset"] = spec["dataset"]
    atomic.write_json(job["output"]["info"], info)
    return info


def model_info(job: Mapping) -> dict:
    """Load the model once (a hub model missing from the cache is downloaded when the job says
    so), check its depth against the config, and record what App. K's FLOP counts need."""
    from .backbones import describe
    from .models import download, load_model

    spec = job["spec"]
    try:
        loaded = load_model(spec["spec"], 2)
    except FileNotFoundError:
        if not spec.get("download") or not spec["spec"].startswith(("timm/", "hf/")):
            raise
        download(spec["spec"])
        loaded = load_model(spec["spec"], 2)
    backbone = describe(loaded.model)
    if backbone.num_layers != spec["blocks"]:
        raise ValueError(f"models.{spec['model']}.blocks is {spec['blocks']} but {spec['spec']!r} has "
                         f"{backbone.num_layers} blocks: fix the config")
    info = {"model": spec["model"], "spec": spec["spec"], "modality": loaded.modality,
            "blocks": backbone.num_layers, "num_nodes": backbone.num_nodes, "hidden_size": backbone.hidden_size,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "heads": backbone.heads, "ffn_size": backbone.ffn_size, "tokens": backbone.tokens}
    atomic.write_json(job["output"]["info"], info)
    return info


def pretrain(job: Mapping) -> dict:
    """Pre-train the embedded ViT, save it where the model spec points, log it in MLflow."""
    from .pretrain import PretrainConfig, pretrain_vit
    from .vit import DEFAULT_VIT_KWARGS, save_pretrained_vit
    from .tracking import tracked_run

    set_threads(job.get("threads"))
    spec = job["spec"]
    config = PretrainConfig(**spec["pretrain"])
    out = job["output"]["weights"]
    with tracked_run("pretrain", run_key=out, params={"out": out, **spec["pretrain"]},
                     tags={"experiment": "pretrain", "cell": f"pretrain/{spec['model']}"}, uri=spec["tracking_uri"]) as run:
        model, summary = pretrain_vit(config, log=log, log_every=max(1, config.steps // 10))
        for step, loss in enumerate(summary["losses"]):
            if step % 10 == 0:
                run.log_metrics({"train_loss": loss}, step=step)
        run.log_metrics({"source_heldout_accuracy": summary["source_heldout_accuracy"]}, step=config.steps)
        summary.pop("losses")
        summary["mlflow_run_id"] = run.run_id
        save_pretrained_vit(model, out, DEFAULT_VIT_KWARGS, summary)
    return summary


# ---------------------------------------------------------------- training

def train_batch(job: Mapping) -> dict:
    """Train the runs (or lr trials) of one job, one after the other in this process, and write
    the batch JSON: each run's key, placement (its fields), folder, edges, lr, steps and metrics. A finished run is not
    redone (``train`` returns its metrics); a run whose loss diverges is recorded as such. The
    prefix cache is filled for all runs of the job first, one pass per split."""
    from .train import prefetch_nodes

    set_threads(job.get("threads"))
    items = job["spec"]["items"]
    resolved = [resolve_item(item) for item in items]
    prefetch_nodes((cfg, record["folder"]) for cfg, record in resolved if cfg is not None)
    results = []
    for k, (cfg, record) in enumerate(resolved, 1):
        started = time.perf_counter()
        result = record if cfg is None else train_resolved(cfg, record)
        status = result["status"]
        accuracy = result["metrics"].get("test_accuracy", result["metrics"].get("val_accuracy"))
        log(f"run {k}/{len(items)} {record['folder']}: {status}, accuracy {accuracy}, "
            f"{time.perf_counter() - started:.1f}s")
        results.append(result)
    batch = {"items": results}
    atomic.write_json(job["output"]["batch"], batch)
    return batch


def resolve_item(item: Mapping) -> tuple:
    """A run's TrainConfig (its edges, and lr and steps from the selection) and its record, or
    (None, the finished record) when the search that chooses its placement diverged. ``item`` is a
    ``plan.RunSpec`` as JSON; the record holds its key and, apart, its placement's fields."""
    from .plan import RunSpec
    from .train import TrainConfig

    spec = RunSpec.from_json(item)
    placement, io = spec.recipe.placement, spec.io
    record = {"key": spec.key, "placement": placement.to_dict(), "folder": io.folder}
    derived = read_json(io.derived_file) if io.derived_file else None
    if derived is not None and derived.get(str(placement), []) is None:
        return None, {**record, "edges": [], "lr": None, "steps": 0, "status": "diverged",
                      "error": f"the search that chooses {placement} diverged", "metrics": {}}
    edges = placement.edges(spec.num_nodes, derived)
    lr, steps = spec.recipe.lr, spec.recipe.steps
    if io.lr_file:
        chosen = read_json(io.lr_file)
        lr, steps = chosen["lr"], chosen["steps"]
    cfg = TrainConfig.from_spec(spec, edges, lr, steps)
    return cfg, {**record, "edges": [list(e) for e in edges], "lr": cfg.lr, "steps": cfg.steps}


def train_resolved(cfg, record: Mapping) -> dict:
    from .train import NonFiniteLossError, train

    try:
        metrics = train(cfg, record["folder"])
    except NonFiniteLossError as error:
        return {**record, "status": "diverged", "error": str(error), "metrics": {}}
    metrics = {k: v for k, v in metrics.items() if k != "config"}
    return {**record, "status": "finished", "metrics": metrics}


def train_item(item: Mapping) -> dict:
    """One run: resolve its edges (and lr, steps from the selection), then ``train``."""
    cfg, record = resolve_item(item)
    return record if cfg is None else train_resolved(cfg, record)


def select_lr(job: Mapping) -> dict:
    """The candidate with the best validation accuracy averaged over seeds (ties: the smaller lr,
    then fewer steps); a diverged trial counts as accuracy 0. A grid of one needs no trial."""
    spec = job["spec"]
    trials = [r for path in job["input"].get("batches", []) for r in read_json(path)["items"]
              if r["key"]["family"] == spec["family"]]
    if not trials:
        (lr, steps), = spec["grid"]
        choice = {"lr": lr, "steps": steps, "candidates": [], "note": "single candidate: no trial needed"}
    else:
        by_candidate: dict[tuple, list] = {}
        for trial in trials:
            key = (trial["key"]["lr"], trial["key"]["steps"])
            by_candidate.setdefault(key, []).append(trial)
        candidates = [{"lr": lr, "steps": steps,
                       "val_accuracy": statistics.fmean(t["metrics"].get("val_accuracy", 0.0) for t in ts),
                       "seeds": [t["key"]["seed"] for t in ts],
                       "diverged": sum(t["status"] == "diverged" for t in ts),
                       "run_ids": [t["metrics"].get("mlflow_run_id") for t in ts]}
                      for (lr, steps), ts in sorted(by_candidate.items())]
        best = max(candidates, key=lambda c: (c["val_accuracy"], -c["lr"], -c["steps"]))
        choice = {"lr": best["lr"], "steps": best["steps"], "candidates": candidates}
    choice.update(dataset=spec["dataset"], model=spec["model"], family=spec["family"])
    atomic.write_json(job["output"]["choice"], choice)
    return choice


# ---------------------------------------------------------------- scores and placements

def compute_scores(job: Mapping) -> dict:
    """For each head pre-training length (``default``: ``head_fraction`` of the run's selected steps,
    App. A.4; then the Fig. 13 grid): train the classifier head alone from its initial state, then
    take the gradient of a zero linear adapter on every edge from ``score_examples`` training
    examples and reduce it by every score function (and srank at every eta). One MLflow run of the
    experiment "scores" per dataset and model."""
    import copy

    import torch

    from .backbones import describe
    from .data import load_task
    from .device import enable_tf32, resolve_device
    from .plan import head_steps
    from .models import load_model
    from .tracking import task_datasets, tracked_run
    from .data import num_classes_of

    set_threads(job.get("threads"))
    spec = job["spec"]
    head_lr = read_json(job["input"]["head_lr"])["lr"]
    run_steps = read_json(job["input"]["run_steps"])["steps"]
    lengths = {"default": head_steps(spec["head_fraction"], run_steps),
               **{str(n): int(n) for n in spec["head_steps_grid"]}}
    device = resolve_device(spec.get("device", "auto"))  # a missing GPU fails before any loading
    enable_tf32(device)
    torch.manual_seed(0)
    loaded = load_model(spec["model_spec"], num_classes_of(spec["task"]))
    loaded.model.to(device)
    task = load_task(spec["task"], seed=spec["data_seed"], data_dir=spec.get("data_dir"), tokenizer=loaded.tokenizer,
                     data_config=loaded.data_config, sizes=spec.get("sizes"), cache_dir=spec.get("cache_dir"))
    head = describe(loaded.model).head
    initial_head = copy.deepcopy(head.state_dict())
    batches, tokens = _score_batches(task, spec["score_examples"])
    out = job["output"]["scores"]
    heads = {}
    with tracked_run("scores", run_key=out, params={**spec, "head_lr": head_lr, "head_lengths": lengths},
                     tags={"experiment": "scores", "cell": f"scores/{spec['dataset']}/{spec['model']}"},
                     uri=spec["tracking_uri"], datasets=task_datasets(task, ["train"])) as run:
        for name, steps in lengths.items():
            head.load_state_dict(initial_head)
            heads[name] = score_after_head(loaded, task, batches, steps, head_lr, spec)
            run.log_metrics({f"{k}_seconds": v for k, v in heads[name]["seconds"].items()}, step=steps)
            log(f"scores after {steps} head steps ({name}): {heads[name]['seconds']}")
        run.log_json("scores.json", heads)
        result = {"dataset": spec["dataset"], "model": spec["model"], "head_lr": head_lr, "heads": heads,
                  "examples": sum(len(t) for _, t in batches), "tokens_per_example": tokens,
                  "num_nodes": len(heads["default"]["scores"]["srank"]), "mlflow_run_id": run.run_id}
    atomic.write_json(out, result)
    return result


def score_after_head(loaded, task, batches, head_steps: int, head_lr: float, spec: Mapping) -> dict:
    """Train the head for ``head_steps`` (seeded), then every score of every edge."""
    import torch

    from .backbones import describe
    from .scores import train_head

    torch.manual_seed(0)
    started = time.perf_counter()
    optimizer = "adamw" if loaded.modality == "text" else "sgd"
    precision = spec.get("precision", "fp32")
    losses = train_head(loaded.model, _Batches(task, spec["batch_size"]), head_steps, lr=head_lr, optimizer=optimizer,
                        precision=precision)
    head_seconds = time.perf_counter() - started
    started = time.perf_counter()
    matrices, srank_by_eta, reduce_seconds = all_scores_in_blocks(loaded.model, batches, spec["functions"],
                                                                  spec["eta"], spec["etas"], precision=precision)
    return {"head_steps": head_steps, "head_losses": losses, "eta": spec["eta"], "scores": matrices,
            "srank_by_eta": srank_by_eta, "hidden_size": describe(loaded.model).hidden_size,
            "seconds": {"head": head_seconds, "reduce": reduce_seconds,
                        "gradients": time.perf_counter() - started - reduce_seconds}}


def all_scores_in_blocks(model, batches, functions: list[str], eta: float, etas: list[float],
                         **blocks) -> tuple[dict, dict, float]:
    """``all_scores`` of ``model``'s edge gradients, a block of source rows at a time
    (``scores.reduce_gradient_blocks``, ``blocks`` its keywords: the whole n^2 d^2 stack is never
    held): the same lists, and the seconds spent reducing, timed apart from the passes."""
    from .scores import check_score_args, reduce_gradient_blocks

    for fn in functions:  # before any pass
        check_score_args(fn, eta)
    seconds = []

    def reduce(rows):
        started = time.perf_counter()
        scores = all_scores(rows, functions, eta, etas)
        seconds.append(time.perf_counter() - started)
        return scores

    parts = reduce_gradient_blocks(model, batches, reduce, **blocks)
    rows = lambda k: {name: [r for part in parts for r in part[k][name]] for name in parts[0][k]}  # noqa: E731
    return rows(0), rows(1), sum(seconds)


def all_scores(grads, functions: list[str], eta: float, etas: list[float]) -> tuple[dict, dict]:
    """Every score function (srank at ``eta``) and srank at every eta of ``etas``, as (n, n) lists.
    The same numbers as ``scores.score_matrix`` for each, with one SVD per edge instead of one per
    (function, eta): a row of edges at a time, to bound the SVD workspace."""
    import torch

    from .scores import SCORE_FUNCTIONS, apply_score, check_score_args, srank

    for fn in functions:
        check_score_args(fn, eta)
    by_fn: dict[str, list] = {fn: [] for fn in functions}
    by_eta: dict[str, list] = {f"{e:g}": [] for e in etas}
    for row in grads:
        singular = torch.linalg.svdvals(row.double())
        from_svd = {"srank": lambda: srank(singular, eta), "spectral": lambda: singular[..., 0],
                    "nuclear": lambda: singular.sum(-1)}
        for fn in functions:
            by_fn[fn].append(from_svd[fn]() if fn in from_svd else apply_score(row, fn, eta))
        for e in etas:
            by_eta[f"{e:g}"].append(srank(singular, e))
    assert set(functions) <= set(SCORE_FUNCTIONS)
    stack = lambda rows: torch.stack(rows).cpu().tolist()  # noqa: E731
    return {fn: stack(rows) for fn, rows in by_fn.items()}, {e: stack(rows) for e, rows in by_eta.items()}


class _Batches:
    """Shuffled training batches, a fresh pass (and order) each time it is iterated: what
    ``train_head`` cycles over, without holding a paper-scale split in memory."""

    def __init__(self, task, batch_size: int):
        self.task, self.batch_size, self.epoch = task, batch_size, 0

    def __iter__(self):
        self.epoch += 1
        return iter(self.task.batches("train", self.batch_size, shuffle=True, seed=self.epoch, drop_last=True))


def _score_batches(task, examples: int, chunk: int = 64):
    """The first ``examples`` training examples of a fixed shuffle, in chunks (memory), and the
    tokens per example (ViT: patches + class token; text: the padded length)."""
    import torch

    from .data.tasks import index_inputs

    inputs, labels = next(iter(task.batches("train", examples, shuffle=True, seed=1)))
    chunks = [(index_inputs(inputs, torch.arange(s, min(s + chunk, len(labels)))), labels[s:s + chunk])
              for s in range(0, len(labels), chunk)]
    tokens = inputs["input_ids"].shape[1] if isinstance(inputs, dict) else None
    return chunks, tokens


def select_placements(job: Mapping) -> dict:
    """GGA / top-k placements from the default scores (srank at the config's eta)."""
    from .gga import gga_select

    spec = job["spec"]
    scores = read_json(job["input"]["scores"])["heads"]["default"]["scores"]["srank"]
    chosen = {name: [list(e) for e in gga_select(scores, count, gamma)]
              for name, (count, gamma) in spec["names"].items()}
    atomic.write_json(job["output"]["placements"], chosen)
    return chosen


def best_placement(job: Mapping) -> dict:
    """The best random placement of a dataset's Table 1 runs (or the best of the runs whose placement
    has the spec's ``method``, e.g. "edge"), by the lowest mean train loss over seeds (``analysis.best_by_train_loss``: never by test accuracy,
    which Table 8 and Fig. 15 then report); a diverged run counts as an infinite loss."""
    from .analysis import SELECTED_ON, best_by_train_loss, load_runs
    from .plan import Placement

    spec = job["spec"]
    runs = load_runs(job["input"]["batches"])
    method = runs.placement.map(lambda name: Placement.parse(name).method)
    runs = runs[(method == spec["method"]) & (runs.variant == spec["variant"])]
    best = best_by_train_loss(runs)
    if best is None:
        raise ValueError(f"no finished runs of placement method {spec['method']!r} for {spec['name']}")
    mine = runs[runs.placement == best]
    chosen = {spec["name"]: mine.edges.iloc[0], "source": best, "selected_on": SELECTED_ON,
              "train_loss": float(mine.train_loss.mean()), "test_accuracy": float(mine.test_accuracy.mean())}
    atomic.write_json(job["output"]["placement"], chosen)
    return chosen


def search_batch(job: Mapping) -> dict:
    """Run the placement searches of one job, one after the other, and write their placements
    (``{name: edges}``, what ``train_item`` reads) with each search's record: history, details and
    cost (measured seconds and analytic FLOPs of selection and of the search's own training)."""
    set_threads(job.get("threads"))
    items = job["spec"]["items"]
    out = {"searches": []}
    for k, item in enumerate(items, 1):
        record = run_search_item(item)
        # None when the search diverged: its runs are recorded as such
        out.update(dict(zip(item["names"], record["placements"])))
        out["searches"].append(record)
        log(f"search {k}/{len(items)} {item['name']} on {item['key']['dataset']}: {record['status']}, "
            f"{record['edges']}, {record['seconds']['total']:.1f}s")
    atomic.write_json(job["output"]["placements"], out)
    return out


def run_search_item(item: Mapping) -> dict:
    """One search on a fresh model: train batches of a fixed shuffle of the train split (cycled),
    score batches as the scores job takes them; one MLflow run of the experiment "search"."""
    import itertools

    import torch

    from .data import load_task
    from .device import resolve_device
    from .models import load_model
    from .search import run_search
    from .tracking import task_datasets, tracked_run
    from .data import num_classes_of
    from .train import NonFiniteLossError

    key = item["key"]
    options = {**item["options"], "lr": read_json(item["lr_file"])["lr"]}
    device = resolve_device(item.get("device", "auto"))  # a missing GPU fails before any loading
    torch.manual_seed(key["seed"])
    loaded = load_model(item["model_spec"], num_classes_of(item["task"]))
    loaded.model.to(device)
    task = load_task(item["task"], seed=item["data_seed"], data_dir=item.get("data_dir"), tokenizer=loaded.tokenizer,
                     data_config=loaded.data_config, sizes=item.get("sizes"))
    # a fixed list (the searches cycle over it): one epoch, or the first `search_batches` of it
    stream = task.batches("train", item["batch_size"], shuffle=True, seed=key["seed"], drop_last=True)
    batches = list(itertools.islice(stream, item.get("search_batches")))
    score_batches, _ = _score_batches(task, item["score_examples"])
    run_key = f"search/{key['dataset']}/{item['name']}"
    with tracked_run("search", run_key=run_key, params={**key, **options, "task": item["task"],
                                                        "model_spec": item["model_spec"]},
                     tags=item["tags"], uri=item["tracking_uri"], datasets=task_datasets(task, ["train"])) as run:
        try:
            result = run_search(item["function"], loaded.model, batches, score_batches=score_batches, **options)
        except NonFiniteLossError as error:
            record = {"key": key, "name": item["name"], "names": item["names"], "status": "diverged",
                      "error": str(error), "edges": None, "placements": [None] * len(item["names"]),
                      "seconds": {"total": math.nan}, "flops": {"total": math.nan}, "mlflow_run_id": run.run_id}
            run.log_json("search.json", record)
            return record
        record = {"key": key, "name": item["name"], "names": item["names"], "status": "finished",
                  **result.as_dict(), "placements": placements_of(result, key["counts"]), "lr": options["lr"],
                  "mlflow_run_id": run.run_id}
        run.log_metrics({f"{part}_seconds": v for part, v in result.seconds.items()}, step=0)
        run.log_metrics({f"{part}_gflops": v / 1e9 for part, v in result.flops.items()}, step=0)
        run.log_json("search.json", record)
    return record


def placements_of(result, counts: list[int]) -> list[list]:
    """The placement of each count: the search's own edges, or (edge switch, several counts) the
    first N of its edges ranked by gate probability."""
    if len(counts) == 1:
        return [[list(e) for e in result.edges]]
    ranked = [[int(i), int(j)] for i, j, _ in result.details["gate_probability"]]
    return [ranked[:count] for count in counts]


# ---------------------------------------------------------------- tables, figures, report

def make_table(job: Mapping) -> None:
    from . import tables

    tables.write_table(job["spec"], job["input"], job["output"])


def make_figure(job: Mapping) -> None:
    from . import figures

    figures.write_figure(job["spec"], job["input"], job["output"])


def make_report(job: Mapping) -> None:
    from . import report

    report.write_report(job["spec"], job["input"], job["output"])


COMMANDS = {
    "prepare-data": prepare_data, "model-info": model_info, "pretrain": pretrain, "train-batch": train_batch,
    "select-lr": select_lr, "scores": compute_scores, "select-placements": select_placements,
    "best-placement": best_placement, "search-batch": search_batch, "table": make_table, "figure": make_figure, "report": make_report,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapter_placement.pipeline",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("job", help="the job as JSON: {spec, input, output, threads} (the rule's params.job)")
    args = parser.parse_args(argv)
    job = json.loads(args.job)
    started = time.perf_counter()
    COMMANDS[args.command](job)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    log(f"{args.command} done in {time.perf_counter() - started:.1f}s "
        f"(process CPU {usage.ru_utime + usage.ru_stime:.1f}s, imports included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
