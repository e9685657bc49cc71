# The text experiments: linear single adapters (Fig. 8), activations vs number of parallel adapters
# (Fig. 9), random non-recurrent placements vs first-k/last-k (Table 7), the best placement of one
# dataset trained on the other (Table 8), all n^2 adapters at once (Fig. 15).

training_rules(["fig8", "fig9", "table7", "table8", "fig15"])
