# Table 1: full fine-tuning, linear probe, parallel and sequential adapters on every layer, and the
# random placements of 2L adapters drawn from all n^2 edges (placements.random, seeded by draw).

training_rules(["table1"])
