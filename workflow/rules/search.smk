# Beyond the paper: placement searches (adapter_placement.search) against random, parallel_all and the
# paper's GGA at each N. A search job runs runs_per_job searches of one dataset and writes their
# placements with what each cost; the chosen placements then train like any other (search_runs).


def _search_inputs(wildcards):
    items = X.search_items(config, wildcards.dataset, int(wildcards.batch))
    return {"data": f"{R}/data/{wildcards.dataset}.json",
            "models": sorted({f"{R}/models/{i['key']['model']}.json" for i in items}),
            "lr": sorted({i["lr_file"] for i in items})}


rule search_placements:
    input:
        unpack(_search_inputs),
    output:
        placements=f"{R}/placements/{{dataset}}/{{model}}/search/batch{{batch}}.json",
    log:
        log_file("search_placements", "{dataset}/{model}/batch{batch}"),
    params:
        **job(lambda w: {"items": X.search_items(config, w.dataset, int(w.batch))}),
    threads: config["threads_per_job"]
    shell:
        PIPELINE + " search-batch {params.job:q} > {log} 2>&1"


rule search_runs:
    input:
        unpack(training_rule_inputs("search")),
    output:
        batch=f"{R}/batches/search/{{dataset}}/batch{{batch}}.json",
    log:
        log_file("search_runs", "{dataset}/batch{batch}"),
    params:
        **training_rule_job("search"),
    threads: config["threads_per_job"]
    shell:
        TRAIN_SHELL
