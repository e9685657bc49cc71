# Single-adapter sweeps: one parallel adapter at each of the 2L positions (Fig. 1, Fig. 7) and one
# adapter on each edge of the stride-s grid (Fig. 3). A job trains runs_per_job runs of one dataset.

for _experiment in ["fig1", "fig3"]:
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
