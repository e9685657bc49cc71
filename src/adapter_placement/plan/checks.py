"""The checks of a pipeline config that a JSON schema cannot express (the schema,
workflow/schemas/config.schema.yaml, checks the types and shapes first): cross-references between
its parts, task names, model files, and experiment sizes that no model can hold."""
from __future__ import annotations

import os
from typing import Iterable, Mapping

import yaml

from .config import REPEAT_OFFSET, dataset_model, experiment_datasets, is_pretrained_here, num_nodes


class ConfigError(ValueError):
    """A config value that cannot work; the message names its path in the config."""


def command_line_values(value):
    """A ``--config KEY=VALUE`` value as YAML reads it: Snakemake parses ``seeds=[2,3]`` into the
    list ``["2", "3"]`` (the list, not its items), which the schema would refuse. Numbers and
    ``null`` (a nested ``candidates: null``) are converted; ``true`` stays a string, as Snakemake
    gives it."""
    if isinstance(value, list):
        return [command_line_values(item) for item in value]
    if isinstance(value, dict):
        return {key: command_line_values(item) for key, item in value.items()}
    if isinstance(value, str):
        parsed = yaml.safe_load(value) if value.strip() else value
        numeric = isinstance(parsed, (int, float)) and not isinstance(parsed, bool)
        return parsed if parsed is None or numeric else value
    return value


def check_config(config: Mapping, known_tasks: Iterable[str], path_exists=None) -> None:
    """Cross-references of the config: datasets and models that experiments name must exist, tasks
    must be known, local model files must exist (unless a rule makes them). Raises ConfigError."""
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
        if is_pretrained_here(config, name):
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
    _check_repeats(config)


def _check_repeats(config: Mapping) -> None:
    """Repeated seeds (``experiment_seeds``) must not land on a seed of the run: with seeds [0, 1000]
    and repeats 2, repeat 1 of seed 0 would be seed 1000's run again."""
    seeds = [int(s) for s in config["seeds"]]
    for experiment, spec in config["experiments"].items():
        if spec and int(spec.get("repeats", 1)) > 1 and max(seeds) >= REPEAT_OFFSET:
            raise ConfigError(f"experiments.{experiment}.repeats: {spec['repeats']} repeats shift each seed by "
                              f"{REPEAT_OFFSET}, so the seeds must stay below {REPEAT_OFFSET} (seeds: {seeds})")


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
