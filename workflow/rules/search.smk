# Beyond the paper: placement searches (adapter_placement.search) against random, parallel_all and the
# paper's GGA at each N. A search job runs runs_per_job searches of one dataset and writes their
# placements with what each cost; the chosen placements then train like any other (search_runs).

rule search_placements:
    input:
        unpack(lambda w: X.search_inputs(config, w.dataset, int(w.batch))),
    output:
        placements=P.search_batch_file(R, "{dataset}", "{model}", "{batch}"),
    log:
        log_file("search_placements", "{dataset}/{model}/batch{batch}"),
    params:
        **job(lambda w: {"items": X.search_items(config, w.dataset, int(w.batch))}),
    threads: config["threads_per_job"]
    shell:
        PIPELINE + " search-batch {params.job:q} > {log} 2>&1"


training_rules(["search"])
