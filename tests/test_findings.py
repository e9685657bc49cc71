"""Known answers for the report's verdicts: the statistics of verdicts.py against hand-computed
values (and scipy as an independent reference), and every finding of report.py on hand-made tables
whose verdict is written out: a clear effect is reproduced, its opposite not reproduced, a
noise-level difference inconclusive, a collapsed run diverged; edge cases: ties, exactly half the
datasets, a missing cell, one seed (no noise estimate), mixed units, row order.

Unless said otherwise a cell has std 1 (population) over 3 seeds: sample variance 1.5, so two such
cells have a standard error of exactly 1 (t = the difference, df = 4: Welch's and the pooled t agree)
and a pooled seed std of sqrt(1.5) = 1.2247 (2 pooled std = 2.449)."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from adapter_placement import report as R
from adapter_placement.products import baselines, costs, gga, scores, single, text, variants
from adapter_placement.products import evidence as E
from adapter_placement import verdicts as V

REP, NOT, INC, DIV = V.REPRODUCED, V.NOT_REPRODUCED, V.INCONCLUSIVE, V.DIVERGED
POOLED = math.sqrt(1.5)


def finding_linear(fig8, health=E.HEALTHY):
    """Both Fig. 8 findings: (the edges rank alike, linear is better)."""
    return [variants.finding_linear_rank(fig8, health), variants.finding_linear_better(fig8, health)]


def finding_activations(fig9, health=E.HEALTHY, seeds=1):
    """The Fig. 9 findings: activations alike, and (where judged) the gap growing with N."""
    found = [variants.finding_activations_alike(fig9, health, seeds), variants.finding_nonlinearity_grows(fig9, health, seeds)]
    return [f for f in found if f is not None]


def finding_table7(table7, paper7, health=E.HEALTHY, seeds=1):
    """Both Table 7 findings: (best non-recurrent beats first-k and last-k, first-k beats last-k)."""
    return [text.finding_nonrecurrent_beats_first_last(table7, paper7, health, seeds),
            text.finding_first_beats_last(table7, paper7, health, seeds)]


def collapsed(*ids):
    return E.Health(frozenset(ids))


# ---------------------------------------------------------------- verdicts.py

def test_welch_on_three_vs_three_numbers_by_hand_and_scipy():
    a, b = [80, 82, 84], [70, 75, 71]
    # by hand: means 82 / 72, sample variances 4 / 7, se^2 = 4/3 + 7/3 = 11/3, df = (11/3)^2 / ((4/3)^2/2 + (7/3)^2/2)
    t, df, p = V.welch(82, np.std(a), 3, 72, np.std(b), 3)
    assert t == pytest.approx(10 / math.sqrt(11 / 3)) and t == pytest.approx(5.2223, abs=1e-4)
    assert df == pytest.approx(242 / 65)
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(reference.statistic) and p == pytest.approx(reference.pvalue)


def test_welch_of_two_unit_cells_is_the_difference_with_four_df():
    t, df, p = V.welch(75, 1, 3, 70, 1, 3)
    assert t == pytest.approx(5.0) and df == pytest.approx(4.0)
    assert p == pytest.approx(2 * stats.t.sf(5.0, 4))
    assert all(math.isnan(v) for v in V.welch(75, 1, 1, 70, 1, 3))  # one seed: no noise estimate
    assert all(math.isnan(v) for v in V.welch(75, 0, 3, 70, 0, 3))  # no variance at all


def test_contrast_test_of_four_cells_by_hand():
    # (5 - 1) - (2 - 1) = 3; each cell contributes 1.5 / 3 = 0.5 to the variance: se^2 = 2; df = 2^2 / (4 * 0.5^2 / 2) = 8
    t, df, p = V.contrast_test([5, 1, 2, 1], [1, 1, 1, 1], [3, 3, 3, 3], [1, -1, -1, 1])
    assert t == pytest.approx(3 / math.sqrt(2)) and df == pytest.approx(8.0)
    assert p == pytest.approx(2 * stats.t.sf(3 / math.sqrt(2), 8))


def test_pooled_std_by_hand():
    assert V.pooled_std([np.std([80, 82, 84]), np.std([70, 75, 71])], [3, 3]) == pytest.approx(math.sqrt(22 / 4))
    assert V.pooled_std([1.0, 1.0], [3, 3]) == pytest.approx(POOLED)
    assert V.pooled_std([5.0, 1.0], [1, 3]) == pytest.approx(POOLED)  # a one-seed cell carries no noise
    assert math.isnan(V.pooled_std([1.0, math.nan], [1, 3]))


def test_anova_matches_scipy_on_raw_groups():
    groups = [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [5.0, 5.5, 7.0]]
    f, p = V.anova([np.mean(g) for g in groups], [np.std(g) for g in groups], [3, 3, 3])
    reference = stats.f_oneway(*groups)
    assert f == pytest.approx(reference.statistic) and p == pytest.approx(reference.pvalue)
    assert all(math.isnan(v) for v in V.anova([1.0], [1.0], [3]))


def test_spearman_and_its_p_value_agree_with_scipy():
    x, y = [1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5]
    rho, p = V.spearman(x, y)
    assert rho == pytest.approx(1 - 6 * 6 / (6 * 35))  # 1 - 6 sum d^2 / (n (n^2 - 1)), sum d^2 = 6
    assert p == pytest.approx(stats.spearmanr(x, y).pvalue)
    assert V.correlation_p(rho, 6) == pytest.approx(p)
    assert math.isnan(V.spearman([1, 1, 1], [1, 2, 3])[0])


def test_fisher_z_by_hand():
    z, p = V.fisher_z(0.8, 0.2, 28)
    assert z == pytest.approx((math.atanh(0.8) - math.atanh(0.2)) / math.sqrt(2 / 25)) and z == pytest.approx(3.1675, abs=1e-4)
    assert p == pytest.approx(2 * stats.norm.sf(z))


def test_sign_test_by_hand():
    assert V.sign_test(9, 1) == pytest.approx(2 * 11 / 1024)  # P(X <= 1) = (1 + 10) / 2^10, two-sided
    assert V.sign_test(0, 0) == 1.0


def test_majority_at_its_edges():
    assert V.majority([1, 1, 0, 0]) == REP  # exactly half decided in the paper's direction
    assert V.majority([1, 1, -1, -1]) == INC  # a tie
    assert V.majority([1, 0, 0]) == INC
    assert V.majority([-1, -1, 0]) == NOT
    assert V.majority([], diverged=2) == DIV and V.majority([]) == INC


def test_difference_and_match_outcomes_at_their_bands():
    assert V.difference_outcome(2.1, 1.0) == 1 and V.difference_outcome(-2.1, 1.0) == -1
    assert V.difference_outcome(2.0, 1.0) == 0 and V.difference_outcome(5.0, math.nan) == 0
    assert V.match_outcome(-1.0, 1.0) == 1 and V.match_outcome(-1.5, 1.0) == 0 and V.match_outcome(-2.1, 1.0) == -1


def test_collapse_is_a_train_loss_within_five_percent_of_ln_c():
    assert V.collapsed(2.2, 10) and not V.collapsed(2.1, 10)  # ln 10 = 2.3026, 95% of it 2.1875
    assert V.collapsed(0.67, 2) and not V.collapsed(0.6, 2)  # ln 2 = 0.6931, 95%: 0.6585
    assert not V.collapsed(math.nan, 10)


def test_health_from_run_records():
    runs = pd.DataFrame([
        {"experiment": "table1", "dataset": "sst2", "status": "finished", "train_loss": 0.69, "run_id": "a"},
        {"experiment": "table1", "dataset": "sst2", "status": "finished", "train_loss": 0.20, "run_id": "b"},
        {"experiment": "table1", "dataset": "sst2", "status": "diverged", "train_loss": math.nan, "run_id": "c"},
        {"experiment": "fig3", "dataset": "mnli", "status": "finished", "train_loss": 1.09, "run_id": "d"},
    ])
    health = E.health_from_runs(runs, E.classes_from_chance({"sst2": 50.0, "mnli": 100 / 3}))
    assert health.diverged_ids == {"a", "c", "d"}
    assert health.cell("b;a") and not health.cell("b") and not health.cell(math.nan)
    assert health.shares[("table1", "sst2")] == pytest.approx(2 / 3) and health.dataset("table1", "sst2")
    assert health.dataset("fig3", "mnli") and not health.dataset("fig3", "sst2")
    assert not E.Health(shares={("fig3", "x"): 0.5}).dataset("fig3", "x")  # exactly half: not "most"


# ---------------------------------------------------------------- Table 1

def table1(cells):
    """cells: (method, dataset, mean[, std, seeds]); run ids 'method-dataset'."""
    rows = []
    for cell in cells:
        method, dataset, mean, std, seeds = (*cell, 1.0, 3)[:5] if len(cell) == 3 else (*cell, 3)[:5]
        rows.append({"method": method, "dataset": dataset, "mean": mean, "std": std, "seeds": seeds,
                     "placement": method, "run_ids": f"{method}-{dataset}"})
    return pd.DataFrame(rows)


PAPER1 = pd.DataFrame([{"method": m, "dataset": "a", "mean": v, "std": 0.0} for m, v in
                       (("extended_max_24", 2.0), ("parallel_24", 1.0), ("linear_probe", 0.5))])


def pairs(values, better="random_by_train_loss", worse="parallel_all"):
    return table1([c for d, (b, w) in values.items() for c in ((better, d, b), (worse, d, w))])


def test_random_beats_parallel_decided_by_a_t_test_per_dataset():
    clear = pairs({"a": (80, 70), "b": (60, 50), "c": (70.5, 70)})  # t = 10, 10, 0.5
    finding = baselines.finding_random_beats_parallel(clear, PAPER1, seeds=3)
    assert finding["verdict"] == REP and "a t=10.00" in finding["statistic"]
    assert finding["paper"] == "higher on 1 of 1 datasets" and finding["ours"].startswith("clearly higher on 2 of 3")
    opposite = pairs({"a": (70, 80), "b": (50, 60), "c": (70, 70.5)})
    assert baselines.finding_random_beats_parallel(opposite, PAPER1)["verdict"] == NOT
    noise = pairs({"a": (70.8, 70), "b": (50, 50.5), "c": (70.5, 70)})
    assert baselines.finding_random_beats_parallel(noise, PAPER1)["verdict"] == INC


def test_random_beats_parallel_at_exactly_half_and_at_a_tie():
    half = pairs({"a": (80, 70), "b": (80, 70), "c": (70.5, 70), "d": (70, 70.5)})
    assert baselines.finding_random_beats_parallel(half, PAPER1)["verdict"] == REP
    tie = pairs({"a": (80, 70), "b": (80, 70), "c": (70, 80), "d": (70, 80)})
    assert baselines.finding_random_beats_parallel(tie, PAPER1)["verdict"] == INC


def test_random_beats_parallel_needs_a_noise_estimate_and_skips_missing_cells():
    one_seed = table1([("random_by_train_loss", "a", 90, 0.0, 1), ("parallel_all", "a", 50, 0.0, 1)])
    assert baselines.finding_random_beats_parallel(one_seed, PAPER1)["verdict"] == INC  # 40 points, but no noise known
    missing = pairs({"a": (80, 70), "b": (math.nan, 70)})
    finding = baselines.finding_random_beats_parallel(missing, PAPER1)
    assert finding["verdict"] == REP and "b" not in finding["statistic"].split("(")[0]


def test_random_beats_parallel_with_collapsed_runs():
    clear = pairs({"a": (80, 70), "b": (50, 60), "c": (80, 70)})
    assert baselines.finding_random_beats_parallel(clear, PAPER1)["verdict"] == REP
    # b's contradiction is a collapsed run: left out; a and c still decide
    assert baselines.finding_random_beats_parallel(clear, PAPER1, collapsed("parallel_all-b"))["verdict"] == REP
    everything = collapsed("random_by_train_loss-a", "random_by_train_loss-b", "random_by_train_loss-c")
    assert baselines.finding_random_beats_parallel(clear, PAPER1, everything)["verdict"] == DIV
    counted = clear.assign(diverged=np.where(clear.method == "random_by_train_loss", 1, 0))  # the table's own count
    assert baselines.finding_random_beats_parallel(counted, PAPER1)["verdict"] == DIV


def test_adapters_vs_probe():
    clear = pairs({"a": (80, 70), "b": (60, 50)}, "parallel_all", "linear_probe")
    assert baselines.finding_adapters_vs_probe(clear, PAPER1)["verdict"] == REP
    opposite = pairs({"a": (70, 80), "b": (50, 60)}, "parallel_all", "linear_probe")
    assert baselines.finding_adapters_vs_probe(opposite, PAPER1)["verdict"] == NOT


# ---------------------------------------------------------------- Fig. 1, Fig. 7

def fig1(means_by_dataset, std=1.0):
    rows = []
    for dataset, means in means_by_dataset.items():
        for k, mean in enumerate(means, start=1):
            rows.append({"dataset": dataset, "placement": f"parallel_{k}", "mean": mean, "std": std, "seeds": 3,
                         "run_ids": f"{dataset}-{k}", "position": k, "block": (k + 1) // 2,
                         "sublayer": "MHA" if k % 2 else "FFN"})
    return pd.DataFrame(rows)


def test_single_placement_matters_by_anova():
    clear = fig1({"a": [50, 60, 70, 80], "b": [80, 70, 60, 50]})
    finding = single.finding_single_placement_matters(clear)
    assert finding["verdict"] == REP and "{'a': 4, 'b': 1}" in finding["ours"]
    flat = fig1({"a": [70, 70.2, 69.9, 70.1], "b": [50, 50.3, 50, 50.1]})  # spread 0.3 < 2 pooled std
    assert single.finding_single_placement_matters(flat)["verdict"] == NOT
    # std 3: spread 7.5 > 2 pooled std (7.35) but F = 3.125 on (3, 8) df, p = 0.088: undecided
    middle = fig1({"a": [70, 70, 70, 77.5]}, std=3.0)
    assert stats.f.sf(3.125, 3, 8) > 0.05
    assert single.finding_single_placement_matters(middle)["verdict"] == INC


def test_single_placement_matters_with_collapsed_runs():
    clear = fig1({"a": [50, 60, 70, 80]})
    assert single.finding_single_placement_matters(clear, collapsed("a-1", "a-2", "a-3", "a-4"))["verdict"] == DIV
    # the collapsed position (50) is left out: 60, 70, 80 still differ
    assert single.finding_single_placement_matters(clear, collapsed("a-1"))["verdict"] == REP


def test_mha_ffn():
    similar = fig1({"a": [70, 70.5, 60, 60.5]})  # mean |MHA - FFN| = 0.5 <= 2.449, t = 0.5
    assert single.finding_mha_ffn(similar)["verdict"] == REP
    different = fig1({"a": [80, 70, 60, 50]})  # t = 10 per block, p = 0.0006 < 0.05 / 2
    assert single.finding_mha_ffn(different)["verdict"] == NOT
    # gap 2.6 > 2.449 but t = 2.6 against the pooled noise of the 4 cells (8 df): p = 0.03 > 0.025 (Bonferroni)
    middle = fig1({"a": [72.6, 70, 62.6, 60]})
    assert 0.025 < 2 * stats.t.sf(2.6, 8) < 0.05
    assert single.finding_mha_ffn(middle)["verdict"] == INC
    assert single.finding_mha_ffn(similar, collapsed("a-1", "a-3"))["verdict"] == DIV  # no MHA left


# ---------------------------------------------------------------- Table 3, Fig. 3

def table3(values, std=0.01):
    """values: dataset -> {kind: mean}; fractions. The edge of lowest train loss is the best-test
    edge here (loss = 1 - mean), so chosen_* repeat mean, std, edge and run ids."""
    return pd.DataFrame([{"adapter_type": kind, "dataset": d, "mean": m, "std": std, "edge": "(0, 1)",
                          "run_ids": f"{kind}-{d}", "chosen_mean": m, "chosen_std": std, "chosen_edge": "(0, 1)",
                          "chosen_run_ids": f"{kind}-{d}", "chosen_train_loss": 1 - m}
                         for d, kinds in values.items() for kind, m in kinds.items()])


PAPER3 = pd.DataFrame([{"adapter_type": k, "dataset": "x", "mean": m, "std": 0.01}
                       for k, m in (("parallel", 0.70), ("recurrent", 0.75))])


def kinds(recurrent, best_other=0.70):
    return {"parallel": best_other, "sequential": best_other - 0.05, "long_range": best_other - 0.1, "recurrent": recurrent}


def test_recurrent_best_within_pooled_std_bands():
    # pooled std of two cells of std 0.01 over 3 seeds: 0.01225
    assert single.finding_recurrent_best(table3({"a": kinds(0.80), "b": kinds(0.70)}), PAPER3, seeds=3)["verdict"] == REP
    finding = single.finding_recurrent_best(table3({"a": kinds(0.60), "b": kinds(0.50)}), PAPER3, seeds=3)
    assert finding["verdict"] == NOT and finding["paper"] == "1 of 1 datasets"
    assert single.finding_recurrent_best(table3({"a": kinds(0.685)}), PAPER3, seeds=3)["verdict"] == INC  # -1.22 pooled std
    assert single.finding_recurrent_best(table3({"a": kinds(0.80)}), PAPER3, seeds=1)["verdict"] == INC  # no noise estimate
    assert single.finding_recurrent_best(table3({"a": kinds(0.80)}), PAPER3, collapsed("recurrent-a"), 3)["verdict"] == DIV


def chosen(table, chosen_means, losses):
    """Table 3 whose chosen_* columns (per kind the edge of lowest train loss, its mean and loss) are
    not the test max."""
    return table.assign(chosen_mean=table.adapter_type.map(chosen_means), chosen_std=table["std"],
                        chosen_edge="(0, 2)", chosen_run_ids=table.run_ids,
                        chosen_train_loss=table.adapter_type.map(losses))


def test_table3_and_fig3_judge_the_edge_of_lowest_train_loss_not_the_test_max():
    # by test max the recurrent edge leads (0.80 vs 0.70); its edge of lowest train loss is at 0.60
    test_max = table3({"a": kinds(0.80)})  # chosen_* = the test max here
    means = {"parallel": 0.70, "sequential": 0.65, "long_range": 0.60, "recurrent": 0.60}
    losses = {"parallel": 0.3, "sequential": 0.4, "long_range": 0.5, "recurrent": 0.2}
    judged = chosen(test_max, means, losses)
    assert single.finding_recurrent_best(test_max, PAPER3, seeds=3)["verdict"] == REP
    assert single.finding_recurrent_best(judged, PAPER3, seeds=3)["verdict"] == NOT
    # Fig. 3: the kind of lowest train loss (recurrent, 60 %) against PA (79 %), not the 80 % test max
    pa = table1([("parallel_all", "a", 79.0)])
    assert single.finding_single_vs_parallel(test_max, pa, seeds=3)["verdict"] == REP
    finding = single.finding_single_vs_parallel(judged, pa, seeds=3)
    assert finding["verdict"] == NOT and "a -19.00 points" in finding["statistic"]
    written_before = test_max.drop(columns=["chosen_mean", "chosen_std", "chosen_edge", "chosen_run_ids",
                                            "chosen_train_loss"])
    with pytest.raises(ValueError, match="chosen_mean"):
        single.finding_recurrent_best(written_before, PAPER3, seeds=3)


def test_single_vs_parallel_converts_table3_fractions_to_percent():
    pa = table1([("parallel_all", "a", 79.0)])
    # 0.80 is 80 %: one point above PA (79 +- 1): matched. Compared as 0.80 vs 79 it would be 78 points behind
    finding = single.finding_single_vs_parallel(table3({"a": kinds(0.80)}), pa, seeds=3)
    assert finding["verdict"] == REP and finding["ours"] == "matched on a" and "a 1.00 points" in finding["statistic"]
    percent = table3({"a": {k: 100 * v for k, v in kinds(0.80).items()}}, std=1.0)
    assert single.finding_single_vs_parallel(percent, pa, seeds=3)["verdict"] == REP
    assert single.finding_single_vs_parallel(table3({"a": kinds(0.60)}), pa, seeds=3)["verdict"] == NOT  # 19 behind
    assert single.finding_single_vs_parallel(table3({"a": kinds(0.77)}), pa, seeds=3)["verdict"] == INC  # 2 behind: -1.6 pooled
    pa_gone = collapsed("parallel_all-a")
    assert single.finding_single_vs_parallel(table3({"a": kinds(0.80)}), pa, pa_gone, 3)["verdict"] == DIV


# ---------------------------------------------------------------- Fig. 4, 5, 11, 13, Table 4

def fig4(pair, others):
    rows = [{"dataset_a": "inat18", "dataset_b": "places365", "spearman": pair}]
    rows += [{"dataset_a": a, "dataset_b": "sst2", "spearman": r} for a, r in zip(("inat18", "places365"), others)]
    return pd.DataFrame(rows)


def test_dataset_correlation_by_fisher_z():
    assert single.finding_dataset_correlation(fig4(0.9, [0.1, 0.0]), 28)["verdict"] == REP
    assert single.finding_dataset_correlation(fig4(0.0, [0.9, 0.8]), 28)["verdict"] == NOT
    assert single.finding_dataset_correlation(fig4(0.3, [0.2, 0.1]), 10)["verdict"] == INC
    assert single.finding_dataset_correlation(fig4(math.nan, [0.2, 0.1]), 28)["verdict"] == INC  # missing cell
    grid_gone = E.Health(shares={("fig3", "inat18"): 1.0})
    assert single.finding_dataset_correlation(fig4(0.9, [0.1, 0.0]), 28, grid_gone)["verdict"] == DIV


def fig5(values):
    """values: dataset -> (rho accuracy, p, rho loss, p)."""
    return pd.DataFrame([{"dataset": d, "test_accuracy_spearman": a, "test_accuracy_p": pa, "train_loss_spearman": l,
                          "train_loss_p": pl, "edges": 28} for d, (a, pa, l, pl) in values.items()])


PAPER4 = pd.DataFrame([{"function": "srank_eta0.01", "test_accuracy_spearman": 0.82, "train_loss_spearman": -0.93}])


def test_srank_correlations_by_their_p_values():
    good = fig5({"a": (0.6, 0.001, -0.7, 0.001), "b": (0.5, 0.01, -0.5, 0.01), "c": (0.1, 0.6, 0.1, 0.6)})
    assert scores.finding_srank_accuracy(good, PAPER4)["verdict"] == REP
    assert scores.finding_srank_loss(good)["verdict"] == REP
    bad = fig5({"a": (-0.6, 0.001, 0.7, 0.001), "b": (-0.5, 0.01, 0.5, 0.01)})
    assert scores.finding_srank_accuracy(bad, PAPER4)["verdict"] == NOT and scores.finding_srank_loss(bad)["verdict"] == NOT
    weak = fig5({"a": (0.3, 0.12, -0.3, 0.12), "b": (0.2, 0.3, -0.2, 0.3)})  # positive, but not significant
    assert scores.finding_srank_accuracy(weak, PAPER4)["verdict"] == INC
    gone = E.Health(shares={("fig3", "a"): 1.0, ("fig3", "b"): 0.8})
    assert scores.finding_srank_accuracy(bad, PAPER4, gone)["verdict"] == DIV


def table4(acc, loss):
    """acc, loss: function -> rho over 81 edges; p computed from rho (as spearmanr does)."""
    return pd.DataFrame([{"function": f, "paper_name": "srank_eta0.01" if f == "srank" else f, "test_accuracy_spearman": acc[f], "test_accuracy_p": V.correlation_p(acc[f], 81),
                          "train_loss_spearman": loss[f], "train_loss_p": V.correlation_p(loss[f], 81), "edges": 81}
                         for f in acc])


PAPER_LOSS = {"srank": -0.93, "frobenius": 0.11, "spectral": 0.17, "nuclear": -0.16, "min_col": 0.21, "max_col": 0.12}


def test_srank_best_function_in_the_papers_direction():
    paper_acc = {"srank": 0.82, "frobenius": 0.42, "spectral": 0.39, "nuclear": 0.55, "min_col": 0.56, "max_col": 0.0}
    assert scores.finding_srank_best_function(table4(paper_acc, PAPER_LOSS), PAPER4)["verdict"] == REP
    # a function anti-correlated with accuracy (-0.95) is no better predictor in the paper's sense: the sign counts
    anti = {**paper_acc, "max_col": -0.95}
    assert scores.finding_srank_best_function(table4(anti, PAPER_LOSS), PAPER4)["verdict"] == REP
    beaten = {**paper_acc, "srank": 0.5, "frobenius": 0.9}
    assert scores.finding_srank_best_function(table4(beaten, PAPER_LOSS), PAPER4)["verdict"] == NOT
    close = {**paper_acc, "min_col": 0.78}  # srank first, but not by a significant margin
    assert scores.finding_srank_best_function(table4(close, PAPER_LOSS), PAPER4)["verdict"] == INC
    gone = E.Health(shares={("fig3", "inat18"): 1.0})
    assert scores.finding_srank_best_function(table4(paper_acc, PAPER_LOSS), PAPER4, gone, "inat18")["verdict"] == DIV


PAPER13 = pd.DataFrame([{"n_steps": n, "eta": 0.01, "train_loss_corr": 0.8, "test_acc_corr": r}
                        for n, r in ((5, 0.75), (1000, 0.82))])


def fig13(rhos):
    return pd.DataFrame([{"n_steps": n, "eta": 0.01, "train_loss_corr": -r, "test_acc_corr": r}
                         for n, r in zip((0, 10, 100), rhos)])


def test_head_steps_by_fisher_z():
    assert scores.finding_head_steps(fig13([0.2, 0.5, 0.8]), PAPER13, 81)["verdict"] == REP
    assert scores.finding_head_steps(fig13([0.8, 0.5, 0.2]), PAPER13, 81)["verdict"] == NOT
    assert scores.finding_head_steps(fig13([0.5, 0.5, 0.55]), PAPER13, 81)["verdict"] == INC
    assert scores.finding_head_steps(fig13([0.5]), PAPER13, 81)["verdict"] == INC


# ---------------------------------------------------------------- Fig. 6

def fig6ab(values, n=3):
    """values: dataset -> {selection: mean} at N = n."""
    return pd.DataFrame([{"dataset": d, "selection": s, "n_adapters": n, "mean": m, "std": 1.0, "seeds": 3,
                          "run_ids": f"{s}-{d}-{n}", "panel": "ab"} for d, sel in values.items() for s, m in sel.items()])


def test_gga_small_n():
    wins = fig6ab({"a": {"gga": 80, "topk": 70, "random": 70, "first": 79.5, "last": 70}})
    assert gga.finding_gga_small_n(wins)["verdict"] == REP  # 3 of 4 clear wins
    losses = fig6ab({"a": {"gga": 60, "topk": 70, "random": 70, "first": 70, "last": 60.5}})
    assert gga.finding_gga_small_n(losses)["verdict"] == NOT
    noise = fig6ab({"a": {"gga": 70, "topk": 70.5, "random": 69.8, "first": 70, "last": 71}})
    assert gga.finding_gga_small_n(noise)["verdict"] == INC
    large = fig6ab({"a": {"gga": 80, "topk": 70}}, n=12)  # N = 12 is not small
    assert gga.finding_gga_small_n(large)["verdict"] == INC
    assert gga.finding_gga_small_n(wins, collapsed("gga-a-3"))["verdict"] == DIV


def test_gga_matches_pa():
    pa = table1([("parallel_all", "inat18", 79.0)])
    assert gga.finding_gga_matches_pa(fig6ab({"inat18": {"gga": 78.5}}), pa)["verdict"] == REP  # -0.41 pooled std
    assert gga.finding_gga_matches_pa(fig6ab({"inat18": {"gga": 70}}), pa)["verdict"] == NOT
    assert gga.finding_gga_matches_pa(fig6ab({"inat18": {"gga": 77}}), pa)["verdict"] == INC  # -1.63 pooled std
    assert gga.finding_gga_matches_pa(fig6ab({"places365": {"gga": 80}}), pa)["verdict"] == INC  # not in this run
    assert gga.finding_gga_matches_pa(fig6ab({"inat18": {"gga": 78.5}}), pa, collapsed("parallel_all-inat18"))["verdict"] == DIV
    places = table1([("parallel_all", "places365", 79.0)])
    at12 = gga.finding_gga_matches_pa(fig6ab({"places365": {"gga": 78.5}}, n=12), places)
    assert at12["verdict"] == REP and "places365 N = 12" in at12["claim"]
    assert gga.finding_gga_matches_pa(fig6ab({"places365": {"gga": 78.5}}), places)["verdict"] == INC  # paper: N = 12
    both = pd.concat([fig6ab({"inat18": {"gga": 78.5}}), fig6ab({"places365": {"gga": 70}}, n=12)])
    split = gga.finding_gga_matches_pa(both, pd.concat([pa, places]))
    assert split["verdict"] == INC and split["statistic"] == "+1 / -1 / 0: 0 of 2"  # one case each way


def fig6c(values):
    """values: rank -> (gga mean, ffn mean)."""
    return pd.DataFrame([{"selection": s, "rank": r, "mean": m, "std": 1.0, "seeds": 3, "run_ids": f"{s}-{r}",
                          "panel": "c", "dataset": math.nan, "n_adapters": math.nan}
                         for r, (g, f) in values.items() for s, m in (("gga", g), ("ffn_parallel", f))])


def test_gga_rank():
    assert gga.finding_gga_rank(fig6c({4: (80, 70), 8: (80, 70), 32: (70.5, 70)}))["verdict"] == REP
    assert gga.finding_gga_rank(fig6c({4: (70, 80), 8: (70, 80)}))["verdict"] == NOT
    assert gga.finding_gga_rank(fig6c({4: (70.5, 70), 8: (70, 70.5)}))["verdict"] == INC
    assert gga.finding_gga_rank(fig6c({4: (80, 70)}), collapsed("gga-4"))["verdict"] == DIV


# ---------------------------------------------------------------- Table 5

def table5(values):
    return pd.DataFrame([{"rank": r, "single_rank": 6 * r, "all_parallel_ffn_mean": f, "all_parallel_ffn_std": 1.0,
                          "single_best_mean": s, "single_best_std": 1.0, "single_edge": "(3, 0)", "run_ids": f"t5-{r}"}
                         for r, (s, f) in values.items()])


def test_single_matches_ffn():
    assert gga.finding_single_matches_ffn(table5({1: (70, 70.5), 2: (71, 70)}), seeds=3)["verdict"] == REP
    assert gga.finding_single_matches_ffn(table5({1: (60, 70), 2: (61, 70)}), seeds=3)["verdict"] == NOT
    assert gga.finding_single_matches_ffn(table5({1: (68, 70), 2: (68, 70)}), seeds=3)["verdict"] == INC  # -1.63 pooled
    assert gga.finding_single_matches_ffn(table5({1: (70, 70.5)}), seeds=1)["verdict"] == INC
    assert gga.finding_single_matches_ffn(table5({1: (70, 70.5)}), collapsed("t5-1"), 3)["verdict"] == DIV


# ---------------------------------------------------------------- Fig. 8, Fig. 9

def fig8(linear, nonlinear):
    return pd.DataFrame([{"dataset": "sst2", "placement": f"edge_{k}", "i": k, "j": k, "kind": "sequential",
                          "mean_linear": a, "mean_nonlinear": b, "run_ids_linear": f"l{k}", "run_ids_nonlinear": f"n{k}"}
                         for k, (a, b) in enumerate(zip(linear, nonlinear))])


def test_linear_vs_nonlinear():
    base = [60 + 2 * k for k in range(10)]
    rank, better = finding_linear(fig8([b + 1 for b in base], base))
    assert rank["verdict"] == REP and better["verdict"] == REP  # rho 1; linear above at 10 of 10 (p = 2/1024)
    rank, better = finding_linear(fig8([100 - b for b in base], [b + 1 for b in base]))
    assert rank["verdict"] == NOT and better["verdict"] == NOT
    rank, better = finding_linear(fig8(base, base))  # ties everywhere: the sign test has no trial
    assert better["verdict"] == INC and "sign test p=1.000" in better["statistic"]
    mixed = fig8([b + (1 if k % 2 else -1) for k, b in enumerate(base)], base)  # 5 above, 5 below
    assert finding_linear(mixed)[1]["verdict"] == INC
    gone = collapsed(*[f"l{k}" for k in range(9)])
    assert [f["verdict"] for f in finding_linear(fig8(base, base), gone)] == [DIV, DIV]
    counted = fig8(base, base).assign(diverged_nonlinear=[1] * 8 + [0, 0])
    assert [f["verdict"] for f in finding_linear(counted)] == [DIV, DIV]


def fig9(values):
    """values: (activation, N) -> mean."""
    return pd.DataFrame([{"activation": a, "n_adapters": n, "mean": m, "std": 1.0, "seeds": 3, "run_ids": f"{a}-{n}"}
                         for (a, n), m in values.items()])


def test_activations_similar_and_the_growing_gap():
    similar = fig9({("gelu", 1): 70, ("relu", 1): 70.3, ("identity", 1): 70, ("gelu", 12): 80, ("relu", 12): 80,
                    ("identity", 12): 79.8})
    same, gap = finding_activations(similar)
    assert same["verdict"] == REP and gap["verdict"] == INC  # gap 0 -> 0.2: noise
    grows = fig9({("gelu", 1): 70, ("relu", 1): 70, ("identity", 1): 70, ("gelu", 12): 85, ("relu", 12): 85,
                  ("identity", 12): 70})
    same, gap = finding_activations(grows)
    assert same["verdict"] == INC  # similar at N = 1, different at N = 12: a tie
    assert gap["verdict"] == REP  # contrast 15, se sqrt(2), t = 10.6
    shrinks = fig9({("gelu", 1): 85, ("identity", 1): 70, ("gelu", 12): 70, ("identity", 12): 70})
    same, gap = finding_activations(shrinks)
    assert gap["verdict"] == NOT
    assert [f["verdict"] for f in finding_activations(similar, collapsed(*[f"{a}-{n}" for a in ("gelu", "relu", "identity")
                                                                                for n in (1, 12)]))] == [DIV, DIV]


# ---------------------------------------------------------------- Table 7, Table 8, Fig. 15, App. K

PAPER7 = pd.DataFrame([{"method": m, "accuracy_mean": v, "accuracy_std": 0.4, "n_adapters": 12}
                       for m, v in (("extended_no_recurrent_max20", 94.71), ("last_k", 93.5), ("first_k", 93.92))])


def table7(best, first, last, test_max=None):
    """best: the draw of lowest train loss (judged); test_max: the draw of best test accuracy (shown
    as the paper's max; by default the same draw, its runs shown twice)."""
    max_row = {"run_ids": "nr", "accuracy_mean": best} if test_max is None else {"run_ids": "nr-max", "accuracy_mean": test_max}
    return pd.DataFrame([{"method": "extended_no_recurrent_max", "accuracy_std": 1.0, "n_adapters": 3, **max_row}] +
                        [{"method": m, "accuracy_mean": v, "accuracy_std": 1.0, "run_ids": r, "n_adapters": 3}
                         for m, v, r in (("no_recurrent_by_train_loss", best, "nr"), ("first_k", first, "first_k"),
                                         ("last_k", last, "last_k"))])


def test_table7():
    beats, first = finding_table7(table7(90, 80, 70), PAPER7, seeds=3)
    assert beats["verdict"] == REP and first["verdict"] == REP
    beats, first = finding_table7(table7(70, 80, 90), PAPER7, seeds=3)
    assert beats["verdict"] == NOT and first["verdict"] == NOT
    beats, first = finding_table7(table7(90, 80, 89.5), PAPER7, seeds=3)  # above first-k only
    assert beats["verdict"] == INC and first["verdict"] == NOT
    beats, first = finding_table7(table7(90, math.nan, 70), PAPER7, seeds=3)  # a missing cell
    assert beats["verdict"] == INC and first["verdict"] == INC
    beats, first = finding_table7(table7(90, 80, 70), PAPER7, collapsed("first_k"), seeds=3)
    assert beats["verdict"] == DIV and first["verdict"] == DIV


def test_table7_judges_the_draw_of_lowest_train_loss_not_the_test_max():
    beats, _ = finding_table7(table7(80.5, 80, 79.5, test_max=95), PAPER7, seeds=3)
    assert beats["verdict"] == INC and beats["ours"].startswith("80.50 vs")  # the test max of 95 is not the evidence
    assert beats["paper"].startswith("94.71 vs")


PAPER8 = pd.DataFrame([{"dataset": "sst2", "tailored_mean": 95.0, "tailored_std": 0.25, "transfer_mean": 94.48,
                        "transfer_std": 0.09, "delta": 0.52}])


def table8(tailored, transfer, **extra):
    return pd.DataFrame([{"dataset": "sst2", "tailored_mean": tailored, "tailored_std": 1.0, "transfer_mean": transfer,
                          "transfer_std": 1.0, "delta": tailored - transfer, "run_ids": "tail;trans", **extra}])


def test_transfer_is_not_judged_when_the_tailored_placement_was_picked_on_test():
    finding = text.finding_transfer(table8(95, 80), PAPER8, seeds=3)  # a 15-point delta, by construction positive
    assert finding["verdict"] == INC and "by construction" in finding["criterion"]
    assert text.finding_transfer(table8(95, 80, selected_on="val"), PAPER8, seeds=3)["verdict"] == REP
    # chosen by train loss (analysis.table8): not by test either, so judged
    assert text.finding_transfer(table8(95, 80, selected_on="train_loss"), PAPER8, seeds=3)["verdict"] == REP
    assert text.finding_transfer(table8(95, 80, selected_on="test"), PAPER8, seeds=3)["verdict"] == INC
    assert text.finding_transfer(table8(80, 95, selected_on="val"), PAPER8, seeds=3)["verdict"] == NOT
    assert text.finding_transfer(table8(95, 94.5, selected_on="val"), PAPER8, seeds=3)["verdict"] == INC
    assert text.finding_transfer(table8(95, 80), PAPER8, collapsed("trans"), 3)["verdict"] == DIV


def test_transfer_and_table7_count_each_cells_own_seeds():
    # 2.5 points at std 1: with two seeds a side (df 2) undecided, with four (df 6) decided
    assert text.finding_transfer(table8(95, 92.5, selected_on="val"), PAPER8, seeds=2)["verdict"] == INC
    four = table8(95, 92.5, selected_on="val", tailored_seeds=4, transfer_seeds=4)
    assert text.finding_transfer(four, PAPER8, seeds=2)["verdict"] == REP
    few, many = table7(82.5, 80, 80), table7(82.5, 80, 80).assign(seeds=4)
    assert finding_table7(few, PAPER7, seeds=2)[0]["verdict"] == INC
    assert finding_table7(many, PAPER7, seeds=2)[0]["verdict"] == REP  # the table's seeds column, not the run's


def fig15(best, everything, reverse=False, std=1.0):
    rows = [{"setup": "best random (random24_003)", "mean": best, "std": std, "seeds": 3, "run_ids": "best"},
            {"setup": "all n^2 adapters", "mean": everything, "std": std, "seeds": 3, "run_ids": "all"}]
    return pd.DataFrame(rows[::-1] if reverse else rows)


def test_all_edges_does_not_depend_on_row_order():
    assert text.finding_all_edges(fig15(90, 80))["verdict"] == REP
    assert text.finding_all_edges(fig15(90, 80, reverse=True))["verdict"] == REP
    assert text.finding_all_edges(fig15(80, 90, reverse=True))["verdict"] == NOT
    assert text.finding_all_edges(fig15(90, 89.5))["verdict"] == REP  # no gain: what the claim says
    assert text.finding_all_edges(fig15(88.5, 90))["verdict"] == INC  # 1.2 pooled std ahead: cannot tell


def test_all_edges_collapsed_at_chance_is_diverged_not_reproduced():
    # the case: all n^2 adapters at 50.3% on SST-2, their train loss at ln 2
    finding = text.finding_all_edges(fig15(88.0, 50.3), collapsed("all"))
    assert finding["verdict"] == DIV
    # runs that did not finish: the table has no mean for the cell, and counts them as diverged
    gone = fig15(88.0, math.nan).assign(diverged=[0, 3])
    assert text.finding_all_edges(gone)["verdict"] == DIV
    assert text.finding_all_edges(fig15(88.0, math.nan))["verdict"] == INC  # missing, nothing known to have collapsed


def test_scoring_cost():
    appk = lambda s: pd.DataFrame([{"item": "scoring (GGA)", "measured_seconds": s, "training_run_seconds": 100.0}])  # noqa: E731
    assert costs.finding_scoring_cost(appk(0.5))["verdict"] == REP
    assert costs.finding_scoring_cost(appk(5.0))["verdict"] == NOT
    assert costs.finding_scoring_cost(appk(math.nan))["verdict"] == INC


# ---------------------------------------------------------------- learnt.csv

def test_learnt_needs_chance_plus_15_and_two_pooled_std():
    t1 = table1([
        ("linear_probe", "a", 1.2, 0.1, 3), ("parallel_all", "a", 2.5, 0.9, 3), ("full_ft", "a", 2.0, 0.5, 3),
        ("linear_probe", "b", 40.0, 1.0, 3), ("parallel_all", "b", 60.0, 1.0, 3), ("full_ft", "b", 55.0, 1.0, 3),
        ("linear_probe", "c", 40.0, 8.0, 3), ("parallel_all", "c", 50.0, 12.0, 3), ("full_ft", "c", 45.0, 8.0, 3),
        ("linear_probe", "d", 60.0, 1.0, 3), ("parallel_all", "d", 80.0, 1.0, 3), ("full_ft", "d", 70.0, 1.0, 3),
    ])
    frame = baselines.learnt(t1, {"a": 1.0, "b": 32.5, "c": 33.3, "d": 50.0}, collapsed("parallel_all-d")).set_index("dataset")
    assert list(frame.reset_index().columns) == baselines.LEARNT_COLUMNS
    assert frame.loc["a", "learnt"] == False  # noqa: E712  (1.5 points above chance)
    assert frame.loc["b", "learnt"] == True  # noqa: E712  (27.5 above, pooled std 1.22)
    # 16.7 points above chance, but the pooled std is sqrt(3/2 * (64 + 144 + 64) / 3) = 11.66: 2 pooled std = 23.3
    assert frame.loc["c", "pooled_seed_std"] == pytest.approx(math.sqrt(1.5 * (64 + 144 + 64) / 3))
    assert frame.loc["c", "learnt"] == False  # noqa: E712
    assert frame.loc["d", "learnt"] == False and frame.loc["d", "diverged"] == "parallel_all"  # noqa: E712
    assert frame.loc["b", "parallel_above_chance"] == pytest.approx(27.5) and frame.loc["b", "full_ft"] == 55.0
    assert pd.isna(baselines.learnt(t1, {}).set_index("dataset").loc["b", "learnt"])  # no chance level known


# ---------------------------------------------------------------- the report job on constructed files

def test_write_report_writes_findings_and_learnt_and_renders_them(tmp_path):
    from pathlib import Path

    paper = sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "paper").glob("*.csv"))
    t1 = table1([("extended_max", "sst2", 95.0), ("random_by_train_loss", "sst2", 95.0), ("parallel_all", "sst2", 85.0),
                 ("linear_probe", "sst2", 60.0), ("extended_max", "inat18", 60.0), ("random_by_train_loss", "inat18", 60.0),
                 ("parallel_all", "inat18", 45.0), ("linear_probe", "inat18", 30.0)])
    fig6 = pd.concat([fig6ab({"inat18": {"gga": 80, "topk": 70}}), fig6c({4: (80, 70)})])
    frames = {
        "tables/table1": t1, "tables/table3": table3({"inat18": kinds(0.80)}),
        "tables/table4": table4({"srank": 0.82, "frobenius": 0.4}, {"srank": -0.9, "frobenius": 0.1}),
        "tables/table5": table5({1: (70, 70.5)}), "tables/table7": table7(90, 80, 70), "tables/table8": table8(95, 80),
        "tables/appK": pd.DataFrame([{"item": "scoring (GGA)", "measured_seconds": 0.5, "training_run_seconds": 100.0}]),
        "figure_data/fig1": fig1({"inat18": [50, 60, 70, 80]}), "figure_data/fig4": fig4(0.9, [0.1, 0.0]),
        "figure_data/fig5": fig5({"inat18": (0.6, 0.001, -0.7, 0.001)}), "figure_data/fig6": fig6,
        "figure_data/fig8": fig8([60 + k for k in range(5)], [59 + k for k in range(5)]),
        "figure_data/fig9": fig9({("gelu", 1): 70, ("identity", 1): 70, ("gelu", 12): 85, ("identity", 12): 70}),
        "figure_data/fig13": fig13([0.2, 0.5, 0.8]), "figure_data/fig15": fig15(90, 50.3),
    }
    for name, frame in frames.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    batch = tmp_path / "batch.json"  # the all-n^2 run kept the chance-level loss of SST-2
    batch.write_text(json.dumps({"items": [{"key": {"experiment": "fig15", "dataset": "sst2", "placement": "all_edges",
                                                    "seed": 0, "method": "adapters"}, "edges": [[0, 1]], "lr": 0.1,
                                            "steps": 10, "status": "finished", "folder": "f",
                                            "metrics": {"test_accuracy": 0.503, "train_loss": 0.69,
                                                        "mlflow_run_id": "all"}}]}))
    inputs = {"tables": [str(tmp_path / f"{n}.csv") for n in frames if n.startswith("tables")],
              "figure_data": [str(tmp_path / f"{n}.csv") for n in frames if n.startswith("figure_data")],
              "paper": paper, "figures": [], "lr": [], "runs": [str(batch)]}
    outputs = {"report": str(tmp_path / "REPORT.md"), "findings": str(tmp_path / "findings.csv"),
               "learnt": str(tmp_path / "learnt.csv")}
    spec = {"results": "results", "model_specs": {"vit": "embedded"}, "seeds": [0, 1, 2], "tracking_uri": "sqlite://",
            "chance": {"sst2": 50.0, "inat18": 1.0}, "scores_dataset": "inat18"}
    R.write_report(spec, inputs, outputs)
    findings = pd.read_csv(outputs["findings"])
    assert list(findings.columns) == E.FINDING_COLUMNS and len(findings) == 24 and findings.claim.is_unique
    findings = findings.set_index("claim")
    assert findings.loc["all n^2 adapters at once do not beat the best random placement", "verdict"] == DIV
    assert findings.loc["the best of the random 2L-adapter placements beats parallel adapters", "verdict"] == REP
    assert findings.loc["scoring all n^2 edges costs little next to training", "verdict"] == REP
    learnt = pd.read_csv(outputs["learnt"]).set_index("dataset")
    assert bool(learnt.loc["sst2", "learnt"]) and bool(learnt.loc["inat18", "learnt"])  # 35 and 44 points above chance
    text = Path(outputs["report"]).read_text()
    counts = findings.verdict.value_counts()
    assert (f"## Findings: {counts.get(REP, 0)} reproduced, {counts.get(NOT, 0)} not reproduced, "
            f"{counts.get(INC, 0)} inconclusive, {counts.get(DIV, 0)} diverged") in text
    assert "| sst2 | 50.000 | 60.000 | 85.000 |" in text  # learnt.csv's row, rendered


def test_a_cell_shown_twice_is_one_cell_of_noise():
    rows = pd.DataFrame([{"mean": 80.0, "std": 4.0, "seeds": 2, "run_ids": "a;b"},
                         {"mean": 80.0, "std": 4.0, "seeds": 2, "run_ids": "a;b"},  # the same runs under another name
                         {"mean": 70.0, "std": 2.0, "seeds": 2, "run_ids": "c;d"}])
    assert E.noise_of(rows) == V.pooled_noise([4.0, 2.0], [2, 2])
    assert E.noise_of(rows)[1] == 2  # one df per distinct cell of two seeds, not three


def test_pooled_t_of_two_cells_is_the_equal_variance_t_test():
    a, b = np.array([71.0, 74.0, 70.0]), np.array([65.0, 69.0, 66.0])
    pooled, df = V.pooled_noise([a.std(), b.std()], [3, 3])
    t, dof, p = V.pooled_t(a.mean(), 3, b.mean(), 3, pooled, df)
    reference = stats.ttest_ind(a, b, equal_var=True)
    assert df == dof == 4
    assert t == pytest.approx(reference.statistic) and p == pytest.approx(reference.pvalue)


def test_pooled_contrast_uses_every_cells_noise_as_a_one_way_anova_does():
    rng = np.random.default_rng(3)
    groups = [rng.normal(m, 2.0, size=2) for m in (10.0, 14.0, 11.0, 12.5, 9.0)]
    pooled, df = V.pooled_noise([g.std() for g in groups], [2] * 5)
    # the residual mean square of a one-way ANOVA, by hand, over all five cells
    residual = sum(((g - g.mean()) ** 2).sum() for g in groups) / (10 - 5)
    assert df == 5 and pooled == pytest.approx(math.sqrt(residual))
    t, dof, p = V.pooled_t(groups[1].mean(), 2, groups[0].mean(), 2, pooled, df)
    assert t == pytest.approx((groups[1].mean() - groups[0].mean()) / math.sqrt(residual * (1 / 2 + 1 / 2)))
    assert p == pytest.approx(2 * stats.t.sf(abs(t), 5))


def test_pooled_noise_leaves_out_cells_without_noise_and_knows_none():
    assert V.pooled_noise([1.0, math.nan, 2.0], [2, 2, 1]) == (pytest.approx(math.sqrt(2.0)), 1)
    assert math.isnan(V.pooled_noise([math.nan], [3])[0])
    assert all(math.isnan(x) for x in V.pooled_t(1.0, 2, 0.0, 2, math.nan, 0))


def test_a_datasets_other_cells_lend_their_noise_to_a_comparison():
    """Two cells 2.5 apart (std 1 over 3 seeds): alone, t = 2.5 on 4 df (p = 0.067, undecided); with
    the dataset's three other cells of the same noise in the table, t = 2.5 on 10 df (p = 0.031)."""
    rows = [("better", 72.5), ("worse", 70.0), ("x", 60.0), ("y", 65.0), ("z", 50.0)]
    table = pd.DataFrame([{"dataset": "d", "method": m, "mean": v, "std": 1.0, "seeds": 3, "run_ids": f"d-{m}"}
                          for m, v in rows])
    alone = E.t_cells(table[table.method.isin(["better", "worse"])], "better", "worse", "method", 3, E.HEALTHY)
    together = E.t_cells(table, "better", "worse", "method", 3, E.HEALTHY)
    assert 2 * stats.t.sf(2.5, 4) > 0.05 > 2 * stats.t.sf(2.5, 10)
    assert alone[0] == [0] and "df=4" in alone[1][0]
    assert together[0] == [1] and "t=2.50, df=10" in together[1][0]
    # a collapsed cell lends no noise (its seeds sit at the chance loss)
    spared = E.t_cells(table, "better", "worse", "method", 3, collapsed("d-x", "d-y", "d-z"))
    assert spared[0] == [0] and "df=4" in spared[1][0]
