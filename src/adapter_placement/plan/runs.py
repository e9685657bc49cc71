"""The experiments of DESIGN.md section 6 as lists of runs: a pure function of the pipeline config.

Every training run the pipeline makes is a :class:`Run`: (experiment, dataset, placement, seed)
plus the method, the adapter overrides (rank, activation, kind) and the model. The Snakefile turns
these lists into jobs of ``runs_per_job`` runs (``batch_of``); ``plan.jobs`` turns each run into
the job's ``RunSpec``. The learning-rate trials (App. A) are :class:`Trial` s. Nothing here reads
data or weights, so the paper DAG builds offline.
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Optional

from .. import placements
from . import paths
from .config import (OWN_LR_PLACEMENTS, config_json, dataset_model, dataset_rank, enabled_experiments,
                     experiment_datasets, experiment_seeds, num_nodes)
from .placement import Placement


def variant_of(method: str, rank: int, activation: str, kind: str) -> str:
    """The method with its adapter module: ``adapters-r8-gelu``, ``adapters-linear``, ``full_ft``."""
    if method != "adapters":
        return method
    return "adapters-linear" if kind == "linear" else f"adapters-r{rank}-{activation}"


def default_variant(config: Mapping, dataset: str) -> str:
    """The variant of a dataset's default adapters (its rank, GELU bottleneck: Table 1's runs)."""
    return variant_of("adapters", dataset_rank(config, dataset), "gelu", "bottleneck")


@dataclass(frozen=True)
class Run:
    """One training run of an experiment (final protocol: train+val -> test)."""

    experiment: str
    dataset: str  # paper key, e.g. "inat18"
    placement: Placement  # Placement("none") for linear probe / full FT
    seed: int
    model: str  # key into config["models"]
    method: str = "adapters"  # linear_probe | full_ft | adapters
    rank: int = 8
    activation: str = "gelu"
    kind: str = "bottleneck"  # bottleneck | linear
    group: str = ""  # the placement's name in its cell when it differs per seed (Fig. 6 random draws)

    @property
    def variant(self) -> str:
        return variant_of(self.method, self.rank, self.activation, self.kind)

    @property
    def cell(self) -> str:
        """What a table cell or figure point averages over seeds (an MLflow tag)."""
        return f"{self.experiment}/{self.dataset}/{self.variant}/{self.group or self.placement}"

    def folder(self, results: str) -> str:
        return paths.run_folder(results, self.experiment, self.dataset, self.variant, str(self.placement), self.seed)

    @property
    def family(self) -> str:
        """The lr selection the run takes its lr from: its method's, except all n^2 adapters at once
        (Fig. 15), which select their own: at the lr of 2L adapters they collapsed to chance."""
        if self.method == "adapters" and self.placement.method in OWN_LR_PLACEMENTS:
            return self.placement.method
        return self.method

    def to_dict(self) -> dict:
        """The run as a batch JSON's ``key`` holds it: the placement by name, and the variant."""
        return {**asdict(self), "placement": str(self.placement), "variant": self.variant}


@dataclass(frozen=True)
class Trial:
    """One learning-rate trial (train -> val) of a family on its reference placement."""

    dataset: str
    model: str
    family: str
    lr: float
    steps: int
    seed: int
    rank: int

    @property
    def method(self) -> str:
        return "adapters" if self.family in OWN_LR_PLACEMENTS else self.family

    @property
    def placement(self) -> Placement:
        """The family's reference placement: parallel adapters for adapters, the placement itself for
        one that selects its own lr, none for the linear probe and full fine-tuning."""
        if self.family in OWN_LR_PLACEMENTS:
            return Placement(self.family)
        return Placement("parallel_all" if self.family == "adapters" else "none")

    def folder(self, results: str) -> str:
        return paths.trial_folder(results, self.dataset, self.model, self.family, self.lr, self.steps, self.seed)

    @property
    def cell(self) -> str:
        return f"{paths.LR_EXPERIMENT}/{self.dataset}/{self.model}/{self.family}/lr{self.lr:g}-steps{self.steps}"

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- the plans, one function per experiment

def _adapter_runs(config, experiment, dataset, chosen: Iterable[Placement], seeds: Optional[Iterable[int]] = None,
                  **overrides) -> list[Run]:
    """Each placement at each seed (the experiment's, ``experiment_seeds``, unless given)."""
    model = overrides.pop("model", dataset_model(config, dataset))
    rank = overrides.pop("rank", dataset_rank(config, dataset))
    seeds = experiment_seeds(config, experiment) if seeds is None else list(seeds)
    return [Run(experiment, dataset, placement, seed, model, rank=rank, **overrides)
            for placement in chosen for seed in seeds]


def _grid(config: Mapping, dataset: str) -> list[Placement]:
    """The single edges of the stride-s grid of Fig. 3 (also Fig. 8 and Table 5)."""
    n = num_nodes(config, dataset_model(config, dataset))
    return [Placement("edge", i=e.i, j=e.j) for e in placements.grid(n, int(config["experiments"]["fig3"]["stride"]))]


def plan_fig1(config: Mapping) -> list[Run]:
    """One parallel adapter at each of the 2L positions (Fig. 1, Fig. 7)."""
    runs = []
    for d in experiment_datasets(config, "fig1"):
        n = num_nodes(config, dataset_model(config, d))
        runs += _adapter_runs(config, "fig1", d, [Placement("parallel", position=k) for k in range(1, n)])
    return runs


def plan_fig3(config: Mapping) -> list[Run]:
    """One adapter on each edge of the stride-s grid (Fig. 3, Table 3, Fig. 4, 5, 10-13)."""
    return [run for d in experiment_datasets(config, "fig3") for run in _adapter_runs(config, "fig3", d, _grid(config, d))]


def random_size(config: Mapping, model: str, size: Optional[int]) -> int:
    """The number of adapters of Table 1's random placements: 2L unless given."""
    return int(size) if size else num_nodes(config, model) - 1


def plan_table1(config: Mapping) -> list[Run]:
    """FT, LP, parallel_all, sequential_all and the random placements of 2L adapters (Table 1).

    The draws are numbered across the datasets (the i-th dataset gets draws i R .. i R + R - 1 of R
    per dataset): two datasets of one model never train the same placement, so Table 8's transfer of
    one dataset's best draw to the other is not the other's own draw."""
    spec = config["experiments"]["table1"]
    draws = int(spec["random_draws"])
    runs = []
    for index, d in enumerate(experiment_datasets(config, "table1")):
        model = dataset_model(config, d)
        size = random_size(config, model, spec.get("random_size"))
        for method in ("full_ft", "linear_probe"):
            runs += [Run("table1", d, Placement("none"), s, model, method=method, rank=dataset_rank(config, d))
                     for s in config["seeds"]]
        chosen = [Placement("parallel_all"), Placement("sequential_all")]
        chosen += [Placement("random", count=size, seed=index * draws + k) for k in range(draws)]
        runs += _adapter_runs(config, "table1", d, chosen)
    return runs


def plan_fig6ab(config: Mapping) -> list[Run]:
    """GGA, top-k, random, first-k and last-k placements of N adapters (Fig. 6a, 6b). The random
    placement of seed s is draw s, so its mean is over placements as well as initialisations.
    First-2L and last-2L are every parallel edge, Table 1's parallel_all: the figure takes those
    runs (``products.gga.fig6_data``) instead of training the same placement twice more."""
    spec = config["experiments"]["fig6ab"]
    runs = []
    for d in experiment_datasets(config, "fig6ab"):
        model = dataset_model(config, d)
        every = num_nodes(config, model) - 1  # 2L parallel edges
        for count in spec["n"]:
            ends = ("first", "last") if int(count) < every else ()
            chosen = [Placement(method, count=count) for method in ("gga", "topk", *ends)]
            runs += _adapter_runs(config, "fig6ab", d, chosen)
            runs += [Run("fig6ab", d, Placement("random", count=count, seed=s), s, model,
                         rank=dataset_rank(config, d), group=f"random_{count}") for s in config["seeds"]]
    return runs


def fig6c_gga(config: Mapping) -> Placement:
    """GGA of N = the number of FFN parallel edges (unless given), at the experiment's gamma."""
    spec = config["experiments"]["fig6c"]
    blocks = int(config["models"][spec["model"]]["blocks"])
    return Placement("gga", count=spec.get("n") or blocks, gamma=float(spec["gamma"]))


def plan_fig6c(config: Mapping) -> list[Run]:
    """GGA (N = number of FFN parallel edges, gamma 0.8) vs ffn_parallel for each rank (Fig. 6c)."""
    spec = config["experiments"]["fig6c"]
    chosen = [fig6c_gga(config), Placement("ffn_parallel")]
    return [run for rank in spec["ranks"]
            for run in _adapter_runs(config, "fig6c", spec["dataset"], chosen, model=spec["model"], rank=int(rank))]


def plan_table5(config: Mapping) -> list[Run]:
    """L FFN parallel adapters of rank r vs one adapter of rank L*r on every edge of the Fig. 3 grid
    (Table 5, App. I: "we test all the sub-sampled placements"); the table takes the best edge of
    each rank from these runs, so no edge is picked at another rank."""
    spec = config["experiments"]["table5"]
    d = spec["dataset"]
    blocks = (num_nodes(config, dataset_model(config, d)) - 1) // 2
    runs = []
    for rank in spec["ranks"]:
        runs += _adapter_runs(config, "table5", d, [Placement("ffn_parallel")], rank=int(rank))
        runs += _adapter_runs(config, "table5", d, _grid(config, d), rank=int(rank) * blocks)
    return runs


def plan_fig8(config: Mapping) -> list[Run]:
    """Single *linear* adapters on the Fig. 3 grid (Fig. 8; the non-linear ones are Fig. 3's)."""
    d = config["experiments"]["fig8"]["dataset"]
    return _adapter_runs(config, "fig8", d, _grid(config, d), kind="linear")


def plan_fig9(config: Mapping) -> list[Run]:
    """GELU / ReLU / identity adapters on K evenly spread parallel edges (Fig. 9)."""
    spec = config["experiments"]["fig9"]
    chosen = [Placement("spread", count=k) for k in spec["n"]]
    return [run for act in spec["activations"]
            for run in _adapter_runs(config, "fig9", spec["dataset"], chosen, activation=act)]


def plan_table7(config: Mapping) -> list[Run]:
    """Random non-recurrent placements of N adapters vs first-N and last-N (Table 7)."""
    spec = config["experiments"]["table7"]
    count = int(spec["n"])
    chosen = [Placement("first", count=count), Placement("last", count=count)]
    chosen += [Placement("randnr", count=count, seed=k) for k in range(spec["random_draws"])]
    return _adapter_runs(config, "table7", spec["dataset"], chosen)


def plan_table8(config: Mapping) -> list[Run]:
    """The best Table 1 placement of one text dataset trained on the other, and vice versa (Table 8).
    With ``repeats``, each dataset's own best placement trains too, at the seeds Table 1 does not
    have (Table 1 holds its runs at the run's seeds), so both sides of a comparison have as many."""
    first, second = config["experiments"]["table8"]["datasets"]
    extra = [s for s in experiment_seeds(config, "table8") if s not in config["seeds"]]
    runs = []
    for dataset, source in ((second, first), (first, second)):
        runs += _adapter_runs(config, "table8", dataset, [Placement("best_random", source=source)])
        runs += _adapter_runs(config, "table8", dataset, [Placement("best_random", source=dataset)], seeds=extra)
    return runs


def plan_fig15(config: Mapping) -> list[Run]:
    """All n^2 adapters at once (Fig. 15; compared with the best random placement of Table 1)."""
    return _adapter_runs(config, "fig15", config["experiments"]["fig15"]["dataset"], [Placement("all_edges")])


def plan_search(config: Mapping) -> list[Run]:
    """Every method of the search experiment at every N (parallel_all once: it has 2L adapters),
    each run tagged with its cell ``method_N``. Random and searched placements differ per seed:
    the seed of a run is its search's (or draw's) seed too."""
    spec = config["experiments"]["search"]
    runs = []
    for d in experiment_datasets(config, "search"):
        model, rank = dataset_model(config, d), dataset_rank(config, d)
        for method in spec["methods"]:
            if method == "parallel_all":
                runs += _adapter_runs(config, "search", d, [Placement("parallel_all")],
                                      group=f"parallel_all_{num_nodes(config, model) - 1}")
                continue
            for count in spec["n"]:
                group = f"{method}_{count}"
                if method == "gga":
                    chosen = [Placement("gga", count=count, gamma=float(spec["gamma"]))]
                    runs += _adapter_runs(config, "search", d, chosen, group=group)
                else:
                    runs += [Run("search", d, Placement(method, count=count, seed=s), s, model, rank=rank,
                                 group=group) for s in config["seeds"]]
    return runs


PLANNERS = {"fig1": plan_fig1, "fig3": plan_fig3, "table1": plan_table1, "fig6ab": plan_fig6ab,
            "fig6c": plan_fig6c, "table5": plan_table5, "fig8": plan_fig8, "fig9": plan_fig9,
            "table7": plan_table7, "table8": plan_table8, "fig15": plan_fig15, "search": plan_search}


def plan(config: Mapping, experiment: str) -> list[Run]:
    """The runs of one experiment, in a fixed order (batches are slices of it)."""
    if not config["experiments"].get(experiment):
        return []
    return PLANNERS[experiment](config)


@functools.lru_cache(maxsize=64)
def _plan_from_json(config_text: str, experiment: str) -> tuple[Run, ...]:
    return tuple(plan(json.loads(config_text), experiment))


@functools.lru_cache(maxsize=64)
def _plan_by_dataset(config_text: str, experiment: str) -> dict[str, tuple[Run, ...]]:
    groups: dict[str, list[Run]] = {}
    for run in _plan_from_json(config_text, experiment):
        groups.setdefault(run.dataset, []).append(run)
    return {d: tuple(runs) for d, runs in groups.items()}


def cached_plan(config: Mapping, experiment: str) -> tuple[Run, ...]:
    return _plan_from_json(config_json(config), experiment)


def plan_dataset(config: Mapping, experiment: str, dataset: str) -> tuple[Run, ...]:
    return _plan_by_dataset(config_json(config), experiment).get(dataset, ())


def planned_runs(config: Mapping) -> list[Run]:
    """Every run of every enabled experiment."""
    return [r for e in enabled_experiments(config) for r in cached_plan(config, e)]


# ---------------------------------------------------------------- batches (runs_per_job)

def num_batches(count: int, runs_per_job: int) -> int:
    return -(-count // runs_per_job)


def batch_of(runs: list, index: int, runs_per_job: int) -> list:
    """Batch ``index``: runs [index * k, (index + 1) * k) of the plan."""
    if not 0 <= index < num_batches(len(runs), runs_per_job):
        raise ValueError(f"batch {index} does not exist: {len(runs)} runs, {runs_per_job} per job")
    return runs[index * runs_per_job:(index + 1) * runs_per_job]


def training_batches(config: Mapping, experiment: str) -> list[tuple[str, int]]:
    """(dataset, batch index) of every job of a training experiment."""
    k = int(config["runs_per_job"])
    return [(d, b) for d in experiment_datasets(config, experiment)
            for b in range(num_batches(len(plan_dataset(config, experiment, d)), k))]


def batch_files(config: Mapping, experiment: str, dataset: Optional[str] = None) -> list[str]:
    """The batch JSONs of a training experiment (of one dataset, or all)."""
    return [paths.batch_file(config["results"], experiment, d, b) for d, b in training_batches(config, experiment)
            if dataset is None or d == dataset]


# ---------------------------------------------------------------- learning-rate selection

def lr_grid(config: Mapping, dataset: str, model: str, family: str) -> list[tuple[float, int]]:
    """(lr, steps) candidates of a family: the modality's lr grid times the dataset's steps grid. A
    placement that selects its own lr (all_edges) has its own grid or else the adapters'."""
    grids = config["lr_grid"][config["models"][model]["modality"]]
    grid = (grids.get(family) or grids["adapters"]) if family in OWN_LR_PLACEMENTS else grids[family]
    return [(float(lr), int(steps)) for lr in grid
            for steps in config["datasets"][dataset]["steps"]]


def lr_families(config: Mapping) -> list[tuple[str, str, str]]:
    """(dataset, model, family) of every selection the plan needs (the families its runs use,
    and linear_probe + adapters wherever scores are computed: the head's lr and the run length)."""
    needed = {(r.dataset, r.model, r.family) for r in planned_runs(config)}
    for dataset, model in score_targets(config):
        needed |= {(dataset, model, "linear_probe"), (dataset, model, "adapters")}
    return sorted(needed)


def lr_trials(config: Mapping, dataset: str, model: str, family: str) -> list[Trial]:
    """The trials of one selection; none when the grid has a single candidate."""
    grid = lr_grid(config, dataset, model, family)
    if len(grid) == 1:
        return []
    rank = dataset_rank(config, dataset)
    return [Trial(dataset, model, family, lr, steps, seed, rank)
            for lr, steps in grid for seed in config["lr_seeds"]]


def lr_models(config: Mapping) -> list[tuple[str, str]]:
    """(dataset, model) pairs with at least one lr selection."""
    return sorted({(d, m) for d, m, _ in lr_families(config)})


def dataset_trials(config: Mapping, dataset: str, model: str) -> list[Trial]:
    """Every trial of one dataset and model, all families: one job trains ``runs_per_job`` of them."""
    return [t for d, m, f in lr_families(config) if (d, m) == (dataset, model)
            for t in lr_trials(config, d, m, f)]


def lr_batch_files(config: Mapping, dataset: str, model: str, family: str) -> list[str]:
    """The lr-trial batches that hold a family's trials (a batch can hold several families)."""
    k = int(config["runs_per_job"])
    trials = dataset_trials(config, dataset, model)
    batches = sorted({index // k for index, t in enumerate(trials) if t.family == family})
    return [paths.lr_batch_file(config["results"], dataset, model, b) for b in batches]


# ---------------------------------------------------------------- scores and GGA

def score_targets(config: Mapping) -> list[tuple[str, str]]:
    """(dataset, model) pairs whose edges are scored: the Fig. 3 datasets (Fig. 5, 11), the GGA
    experiments' datasets (Fig. 6, the search experiment) and the fig6c model."""
    targets = {(d, dataset_model(config, d)) for d in experiment_datasets(config, "fig3")}
    targets |= {(d, dataset_model(config, d)) for d in experiment_datasets(config, "fig6ab")}
    if config["experiments"].get("fig6c"):
        spec = config["experiments"]["fig6c"]
        targets.add((spec["dataset"], spec["model"]))
    # the search table reads its datasets' scores (GGA's cost; the text models' token count)
    targets |= {(d, dataset_model(config, d)) for d in experiment_datasets(config, "search")}
    return sorted(targets)


def gga_placements(config: Mapping, dataset: str, model: str) -> list[Placement]:
    """The GGA / top-k placements the plan trains on (dataset, model), by name."""
    chosen = {r.placement for r in planned_runs(config)
              if r.dataset == dataset and r.model == model and r.placement.method in ("gga", "topk")}
    return sorted(chosen, key=str)


def gga_parameters(config: Mapping, placement: Placement) -> tuple[int, float]:
    """(N, gamma) of a GGA or top-k placement (gga_N: the fig6ab gamma)."""
    return placement.gga_parameters(config["experiments"]["fig6ab"]["gamma"])
