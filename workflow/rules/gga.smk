# Placements that depend on results: GGA and top-k from the scores (App. H), the best single edge of
# Fig. 3 (Table 5) and the best random placement of Table 1 (Table 8, Fig. 15). Then Fig. 6a/6b: GGA
# (gamma 0.6), top-k, random, first-k and last-k placements of N adapters.

rule select_placements:
    input:
        scores=f"{R}/scores/{{dataset}}/{{model}}.json",
    output:
        placements=f"{R}/placements/{{dataset}}/{{model}}/gga.json",
    log:
        log_file("select_placements", "{dataset}/{model}"),
    params:
        **job(lambda w: {"names": {name: X.gga_parameters(config, name)
                                     for name in X.gga_names(config, w.dataset, w.model)}}),
    shell:
        PIPELINE + " select-placements {params.job:q} > {log} 2>&1"


rule best_single:
    input:
        batches=lambda w: X.batch_files(config, "fig3", w.dataset),
    output:
        placement=f"{R}/placements/{{dataset}}/best_single.json",
    log:
        log_file("best_single", "{dataset}"),
    params:
        **job(lambda w: {"name": "best_single", "pattern": r"^edge_\d+_\d+$",
                           "variant": f"adapters-r{X.dataset_rank(config, w.dataset)}-gelu"}),
    shell:
        PIPELINE + " best-placement {params.job:q} > {log} 2>&1"


rule best_random:
    input:
        batches=lambda w: X.batch_files(config, "table1", w.dataset),
    output:
        placement=f"{R}/placements/{{dataset}}/best_random.json",
    log:
        log_file("best_random", "{dataset}"),
    params:
        **job(lambda w: {"name": f"best_random_{w.dataset}", "pattern": r"^random\d+_\d+$",
                           "variant": f"adapters-r{X.dataset_rank(config, w.dataset)}-gelu"}),
    shell:
        PIPELINE + " best-placement {params.job:q} > {log} 2>&1"


for _experiment in ["fig6ab"]:
    rule:
        name: f"{_experiment}_runs"
        input:
            unpack(training_rule_inputs(_experiment)),
        output:
            batch=f"{R}/batches/{_experiment}/{{dataset}}/batch{{batch}}.json",
        log:
            log_file(f"{_experiment}_runs", "{dataset}/batch{batch}"),
        params:
            **training_rule_job(_experiment),
        threads: config["threads_per_job"]
        shell:
            TRAIN_SHELL
