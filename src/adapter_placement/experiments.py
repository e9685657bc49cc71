"""The experiments of DESIGN.md section 6 as lists of runs: a pure function of the pipeline config.

Every training run the pipeline makes is a :class:`Run`: (experiment, dataset, method, placement,
seed) plus the adapter overrides (rank, activation, kind) and the model. The Snakefile turns these
lists into jobs (``runs_per_job`` runs each); ``pipeline.train_batch`` turns each run into a
``TrainConfig``. Nothing here reads data or weights, so the paper DAG builds offline.

Datasets are named by the paper's keys (``inat18``, ``places365``, ``clevr_count``, ``svhn``,
``dspr_loc``, ``mnli``, ``sst2``, as in ``paper/*.csv``); the config maps each to the task that
is trained (``digit_pairs`` in the embedded default, ``inat2018`` at paper scale).

Placements are named (``placement_edges`` resolves a name to edges):

=========================  ===========================================================================
name                       edges
=========================  ===========================================================================
``none``                   no adapter (linear probe, full fine-tuning)
``parallel_K``             the K-th parallel edge (K-1, K), K = 1..2L (Fig. 1)
``edge_I_J``               the single edge (I, J) (Fig. 3 grid, Fig. 8)
``parallel_all``           the 2L parallel edges; ``sequential_all`` the 2L sequential ones
``ffn_parallel``           the L parallel edges into feed-forward nodes (Fig. 6c, Table 5)
``all_edges``              all n^2 edges (Fig. 15)
``first_K`` / ``last_K``   the K parallel edges nearest the input / output
``spread_K``               K parallel edges spaced evenly, the first at (0, 1) (Fig. 9)
``randomN_DDD``            draw DDD of N edges from all n^2 (``placements.random(n, N, seed=DDD)``)
``randnrN_DDD``            draw DDD of N edges from the n(n+1)/2 non-recurrent ones (i <= j; Table 7)
``gga_N``, ``gga_N_gG``    GGA with the experiment's gamma, or gamma G; ``topk_N`` = GGA with gamma 0
``best_single``            the best single edge of this dataset's Fig. 3 grid (Table 5 trains every
                           grid edge at its own rank instead; kept for ad-hoc use)
``best_random_D``          the best Table 1 random placement of dataset D (Table 8, Fig. 15)
``MN_DDD``                 what search method M (``iterative_gga``, ``edge_switch``, ``prune_magnitude``,
                           ``prune_taylor``) chose for N adapters with seed DDD (beyond the paper)
=========================  ===========================================================================

GGA, top-k, best_* and the searches depend on results (scores, other runs, a search): their edges
come from a JSON file that a rule writes (``derived_placement_file``); the others are a function
of the name and n.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Optional

import numpy as np

from . import placements
from .placements import Edge

PAPER_DATASETS = ("inat18", "places365", "clevr_count", "svhn", "dspr_loc", "mnli", "sst2")
FAMILIES = ("linear_probe", "full_ft", "adapters")  # learning rates are selected per family
TRAINING_EXPERIMENTS = ("fig1", "fig3", "table1", "fig6ab", "fig6c", "table5", "fig8", "fig9", "table7",
                        "table8", "fig15", "search")
# The placement methods of the search experiment (beyond the paper): baselines, the paper's GGA,
# and the searches of ``adapter_placement.search`` (prune-and-regrow once per pruning criterion).
SEARCHED = {"iterative_gga": ("iterative_gga", {}), "edge_switch": ("edge_switch", {}),
            "prune_magnitude": ("prune_regrow", {"criterion": "magnitude"}),
            "prune_taylor": ("prune_regrow", {"criterion": "taylor"})}
LR_EXPERIMENT = "lr"  # the folder and MLflow experiment of the learning-rate trials


# ---------------------------------------------------------------- runs

@dataclass(frozen=True)
class Run:
    """One training run of an experiment (final protocol: train+val -> test)."""

    experiment: str
    dataset: str  # paper key, e.g. "inat18"
    placement: str  # a placement name (module docstring); "none" for linear probe / full FT
    seed: int
    model: str  # key into config["models"]
    method: str = "adapters"  # linear_probe | full_ft | adapters
    rank: int = 8
    activation: str = "gelu"
    kind: str = "bottleneck"  # bottleneck | linear
    group: str = ""  # the placement's name in its cell when it differs per seed (Fig. 6 random draws)

    @property
    def variant(self) -> str:
        """The method with its adapter module: ``adapters-r8-gelu``, ``adapters-linear``, ``full_ft``."""
        if self.method != "adapters":
            return self.method
        if self.kind == "linear":
            return "adapters-linear"
        return f"adapters-r{self.rank}-{self.activation}"

    @property
    def cell(self) -> str:
        """What a table cell or figure point averages over seeds (an MLflow tag)."""
        return f"{self.experiment}/{self.dataset}/{self.variant}/{self.group or self.placement}"

    def folder(self, results: str) -> str:
        return f"{results}/runs/{self.experiment}/{self.dataset}/{self.variant}/{self.placement}/seed{self.seed}"

    @property
    def family(self) -> str:
        return self.method

    def to_dict(self) -> dict:
        return asdict(self)


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
    def placement(self) -> str:
        return "parallel_all" if self.family == "adapters" else "none"

    def folder(self, results: str) -> str:
        return (f"{results}/runs/{LR_EXPERIMENT}/{self.dataset}/{self.model}/{self.family}/"
                f"lr{self.lr:g}-steps{self.steps}/seed{self.seed}")

    @property
    def cell(self) -> str:
        return f"{LR_EXPERIMENT}/{self.dataset}/{self.model}/{self.family}/lr{self.lr:g}-steps{self.steps}"

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- config helpers

def num_nodes(config: Mapping, model: str) -> int:
    """n = 2L + 1 of a model, from the config (checked against the real model by a job)."""
    return 2 * int(config["models"][model]["blocks"]) + 1


def dataset_model(config: Mapping, dataset: str) -> str:
    return config["datasets"][dataset]["model"]


def dataset_rank(config: Mapping, dataset: str) -> int:
    return int(config["datasets"][dataset]["rank"])


def experiment_datasets(config: Mapping, experiment: str) -> list[str]:
    """The datasets an experiment runs on (``datasets`` list or single ``dataset``)."""
    spec = config["experiments"].get(experiment)
    if not spec:
        return []
    if "datasets" in spec:
        return list(spec["datasets"])
    return [spec["dataset"]]


def enabled_experiments(config: Mapping) -> list[str]:
    return [e for e in TRAINING_EXPERIMENTS if config["experiments"].get(e)]


# ---------------------------------------------------------------- the plans, one function per experiment

def _seeds(config: Mapping) -> list[int]:
    return list(config["seeds"])


def _adapter_runs(config, experiment, dataset, names: Iterable[str], **overrides) -> list[Run]:
    model = overrides.pop("model", dataset_model(config, dataset))
    rank = overrides.pop("rank", dataset_rank(config, dataset))
    return [Run(experiment, dataset, name, seed, model, rank=rank, **overrides)
            for name in names for seed in _seeds(config)]


def plan_fig1(config: Mapping) -> list[Run]:
    """One parallel adapter at each of the 2L positions (Fig. 1, Fig. 7)."""
    runs = []
    for d in experiment_datasets(config, "fig1"):
        n = num_nodes(config, dataset_model(config, d))
        runs += _adapter_runs(config, "fig1", d, [f"parallel_{k}" for k in range(1, n)])
    return runs


def plan_fig3(config: Mapping) -> list[Run]:
    """One adapter on each edge of the stride-s grid (Fig. 3, Table 3, Fig. 4, 5, 10-13)."""
    stride = int(config["experiments"]["fig3"]["stride"])
    runs = []
    for d in experiment_datasets(config, "fig3"):
        n = num_nodes(config, dataset_model(config, d))
        runs += _adapter_runs(config, "fig3", d, [f"edge_{e.i}_{e.j}" for e in placements.grid(n, stride)])
    return runs


def random_size(config: Mapping, model: str, size: Optional[int]) -> int:
    """The number of adapters of Table 1's random placements: 2L unless given."""
    return int(size) if size else num_nodes(config, model) - 1


def plan_table1(config: Mapping) -> list[Run]:
    """FT, LP, parallel_all, sequential_all and the random placements of 2L adapters (Table 1)."""
    spec = config["experiments"]["table1"]
    runs = []
    for d in experiment_datasets(config, "table1"):
        model = dataset_model(config, d)
        size = random_size(config, model, spec.get("random_size"))
        for method in ("full_ft", "linear_probe"):
            runs += [Run("table1", d, "none", s, model, method=method, rank=dataset_rank(config, d))
                     for s in _seeds(config)]
        names = ["parallel_all", "sequential_all"] + [f"random{size}_{k:03d}" for k in range(spec["random_draws"])]
        runs += _adapter_runs(config, "table1", d, names)
    return runs


def plan_fig6ab(config: Mapping) -> list[Run]:
    """GGA, top-k, random, first-k and last-k placements of N adapters (Fig. 6a, 6b). The random
    placement of seed s is draw s, so its mean is over placements as well as initialisations."""
    spec = config["experiments"]["fig6ab"]
    runs = []
    for d in experiment_datasets(config, "fig6ab"):
        model = dataset_model(config, d)
        for n_adapters in spec["n"]:
            names = [f"gga_{n_adapters}", f"topk_{n_adapters}", f"first_{n_adapters}", f"last_{n_adapters}"]
            runs += _adapter_runs(config, "fig6ab", d, names)
            runs += [Run("fig6ab", d, f"random{n_adapters}_{s:03d}", s, model, rank=dataset_rank(config, d),
                         group=f"random_{n_adapters}") for s in _seeds(config)]
    return runs


def fig6c_gga_name(config: Mapping) -> str:
    spec = config["experiments"]["fig6c"]
    blocks = int(config["models"][spec["model"]]["blocks"])
    return f"gga_{spec.get('n') or blocks}_g{spec['gamma']:g}"


def plan_fig6c(config: Mapping) -> list[Run]:
    """GGA (N = number of FFN parallel edges, gamma 0.8) vs ffn_parallel for each rank (Fig. 6c)."""
    spec = config["experiments"]["fig6c"]
    names = [fig6c_gga_name(config), "ffn_parallel"]
    return [run for rank in spec["ranks"]
            for run in _adapter_runs(config, "fig6c", spec["dataset"], names, model=spec["model"], rank=int(rank))]


def plan_table5(config: Mapping) -> list[Run]:
    """L FFN parallel adapters of rank r vs one adapter of rank L*r on every edge of the Fig. 3 grid
    (Table 5, App. I: "we test all the sub-sampled placements"); the table takes the best edge of
    each rank from these runs, so no edge is picked at another rank."""
    spec = config["experiments"]["table5"]
    d = spec["dataset"]
    n = num_nodes(config, dataset_model(config, d))
    blocks = (n - 1) // 2
    grid = [f"edge_{e.i}_{e.j}" for e in placements.grid(n, int(config["experiments"]["fig3"]["stride"]))]
    runs = []
    for rank in spec["ranks"]:
        runs += _adapter_runs(config, "table5", d, ["ffn_parallel"], rank=int(rank))
        runs += _adapter_runs(config, "table5", d, grid, rank=int(rank) * blocks)
    return runs


def plan_fig8(config: Mapping) -> list[Run]:
    """Single *linear* adapters on the Fig. 3 grid (Fig. 8; the non-linear ones are Fig. 3's)."""
    stride = int(config["experiments"]["fig3"]["stride"])
    d = config["experiments"]["fig8"]["dataset"]
    n = num_nodes(config, dataset_model(config, d))
    return _adapter_runs(config, "fig8", d, [f"edge_{e.i}_{e.j}" for e in placements.grid(n, stride)],
                         kind="linear")


def plan_fig9(config: Mapping) -> list[Run]:
    """GELU / ReLU / identity adapters on K evenly spread parallel edges (Fig. 9)."""
    spec = config["experiments"]["fig9"]
    return [run for act in spec["activations"]
            for run in _adapter_runs(config, "fig9", spec["dataset"], [f"spread_{k}" for k in spec["n"]],
                                     activation=act)]


def plan_table7(config: Mapping) -> list[Run]:
    """Random non-recurrent placements of N adapters vs first-N and last-N (Table 7)."""
    spec = config["experiments"]["table7"]
    n_adapters = int(spec["n"])
    names = [f"first_{n_adapters}", f"last_{n_adapters}"]
    names += [f"randnr{n_adapters}_{k:03d}" for k in range(spec["random_draws"])]
    return _adapter_runs(config, "table7", spec["dataset"], names)


def plan_table8(config: Mapping) -> list[Run]:
    """The best Table 1 placement of one text dataset trained on the other, and vice versa (Table 8)."""
    first, second = config["experiments"]["table8"]["datasets"]
    return (_adapter_runs(config, "table8", second, [f"best_random_{first}"])
            + _adapter_runs(config, "table8", first, [f"best_random_{second}"]))


def plan_fig15(config: Mapping) -> list[Run]:
    """All n^2 adapters at once (Fig. 15; compared with the best random placement of Table 1)."""
    return _adapter_runs(config, "fig15", config["experiments"]["fig15"]["dataset"], ["all_edges"])


def search_gga_name(config: Mapping, n_adapters: int) -> str:
    return f"gga_{n_adapters}_g{config['experiments']['search']['gamma']:g}"


def search_placement_name(method: str, n_adapters: int, seed: int) -> str:
    """What search ``method`` (or ``random``: draw ``seed``) chose for N adapters with ``seed``; the
    seed of a run is its search's seed too."""
    return f"{method}{n_adapters}_{seed:03d}"


SEARCH_NAME = re.compile(r"^(" + "|".join(SEARCHED) + r")(\d+)_(\d+)$")


def plan_search(config: Mapping) -> list[Run]:
    """Every method of the search experiment at every N (parallel_all once: it has 2L adapters),
    each run tagged with its cell ``method_N``. Random and searched placements differ per seed."""
    spec = config["experiments"]["search"]
    runs = []
    for d in experiment_datasets(config, "search"):
        model, rank = dataset_model(config, d), dataset_rank(config, d)
        for method in spec["methods"]:
            if method == "parallel_all":
                runs += _adapter_runs(config, "search", d, ["parallel_all"],
                                      group=f"parallel_all_{num_nodes(config, model) - 1}")
                continue
            for n_adapters in spec["n"]:
                group = f"{method}_{n_adapters}"
                if method == "gga":
                    runs += _adapter_runs(config, "search", d, [search_gga_name(config, n_adapters)], group=group)
                else:
                    runs += [Run("search", d, search_placement_name(method, n_adapters, s), s, model, rank=rank,
                                 group=group) for s in _seeds(config)]
    return runs


PLANNERS = {"fig1": plan_fig1, "fig3": plan_fig3, "table1": plan_table1, "fig6ab": plan_fig6ab,
            "fig6c": plan_fig6c, "table5": plan_table5, "fig8": plan_fig8, "fig9": plan_fig9,
            "table7": plan_table7, "table8": plan_table8, "fig15": plan_fig15, "search": plan_search}


def plan(config: Mapping, experiment: str) -> list[Run]:
    """The runs of one experiment, in a fixed order (batches are slices of it)."""
    if not config["experiments"].get(experiment):
        return []
    return PLANNERS[experiment](config)


def plan_dataset(config: Mapping, experiment: str, dataset: str) -> tuple[Run, ...]:
    return _plan_by_dataset(_config_json(config), experiment).get(dataset, ())


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


# ---------------------------------------------------------------- learning-rate selection

def lr_grid(config: Mapping, dataset: str, model: str, family: str) -> list[tuple[float, int]]:
    """(lr, steps) candidates of a family: the modality's lr grid times the dataset's steps grid."""
    modality = config["models"][model]["modality"]
    return [(float(lr), int(steps)) for lr in config["lr_grid"][modality][family]
            for steps in config["datasets"][dataset]["steps"]]


def lr_families(config: Mapping) -> list[tuple[str, str, str]]:
    """(dataset, model, family) of every selection the plan needs (the families its runs use,
    and linear_probe + adapters wherever scores are computed: the head's lr and the run length)."""
    needed = {(r.dataset, r.model, r.family) for e in enabled_experiments(config) for r in cached_plan(config, e)}
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


# ---------------------------------------------------------------- scores and derived placements

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


GGA_NAME = re.compile(r"^(gga|topk)_(\d+)(?:_g([0-9.]+))?$")


def gga_names(config: Mapping, dataset: str, model: str) -> list[str]:
    """The GGA / top-k placements the plan trains on (dataset, model)."""
    names = {r.placement for e in enabled_experiments(config) for r in cached_plan(config, e)
             if r.dataset == dataset and r.model == model and GGA_NAME.match(r.placement)}
    return sorted(names)


def gga_parameters(config: Mapping, name: str) -> tuple[int, float]:
    """(N, gamma) of a GGA placement name: topk is gamma 0, gga_N the fig6ab gamma."""
    kind, count, gamma = GGA_NAME.match(name).groups()
    if kind == "topk":
        return int(count), 0.0
    return int(count), float(gamma) if gamma else float(config["experiments"]["fig6ab"]["gamma"])


def derived_placement_file(results: str, run_dataset: str, model: str, name: str) -> Optional[str]:
    """The JSON that holds a results-dependent placement, None for the others."""
    if GGA_NAME.match(name):
        return f"{results}/placements/{run_dataset}/{model}/gga.json"
    if name == "best_single":
        return f"{results}/placements/{run_dataset}/best_single.json"
    if name.startswith("best_random_"):
        return f"{results}/placements/{name[len('best_random_'):]}/best_random.json"
    return None


# ---------------------------------------------------------------- placement searches (beyond the paper)

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
        return search_placement_name(self.method, self.n, self.seed)

    @property
    def names(self) -> list[str]:
        return [search_placement_name(self.method, c, self.seed) for c in self.counts or (self.n,)]

    def to_dict(self) -> dict:
        return {**asdict(self), "counts": list(self.counts or (self.n,))}


def dataset_searches(config: Mapping, dataset: str) -> list[Search]:
    """The searches whose placements the search experiment trains on ``dataset``, in plan order
    (one edge switch per seed, at the largest N)."""
    model = dataset_model(config, dataset)
    wanted: dict[tuple[str, int], list[int]] = {}
    for run in plan_dataset(config, "search", dataset):
        match = SEARCH_NAME.match(run.placement)
        if match:
            wanted.setdefault((match.group(1), run.seed), []).append(int(match.group(2)))
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


def search_batch_file(results: str, dataset: str, model: str, batch: int) -> str:
    return f"{results}/placements/{dataset}/{model}/search/batch{batch}.json"


def search_batch_files(config: Mapping) -> list[str]:
    return [search_batch_file(config["results"], d, dataset_model(config, d), b) for d, b in search_batches(config)]


def search_file_of(config: Mapping, dataset: str, name: str) -> str:
    """The search batch JSON that holds placement ``name`` of ``dataset``."""
    index = next(k for k, s in enumerate(dataset_searches(config, dataset)) if name in s.names)
    return search_batch_file(config["results"], dataset, dataset_model(config, dataset),
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
            "lr_file": lr_file(config["results"], search.dataset, search.model, "adapters"),
            "tracking_uri": tracking_uri(config), "device": config.get("device", "auto"),
            "tags": {"experiment": "search", "cell": f"search/{search.dataset}/selection/{search.method}_{search.n}",
                     "dataset": search.dataset, "method": search.method, "seed": search.seed}}


def search_items(config: Mapping, dataset: str, batch: int) -> list[dict]:
    return [search_item(config, s) for s in batch_of(dataset_searches(config, dataset), batch,
                                                      int(config["runs_per_job"]))]


# ---------------------------------------------------------------- placement names -> edges

def random_non_recurrent(num_nodes_: int, count: int, seed: int) -> list[Edge]:
    """``count`` distinct edges (i, j) with i <= j, uniformly, in row-major order (Table 7)."""
    n = placements.check_num_nodes(num_nodes_)
    candidates = [Edge(i, j) for i in range(n) for j in range(i, n)]
    if not 1 <= count <= len(candidates):
        raise ValueError(f"count must be in 1..{len(candidates)} (non-recurrent edges), got {count!r}")
    picks = np.random.default_rng(seed).choice(len(candidates), size=count, replace=False)
    return [candidates[k] for k in sorted(picks)]


def spread(num_nodes_: int, count: int) -> list[Edge]:
    """``count`` parallel edges spaced evenly over the 2L positions, the first at (0, 1) (Fig. 9)."""
    edges = placements.parallel_all(num_nodes_)
    if not 1 <= count <= len(edges):
        raise ValueError(f"spread needs 1..{len(edges)} adapters, got {count}")
    step = len(edges) / count
    return [edges[int(k * step)] for k in range(count)]


_FIXED = {
    "none": lambda n: [],
    "parallel_all": placements.parallel_all,
    "sequential_all": placements.sequential_all,
    "ffn_parallel": placements.ffn_parallel,
    "all_edges": placements.all_edges,
}
_PATTERNS = [
    (re.compile(r"^parallel_(\d+)$"), lambda n, k: [Edge(int(k) - 1, int(k))]),
    (re.compile(r"^edge_(\d+)_(\d+)$"), lambda n, i, j: [Edge(int(i), int(j))]),
    (re.compile(r"^first_(\d+)$"), lambda n, k: placements.first_k(n, int(k))),
    (re.compile(r"^last_(\d+)$"), lambda n, k: placements.last_k(n, int(k))),
    (re.compile(r"^spread_(\d+)$"), lambda n, k: spread(n, int(k))),
    (re.compile(r"^random(\d+)_(\d+)$"), lambda n, c, d: placements.random(n, int(c), seed=int(d))),
    (re.compile(r"^randnr(\d+)_(\d+)$"), lambda n, c, d: random_non_recurrent(n, int(c), int(d))),
]


def placement_edges(name: str, num_nodes_: int, derived: Optional[Mapping[str, list]] = None) -> list[Edge]:
    """The edges of a named placement (module docstring); ``derived`` maps the names of
    results-dependent placements (GGA, best_*) to their edges, as read from their JSON file."""
    if name in _FIXED:
        edges = _FIXED[name](num_nodes_)
    elif derived is not None and name in derived:
        edges = [Edge(int(i), int(j)) for i, j in derived[name]]
    else:
        for pattern, make in _PATTERNS:
            match = pattern.match(name)
            if match:
                edges = make(num_nodes_, *match.groups())
                break
        else:
            raise ValueError(f"unknown placement {name!r} (see adapter_placement.experiments)")
    return placements.check_edges(edges, num_nodes_)


def is_known_placement(name: str) -> bool:
    return (name in _FIXED or any(p.match(name) for p, _ in _PATTERNS) or bool(GGA_NAME.match(name))
            or bool(SEARCH_NAME.match(name)) or name == "best_single" or name.startswith("best_random_"))


# ---------------------------------------------------------------- cached planning (Snakemake calls these a lot)

def _config_json(config: Mapping) -> str:
    return json.dumps(config, sort_keys=True, default=str)


@functools.lru_cache(maxsize=64)
def _plan_from_json(config_json: str, experiment: str) -> tuple[Run, ...]:
    return tuple(plan(json.loads(config_json), experiment))


@functools.lru_cache(maxsize=64)
def _plan_by_dataset(config_json: str, experiment: str) -> dict[str, tuple[Run, ...]]:
    groups: dict[str, list[Run]] = {}
    for run in _plan_from_json(config_json, experiment):
        groups.setdefault(run.dataset, []).append(run)
    return {d: tuple(runs) for d, runs in groups.items()}


def cached_plan(config: Mapping, experiment: str) -> tuple[Run, ...]:
    return _plan_from_json(_config_json(config), experiment)


# ---------------------------------------------------------------- models and training settings

def model_spec(config: Mapping, model: str) -> str:
    """The ``load_model`` spec of a model key. A model with a ``pretrain`` section is the small ViT
    that the pretrain rule makes; its file name carries a hash of that section, so that other
    pre-training settings give other weights and, through the spec, other run configs. With a
    ``spec`` as well (the embedded default: the committed ``models/vit_digits.safetensors``, made
    once with that recipe), the file is used as it is unless ``rebuild_pretrained`` is true."""
    entry = config["models"][model]
    if entry.get("pretrain") and (config.get("rebuild_pretrained") or not entry.get("spec")):
        digest = hashlib.sha256(json.dumps(entry["pretrain"], sort_keys=True).encode()).hexdigest()[:10]
        return f"{config['results']}/pretrain/{model}-{digest}.safetensors"
    return entry["spec"]


def chance_levels(config: Mapping) -> dict[str, float]:
    """Test accuracy (%) of guessing the most frequent class of a balanced task: 100 / classes."""
    from .data import num_classes_of

    return {name: 100.0 / num_classes_of(entry["task"]) for name, entry in config["datasets"].items()}


def tracking_uri(config: Mapping) -> str:
    return config.get("tracking_uri") or f"sqlite:///{config['results']}/mlflow.db"


def train_settings(config: Mapping, dataset: str, model: str) -> dict:
    """The TrainConfig fields that come from the config, for one dataset and model."""
    entry = config["datasets"][dataset]
    return {"dataset": entry["task"], "model": model_spec(config, model),
            "batch_size": int(entry["batch_size"]), "data_seed": int(config["data_seed"]),
            "data_sizes": entry.get("sizes"), "data_dir": config.get("data_dir"),
            "prefix_cache": bool(config["prefix_cache"]), "cache_dir": f"{config['results']}/cache",
            "tracking_uri": tracking_uri(config), "progress": False, **compute_settings(config, model)}


def compute_settings(config: Mapping, model: str) -> dict:
    """Where and how a job computes: the device and precision of the config, and the model's
    micro-batch size (gradient accumulation, for models whose batch does not fit one GPU)."""
    return {"device": config.get("device", "auto"), "precision": config.get("precision", "fp32"),
            "micro_batch_size": config["models"][model].get("micro_batch_size")}


def lr_file(results: str, dataset: str, model: str, family: str) -> str:
    return f"{results}/lr/{dataset}/{model}/{family}.json"


def run_item(config: Mapping, run: Run) -> dict:
    """Everything a job needs to train one final run (its lr and steps come from ``lr_file``)."""
    results = config["results"]
    fields = dict(train_settings(config, run.dataset, run.model), method=run.method, rank=run.rank,
                  activation=run.activation, adapter_kind=run.kind, seed=run.seed,
                  train_split="train+val", eval_splits=["test"], experiment=run.experiment,
                  tags={"experiment": run.experiment, "cell": run.cell, "dataset": run.dataset,
                        "placement": run.placement, "variant": run.variant, "seed": run.seed})
    derived = derived_placement_file(results, run.dataset, run.model, run.placement)
    if SEARCH_NAME.match(run.placement):
        derived = search_file_of(config, run.dataset, run.placement)
    return {"key": {"kind": "run", **run.to_dict()}, "folder": run.folder(results), "fields": fields,
            "placement": run.placement, "num_nodes": num_nodes(config, run.model),
            "lr_file": lr_file(results, run.dataset, run.model, run.family), "derived_file": derived}


def trial_item(config: Mapping, trial: Trial) -> dict:
    """Everything a job needs to train one learning-rate trial (train -> val)."""
    method = trial.family
    fields = dict(train_settings(config, trial.dataset, trial.model), method=method, rank=trial.rank,
                  seed=trial.seed, lr=trial.lr, steps=trial.steps, train_split="train", eval_splits=["val"],
                  experiment="lr_selection",
                  tags={"experiment": "lr_selection", "cell": trial.cell, "dataset": trial.dataset,
                        "placement": trial.placement, "family": trial.family, "seed": trial.seed})
    return {"key": {"kind": "trial", **trial.to_dict()}, "folder": trial.folder(config["results"]),
            "fields": fields, "placement": trial.placement, "num_nodes": num_nodes(config, trial.model),
            "lr_file": None, "derived_file": None}


# ---------------------------------------------------------------- checks a JSON schema cannot express

class ConfigError(ValueError):
    """A config value that cannot work; the message names its path in the config."""


def check_config(config: Mapping, known_tasks: Iterable[str], path_exists=None) -> None:
    """Cross-references of the config: datasets and models that experiments name must exist, tasks
    must be known, local model files must exist (unless a rule makes them). Raises ConfigError."""
    import os

    exists = path_exists or os.path.exists
    tasks = set(known_tasks)
    datasets, models = config["datasets"], config["models"]
    for name, entry in datasets.items():
        if entry["task"] not in tasks:
            raise ConfigError(f"datasets.{name}.task: unknown dataset {entry['task']!r}; known: {sorted(tasks)}")
        if entry["model"] not in models:
            raise ConfigError(f"datasets.{name}.model: no model {entry['model']!r} in models "
                              f"(defined: {sorted(models)})")
    for name, entry in models.items():
        if entry.get("pretrain") and (config.get("rebuild_pretrained") or not entry.get("spec")):
            continue  # the pretrain rule makes it
        spec = entry.get("spec")
        if not spec:
            raise ConfigError(f"models.{name}: missing model: give `spec` or a `pretrain` section")
        local = spec.endswith(".safetensors") or spec.startswith(("/", "./", "../"))
        if local and not exists(spec):
            raise ConfigError(f"models.{name}.spec: missing model file {spec!r}")
    for experiment, spec in config["experiments"].items():
        if not spec:
            continue
        for k, dataset in enumerate(experiment_datasets(config, experiment)):
            where = f"experiments.{experiment}.datasets[{k}]" if "datasets" in spec else f"experiments.{experiment}.dataset"
            if dataset not in datasets:
                raise ConfigError(f"{where}: unknown dataset {dataset!r}; defined: {sorted(datasets)}")
        if "model" in spec and spec["model"] not in models:
            raise ConfigError(f"experiments.{experiment}.model: missing model {spec['model']!r} "
                              f"(defined: {sorted(models)})")
    scores_dataset = config["scores"]["dataset"]
    if scores_dataset not in datasets:
        raise ConfigError(f"scores.dataset: unknown dataset {scores_dataset!r}; defined: {sorted(datasets)}")
    _check_experiment_shapes(config)


def _check_experiment_shapes(config: Mapping) -> None:
    exp = config["experiments"]
    for experiment in ("fig6ab", "fig9"):
        if not exp.get(experiment):
            continue
        for dataset in experiment_datasets(config, experiment):
            parallel = num_nodes(config, dataset_model(config, dataset)) - 1
            for k, count in enumerate(exp[experiment]["n"]):
                if count > parallel:
                    raise ConfigError(f"experiments.{experiment}.n[{k}]: {count} adapters, but {dataset}'s "
                                      f"model has {parallel} parallel edges (first-k/last-k/spread need <= 2L)")
    if exp.get("table8"):
        first, second = exp["table8"]["datasets"]
        if dataset_model(config, first) != dataset_model(config, second):
            raise ConfigError("experiments.table8.datasets: both datasets must use the same model "
                              f"(got {dataset_model(config, first)!r} and {dataset_model(config, second)!r})")
        if not exp.get("table1") or not {first, second} <= set(experiment_datasets(config, "table1")):
            raise ConfigError("experiments.table8.datasets: both must be Table 1 datasets (their best "
                              "random placements are transferred)")
    if exp.get("fig15") and exp["fig15"]["dataset"] not in experiment_datasets(config, "table1"):
        raise ConfigError(f"experiments.fig15.dataset: {exp['fig15']['dataset']!r} must be a Table 1 dataset")
    if exp.get("table5") and exp["table5"]["dataset"] not in experiment_datasets(config, "fig3"):
        raise ConfigError(f"experiments.table5.dataset: {exp['table5']['dataset']!r} must be a Fig. 3 dataset "
                          "(Table 5 trains every edge of its grid)")
    if exp.get("search"):
        _check_search_shape(config)
    if exp.get("fig8") and not exp.get("fig3"):
        raise ConfigError("experiments.fig8: needs experiments.fig3 (its non-linear adapters)")


def _check_search_shape(config: Mapping) -> None:
    spec = config["experiments"]["search"]
    for dataset in experiment_datasets(config, "search"):
        edges = num_nodes(config, dataset_model(config, dataset)) ** 2
        for k, count in enumerate(spec["n"]):
            if count > edges:
                raise ConfigError(f"experiments.search.n[{k}]: {count} adapters, but {dataset}'s model has "
                                  f"{edges} edges")
            if spec.get("candidates") is not None and "edge_switch" in spec["methods"] and not (
                    count <= spec["candidates"] <= edges):
                raise ConfigError(f"experiments.search.candidates: {spec['candidates']} must lie between N = "
                                  f"{count} and the {edges} edges of {dataset}'s model")


# ---------------------------------------------------------------- job specs (the rules' params)

def pretrained_models(config: Mapping) -> list[str]:
    return sorted(m for m, entry in config["models"].items() if entry.get("pretrain"))


def used_models(config: Mapping) -> list[str]:
    """Models that some dataset or experiment uses (only these are loaded or pre-trained)."""
    used = {entry["model"] for entry in config["datasets"].values()}
    used.add(config["experiments"]["fig6c"]["model"])
    return sorted(used)


def used_datasets(config: Mapping) -> list[str]:
    return sorted({d for e in TRAINING_EXPERIMENTS for d in experiment_datasets(config, e)})


def data_spec(config: Mapping, dataset: str) -> dict:
    entry = config["datasets"][dataset]
    return {"dataset": dataset, "task": entry["task"], "data_seed": int(config["data_seed"]),
            "sizes": entry.get("sizes"), "data_dir": config.get("data_dir")}


def model_info_spec(config: Mapping, model: str) -> dict:
    entry = config["models"][model]
    return {"model": model, "spec": model_spec(config, model), "blocks": int(entry["blocks"]),
            "download": bool(config.get("download_models", False))}


def pretrain_spec(config: Mapping, model: str) -> dict:
    return {"model": model, "pretrain": dict(config["models"][model]["pretrain"]),
            "tracking_uri": tracking_uri(config)}


def scores_spec(config: Mapping, dataset: str, model: str) -> dict:
    """Scores of every edge after the default head pre-training and, on the scores dataset (Table 4,
    Fig. 13), after each length of the head_steps_grid."""
    entry, scores = config["datasets"][dataset], config["scores"]
    grid = scores["head_steps_grid"] if dataset == scores["dataset"] else []
    return {"dataset": dataset, "model": model, "task": entry["task"], "model_spec": model_spec(config, model),
            "head_fraction": float(scores["head_fraction"]), "head_steps_grid": [int(n) for n in grid],
            "batch_size": int(entry["batch_size"]),
            "score_examples": int(entry["score_examples"]), "functions": list(scores["functions"]),
            "eta": float(scores["eta"]), "etas": [float(e) for e in scores["etas"]],
            "data_seed": int(config["data_seed"]), "sizes": entry.get("sizes"), "data_dir": config.get("data_dir"),
            "tracking_uri": tracking_uri(config), "device": config.get("device", "auto"),
            "precision": config.get("precision", "fp32")}


def batch_items(config: Mapping, experiment: str, dataset: str, batch: int) -> list[dict]:
    runs = list(plan_dataset(config, experiment, dataset))
    return [run_item(config, r) for r in batch_of(runs, batch, int(config["runs_per_job"]))]


def trial_items(config: Mapping, dataset: str, model: str, batch: int) -> list[dict]:
    trials = dataset_trials(config, dataset, model)
    return [trial_item(config, t) for t in batch_of(trials, batch, int(config["runs_per_job"]))]


def batch_inputs(config: Mapping, items: list[dict]) -> dict:
    """The files a batch of runs reads: data and model records, lr choices, derived placements."""
    results = config["results"]
    keys = [item["key"] for item in items]
    return {"data": sorted({f"{results}/data/{k['dataset']}.json" for k in keys}),
            "models": sorted({f"{results}/models/{k['model']}.json" for k in keys}),
            "lr": sorted({item["lr_file"] for item in items if item["lr_file"]}),
            "placements": sorted({item["derived_file"] for item in items if item["derived_file"]})}


def batch_files(config: Mapping, experiment: str, dataset: Optional[str] = None) -> list[str]:
    """The batch JSONs of a training experiment (of one dataset, or all)."""
    results = config["results"]
    return [f"{results}/batches/{experiment}/{d}/batch{b}.json" for d, b in training_batches(config, experiment)
            if dataset is None or d == dataset]


def lr_batch_files(config: Mapping, dataset: str, model: str, family: str) -> list[str]:
    """The lr-trial batches that hold a family's trials (a batch can hold several families)."""
    k = int(config["runs_per_job"])
    trials = dataset_trials(config, dataset, model)
    batches = sorted({index // k for index, t in enumerate(trials) if t.family == family})
    return [f"{config['results']}/batches/lr/{dataset}/{model}/batch{b}.json" for b in batches]
