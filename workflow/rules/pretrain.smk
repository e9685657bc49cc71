# Pre-training of the embedded default's small ViT on MNIST digits (adapter_placement.pretrain). The
# file name carries a hash of the model's `pretrain` section: other settings, other weights and runs.

rule pretrain_vit:
    output:
        weights=P.pretrained_weights(R, "{model}", "{digest}"),
        meta=P.pretrained_meta(R, "{model}", "{digest}"),
    log:
        log_file("pretrain_vit", "{model}-{digest}"),
    params:
        **job(lambda w: X.pretrain_spec(config, w.model)),
    threads: config["threads_per_job"]
    shell:
        PIPELINE + " pretrain {params.job:q} > {log} 2>&1"


# The embedded default adapts the committed models/vit_digits.safetensors (its JSON records the recipe,
# the data digest and the held-out accuracy), so `make reproduce` never pre-trains. This target
# rebuilds every pre-trained model from its config recipe into results/pretrain/:
#   snakemake --cores 2 rebuild_vit                                 only the pre-training
#   snakemake --cores 2 all --config rebuild_pretrained=true        the whole pipeline on rebuilt weights
rule rebuild_vit:
    input:
        [X.model_spec({**config, "rebuild_pretrained": True}, model) for model in X.pretrained_models(config)],
