# Helpers of every stage: the job JSON handed to `python -m adapter_placement.pipeline`, and the
# wildcard constraints that keep the file patterns of the stages apart.
import json
from pathlib import Path

wildcard_constraints:
    dataset="|".join(config["datasets"]),
    model="|".join(config["models"]),
    family="linear_probe|full_ft|adapters",
    batch=r"\d+",
    digest=r"[0-9a-f]+",

PIPELINE = "python -m adapter_placement.pipeline"
RUNS_PER_JOB = int(config["runs_per_job"])


def job(spec):
    """params of a job: ``job``, {spec, input, output, threads} as JSON for the pipeline command, and
    ``spec`` alone. ``spec(wildcards)`` is a pure function of the config; Snakemake records only params
    that do not derive from input or output, so ``spec`` is the one whose change reruns exactly the jobs
    that a changed config value affects."""
    def make(wildcards, input, output, threads):
        return json.dumps({"spec": spec(wildcards), "input": _named(input), "output": _named(output),
                           "threads": threads}, sort_keys=True)
    return {"job": make, "spec": lambda wildcards: json.dumps(spec(wildcards), sort_keys=True)}


def _named(files):
    return {name: (value if isinstance(value, str) else list(value)) for name, value in files.items()}


def log_file(rule_name, pattern=""):
    return f"{R}/logs/{rule_name}/{pattern}.log" if pattern else f"{R}/logs/{rule_name}.log"


def training_rule_inputs(experiment):
    """Inputs of a training batch: data and model records, lr choices, derived placements."""
    def inputs(wildcards):
        items = X.batch_items(config, experiment, wildcards.dataset, int(wildcards.batch))
        return X.batch_inputs(config, items)
    return inputs


def training_rule_job(experiment):
    return job(lambda w: {"experiment": experiment,
                          "items": X.batch_items(config, experiment, w.dataset, int(w.batch))})


TRAIN_SHELL = PIPELINE + " train-batch {params.job:q} > {log} 2>&1"
TABLE_RULES = []   # filled by tables.smk
FIGURE_RULES = []  # filled by figures.smk
