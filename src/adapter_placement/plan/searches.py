"""The placement searches of the search experiment (beyond the paper) as jobs: which searches its
runs need, how they are batched, and what one search job is handed (``search_item``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

from . import paths
from .config import dataset_model, dataset_rank, experiment_datasets, model_spec, tracking_uri
from .placement import SEARCHED, Placement
from .runs import batch_of, num_batches, plan_dataset


@dataclass(frozen=True)
class Search:
    """One placement search: ``method`` (a key of SEARCHED) choosing ``n`` edges on a dataset, seeded.

    ``counts``: the N whose placements it gives. The edge switch trains the same gates whatever N is
    (N only says how many of the ranked edges to keep), so one switch at the largest N serves every
    N of the experiment; the other searches depend on N and serve one count each."""

    dataset: str
    model: str
    method: str
    n: int
    seed: int
    counts: tuple = ()

    @property
    def name(self) -> str:
        return Placement(self.method, count=self.n, seed=self.seed).format()

    @property
    def names(self) -> list[str]:
        return [Placement(self.method, count=c, seed=self.seed).format() for c in self.counts or (self.n,)]

    def to_dict(self) -> dict:
        return {**asdict(self), "counts": list(self.counts or (self.n,))}


def dataset_searches(config: Mapping, dataset: str) -> list[Search]:
    """The searches whose placements the search experiment trains on ``dataset``, in plan order
    (one edge switch per seed, at the largest N)."""
    model = dataset_model(config, dataset)
    wanted: dict[tuple[str, int], list[int]] = {}
    for run in plan_dataset(config, "search", dataset):
        if run.placement.method in SEARCHED:
            wanted.setdefault((run.placement.method, run.seed), []).append(run.placement.count)
    found = []
    for (method, seed), counts in wanted.items():
        if method == "edge_switch":
            found.append(Search(dataset, model, method, max(counts), seed, tuple(sorted(counts))))
        else:
            found += [Search(dataset, model, method, c, seed, (c,)) for c in counts]
    return found


def search_batches(config: Mapping) -> list[tuple[str, int]]:
    """(dataset, batch) of every search job: ``runs_per_job`` searches of one dataset each."""
    k = int(config["runs_per_job"])
    return [(d, b) for d in experiment_datasets(config, "search")
            for b in range(num_batches(len(dataset_searches(config, d)), k))]


def search_batch_files(config: Mapping) -> list[str]:
    return [paths.search_batch_file(config["results"], d, dataset_model(config, d), b)
            for d, b in search_batches(config)]


def search_file_of(config: Mapping, dataset: str, placement: Placement) -> str:
    """The search batch JSON that holds ``placement`` of ``dataset``."""
    name = placement.format()
    index = next(k for k, s in enumerate(dataset_searches(config, dataset)) if name in s.names)
    return paths.search_batch_file(config["results"], dataset, dataset_model(config, dataset),
                                   index // int(config["runs_per_job"]))


def head_steps(fraction: float, run_steps: int) -> int:
    """Steps of head pre-training before scoring: a fraction of the run's steps, at least one."""
    return max(1, round(float(fraction) * run_steps))


def search_item(config: Mapping, search: Search) -> dict:
    """Everything a job needs for one search: the task, model and the method's options (its lr and
    adapter lr come from the adapters family's selection, the steps from the config)."""
    spec, entry = config["experiments"]["search"], config["datasets"][search.dataset]
    function, fixed = SEARCHED[search.method]
    steps = int(spec["steps"])
    options = {"n": search.n, "rank": dataset_rank(config, search.dataset), "seed": search.seed,
               "fn": "srank", "eta": float(config["scores"]["eta"]),
               "head_steps": head_steps(config["scores"]["head_fraction"], steps), **fixed}
    if function == "iterative_gga":
        rounds = int(spec["rounds"])
        options.update(k=-(-search.n // rounds), gamma=float(spec["gamma"]), phase_steps=max(1, steps // max(1, rounds - 1)))
    elif function == "edge_switch":
        options.update(steps=steps, candidates=spec.get("candidates"))
    else:
        options.update(steps=steps, update_every=max(1, steps // (int(spec["updates"]) + 1)),
                       fraction=float(spec["fraction"]), fn=spec["regrow_score"])
    return {"key": {"kind": "search", **search.to_dict()}, "name": search.name, "names": search.names,
            "function": function,
            "options": options, "task": entry["task"], "model_spec": model_spec(config, search.model),
            "batch_size": int(entry["batch_size"]), "score_examples": int(entry["score_examples"]),
            "search_batches": spec.get("batches"), "data_seed": int(config["data_seed"]),
            "sizes": entry.get("sizes"), "data_dir": config.get("data_dir"),
            "lr_file": paths.lr_file(config["results"], search.dataset, search.model, "adapters"),
            "tracking_uri": tracking_uri(config), "device": config.get("device", "auto"),
            "tags": {"experiment": "search", "cell": f"search/{search.dataset}/selection/{search.method}_{search.n}",
                     "dataset": search.dataset, "method": search.method, "seed": search.seed}}


def search_items(config: Mapping, dataset: str, batch: int) -> list[dict]:
    return [search_item(config, s) for s in batch_of(dataset_searches(config, dataset), batch,
                                                      int(config["runs_per_job"]))]


def search_inputs(config: Mapping, dataset: str, batch: int) -> dict:
    """The files a search job reads: the data and model records and the adapters' lr choice."""
    items = search_items(config, dataset, batch)
    results = config["results"]
    return {"data": paths.data_info_file(results, dataset),
            "models": sorted({paths.model_info_file(results, i["key"]["model"]) for i in items}),
            "lr": sorted({i["lr_file"] for i in items})}
