# Until the full pipeline lands: score every edge of the embedded text model, pick adapters with GGA,
# train them and the usual baselines, all on real pretrained weights and real data.
import json

rule demo:
    output:
        f"{RESULTS}/demo/{{dataset}}/metrics.json",
    log:
        f"{RESULTS}/logs/demo/{{dataset}}.log",
    params:
        cfg=lambda w: json.dumps({**config["demo"], "dataset": w.dataset, "seed": config["seed"]}),
    shell:
        "python -m adapter_placement.demo --out {output} --config-json '{params.cfg}' 2>&1 | tee {log}"
