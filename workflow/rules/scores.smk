# Edge scores (Sec. 6.1, App. A.4, E, G): per dataset and model, the classifier head is trained alone
# ("default": a fraction of the run's selected steps, App. A.4: 2.5%; on the scores dataset also each
# length of the Fig. 13 grid), then one forward and backward pass over score_examples training
# examples gives the gradient of a zero linear adapter on all n^2 edges, reduced by every score
# function and srank at every eta. One job per dataset and model (one Python start).

rule scores:
    input:
        head_lr=P.lr_file(R, "{dataset}", "{model}", "linear_probe"),
        run_steps=P.lr_file(R, "{dataset}", "{model}", "adapters"),
        data=P.data_info_file(R, "{dataset}"),
        model=P.model_info_file(R, "{model}"),
    output:
        scores=P.scores_file(R, "{dataset}", "{model}"),
    log:
        log_file("scores", "{dataset}/{model}"),
    params:
        **job(lambda w: X.scores_spec(config, w.dataset, w.model)),
    threads: config["threads_per_job"]
    shell:
        PIPELINE + " scores {params.job:q} > {log} 2>&1"
