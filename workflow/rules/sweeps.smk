# Single-adapter sweeps: one parallel adapter at each of the 2L positions (Fig. 1, Fig. 7) and one
# adapter on each edge of the stride-s grid (Fig. 3). A job trains runs_per_job runs of one dataset.

training_rules(["fig1", "fig3"])
