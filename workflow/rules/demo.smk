# Until the full pipeline lands: score every edge of the embedded text model, pick adapters with GGA,
# train them and the usual baselines, all on real pretrained weights and real data.
rule demo:
    output:
        f"{RESULTS}/demo/{{dataset}}/metrics.json",
    log:
        f"{RESULTS}/logs/demo/{{dataset}}.log",
    params:
        cfg=lambda w: {**config["demo"], "dataset": w.dataset, "seed": config["seed"]},
    run:
        import json, subprocess, sys
        cmd = [sys.executable, "-m", "adapter_placement.demo", "--out", output[0],
               "--config-json", json.dumps(params.cfg)]
        with open(log[0], "w") as fh:
            subprocess.run(cmd, check=True, stderr=fh)
