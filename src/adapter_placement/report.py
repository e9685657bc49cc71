"""results/REPORT.md: the reproduced tables next to the paper's, every figure, and one line per
finding of the paper saying whether this run reproduced it; the findings and "what this run learnt"
also as CSV (``results/tables/findings.csv``, ``learnt.csv``), from which the report renders them.

Every number of "this run" is computed here from the tables and figure data the pipeline wrote;
the paper's numbers come from ``paper/*.csv`` (transcribed from the paper). Each finding has a
criterion that knows the seed noise (a difference against the pooled seed std, or a test with its
p-value; the statistics are in ``verdicts.py``) and one of four verdicts: reproduced, not
reproduced, inconclusive (the data cannot decide) or diverged (its runs never left the chance-level
train loss; they are no evidence either way).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from . import atomic
from . import verdicts as V
from .analysis import load_runs, markdown

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, DIVERGED = V.REPRODUCED, V.NOT_REPRODUCED, V.INCONCLUSIVE, V.DIVERGED
FINDING_COLUMNS = ["figure", "claim", "paper", "ours", "criterion", "statistic", "verdict"]
LEARNT_COLUMNS = ["dataset", "chance", "linear_probe", "parallel_all", "full_ft", "pooled_seed_std",
                  "parallel_above_chance", "diverged", "learnt"]
LEARNT_MARGIN = 15.0  # points above chance that parallel adapters must reach (issue 12's goal)


def _fmt(value: float, digits: int = 2) -> str:
    return "nan" if value is None or not np.isfinite(float(value)) else f"{float(value):.{digits}f}"


# ---------------------------------------------------------------- run health: which runs collapsed

@dataclass(frozen=True)
class Health:
    """Which runs collapsed (train loss still at the chance-level loss ln C, or a run that did not
    finish): their MLflow run ids, and per (experiment, dataset) the share of its runs that did.
    A table cell is diverged when one of its runs is: its mean is no evidence for any finding."""
    diverged_ids: frozenset = frozenset()
    shares: Mapping = field(default_factory=dict)

    def cell(self, run_ids) -> bool:
        return bool(_ids(run_ids) & self.diverged_ids)

    def dataset(self, experiment: str, dataset: str) -> bool:
        """Most runs of this experiment on this dataset collapsed (for findings on correlations over
        many single-adapter runs, which no single cell carries)."""
        return self.shares.get((experiment, dataset), 0.0) > 0.5


HEALTHY = Health()


def _ids(run_ids) -> set:
    return {i for i in run_ids.split(";") if i} if isinstance(run_ids, str) else set()


def health_from_runs(runs: pd.DataFrame, classes: Mapping[str, int]) -> Health:
    """``Health`` of run records (``analysis.load_runs``); ``classes``: number of classes per dataset."""
    if runs.empty:
        return HEALTHY
    bad = [status != "finished" or V.collapsed(loss, classes.get(dataset))
           for status, loss, dataset in zip(runs.status, runs.train_loss, runs.dataset)]
    runs = runs.assign(bad=bad)
    shares = runs.groupby(["experiment", "dataset"]).bad.mean().to_dict()
    return Health(frozenset(i for i, b in zip(runs.run_id, runs.bad) if b and i), shares)


def classes_from_chance(chance: Mapping[str, float]) -> dict[str, int]:
    """Chance level (%) = 100 / C, so C = 100 / chance."""
    return {d: int(round(100.0 / c)) for d, c in chance.items() if V.finite(c) and c > 0}


# ---------------------------------------------------------------- helpers of the findings

def _record(figure, claim, paper, ours, criterion, statistic, verdict) -> dict:
    assert verdict in V.VERDICTS, verdict
    return {"figure": figure, "claim": claim, "paper": paper, "ours": ours, "criterion": criterion,
            "statistic": statistic, "verdict": verdict}


def _seeds(frame: pd.DataFrame, default: int, column: str = "seeds") -> pd.Series:
    """Seeds behind each cell: the table's own column where it has one, else the run's seed count."""
    if column in frame:
        return frame[column].fillna(default).astype(int)
    return pd.Series(default, index=frame.index)


def _bad(row, health: Health, column: str = "run_ids") -> bool:
    """A cell (a table row) rests on a collapsed run: one of its run ids collapsed, or the table
    counts runs of it that diverged (``diverged`` column of analysis.summarise)."""
    diverged = row.get(column.replace("run_ids", "diverged"), 0)  # run_ids_linear -> diverged_linear
    return health.cell(row.get(column)) or bool(V.finite(diverged) and float(diverged) > 0)


def _healthy(frame: pd.DataFrame, health: Health, column: str = "run_ids") -> pd.DataFrame:
    """The rows of ``frame`` whose runs did not collapse."""
    if frame.empty:
        return frame
    return frame[[not _bad(row, health, column) for _, row in frame.iterrows()]]


def _percent(frame: pd.DataFrame, columns=("mean", "std")) -> pd.DataFrame:
    """Table 3 holds fractions (as the paper prints it), the other tables percent: a table whose means
    are all <= 1 is taken as fractions. (A percent table with every accuracy <= 1% would be misread;
    no run of the pipeline's tasks with more than one cell is that low everywhere.)"""
    if frame.empty or frame["mean"].max() > 1.0:
        return frame
    return frame.assign(**{c: frame[c] * 100 for c in columns})


def _tally(outcomes) -> str:
    outcomes = list(outcomes)
    return f"+{outcomes.count(1)} / -{outcomes.count(-1)} / 0: {outcomes.count(0)} of {len(outcomes)}"


def _welch_rows(a, b, n_a: int, n_b: int) -> tuple[int, str]:
    """Welch's t of cell a vs cell b (rows with mean and std): the outcome and a short text."""
    t, df, p = V.welch(a["mean"], a["std"], n_a, b["mean"], b["std"], n_b)
    return V.test_outcome(t, p), f"t={_fmt(t)}, p={_fmt(p, 3)}"


def _welch_cells(frame: pd.DataFrame, better: str, worse: str, key: str, seeds: int, health: Health):
    """Per dataset: Welch's t of the ``better`` cell vs the ``worse`` cell (rows told apart by
    ``key``); cells with a collapsed run are left out. (outcomes, texts, datasets left out)."""
    outcomes, texts, left_out = [], [], 0
    for dataset, part in frame.groupby("dataset", sort=False):
        cells = part.assign(seeds=_seeds(part, seeds)).set_index(key)
        if better not in cells.index or worse not in cells.index:
            continue
        if _bad(cells.loc[better], health) or _bad(cells.loc[worse], health):
            left_out += 1
            continue
        if not V.finite(cells.loc[better, "mean"], cells.loc[worse, "mean"]):
            continue  # a missing cell
        outcome, text = _welch_rows(cells.loc[better], cells.loc[worse], cells.loc[better, "seeds"],
                                    cells.loc[worse, "seeds"])
        outcomes.append(outcome)
        texts.append(f"{dataset} {text}")
    return outcomes, texts, left_out


def _pooled(rows: pd.DataFrame) -> float:
    return V.pooled_std(rows["std"].tolist(), rows["seeds"].tolist())


# ---------------------------------------------------------------- findings: one function each

def finding_single_placement_matters(fig1: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """Per dataset a one-way ANOVA over the 2L positions: +1 at p < 0.05; -1 (placement does not
    matter) when p >= 0.05 and the spread of the means is within 2 pooled std; 0 otherwise."""
    claim = "the position of a single parallel adapter changes test accuracy, and the best position is task dependent"
    outcomes, texts, best, left_out = [], [], {}, 0
    for dataset, part in fig1.groupby("dataset", sort=False):
        part = part.assign(seeds=_seeds(part, seeds))
        ok = _healthy(part, health).dropna(subset=["mean"])
        if len(ok) < 2:
            left_out += len(_healthy(part, health)) < len(part)
            continue
        f, p = V.anova(ok["mean"].tolist(), ok["std"].tolist(), ok["seeds"].tolist())
        outcomes.append(V.effect_outcome(p, ok["mean"].max() - ok["mean"].min(), _pooled(ok)))
        texts.append(f"{dataset} F={_fmt(f)}, p={_fmt(p, 3)}")
        best[dataset] = int(ok.loc[ok["mean"].idxmax(), "position"])
    return _record("Fig. 1", claim, "qualitative (Fig. 1)",
                   f"best positions {best}", "ANOVA over positions per dataset: p < 0.05 on at least half the "
                   "datasets (spread within 2 pooled std and p >= 0.05: no effect); collapsed cells left out",
                   "; ".join(texts) + f" ({_tally(outcomes)})", V.majority(outcomes, left_out))


def finding_mha_ffn(fig1: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """Per dataset: MHA vs FFN adapter of the same block. Similar (+1) when the mean |MHA - FFN| over
    blocks is within 2 pooled std and no block differs; different (-1) when a block's Welch t has
    p < 0.05 / blocks (Bonferroni); 0 otherwise."""
    outcomes, texts, left_out = [], [], 0
    for dataset, part in fig1.groupby("dataset", sort=False):
        part = part.assign(seeds=_seeds(part, seeds))
        ok = _healthy(part, health).dropna(subset=["mean"])
        cells = {(r.block, r.sublayer): r for r in ok.itertuples()}
        blocks = sorted(b for b in set(ok.block) if (b, "MHA") in cells and (b, "FFN") in cells)
        if not blocks:
            left_out += len(_healthy(part, health)) < len(part)
            continue
        ps = [V.welch(cells[b, "MHA"].mean, cells[b, "MHA"].std, cells[b, "MHA"].seeds,
                      cells[b, "FFN"].mean, cells[b, "FFN"].std, cells[b, "FFN"].seeds)[2] for b in blocks]
        gap = float(np.mean([abs(cells[b, "MHA"].mean - cells[b, "FFN"].mean) for b in blocks]))
        pooled = _pooled(ok)
        if any(V.finite(p) and p < V.ALPHA / len(blocks) for p in ps):
            outcomes.append(-1)
        elif V.finite(pooled) and pooled > 0 and gap <= V.K_STD * pooled:
            outcomes.append(1)
        else:
            outcomes.append(0)
        texts.append(f"{dataset} mean |MHA-FFN| {_fmt(gap)} (pooled std {_fmt(pooled)}, min p {_fmt(min(ps), 3)})")
    return _record("Fig. 7", "MHA vs FFN parallel placement differs little on most datasets",
                   "exceptions: Clevr-Count, dSpr-Loc", "; ".join(texts),
                   "similar (mean |MHA - FFN| <= 2 pooled std, no block's Welch p < 0.05/blocks) on at least half the datasets",
                   _tally(outcomes), V.majority(outcomes, left_out))


def _paper_recurrent_count(paper3: pd.DataFrame) -> tuple[int, int]:
    """The paper's datasets where recurrent is the best kind or within the best's std."""
    hits = total = 0
    for _, part in paper3.groupby("dataset"):
        rec = part[part.adapter_type == "recurrent"]
        if rec.empty or part["mean"].isna().all():
            continue
        top = part.loc[part["mean"].idxmax()]
        total += 1
        hits += bool(rec["mean"].iloc[0] >= top["mean"] - top["std"])
    return hits, total


def finding_recurrent_best(table3: pd.DataFrame, paper3: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """Per dataset: best recurrent edge vs the best edge of the other kinds, d = rec - best other,
    +1 when d >= -1 pooled std (best or within one std, the paper's tolerance), -1 when d < -2 pooled std."""
    outcomes, texts, left_out = [], [], 0
    for dataset, part in table3.groupby("dataset", sort=False):
        part = part.assign(seeds=_seeds(part, seeds))
        ok = _healthy(part, health).dropna(subset=["mean"])
        rec, others = ok[ok.adapter_type == "recurrent"], ok[ok.adapter_type != "recurrent"]
        if rec.empty or others.empty:
            left_out += len(_healthy(part, health)) < len(part)
            continue
        top = others.loc[others["mean"].idxmax()]
        pooled = V.pooled_std([rec["std"].iloc[0], top["std"]], [rec["seeds"].iloc[0], top["seeds"]])
        diff = rec["mean"].iloc[0] - top["mean"]
        outcomes.append(V.match_outcome(diff, pooled))
        texts.append(f"{dataset} rec - {top.adapter_type} = {_fmt(diff, 3)} ({_fmt(diff / pooled if pooled else math.nan)} pooled std)")
    theirs, paper_total = _paper_recurrent_count(paper3)
    return _record("Table 3", "the best single adapter is recurrent, or within one std of the best, on most datasets",
                   f"{theirs} of {paper_total} datasets", "; ".join(texts),
                   "recurrent - best other kind >= -1 pooled std on at least half the datasets (< -2 pooled std: not; "
                   "each kind's best edge is picked by test accuracy, as in the paper, which favours the kinds with more edges)",
                   _tally(outcomes), V.majority(outcomes, left_out))


def finding_single_vs_parallel(table3: pd.DataFrame, table1: pd.DataFrame, health: Health = HEALTHY,
                               seeds: int = 1) -> dict:
    """Per dataset: the best single adapter (Table 3, converted to percent) vs all parallel adapters
    (Table 1, percent): match outcome of best single - PA. The claim is existential ("on some")."""
    single = _percent(table3.assign(seeds=_seeds(table3, seeds)))
    pa = table1[table1.method == "parallel_all"]
    pa = pa.assign(seeds=_seeds(pa, seeds)).set_index("dataset")
    outcomes, texts, hits, left_out = [], [], [], 0
    for dataset, part in single.groupby("dataset", sort=False):
        if dataset not in pa.index or not V.finite(pa.loc[dataset, "mean"]):
            continue
        ok = _healthy(part, health).dropna(subset=["mean"])
        if ok.empty or _bad(pa.loc[dataset], health):
            left_out += 1
            continue
        top = ok.loc[ok["mean"].idxmax()]
        pooled = V.pooled_std([top["std"], pa.loc[dataset, "std"]], [top["seeds"], pa.loc[dataset, "seeds"]])
        diff = top["mean"] - pa.loc[dataset, "mean"]
        outcome = V.match_outcome(diff, pooled)
        outcomes.append(outcome)
        hits += [dataset] if outcome == 1 else []
        texts.append(f"{dataset} {_fmt(diff)} points ({_fmt(diff / pooled if pooled else math.nan)} pooled std)")
    if not outcomes:
        verdict = V.DIVERGED if left_out else V.INCONCLUSIVE
    else:
        verdict = V.REPRODUCED if hits else V.NOT_REPRODUCED if all(o == -1 for o in outcomes) else V.INCONCLUSIVE
    return _record("Fig. 3", "one well-placed adapter can match or beat 2L parallel adapters on some datasets (iNat18, dSpr-Loc)",
                   "iNat18, dSpr-Loc", f"matched on {', '.join(hits) or 'none'}",
                   "best single (%) - PA (%) >= -1 pooled std on at least one dataset; not reproduced when "
                   "behind by > 2 pooled std on every dataset", "; ".join(texts), verdict)


def finding_dataset_correlation(fig4: pd.DataFrame, n_edges: int, health: Health = HEALTHY,
                                pair=("inat18", "places365")) -> dict:
    """Fisher z test of rho(pair) against the median rho of the other dataset pairs (n_edges grid
    edges each): the pair correlates more (p < 0.05) or less."""
    claim = "single-adapter accuracies correlate weakly across datasets, except iNat18 / Places365"
    criterion = "Fisher z: rho(iNat18, Places365) > the median rho of the other pairs at p < 0.05 (< : not reproduced)"
    if any(health.dataset("fig3", d) for d in pair):
        return _record("Fig. 4", claim, "qualitative (Fig. 4)", "most grid runs collapsed", criterion, "-", V.DIVERGED)
    off = fig4[fig4.dataset_a < fig4.dataset_b].dropna(subset=["spearman"])
    match = off[(off.dataset_a == min(pair)) & (off.dataset_b == max(pair))]
    others = off.drop(match.index)
    if match.empty or others.empty:
        return _record("Fig. 4", claim, "qualitative (Fig. 4)", "not enough data", criterion, "-", V.INCONCLUSIVE)
    rho, median = float(match.spearman.iloc[0]), float(others.spearman.median())
    z, p = V.fisher_z(rho, median, n_edges)
    return _record("Fig. 4", claim, "qualitative (Fig. 4)",
                   f"rho({pair[0]}, {pair[1]}) = {_fmt(rho)}, median of the other pairs {_fmt(median)}", criterion,
                   f"z={_fmt(z)}, p={_fmt(p, 3)} over {n_edges} edges", V.outcome_verdict(V.test_outcome(z, p)))


def _paper_beats(frame: pd.DataFrame, better: str, worse: str) -> tuple[int, int]:
    wide = frame.pivot_table(index="dataset", columns="method", values="mean")
    if better not in wide or worse not in wide:
        return 0, 0
    valid = wide[[better, worse]].dropna()
    return int((valid[better] > valid[worse]).sum()), len(valid)


def _table1_finding(table1, paper1, better, worse, paper_names, claim, health, seeds, note="") -> dict:
    outcomes, texts, left_out = _welch_cells(table1, better, worse, "method", seeds, health)
    pk, ptotal = _paper_beats(paper1, *paper_names)
    wins = [t.split()[0] for t, o in zip(texts, outcomes) if o == 1]
    return _record("Table 1", claim, f"higher on {pk} of {ptotal} datasets",
                   f"clearly higher on {len(wins)} of {len(outcomes)} datasets ({', '.join(wins) or 'none'})",
                   f"Welch t per dataset, p < 0.05 in the paper's direction on at least half the datasets{note}",
                   "; ".join(texts) + f" ({_tally(outcomes)})", V.majority(outcomes, left_out))


def finding_random_beats_parallel(table1: pd.DataFrame, paper1: pd.DataFrame, health: Health = HEALTHY,
                                  seeds: int = 1) -> dict:
    return _table1_finding(table1, paper1, "extended_max", "parallel_all", ("extended_max_24", "parallel_24"),
                           "the best of the random 2L-adapter placements beats parallel adapters", health, seeds,
                           " (the best draw is picked by test accuracy, as the paper's Table 1 does: a bias toward it)")


def finding_adapters_vs_probe(table1: pd.DataFrame, paper1: pd.DataFrame, health: Health = HEALTHY,
                              seeds: int = 1) -> dict:
    return _table1_finding(table1, paper1, "parallel_all", "linear_probe", ("parallel_24", "linear_probe"),
                           "parallel adapters beat the linear probe", health, seeds)


def _correlation_outcomes(fig5: pd.DataFrame, column: str, sign: int, health: Health):
    outcomes, texts, left_out = [], [], 0
    for r in fig5.itertuples():
        if health.dataset("fig3", r.dataset):
            left_out += 1
            continue
        rho, p = getattr(r, f"{column}_spearman"), getattr(r, f"{column}_p")
        if not V.finite(rho):
            continue
        outcomes.append(V.test_outcome(sign * rho, p))
        texts.append(f"{r.dataset} rho={_fmt(rho)}, p={_fmt(p, 3)}")
    return outcomes, texts, left_out


def finding_srank_accuracy(fig5: pd.DataFrame, paper4: pd.DataFrame, health: Health = HEALTHY) -> dict:
    outcomes, texts, left_out = _correlation_outcomes(fig5, "test_accuracy", 1, health)
    paper_rho = paper4.set_index("function").loc["srank_eta0.01", "test_accuracy_spearman"]
    return _record("Fig. 5", "srank of the gradient correlates with single-adapter test accuracy",
                   f"Spearman rho = {_fmt(paper_rho)} on iNat18 (Table 4); lower on dSpr, SVHN, SST2",
                   f"positive at p < 0.05 on {outcomes.count(1)} of {len(outcomes)} datasets",
                   "Spearman rho > 0 at p < 0.05 on at least half the datasets (< 0 at p < 0.05: against)",
                   "; ".join(texts) + f" ({_tally(outcomes)})", V.majority(outcomes, left_out))


def finding_srank_loss(fig5: pd.DataFrame, health: Health = HEALTHY) -> dict:
    outcomes, texts, left_out = _correlation_outcomes(fig5, "train_loss", -1, health)
    return _record("Fig. 11", "edges with a higher gradient srank reach a lower train loss",
                   "Spearman rho = -0.93 on iNat18 (Table 4)",
                   f"negative at p < 0.05 on {outcomes.count(1)} of {len(outcomes)} datasets",
                   "Spearman rho < 0 at p < 0.05 on at least half the datasets (> 0 at p < 0.05: against)",
                   "; ".join(texts) + f" ({_tally(outcomes)})", V.majority(outcomes, left_out))


def _best_function_outcome(table4: pd.DataFrame, column: str, sign: int) -> tuple[int, str]:
    """srank against every other score function on one target, in the paper's direction (sign: +1
    for accuracy, -1 for train loss: a function anti-correlated with accuracy is not "best"):
    +1 when srank is itself significant and beats every other by Fisher z at p < 0.05, -1 when one
    other beats srank at p < 0.05, 0 otherwise."""
    rows = table4.dropna(subset=[f"{column}_spearman"]).set_index("function")
    if "srank" not in rows.index or len(rows) < 2:
        return 0, f"{column}: not enough data"
    n = int(rows["edges"].min()) if "edges" in rows else 0
    own = sign * rows.loc["srank", f"{column}_spearman"]
    others = (sign * rows[f"{column}_spearman"]).drop("srank")
    runner = others.idxmax()
    z_srank, p_srank = V.fisher_z(own, others[runner], n)  # srank vs the strongest other
    z_lose = [V.fisher_z(v, own, n) for v in others]
    text = f"{column}: srank {_fmt(sign * own)} vs {runner} {_fmt(sign * others[runner])}, z={_fmt(z_srank)}"
    if any(V.test_outcome(z, p) == 1 for z, p in z_lose):
        return -1, text
    own_p = rows.loc["srank", f"{column}_p"] if f"{column}_p" in rows else V.correlation_p(own, n)
    if V.test_outcome(z_srank, p_srank) == 1 and V.test_outcome(own, own_p) == 1:
        return 1, text
    return 0, text


def finding_srank_best_function(table4: pd.DataFrame, paper4: pd.DataFrame, health: Health = HEALTHY,
                                dataset: str = "") -> dict:
    claim = "of the six score functions, srank correlates best with test accuracy and train loss"
    paper = paper4.set_index("function").loc["srank_eta0.01"]
    paper_text = f"srank: test {_fmt(paper.test_accuracy_spearman)}, train loss {_fmt(paper.train_loss_spearman)} (both the best)"
    criterion = ("in the paper's direction (rho > 0 for accuracy, < 0 for loss) srank significant and above every "
                 "other function by Fisher z at p < 0.05, for both; another function above srank at p < 0.05: not")
    if dataset and health.dataset("fig3", dataset):
        return _record("Table 4", claim, paper_text, "most grid runs collapsed", criterion, "-", V.DIVERGED)
    acc, acc_text = _best_function_outcome(table4, "test_accuracy", 1)
    loss, loss_text = _best_function_outcome(table4, "train_loss", -1)
    verdict = (V.REPRODUCED if acc == loss == 1 else V.NOT_REPRODUCED if -1 in (acc, loss) else V.INCONCLUSIVE)
    return _record("Table 4", claim, paper_text, f"{acc_text}; {loss_text}", criterion,
                   f"accuracy {acc:+d}, loss {loss:+d}", verdict)


def finding_head_steps(fig13: pd.DataFrame, paper13: pd.DataFrame, n_edges: int, health: Health = HEALTHY,
                       dataset: str = "") -> dict:
    """rho(srank, accuracy) at the longest vs the shortest head pre-training (eta 0.01), Fisher z."""
    def ends(frame):
        part = frame[np.isclose(frame.eta, 0.01)].sort_values("n_steps").dropna(subset=["test_acc_corr"])
        return (part.test_acc_corr.iloc[0], part.test_acc_corr.iloc[-1]) if len(part) >= 2 else None

    claim = "a longer head pre-training gives a better srank/accuracy correlation"
    theirs = ends(paper13)
    paper_text = f"rho {_fmt(theirs[0])} -> {_fmt(theirs[1])} from the shortest to the longest (eta 0.01)" if theirs else "-"
    criterion = "Fisher z of rho(longest) vs rho(shortest), p < 0.05 (rho in the paper's direction, > 0)"
    if dataset and health.dataset("fig3", dataset):
        return _record("Fig. 13", claim, paper_text, "most grid runs collapsed", criterion, "-", V.DIVERGED)
    ours = ends(fig13)
    if ours is None:
        return _record("Fig. 13", claim, paper_text, "not enough data", criterion, "-", V.INCONCLUSIVE)
    z, p = V.fisher_z(ours[1], ours[0], n_edges)
    return _record("Fig. 13", claim, paper_text, f"rho {_fmt(ours[0])} -> {_fmt(ours[1])}", criterion,
                   f"z={_fmt(z)}, p={_fmt(p, 3)} over {n_edges} edges", V.outcome_verdict(V.test_outcome(z, p)))


def finding_gga_small_n(fig6: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1, small: int = 6) -> dict:
    """Welch's t of GGA vs each baseline at each (dataset, N <= small); majority of the comparisons."""
    every = fig6[(fig6.panel == "ab") & (fig6.n_adapters <= small)]
    ab = _healthy(every.assign(seeds=_seeds(every, seeds)), health).dropna(subset=["mean"])
    left_out = len(_healthy(every, health)) < len(every)
    outcomes = []
    for _, part in ab.groupby(["dataset", "n_adapters"]):
        cells = part.set_index("selection")
        if "gga" not in cells.index:
            continue
        for other in cells.index.drop("gga"):
            outcomes.append(_welch_rows(cells.loc["gga"], cells.loc[other], cells.loc["gga", "seeds"],
                                        cells.loc[other, "seeds"])[0])
    return _record("Fig. 6a/b", f"GGA beats top-k, random, first-k and last-k with few adapters (N <= {small})",
                   "GGA best at small N on iNat18 and Places365",
                   f"GGA clearly above in {outcomes.count(1)}, below in {outcomes.count(-1)} of {len(outcomes)} "
                   "(dataset, N, baseline) comparisons",
                   "Welch t of GGA vs the baseline, p < 0.05 above in at least half of the comparisons",
                   _tally(outcomes), V.majority(outcomes, int(left_out)))


def finding_gga_matches_pa(fig6: pd.DataFrame, table1: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1,
                           dataset: str = "inat18", n: int = 3) -> dict:
    claim = f"GGA with {n} adapters matches all parallel adapters on {dataset}"
    criterion = "GGA - PA >= -1 pooled std (behind by > 2 pooled std: not reproduced)"
    ab = fig6[(fig6.panel == "ab") & (fig6.dataset == dataset)]
    gga = ab[(ab.selection == "gga") & (ab.n_adapters == n)]
    pa = table1[(table1.method == "parallel_all") & (table1.dataset == dataset)]
    paper = "yes (iNat18: N = 3; Places365: N = 12)"
    if gga.empty or pa.empty:
        return _record("Fig. 6a", claim, paper, "not in this run", criterion, "-", V.INCONCLUSIVE)
    g, p = gga.iloc[0], pa.iloc[0]
    if _bad(g, health) or _bad(p, health):
        return _record("Fig. 6a", claim, paper, "a run collapsed", criterion, "-", V.DIVERGED)
    pooled = V.pooled_std([g["std"], p["std"]], [_seeds(gga, seeds).iloc[0], _seeds(pa, seeds).iloc[0]])
    diff = g["mean"] - p["mean"]
    return _record("Fig. 6a", claim, paper, f"GGA {_fmt(g['mean'])} vs PA {_fmt(p['mean'])}", criterion,
                   f"difference {_fmt(diff)} points = {_fmt(diff / pooled if pooled else math.nan)} pooled std",
                   V.outcome_verdict(V.match_outcome(diff, pooled)))


def finding_gga_rank(fig6: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """Welch's t of GGA vs FFN-parallel adapters at each rank; majority of the ranks."""
    c = fig6[fig6.panel == "c"]
    c = c.assign(seeds=_seeds(c, seeds))
    ok = _healthy(c, health).dropna(subset=["mean"])
    outcomes, texts = [], []
    for rank, part in ok.groupby("rank"):
        cells = part.set_index("selection")
        if {"gga", "ffn_parallel"} <= set(cells.index):
            outcome, text = _welch_rows(cells.loc["gga"], cells.loc["ffn_parallel"], cells.loc["gga", "seeds"],
                                        cells.loc["ffn_parallel", "seeds"])
            outcomes.append(outcome)
            texts.append(f"r{int(rank)} {_fmt(cells.loc['gga', 'mean'] - cells.loc['ffn_parallel', 'mean'])} ({text})")
    return _record("Fig. 6c", "GGA beats FFN-parallel adapters at every rank, most at low rank", "at all 4 ranks",
                   "GGA - FFN: " + "; ".join(texts), "Welch t, p < 0.05 above at at least half the ranks",
                   _tally(outcomes), V.majority(outcomes, int(len(_healthy(c, health)) < len(c))))


def finding_single_matches_ffn(table5: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """Per rank: one adapter of rank L*r at the best edge - L FFN adapters of rank r, match outcome."""
    ok = _healthy(table5, health).dropna(subset=["all_parallel_ffn_mean", "single_best_mean"])
    outcomes, texts = [], []
    for r in ok.itertuples():
        pooled = V.pooled_std([r.all_parallel_ffn_std, r.single_best_std], [seeds, seeds])
        diff = r.single_best_mean - r.all_parallel_ffn_mean
        outcomes.append(V.match_outcome(diff, pooled))
        texts.append(f"r{r.rank} {_fmt(diff)} ({_fmt(diff / pooled if pooled else math.nan)} pooled std)")
    return _record("Table 5", "one adapter of rank L*r at the best edge matches L FFN-parallel adapters of rank r",
                   "at all 4 ranks (within 0.3 points)", "single - FFN: " + "; ".join(texts),
                   "single - FFN >= -1 pooled std at at least half the ranks (< -2 pooled std: not)",
                   _tally(outcomes), V.majority(outcomes, int(len(_healthy(table5, health)) < len(table5))))


def finding_linear(fig8: pd.DataFrame, health: Health = HEALTHY) -> list[dict]:
    """Spearman of linear vs non-linear single-adapter accuracy over the edges, and a sign test of
    linear > non-linear over the edges (ties left out); edges with a collapsed run are left out."""
    ok = fig8
    for column in ("run_ids_linear", "run_ids_nonlinear"):
        ok = _healthy(ok, health, column)
    gone = len(ok) < 3 <= len(fig8)
    rho, p = V.spearman(ok.mean_linear, ok.mean_nonlinear)
    diff = (ok.mean_linear - ok.mean_nonlinear).dropna()
    above, below = int((diff > 0).sum()), int((diff < 0).sum())
    p_sign = V.sign_test(above, below)
    return [
        _record("Fig. 8", "linear and non-linear single adapters rank the edges alike", "high Pearson and Spearman",
                f"Spearman {_fmt(rho)} over {len(ok)} edges", "Spearman rho > 0 at p < 0.05 (< 0 at p < 0.05: not)",
                f"rho={_fmt(rho)}, p={_fmt(p, 3)}", V.DIVERGED if gone else V.outcome_verdict(V.test_outcome(rho, p))),
        _record("Fig. 8", "linear adapters outperform non-linear ones at most edges", "most points below the diagonal",
                f"linear above at {above}, below at {below} of {len(diff)} edges",
                "two-sided sign test over the edges, p < 0.05 (majority the other way: not reproduced)",
                f"sign test p={_fmt(p_sign, 3)}",
                V.DIVERGED if gone else V.outcome_verdict(V.test_outcome(above - below, p_sign))),
    ]


def finding_activations(fig9: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> list[dict]:
    data = _healthy(fig9.assign(seeds=_seeds(fig9, seeds)), health).dropna(subset=["mean"])
    left_out = len(_healthy(fig9, health)) < len(fig9)
    outcomes, texts = [], []
    for n, part in data.groupby("n_adapters"):
        if len(part) < 2:
            continue
        f, p = V.anova(part["mean"].tolist(), part["std"].tolist(), part["seeds"].tolist())
        spread = part["mean"].max() - part["mean"].min()
        outcomes.append(-V.effect_outcome(p, spread, _pooled(part)))  # the claim is "no effect"
        texts.append(f"N={n} spread {_fmt(spread)} (F={_fmt(f)}, p={_fmt(p, 3)})")
    out = [_record("Fig. 9", "GELU, ReLU and identity adapters perform similarly", "similar", "; ".join(texts),
                   "per N: similar when the ANOVA p >= 0.05 and the spread <= 2 pooled std, different at p < 0.05; "
                   "similar at at least half the N", _tally(outcomes), V.majority(outcomes, int(left_out)))]
    cells = data.set_index(["activation", "n_adapters"])
    ns = sorted(set(data.n_adapters))
    if len(ns) >= 2 and all((a, n) in cells.index for a in ("gelu", "identity") for n in (ns[0], ns[-1])):
        keys = [("gelu", ns[-1]), ("identity", ns[-1]), ("gelu", ns[0]), ("identity", ns[0])]
        rows = [cells.loc[k] for k in keys]
        t, df, p = V.contrast_test([r["mean"] for r in rows], [r["std"] for r in rows],
                                   [int(r["seeds"]) for r in rows], [1, -1, -1, 1])
        first, last = rows[2]["mean"] - rows[3]["mean"], rows[0]["mean"] - rows[1]["mean"]
        out.append(_record("Fig. 9", "the non-linearity matters more with more adapters", "yes",
                           f"GELU - identity: {_fmt(first)} at N={ns[0]}, {_fmt(last)} at N={ns[-1]}",
                           "t test (Welch-Satterthwaite) of the growth of the gap, p < 0.05",
                           f"t={_fmt(t)}, p={_fmt(p, 3)}", V.outcome_verdict(V.test_outcome(t, p))))
    elif left_out:
        out.append(_record("Fig. 9", "the non-linearity matters more with more adapters", "yes", "runs collapsed",
                           "t test of the growth of the gap, p < 0.05", "-", V.DIVERGED))
    return out


def finding_table7(table7: pd.DataFrame, paper7: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> list[dict]:
    ours = table7.rename(columns={"accuracy_mean": "mean", "accuracy_std": "std"})
    ours = ours.assign(seeds=_seeds(ours, seeds)).set_index("method")
    # the paper's rows carry the number of draws: extended_no_recurrent_max20, ..._max100
    theirs = paper7.assign(method=paper7.method.str.replace(r"_max\d+$", "_max", regex=True)).set_index("method").accuracy_mean

    def compare(a, b):
        if a not in ours.index or b not in ours.index:
            return None, "missing"
        if _bad(ours.loc[a], health) or _bad(ours.loc[b], health):
            return "diverged", "a run collapsed"
        if not V.finite(ours.loc[a, "mean"], ours.loc[b, "mean"]):
            return None, "missing"
        return _welch_rows(ours.loc[a], ours.loc[b], ours.loc[a, "seeds"], ours.loc[b, "seeds"])

    def mean(m):
        return ours.loc[m, "mean"] if m in ours.index else math.nan

    best, first, last = "extended_no_recurrent_max", "first_k", "last_k"
    (o1, t1), (o2, t2), (o3, t3) = compare(best, first), compare(best, last), compare(first, last)
    both = [o1, o2]
    if "diverged" in both:
        v_best = V.DIVERGED
    elif None in both:
        v_best = V.INCONCLUSIVE
    else:
        v_best = V.REPRODUCED if both == [1, 1] else V.NOT_REPRODUCED if -1 in both else V.INCONCLUSIVE
    v_first = V.DIVERGED if o3 == "diverged" else V.INCONCLUSIVE if o3 is None else V.outcome_verdict(o3)
    return [_record("Table 7", "the best random non-recurrent placement beats first-k and last-k",
                    f"{_fmt(theirs[best])} vs {_fmt(theirs[first])} / {_fmt(theirs[last])}",
                    f"{_fmt(mean(best))} vs {_fmt(mean(first))} / {_fmt(mean(last))}",
                    "Welch t above both at p < 0.05 (below either at p < 0.05: not reproduced; the best draw is "
                    "picked by test accuracy, as the paper does)", f"vs first-k {t1}; vs last-k {t2}", v_best),
            _record("Table 7", "first-k beats last-k on SST2", f"{_fmt(theirs[first])} vs {_fmt(theirs[last])}",
                    f"{_fmt(mean(first))} vs {_fmt(mean(last))}", "Welch t, p < 0.05", t3, v_first)]


def finding_transfer(table8: pd.DataFrame, paper8: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """Tailored vs transferred placement. Judged only when the tailored placement was chosen without
    looking at test (a ``selected_on`` column: "val", or "train_loss" as ``analysis.table8`` does):
    chosen by test accuracy, delta > 0 would hold by construction, so that is inconclusive."""
    claim = "a placement transferred from the other text task falls short of the tailored one"
    paper = ", ".join(f"{r.dataset} delta {_fmt(r.delta)}" for r in paper8.itertuples())
    valid = table8.dropna(subset=["tailored_mean", "transfer_mean"])
    ours = ", ".join(f"{r.dataset} delta {_fmt(r.delta)}" for r in valid.itertuples())
    if len(_healthy(table8, health)) < len(table8):
        return _record("Table 8", claim, paper, ours, "-", "a run collapsed", V.DIVERGED)
    # chosen without looking at test: on validation, or by train loss (analysis.best_by_train_loss)
    on_val = "selected_on" in valid and valid.selected_on.isin(["val", "train_loss"]).all() and len(valid)
    if not on_val:
        return _record("Table 8", claim, paper, ours,
                       "needs the tailored placement chosen on validation; it is chosen by test accuracy here, so "
                       "delta > 0 by construction", "not judged", V.INCONCLUSIVE)
    outcomes, texts = [], []
    for r in valid.itertuples():
        t, df, p = V.welch(r.tailored_mean, r.tailored_std, seeds, r.transfer_mean, r.transfer_std, seeds)
        outcomes.append(V.test_outcome(t, p))
        texts.append(f"{r.dataset} t={_fmt(t)}, p={_fmt(p, 3)}")
    return _record("Table 8", claim, paper, ours, "Welch t of tailored vs transfer, p < 0.05, on at least half the datasets",
                   "; ".join(texts), V.majority(outcomes))


def finding_all_edges(fig15: pd.DataFrame, health: Health = HEALTHY, seeds: int = 1) -> dict:
    """The best random placement vs all n^2 adapters, told apart by their setup name (not row order)."""
    claim = "all n^2 adapters at once do not beat the best random placement"
    criterion = "Welch t: best random above all n^2 at p < 0.05 (all n^2 above at p < 0.05: not reproduced)"
    data = fig15.assign(seeds=_seeds(fig15, seeds))
    best = data[data.setup.str.startswith("best random")]
    everything = data[data.setup == "all n^2 adapters"]
    if best.empty or everything.empty:
        return _record("Fig. 15", claim, "yes (SST2)", "not in this run", criterion, "-", V.INCONCLUSIVE)
    b, a = best.iloc[0], everything.iloc[0]
    ours = f"all {_fmt(a['mean'])} vs best random {_fmt(b['mean'])}"
    if _bad(b, health) or _bad(a, health):
        return _record("Fig. 15", claim, "yes (SST2)", ours, criterion, "a run collapsed (train loss at ln C)", V.DIVERGED)
    outcome, text = _welch_rows(b, a, b["seeds"], a["seeds"])
    return _record("Fig. 15", claim, "yes (SST2)", ours, criterion, text, V.outcome_verdict(outcome))


def finding_scoring_cost(appk: pd.DataFrame) -> dict:
    """A measured cost, not a seed-noise quantity: the ratio decides (one measurement per dataset)."""
    scoring = appk[appk["item"] == "scoring (GGA)"]
    ratio = (scoring.measured_seconds / scoring.training_run_seconds).median() if len(scoring) else math.nan
    verdict = V.INCONCLUSIVE if not V.finite(ratio) else V.REPRODUCED if ratio < 0.01 else V.NOT_REPRODUCED
    return _record("App. K", "scoring all n^2 edges costs little next to training",
                   "0.12% (110 TFLOPs vs 90 PFLOPs of training forward passes, ViT-B, 20000 steps)",
                   f"scoring (gradients + SVDs) takes {_fmt(100 * ratio, 1)}% of one training run of parallel "
                   "adapters (median over datasets; measured seconds)",
                   "< 1% (depends on the run length: short runs make it larger)", f"ratio {_fmt(ratio, 4)}", verdict)


# ---------------------------------------------------------------- beyond the paper: placement search

SEARCH_METHOD_TEXT = {
    "random": "Random placement (a seeded draw of N of the n^2 edges)",
    "parallel_all": "Parallel adapters on all 2L parallel edges",
    "iterative_gga": "Iterative GGA (rounds of GGA, re-scored after a short training phase)",
    "edge_switch": "Learnable edge switch (Gumbel-softmax gates on candidate edges, the top N kept)",
    "prune_magnitude": "Prune and regrow, magnitude criterion (|alpha| ||W_up W_down||)",
    "prune_taylor": "Prune and regrow, Taylor criterion (|alpha dL/dalpha|)",
}


def search_comparison(table: pd.DataFrame, method: str) -> dict:
    """``method`` against GGA at each (dataset, N) both ran at (parallel_all, which has one N, against
    GGA's largest N): accuracy difference in points, whether it is clear (more than the two seed
    stds together), and the ratio of total compute (seconds, GFLOPs)."""
    gga = table[table.method == "gga"].set_index(["dataset", "n_adapters"])
    rows = []
    for r in table[table.method == method].itertuples():
        key = (r.dataset, r.n_adapters)
        if method == "parallel_all" and key not in gga.index:
            counts = [n for d, n in gga.index if d == r.dataset]
            key = (r.dataset, max(counts)) if counts else key
        if key not in gga.index:
            continue
        g = gga.loc[key]
        diff = r.mean - g["mean"]
        noise = np.nan_to_num(r.std) + np.nan_to_num(g["std"])
        rows.append({"dataset": r.dataset, "n": int(r.n_adapters), "gga_n": int(key[1]), "diff": diff,
                     "clear": bool(abs(diff) > noise), "seconds_ratio": r.total_seconds / g["total_seconds"],
                     "gflops_ratio": r.total_gflops / g["total_gflops"]})
    return {"method": method, "points": rows}


def search_paragraph(comparison: dict) -> str:
    """One paragraph: where the method beats GGA and where it does not, from these numbers."""
    points, method = comparison["points"], comparison["method"]
    name = SEARCH_METHOD_TEXT.get(method, method)
    if not points:
        return f"**{name}**: no point to compare with GGA in this run."
    def where(rows):
        return ", ".join(f"{p['dataset']} N={p['n']} ({p['diff']:+.1f}{'' if p['clear'] else ', within noise'})"
                         for p in rows) or "nowhere"
    wins = [p for p in points if p["diff"] > 0]
    losses = [p for p in points if p["diff"] <= 0]
    seconds = float(np.median([p["seconds_ratio"] for p in points]))
    gflops = float(np.median([p["gflops_ratio"] for p in points]))
    behind = f"it does not at {where(losses)}" if losses else "it is never behind"
    return (f"**{name}** beats GGA at {len(wins)} of {len(points)} points: {where(wins)}; {behind} "
            f"(test accuracy difference in points; 'within noise' when it is smaller than the two "
            f"seed stds together). Its selection plus training costs {seconds:.2f}x GGA's measured seconds and "
            f"{gflops:.2f}x its analytic FLOPs (median over the points).")


def search_section(table: pd.DataFrame, results: str) -> list[str]:
    methods = [m for m in dict.fromkeys(table.method) if m != "gga"]
    return ["## Beyond the paper: placement search", "",
            f"Each method picks N adapters; the placement is then trained as every final run (`{results}/tables/"
            "table_search.csv`: test accuracy % over seeds, mean selection and training compute; `search_run_ids`"
            " are the searches' MLflow runs). Compared with the paper's GGA at the same dataset and N:", "",
            *[line for m in methods for line in (search_paragraph(search_comparison(table, m)), "")],
            markdown(table.drop(columns=["run_ids", "search_run_ids"])), ""]


# ---------------------------------------------------------------- the report

def _read(paths: list[str], stem: str) -> pd.DataFrame:
    for path in paths:
        if Path(path).stem == stem:
            return pd.read_csv(path)
    raise FileNotFoundError(f"no {stem}.csv among the inputs")


def findings(tables: list[str], figure_data: list[str], paper: list[str], health: Health = HEALTHY,
             seeds: int = 1, scores_dataset: str = "inat18") -> pd.DataFrame:
    """Every finding of the paper, one row each (FINDING_COLUMNS), from the pipeline's tables."""
    t = lambda stem: _read(tables, stem)  # noqa: E731
    f = lambda stem: _read(figure_data, stem)  # noqa: E731
    p = lambda stem: _read(paper, stem)  # noqa: E731
    h, n = health, seeds
    fig5, table4 = f("fig5"), t("table4")
    grid_edges = int(fig5["edges"].min()) if len(fig5) else 0
    score_edges = int(table4["edges"].min()) if "edges" in table4 and len(table4) else grid_edges
    out = [finding_single_placement_matters(f("fig1"), h, n), finding_mha_ffn(f("fig1"), h, n),
           finding_recurrent_best(t("table3"), p("table3_best_single_by_type"), h, n),
           finding_single_vs_parallel(t("table3"), t("table1"), h, n),
           finding_dataset_correlation(f("fig4"), grid_edges, h),
           finding_random_beats_parallel(t("table1"), p("table1"), h, n),
           finding_adapters_vs_probe(t("table1"), p("table1"), h, n),
           finding_srank_accuracy(fig5, p("table4_aggregation_inat18"), h), finding_srank_loss(fig5, h),
           finding_srank_best_function(table4, p("table4_aggregation_inat18"), h, scores_dataset),
           finding_head_steps(f("fig13"), p("figure13_eta_nsteps_inat18"), score_edges, h, scores_dataset),
           finding_gga_small_n(f("fig6"), h, n), finding_gga_matches_pa(f("fig6"), t("table1"), h, n),
           finding_gga_rank(f("fig6"), h, n), finding_single_matches_ffn(t("table5"), h, n)]
    out += finding_linear(f("fig8"), h) + finding_activations(f("fig9"), h, n)
    out += finding_table7(t("table7"), p("table7_sst2_nonrecurrent"), h, n)
    out += [finding_transfer(t("table8"), p("table8_transfer"), h, n), finding_all_edges(f("fig15"), h, n),
            finding_scoring_cost(t("appK"))]
    return pd.DataFrame(out, columns=FINDING_COLUMNS)


REPORT_TABLES = ["table1", "table2", "table3", "table4", "table5", "table6", "table7", "table8", "appK"]


def _table_section(name: str, inputs: Mapping, results: str) -> list[str]:
    """One table: "this run | paper" per cell (analysis.side_by_side, paper from paper/*.csv), then
    this run's table in full. Tables the run does not have (an older DAG) are skipped."""
    from .analysis import PAPER_TABLE, SIDE_BY_SIDE, TABLE_TITLES

    if not any(Path(p).stem == name for p in inputs["tables"]):
        return []
    ours = _read(inputs["tables"], name)
    lines = [f"## {TABLE_TITLES.get(name, name)}", ""]
    stem = PAPER_TABLE.get(name)
    if name in SIDE_BY_SIDE:
        paper = _read(inputs["paper"], stem) if stem and any(Path(p).stem == stem for p in inputs["paper"]) else None
        from .analysis import side_by_side

        lines += ["Cells: this run | paper (`paper/*.csv`).", "", markdown(side_by_side(name, ours, paper)), ""]
    return lines + [f"This run in full (`{results}/tables/{name}.csv`):", "", markdown(ours), ""]


def learnt(table1: pd.DataFrame, chance: Mapping[str, float], health: Health = HEALTHY, seeds: int = 1) -> pd.DataFrame:
    """Per dataset: chance level (100 / classes), LP / PA / FT (%), the pooled seed std of those three
    cells, and ``learnt``: parallel adapters reach chance + 15 points, are above chance by more than
    2 pooled seed std, and none of their runs collapsed (issue 12's bar for a stand-in task).
    ``learnt`` is empty when the dataset's chance level is unknown or PA did not run."""
    rows = []
    for dataset, part in table1.groupby("dataset", sort=False):
        part = part.assign(seeds=_seeds(part, seeds)).set_index("method")
        level = chance.get(dataset, math.nan)
        cells = part.loc[[m for m in ("linear_probe", "parallel_all", "full_ft") if m in part.index]]
        pooled = _pooled(cells.dropna(subset=["mean"]))
        pa = part["mean"].get("parallel_all", math.nan)
        bad = [m for m in cells.index if _bad(cells.loc[m], health)]
        above = pa - level
        ok = V.finite(level, pa)
        rows.append({"dataset": dataset, "chance": level,
                     **{m: part["mean"].get(m, math.nan) for m in ("linear_probe", "parallel_all", "full_ft")},
                     "pooled_seed_std": pooled, "parallel_above_chance": above, "diverged": " ".join(bad),
                     "learnt": (bool(above >= LEARNT_MARGIN and V.difference_outcome(above, pooled) == 1
                                     and "parallel_all" not in bad) if ok else None)})
    return pd.DataFrame(rows, columns=LEARNT_COLUMNS)


def render(spec: Mapping, inputs: Mapping, output_path: str, results: pd.DataFrame, learnt_frame: pd.DataFrame) -> str:
    """REPORT.md; its findings and "what this run learnt" tables are the given frames (the CSVs)."""
    out_dir = os.path.dirname(output_path) or "."
    counts = {v: int((results.verdict == v).sum()) for v in V.VERDICTS}
    lines = ["# Reproduction report: Towards Optimal Adapter Placement for Efficient Transfer Learning", "",
             "Generated by `snakemake report` from this run's tables and figures; the paper's numbers are",
             "transcribed in `paper/*.csv`. Models: " + ", ".join(f"`{m}` = `{s}`" for m, s in spec["model_specs"].items())
             + f"; seeds {spec['seeds']}. Every cell's MLflow runs are in the tables' `run_ids` column (below: the",
             "first 8 characters; the CSVs hold the full ids):",
             f"`mlflow ui --backend-store-uri {spec['tracking_uri']}` (experiments = tables and figures).", "",
             "Learning rates are selected once per dataset and method family (linear probe, full fine-tuning,",
             "adapters) on a reference placement (LP, FT, parallel adapters on all 2L parallel edges), by",
             "validation accuracy; every final run of that family uses it (see the last section).", "",
             *_learnt_section(learnt_frame, spec["results"]),
             f"## Findings: {counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced, "
             f"{counts[INCONCLUSIVE]} inconclusive, {counts[DIVERGED]} diverged", "",
             f"(`{spec['results']}/tables/findings.csv`.) A verdict is decided only against the seed noise: a "
             "difference beyond 2 pooled seed std, or a test at p < 0.05 in either direction; otherwise it is "
             "inconclusive. A cell whose runs kept the chance-level train loss (within 5% of ln C) is left out, "
             "and a finding with nothing else to rest on is diverged.", "",
             markdown(results[FINDING_COLUMNS]), ""]
    for name in REPORT_TABLES:
        lines += _table_section(name, inputs, spec["results"])
    if any(Path(p).stem == "table_search" for p in inputs["tables"]):
        lines += search_section(_read(inputs["tables"], "table_search"), spec["results"])
    lines += ["## Figures", ""]
    for path in inputs["figures"]:
        stem = Path(path).stem
        rel = os.path.relpath(path, out_dir)
        lines += [f"### {stem}", "", f"![{stem}]({rel}) ([PDF]({rel[:-4]}.pdf), data: "
                  f"`{spec['results']}/figure_data/{stem}.csv`)", ""]
    lines += ["## Learning rates selected on the validation split", ""]
    choices = [json.loads(Path(p).read_text()) for p in inputs["lr"]]
    lines += [markdown(pd.DataFrame([{k: c[k] for k in ("dataset", "model", "family", "lr", "steps")} |
                                     {"candidates": len(c["candidates"])} for c in choices])), ""]
    return "\n".join(lines)


def _learnt_section(frame: pd.DataFrame, results: str) -> list[str]:
    stuck = frame.loc[frame.learnt == False, "dataset"].tolist()  # noqa: E712 (None: no chance level)
    note = (f"Parallel adapters did not clearly learn {', '.join(stuck)}: the findings that rest on these "
            "datasets compare noise, whatever their verdict." if stuck else "Parallel adapters learnt every dataset.")
    return ["## What this run learnt (Table 1, test accuracy %)", "",
            f"`{results}/tables/learnt.csv`. learnt: parallel adapters reach chance + {LEARNT_MARGIN:g} points, "
            "are above chance by more than 2 pooled seed std (of the LP, PA and FT cells), and none of their runs "
            "collapsed.", "", markdown(frame), "", note, ""]


def health_of(inputs: Mapping, chance: Mapping[str, float]) -> Health:
    """Which runs collapsed, from the batch files the report reads (none given: no run known collapsed)."""
    paths = inputs.get("runs") or []
    return health_from_runs(load_runs(paths), classes_from_chance(chance)) if paths else HEALTHY


def write_report(spec: Mapping, inputs: Mapping, outputs: Mapping) -> None:
    """findings.csv, learnt.csv and REPORT.md (rendered from those two frames)."""
    from .analysis import write_frame

    chance, seeds = spec.get("chance", {}), len(spec["seeds"])
    health = health_of(inputs, chance)
    results = findings(inputs["tables"], inputs["figure_data"], inputs["paper"], health, seeds,
                       spec.get("scores_dataset", "inat18"))
    learnt_frame = learnt(_read(inputs["tables"], "table1"), chance, health, seeds)
    if outputs.get("findings"):
        write_frame(results, outputs["findings"])
    if outputs.get("learnt"):
        write_frame(learnt_frame, outputs["learnt"])
    text = render(spec, inputs, outputs["report"], results, learnt_frame)
    with atomic.atomic_path(outputs["report"]) as tmp:
        tmp.write_text(text)
