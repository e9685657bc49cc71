# The adapter-placement pipeline. Stages live in workflow/rules/*.smk, one file per stage; rules are
# thin and call the package. `snakemake --cores all` runs the embedded default (config.yaml).
from snakemake.utils import validate

configfile: "config.yaml"
validate(config, "workflow/schemas/config.schema.yaml")

RESULTS = config["results"]

include: "workflow/rules/demo.smk"

rule all:
    input:
        f"{RESULTS}/demo/{config['demo']['dataset']}/metrics.json",
