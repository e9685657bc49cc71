# Learning-rate selection (App. A) as jobs: per dataset, model and method family, one trial per
# (lr, steps, seed) on train -> val (on the family's reference placement: linear probe, full
# fine-tuning, or parallel adapters on all 2L parallel edges), then the best by mean val accuracy.
# A job trains runs_per_job trials of one dataset and model (all families together).


rule lr_trials:
    input:
        unpack(lambda w: X.batch_inputs(config, X.trial_specs(config, w.dataset, w.model, int(w.batch)))),
    output:
        batch=P.lr_batch_file(R, "{dataset}", "{model}", "{batch}"),
    log:
        log_file("lr_trials", "{dataset}/{model}/batch{batch}"),
    params:
        **job(lambda w: {"items": [s.to_json() for s in X.trial_specs(config, w.dataset, w.model, int(w.batch))]}),
    threads: config["threads_per_job"]
    shell:
        TRAIN_SHELL


rule select_lr:
    input:
        batches=lambda w: X.lr_batch_files(config, w.dataset, w.model, w.family),
    output:
        choice=P.lr_file(R, "{dataset}", "{model}", "{family}"),
    log:
        log_file("select_lr", "{dataset}/{model}/{family}"),
    params:
        **job(lambda w: {"dataset": w.dataset, "model": w.model, "family": w.family,
                           "grid": X.lr_grid(config, w.dataset, w.model, w.family)}),
    shell:
        PIPELINE + " select-lr {params.job:q} > {log} 2>&1"
