# The text experiments: linear single adapters (Fig. 8), activations vs number of parallel adapters
# (Fig. 9), random non-recurrent placements vs first-k/last-k (Table 7), the best placement of one
# dataset trained on the other (Table 8), all n^2 adapters at once (Fig. 15).

for _experiment in ["fig8", "fig9", "table7", "table8", "fig15"]:
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
