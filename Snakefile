# The adapter-placement pipeline: one DAG from data to every table and figure of DESIGN.md section 6.
#   snakemake --cores all                  the embedded default (config.yaml), offline on a laptop
#   snakemake --cores all --profile slurm  on a SLURM cluster (the profile selects config/paper.yaml)
#   snakemake table1 | figure6 | report    one table, one figure, results/REPORT.md
# Stages live in workflow/rules/*.smk, one file per stage; rules are thin: each hands its job (a pure
# function of the config, adapter_placement.plan) to `python -m adapter_placement.pipeline`; every
# path comes from adapter_placement.plan.paths (P).
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("8.20")

# A config given with --configfile is complete (config/paper.yaml, a test's tiny config): it replaces
# the embedded default instead of being merged into it. --config KEY=VALUE still overrides either.
if not workflow.config_settings.configfiles:
    configfile: "config.yaml"

from adapter_placement import plan as X

for _key in workflow.config_settings.config:  # --config seeds=[2,3]: ["2", "3"] -> [2, 3]
    config[_key] = X.command_line_values(config[_key])
validate(config, "workflow/schemas/config.schema.yaml")

from adapter_placement.plan import paths as P
from adapter_placement.data import known_tasks

try:
    X.check_config(config, known_tasks(), path_exists=lambda path: os.path.exists(path))
except X.ConfigError as error:
    raise WorkflowError(f"invalid config: {error}") from None

R = config["results"]
F = config["figures"]

report: "workflow/report/workflow.rst"

include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/lr.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/random.smk"
include: "workflow/rules/scores.smk"
include: "workflow/rules/gga.smk"
include: "workflow/rules/ranks.smk"
include: "workflow/rules/text.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"

localrules: all, prepare_data, model_info

rule all:
    default_target: True
    input:
        rules.report.output,
        [getattr(rules, name).output for name in TABLE_RULES + FIGURE_RULES],
