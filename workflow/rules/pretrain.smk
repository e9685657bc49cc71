# Pre-training of the embedded default's small ViT on MNIST digits (adapter_placement.pretrain). The
# file name carries a hash of the model's `pretrain` section: other settings, other weights and runs.

rule pretrain_vit:
    output:
        weights=f"{R}/pretrain/{{model}}-{{digest}}.safetensors",
        meta=f"{R}/pretrain/{{model}}-{{digest}}.json",
    log:
        log_file("pretrain_vit", "{model}-{digest}"),
    params:
        **job(lambda w: X.pretrain_spec(config, w.model)),
    threads: config["threads_per_job"]
    shell:
        PIPELINE + " pretrain {params.job:q} > {log} 2>&1"
