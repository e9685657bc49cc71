"""What each rule hands its job (the ``spec`` of ``params.job``), a pure function of the config.

A training job gets a list of :class:`RunSpec`, one per run or lr trial, as JSON
(``RunSpec.to_json`` / ``from_json``). A spec is the science of the run (:class:`TrainRecipe`:
what is trained, everything its result depends on) apart from the plumbing (:class:`RunIO`: where
it reads and writes, how it is tracked and computed), plus the run's key (what the batch JSON
records it under) and the model's node count. ``pipeline.resolve_item`` reads the lr choice and
the derived placement that a spec points to and builds the run's ``train.TrainConfig``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping, Optional

from . import paths
from .config import compute_settings, model_precision, model_spec, num_nodes, tracking_uri
from .placement import SEARCHED, Placement
from .runs import Run, Trial, batch_of, dataset_trials, plan_dataset
from .searches import search_file_of


@dataclass(frozen=True)
class TrainRecipe:
    """What a run trains: its result is a function of these (and of the data and weights)."""

    task: str  # the trained task (``data.load_task``), e.g. "digit_pairs"
    model: str  # the ``models.load_model`` spec
    method: str  # linear_probe | full_ft | adapters
    placement: Placement
    rank: int
    seed: int  # initialisation and batch order
    data_seed: int
    batch_size: int
    train_split: str
    eval_splits: tuple
    activation: str = "gelu"
    kind: str = "bottleneck"  # the adapter module: bottleneck | linear
    data_sizes: Optional[dict] = None  # embedded tasks only: {split: examples}
    precision: str = "fp32"
    lr: Optional[float] = None  # None: the selected lr of the run's family (RunIO.lr_file)
    steps: Optional[int] = None  # None: the selected steps


@dataclass(frozen=True)
class RunIO:
    """Where a run reads and writes, and how it is tracked and computed; none of it changes the
    result (``micro_batch_size`` accumulates the same gradient)."""

    folder: str
    experiment: str  # the MLflow experiment
    tags: dict = field(default_factory=dict)
    lr_file: Optional[str] = None  # the lr (and steps) choice to read, when the recipe has none
    derived_file: Optional[str] = None  # the JSON that holds a results-dependent placement
    data_dir: Optional[str] = None
    cache_dir: str = "results/cache"
    prefix_cache: bool = False
    tracking_uri: Optional[str] = None
    progress: bool = False
    device: str = "auto"
    micro_batch_size: Optional[int] = None


@dataclass(frozen=True)
class RunSpec:
    """One run (or lr trial) of a training job."""

    key: dict  # the Run or Trial as the batch JSON records it (``kind``: run | trial)
    num_nodes: int
    recipe: TrainRecipe
    io: RunIO

    def to_json(self) -> dict:
        """A JSON object (the placement by name and by its fields)."""
        recipe = {**asdict(self.recipe), "placement": self.recipe.placement.to_dict(),
                  "eval_splits": list(self.recipe.eval_splits)}
        return {"key": self.key, "num_nodes": self.num_nodes, "recipe": recipe, "io": asdict(self.io)}

    @classmethod
    def from_json(cls, obj: Mapping) -> "RunSpec":
        recipe = dict(obj["recipe"])
        recipe.update(placement=Placement.parse(recipe["placement"]["name"]),
                      eval_splits=tuple(recipe["eval_splits"]))
        return cls(key=dict(obj["key"]), num_nodes=int(obj["num_nodes"]), recipe=TrainRecipe(**recipe),
                   io=RunIO(**obj["io"]))


# ---------------------------------------------------------------- specs of the training jobs

def _recipe_and_io(config: Mapping, dataset: str, model: str, folder: str, experiment: str,
                   **recipe) -> tuple[dict, dict]:
    """The recipe and io fields that come from the config, for one dataset and model."""
    entry, results = config["datasets"][dataset], config["results"]
    compute = compute_settings(config, model)
    recipe = dict(task=entry["task"], model=model_spec(config, model), batch_size=int(entry["batch_size"]),
                  data_seed=int(config["data_seed"]), data_sizes=entry.get("sizes"),
                  precision=compute["precision"], **recipe)
    io = dict(folder=folder, experiment=experiment, data_dir=config.get("data_dir"),
              cache_dir=paths.cache_dir(results), prefix_cache=bool(config["prefix_cache"]),
              tracking_uri=tracking_uri(config), progress=False, device=compute["device"],
              micro_batch_size=compute["micro_batch_size"])
    return recipe, io


def run_spec(config: Mapping, run: Run) -> RunSpec:
    """A final run (its lr and steps come from the lr selection, ``RunIO.lr_file``)."""
    results = config["results"]
    recipe, io = _recipe_and_io(config, run.dataset, run.model, run.folder(results), run.experiment,
                                method=run.method, placement=run.placement, rank=run.rank,
                                activation=run.activation, kind=run.kind, seed=run.seed,
                                train_split="train+val", eval_splits=("test",))
    if run.placement.method in SEARCHED:
        derived = search_file_of(config, run.dataset, run.placement)
    else:
        derived = paths.derived_placement_file(results, run.dataset, run.model, run.placement)
    tags = {"experiment": run.experiment, "cell": run.cell, "dataset": run.dataset,
            "placement": str(run.placement), "variant": run.variant, "seed": run.seed}
    io.update(tags=tags, lr_file=paths.lr_file(results, run.dataset, run.model, run.family), derived_file=derived)
    return RunSpec({"kind": "run", **run.to_dict()}, num_nodes(config, run.model), TrainRecipe(**recipe), RunIO(**io))


def trial_spec(config: Mapping, trial: Trial) -> RunSpec:
    """A learning-rate trial (train -> val) on its family's reference placement."""
    recipe, io = _recipe_and_io(config, trial.dataset, trial.model, trial.folder(config["results"]), "lr_selection",
                                method=trial.method, placement=trial.placement, rank=trial.rank, seed=trial.seed,
                                lr=trial.lr, steps=trial.steps, train_split="train", eval_splits=("val",))
    io["tags"] = {"experiment": "lr_selection", "cell": trial.cell, "dataset": trial.dataset,
                  "placement": str(trial.placement), "family": trial.family, "seed": trial.seed}
    return RunSpec({"kind": "trial", **trial.to_dict()}, num_nodes(config, trial.model), TrainRecipe(**recipe),
                   RunIO(**io))


def batch_specs(config: Mapping, experiment: str, dataset: str, batch: int) -> list[RunSpec]:
    runs = list(plan_dataset(config, experiment, dataset))
    return [run_spec(config, r) for r in batch_of(runs, batch, int(config["runs_per_job"]))]


def trial_specs(config: Mapping, dataset: str, model: str, batch: int) -> list[RunSpec]:
    trials = dataset_trials(config, dataset, model)
    return [trial_spec(config, t) for t in batch_of(trials, batch, int(config["runs_per_job"]))]


def batch_inputs(config: Mapping, specs: list[RunSpec]) -> dict:
    """The files a batch of runs reads: data and model records, lr choices, derived placements."""
    results = config["results"]
    return {"data": sorted({paths.data_info_file(results, s.key["dataset"]) for s in specs}),
            "models": sorted({paths.model_info_file(results, s.key["model"]) for s in specs}),
            "lr": sorted({s.io.lr_file for s in specs if s.io.lr_file}),
            "placements": sorted({s.io.derived_file for s in specs if s.io.derived_file})}


# ---------------------------------------------------------------- specs of the other jobs

def task_cache(config: Mapping) -> Optional[str]:
    """Where embedded tasks are stored once rendered (``data.stored_splits``): with the prefix cache."""
    return paths.cache_dir(config["results"]) if config["prefix_cache"] else None


def data_spec(config: Mapping, dataset: str) -> dict:
    entry = config["datasets"][dataset]
    return {"dataset": dataset, "task": entry["task"], "data_seed": int(config["data_seed"]),
            "sizes": entry.get("sizes"), "data_dir": config.get("data_dir"), "cache_dir": task_cache(config)}


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
            "cache_dir": task_cache(config), "tracking_uri": tracking_uri(config), "device": config.get("device", "auto"),
            "precision": model_precision(config, model)}
