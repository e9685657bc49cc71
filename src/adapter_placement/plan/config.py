"""Reading the pipeline config: the values that several planners need, each read in one place.

Datasets are named by the paper's keys (``inat18``, ``places365``, ``clevr_count``, ``svhn``,
``dspr_loc``, ``mnli``, ``sst2``, as in ``paper/*.csv``); the config maps each to the task that
is trained (``digit_pairs`` in the embedded default, ``inat2018`` at paper scale).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from typing import Mapping

from . import paths
from ..data import num_classes_of

PAPER_DATASETS = ("inat18", "places365", "clevr_count", "svhn", "dspr_loc", "mnli", "sst2")
# Placements whose runs select their own lr, from the adapters' grid, on trials of the placement
# itself: all n^2 adapters at once (Fig. 15) collapsed to chance at the lr of 2L adapters
OWN_LR_PLACEMENTS = ("all_edges",)
FAMILIES = ("linear_probe", "full_ft", "adapters", *OWN_LR_PLACEMENTS)  # learning rates are selected per family
TRAINING_EXPERIMENTS = ("fig1", "fig3", "table1", "fig6ab", "fig6c", "table5", "fig8", "fig9", "table7",
                        "table8", "fig15", "search")


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


REPEAT_OFFSET = 1000  # repeat k of seed s trains as seed s + k * REPEAT_OFFSET


def experiment_seeds(config: Mapping, experiment: str) -> list[int]:
    """The seeds of an experiment's runs: the run's ``seeds``, and with ``repeats: k`` in the
    experiment's config also s + 1000, ..., s + 1000 (k - 1) for each of them, so a cheap experiment
    whose claims are within two seeds' noise gets more seeds while another seed set still moves all
    of them (``--config seeds=[2,3]``: 2, 3, 1002, 1003)."""
    seeds = [int(s) for s in config["seeds"]]
    repeats = int((config["experiments"].get(experiment) or {}).get("repeats", 1))
    return [s + k * REPEAT_OFFSET for k in range(repeats) for s in seeds]


def enabled_experiments(config: Mapping) -> list[str]:
    return [e for e in TRAINING_EXPERIMENTS if config["experiments"].get(e)]


def used_models(config: Mapping) -> list[str]:
    """Models that some dataset or experiment uses (only these are loaded or pre-trained)."""
    used = {entry["model"] for entry in config["datasets"].values()}
    used.add(config["experiments"]["fig6c"]["model"])
    return sorted(used)


def used_datasets(config: Mapping) -> list[str]:
    return sorted({d for e in TRAINING_EXPERIMENTS for d in experiment_datasets(config, e)})


def pretrained_models(config: Mapping) -> list[str]:
    return sorted(m for m, entry in config["models"].items() if entry.get("pretrain"))


def is_pretrained_here(config: Mapping, model: str) -> bool:
    """Whether the pretrain rule makes the model's weights (a ``pretrain`` section and no committed
    ``spec``, or ``rebuild_pretrained``)."""
    entry = config["models"][model]
    return bool(entry.get("pretrain")) and bool(config.get("rebuild_pretrained") or not entry.get("spec"))


def model_spec(config: Mapping, model: str) -> str:
    """The ``load_model`` spec of a model key. A model with a ``pretrain`` section is the small ViT
    that the pretrain rule makes; its file name carries a hash of that section, so that other
    pre-training settings give other weights and, through the spec, other run configs. With a
    ``spec`` as well (the embedded default: the committed ``models/vit_digits.safetensors``, made
    once with that recipe), the file is used as it is unless ``rebuild_pretrained`` is true."""
    entry = config["models"][model]
    if is_pretrained_here(config, model):
        digest = hashlib.sha256(json.dumps(entry["pretrain"], sort_keys=True).encode()).hexdigest()[:10]
        return paths.pretrained_weights(config["results"], model, digest)
    return entry["spec"]


def chance_levels(config: Mapping) -> dict[str, float]:
    """Test accuracy (%) of guessing the most frequent class of a balanced task: 100 / classes."""
    return {name: 100.0 / num_classes_of(entry["task"]) for name, entry in config["datasets"].items()}


def tracking_uri(config: Mapping) -> str:
    return config.get("tracking_uri") or paths.tracking_db(config["results"])


def model_precision(config: Mapping, model: str) -> str:
    """The model's own ``precision`` when it has one, else the config's (default fp32); ``auto``
    is the one measured faster on this machine (``host_precision``)."""
    precision = config["models"][model].get("precision") or config.get("precision", "fp32")
    return host_precision(config["results"], config.get("device", "auto"), config.get("threads_per_job", 1)) \
        if precision == "auto" else precision


@functools.lru_cache(maxsize=None)
def host_precision(results: str, device: str, threads: int) -> str:
    """``precision: auto`` for this machine: measured once (``device.choose_precision``) and kept
    in ``results/host_precision.json`` with the seconds it measured, so that every later plan of
    these results (a rerun, another seed set) picks the same runs. Delete the file to measure again."""
    path = paths.host_precision_file(results)
    if os.path.exists(path):
        with open(path) as handle:
            try:
                record = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not the JSON that precision: auto writes ({error}); "
                                 "delete it to measure again") from None
        if record.get("device") == device and record.get("precision") in ("fp32", "bf16"):
            return record["precision"]
    from .. import atomic
    from ..device import choose_precision, resolve_device

    precision, seconds = choose_precision(resolve_device(device), threads)
    os.makedirs(results, exist_ok=True)
    atomic.write_json(path, {"device": device, "threads": threads, "precision": precision,
                             "seconds_per_pass": seconds, "processor": platform.processor() or platform.machine(),
                             "measured": "forward + backward of a MiniLM-wide MLP block, 128 tokens (device.measure_precisions)"})
    return precision


def compute_settings(config: Mapping, model: str) -> dict:
    """Where and how a job computes: the device of the config, the model's precision and
    micro-batch size (gradient accumulation, for models whose batch does not fit one GPU)."""
    return {"device": config.get("device", "auto"), "precision": model_precision(config, model),
            "micro_batch_size": config["models"][model].get("micro_batch_size")}


def config_json(config: Mapping) -> str:
    """The config as a string: the key of the planners' caches (Snakemake calls them a lot)."""
    return json.dumps(config, sort_keys=True, default=str)
