# Helpers of every stage: the job JSON handed to `python -m adapter_placement.pipeline`, the wildcard
# constraints that keep the file patterns of the stages apart, and the one rule that trains a
# batch of runs of any training experiment (`training_rules`).
import json
from pathlib import Path

wildcard_constraints:
    dataset="|".join(config["datasets"]),
    model="|".join(config["models"]),
    family="|".join(X.FAMILIES),
    batch=r"\d+",
    digest=r"[0-9a-f]+",

PIPELINE = "python -m adapter_placement.pipeline"
TRAIN_SHELL = PIPELINE + " train-batch {params.job:q} > {log} 2>&1"


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
    return P.log_file(R, rule_name, pattern)


def training_rules(experiments):
    """Declare ``{experiment}_runs`` for each experiment: one job trains ``runs_per_job`` runs of one
    dataset (``plan.jobs.batch_specs``) and writes their batch JSON."""
    for _experiment in experiments:
        rule:
            name: f"{_experiment}_runs"
            input:
                unpack(lambda w, e=_experiment: X.batch_inputs(config, X.batch_specs(config, e, w.dataset, int(w.batch)))),
            output:
                batch=P.batch_file(R, _experiment, "{dataset}", "{batch}"),
            log:
                log_file(f"{_experiment}_runs", "{dataset}/batch{batch}"),
            params:
                **job(lambda w, e=_experiment: {"experiment": e, "items": [
                    s.to_json() for s in X.batch_specs(config, e, w.dataset, int(w.batch))]}),
            threads: config["threads_per_job"]
            shell:
                TRAIN_SHELL


TABLE_RULES = []   # filled by tables.smk
FIGURE_RULES = []  # filled by figures.smk
