# Every table of DESIGN.md section 6, as CSV (full precision, with the MLflow run ids behind each cell)
# and Markdown, in results/tables/. `snakemake table1` builds one table and only what it needs.


def table_context(experiments, scores=False, details=()):
    """The config parts a table or figure reads (its params: a changed value rebuilds exactly the
    tables and figures that read it); ``details``: more dataset keys (Table 2 reads sizes, steps)."""
    keys = ("task", "model", "batch_size", "rank", *details)
    context = {"experiments": {e: config["experiments"][e] for e in experiments},
               "datasets": {d: {k: e.get(k) for k in keys} for d, e in config["datasets"].items()},
               "models": {m: {"blocks": e["blocks"], "modality": e["modality"]} for m, e in config["models"].items()}}
    if scores:
        context["scores"] = config["scores"]
    return context


def scores_file(dataset, model=None):
    return f"{R}/scores/{dataset}/{model or X.dataset_model(config, dataset)}.json"


def batches(experiment, datasets=None):
    if datasets is None:
        return X.batch_files(config, experiment)
    return [f for d in datasets for f in X.batch_files(config, experiment, d)]


def paper_csv(stem):
    """A table's numbers in the paper (paper/*.csv, in the repository beside the Snakefile)."""
    return str(Path(workflow.basedir, "paper", f"{stem}.csv"))


SCORES_DATASET = config["scores"]["dataset"]
EXP = config["experiments"]

# name: (experiments it reads, reads the scores config, its inputs); "paper": the paper's numbers
# of the table (side by side with ours in its Markdown)
TABLES = {
    "table1": (["table1"], False, lambda: {"table1": batches("table1"), "paper": paper_csv("table1")}),
    "table2": ([], False, lambda: {"paper": paper_csv("table2_datasets")}),
    "table3": (["fig1", "fig3"], False, lambda: {"fig1": batches("fig1"), "fig3": batches("fig3"),
                                                 "paper": paper_csv("table3_best_single_by_type")}),
    "table4": ([], True, lambda: {"fig3": batches("fig3", [SCORES_DATASET]), "scores": scores_file(SCORES_DATASET),
                                  "paper": paper_csv("table4_aggregation_inat18")}),
    "table5": (["table5"], False, lambda: {"table5": batches("table5"), "paper": paper_csv("table5_single_vs_ffn_parallel")}),
    "table6": (["table1"], False, lambda: {"table1": batches("table1")}),
    "table7": (["table7", "table1"], False,
               lambda: {"table7": batches("table7"), "table1": batches("table1", [EXP["table7"]["dataset"]]),
                        "paper": paper_csv("table7_sst2_nonrecurrent")}),
    "table8": (["table8", "table1"], False,
               lambda: {"table8": batches("table8"), "table1": batches("table1", EXP["table8"]["datasets"]),
                        "paper": paper_csv("table8_transfer")}),
    "appK": (["table1"], True,
             lambda: {"scores": [scores_file(d, model=m) for d, m in X.score_targets(config)],
                      "models": [f"{R}/models/{m}.json" for m in sorted({m for _, m in X.score_targets(config)})],
                      "table1": batches("table1")}),
}

SEARCH_INPUTS = lambda: {"search": batches("search"), "searches": X.search_batch_files(config),
                         "scores": [scores_file(d) for d in X.experiment_datasets(config, "search")],
                         "models": [f"{R}/models/{m}.json" for m in
                                    sorted({X.dataset_model(config, d) for d in X.experiment_datasets(config, "search")})]}
if EXP.get("search"):  # beyond the paper, optional
    TABLES["table_search"] = (["search"], False, SEARCH_INPUTS)

TABLE_DETAILS = {"table2": ("sizes", "steps")}

for _table, (_experiments, _scores, _inputs) in TABLES.items():
    rule:
        name: _table
        input:
            **_inputs(),
        output:
            csv=f"{R}/tables/{_table}.csv",
            md=f"{R}/tables/{_table}.md",
        log:
            log_file(_table),
        params:
            **job(lambda w, name=_table, context=table_context(_experiments, _scores, TABLE_DETAILS.get(_table, ())):
                    {"name": name, "context": context}),
        shell:
            PIPELINE + " table {params.job:q} > {log} 2>&1"

    TABLE_RULES.append(_table)
