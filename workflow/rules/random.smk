# Table 1: full fine-tuning, linear probe, parallel and sequential adapters on every layer, and the
# random placements of 2L adapters drawn from all n^2 edges (placements.random, seeded by draw).

for _experiment in ["table1"]:
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
