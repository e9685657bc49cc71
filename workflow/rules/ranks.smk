# Rank sweeps: GGA (gamma 0.8) vs FFN-parallel adapters per rank (Fig. 6c), and one adapter of rank
# L*r on every Fig. 3 grid edge vs L FFN-parallel adapters of rank r (Table 5, App. I: the table
# takes the best edge of each rank).

for _experiment in ["fig6c", "table5"]:
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
