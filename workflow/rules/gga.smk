# Placements that depend on results: GGA and top-k from the scores (App. H) and the best random
# placement of Table 1 (Table 8, Fig. 15). Then Fig. 6a/6b: GGA (gamma 0.6), top-k, random,
# first-k and last-k placements of N adapters.

rule select_placements:
    input:
        scores=P.scores_file(R, "{dataset}", "{model}"),
    output:
        placements=P.gga_file(R, "{dataset}", "{model}"),
    log:
        log_file("select_placements", "{dataset}/{model}"),
    params:
        **job(lambda w: {"names": {str(p): X.gga_parameters(config, p)
                                     for p in X.gga_placements(config, w.dataset, w.model)}}),
    shell:
        PIPELINE + " select-placements {params.job:q} > {log} 2>&1"


rule best_random:
    input:
        batches=lambda w: X.batch_files(config, "table1", w.dataset),
    output:
        placement=P.best_random_file(R, "{dataset}"),
    log:
        log_file("best_random", "{dataset}"),
    params:
        **job(lambda w: {"name": str(X.Placement("best_random", source=w.dataset)), "method": "random",
                           "variant": X.default_variant(config, w.dataset)}),
    shell:
        PIPELINE + " best-placement {params.job:q} > {log} 2>&1"


training_rules(["fig6ab"])
