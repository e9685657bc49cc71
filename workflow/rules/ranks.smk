# Rank sweeps: GGA (gamma 0.8) vs FFN-parallel adapters per rank (Fig. 6c), and one adapter of rank
# L*r on every Fig. 3 grid edge vs L FFN-parallel adapters of rank r (Table 5, App. I: the table
# takes the best edge of each rank).

training_rules(["fig6c", "table5"])
