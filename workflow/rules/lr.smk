# Learning-rate selection (App. A) as jobs: per dataset, model and method family, one trial per
# (lr, steps, seed) on train -> val (on the family's reference placement: linear probe, full
# fine-tuning, or parallel adapters on all 2L parallel edges), then the best by mean val accuracy.
# A job trains runs_per_job trials of one dataset and model (all families together).


def _trial_inputs(wildcards):
    items = X.trial_items(config, wildcards.dataset, wildcards.model, int(wildcards.batch))
    return X.batch_inputs(config, items)


rule lr_trials:
    input:
        unpack(_trial_inputs),
    output:
        batch=f"{R}/batches/lr/{{dataset}}/{{model}}/batch{{batch}}.json",
    log:
        log_file("lr_trials", "{dataset}/{model}/batch{batch}"),
    params:
        **job(lambda w: {"items": X.trial_items(config, w.dataset, w.model, int(w.batch))}),
    threads: config["threads_per_job"]
    shell:
        TRAIN_SHELL


rule select_lr:
    input:
        batches=lambda w: X.lr_batch_files(config, w.dataset, w.model, w.family),
    output:
        choice=X.lr_file(R, "{dataset}", "{model}", "{family}"),
    log:
        log_file("select_lr", "{dataset}/{model}/{family}"),
    params:
        **job(lambda w: {"dataset": w.dataset, "model": w.model, "family": w.family,
                           "grid": X.lr_grid(config, w.dataset, w.model, w.family)}),
    shell:
        PIPELINE + " select-lr {params.job:q} > {log} 2>&1"
