"""Where every artifact of the pipeline lives, under the config's ``results`` (and ``figures``).

The Snakemake rules and the Python that plans their jobs both take paths from here, so a file is
named once. Each function takes the results folder first; the other arguments may be Snakemake
wildcards (``scores_file(R, "{dataset}", "{model}")`` is a rule's output pattern).
"""
from __future__ import annotations

from typing import Optional

from .placement import Placement

LR_EXPERIMENT = "lr"  # the folder (and MLflow experiment) of the learning-rate trials


def data_info_file(results: str, dataset) -> str:
    return f"{results}/data/{dataset}.json"


def model_info_file(results: str, model) -> str:
    return f"{results}/models/{model}.json"


def pretrained_weights(results: str, model, digest) -> str:
    """The small ViT that the pretrain rule makes; ``digest`` hashes its recipe."""
    return f"{results}/pretrain/{model}-{digest}.safetensors"


def pretrained_meta(results: str, model, digest) -> str:
    return f"{results}/pretrain/{model}-{digest}.json"


def lr_batch_file(results: str, dataset, model, batch) -> str:
    return f"{results}/batches/{LR_EXPERIMENT}/{dataset}/{model}/batch{batch}.json"


def lr_file(results: str, dataset, model, family) -> str:
    """The selected (lr, steps) of a method family on a dataset and model."""
    return f"{results}/lr/{dataset}/{model}/{family}.json"


def batch_file(results: str, experiment, dataset, batch) -> str:
    """The results of one training job: ``runs_per_job`` runs of one experiment and dataset."""
    return f"{results}/batches/{experiment}/{dataset}/batch{batch}.json"


def scores_file(results: str, dataset, model) -> str:
    return f"{results}/scores/{dataset}/{model}.json"


def gga_file(results: str, dataset, model) -> str:
    """Every GGA and top-k placement of a dataset and model (``select_placements``)."""
    return f"{results}/placements/{dataset}/{model}/gga.json"


def best_random_file(results: str, dataset) -> str:
    """The best Table 1 random placement of a dataset (``best_random``)."""
    return f"{results}/placements/{dataset}/best_random.json"


def search_batch_file(results: str, dataset, model, batch) -> str:
    """The placements that one search job chose, with what each search cost."""
    return f"{results}/placements/{dataset}/{model}/search/batch{batch}.json"


def derived_placement_file(results: str, dataset: str, model: str, placement: Placement) -> Optional[str]:
    """The JSON that holds a GGA, top-k or best_random placement; None for the placements that are
    a function of their name. (Which search batch holds a search's placement depends on the plan:
    ``plan.searches.search_file_of``.)"""
    if placement.method in ("gga", "topk"):
        return gga_file(results, dataset, model)
    if placement.method == "best_random":
        return best_random_file(results, placement.source)
    return None


def run_folder(results: str, experiment: str, dataset: str, variant: str, placement: str, seed: int) -> str:
    return f"{results}/runs/{experiment}/{dataset}/{variant}/{placement}/seed{seed}"


def trial_folder(results: str, dataset: str, model: str, family: str, lr: float, steps: int, seed: int) -> str:
    return f"{results}/runs/{LR_EXPERIMENT}/{dataset}/{model}/{family}/lr{lr:g}-steps{steps}/seed{seed}"


def cache_dir(results: str) -> str:
    """The prefix cache of frozen nodes (``cache.NodeCache``)."""
    return f"{results}/cache"


def host_precision_file(results: str) -> str:
    """``precision: auto`` as measured on this machine, once (``plan.config.host_precision``)."""
    return f"{results}/host_precision.json"


def tracking_db(results: str) -> str:
    """The default MLflow store (a config's ``tracking_uri`` replaces it)."""
    return f"sqlite:///{results}/mlflow.db"


def table_file(results: str, name, suffix: str = "csv") -> str:
    return f"{results}/tables/{name}.{suffix}"


def figure_file(figures: str, name, suffix: str = "png") -> str:
    return f"{figures}/{name}.{suffix}"


def figure_data_file(results: str, name) -> str:
    return f"{results}/figure_data/{name}.csv"


def report_file(results: str) -> str:
    return f"{results}/REPORT.md"


def log_file(results: str, rule: str, pattern: str = "") -> str:
    """A job's log: one per rule, or per wildcard ``pattern`` of it."""
    return f"{results}/logs/{rule}/{pattern}.log" if pattern else f"{results}/logs/{rule}.log"
