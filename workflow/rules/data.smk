# Dataset preparation and model records. Embedded tasks are built from installed packages; paper-scale
# tfds datasets and hub weights are downloaded here (local rules: the cluster's login node has network).

rule prepare_data:
    output:
        info=P.data_info_file(R, "{dataset}"),
    log:
        log_file("prepare_data", "{dataset}"),
    params:
        **job(lambda w: X.data_spec(config, w.dataset)),
    shell:
        PIPELINE + " prepare-data {params.job:q} > {log} 2>&1"


rule model_info:
    input:
        weights=lambda w: [X.model_spec(config, w.model)] if config["models"][w.model].get("pretrain") else [],
    output:
        info=P.model_info_file(R, "{model}"),
    log:
        log_file("model_info", "{model}"),
    params:
        **job(lambda w: X.model_info_spec(config, w.model)),
    shell:
        PIPELINE + " model-info {params.job:q} > {log} 2>&1"
