"""results/REPORT.md: the reproduced tables next to the paper's, every figure, and one line per
finding of the paper saying whether this run reproduced it.

Every number of "this run" is computed here from the tables and figure data the pipeline wrote;
the paper's numbers come from ``paper/*.csv`` (transcribed from the paper). A finding's verdict is
"reproduced", "not reproduced" or "n/a" (not enough data, e.g. NaN correlations of a tiny run),
with the criterion stated next to it.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np
import pandas as pd

from . import atomic
from .analysis import markdown

REPRODUCED, NOT_REPRODUCED, NOT_AVAILABLE = "reproduced", "not reproduced", "n/a"


def _verdict(condition: Optional[bool]) -> str:
    if condition is None:
        return NOT_AVAILABLE
    return REPRODUCED if condition else NOT_REPRODUCED


def _fmt(value: float, digits: int = 2) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _finite(*values) -> bool:
    return all(v is not None and np.isfinite(v) for v in values)


# ---------------------------------------------------------------- findings: one function each

def finding_single_placement_matters(fig1: pd.DataFrame) -> dict:
    rows, best = [], {}
    for dataset, part in fig1.groupby("dataset", sort=False):
        spread, noise = part["mean"].max() - part["mean"].min(), part["std"].mean()
        rows.append(spread > 2 * noise)
        best[dataset] = int(part.loc[part["mean"].idxmax(), "position"])
    k, distinct = sum(rows), len(set(best.values()))
    return {"figure": "Fig. 1", "claim": "the position of a single parallel adapter changes test accuracy, and the best position is task dependent",
            "paper": "qualitative (Fig. 1)",
            "ours": f"spread over positions > 2x seed std on {k} of {len(rows)} datasets; best positions {best}",
            "criterion": "spread > 2x noise on at least half the datasets and more than one best position",
            "verdict": _verdict(k >= len(rows) / 2 and distinct > 1 if rows else None)}


def finding_recurrent_best(table3: pd.DataFrame, paper3: pd.DataFrame) -> dict:
    def count(frame, value="mean"):
        hits, total = 0, 0
        for _, part in frame.groupby("dataset"):
            top = part.loc[part[value].idxmax()] if part[value].notna().any() else None
            rec = part[part.adapter_type == "recurrent"]
            if top is None or rec.empty or not np.isfinite(rec[value].iloc[0]):
                continue
            total += 1
            hits += rec[value].iloc[0] >= top[value] - (top["std"] if np.isfinite(top["std"]) else 0)
        return hits, total

    ours, total = count(table3)
    theirs, paper_total = count(paper3)
    return {"figure": "Table 3", "claim": "the best single adapter is recurrent, or within one std of the best, on most datasets",
            "paper": f"{theirs} of {paper_total} datasets", "ours": f"{ours} of {total} datasets",
            "criterion": "recurrent best (within one std) on at least half the datasets",
            "verdict": _verdict(ours >= total / 2 if total else None)}


def finding_single_vs_parallel(table3: pd.DataFrame, table1: pd.DataFrame) -> dict:
    pa = table1[table1.method == "parallel_all"].set_index("dataset")
    best = table3.groupby("dataset")["mean"].max() * 100
    hits = [d for d in best.index if d in pa.index and _finite(best[d], pa.loc[d, "mean"])
            and best[d] >= pa.loc[d, "mean"] - pa.loc[d, "std"]]
    return {"figure": "Fig. 3", "claim": "one well-placed adapter can match or beat 2L parallel adapters on some datasets (iNat18, dSpr-Loc)",
            "paper": "iNat18, dSpr-Loc", "ours": f"{len(hits)} of {len(best)} datasets: {', '.join(hits) or 'none'}",
            "criterion": "best single >= PA - std on at least one dataset",
            "verdict": _verdict(len(hits) >= 1 if len(best) else None)}


def finding_dataset_correlation(fig4: pd.DataFrame) -> dict:
    off = fig4[fig4.dataset_a < fig4.dataset_b].dropna(subset=["spearman"])
    pair = off[((off.dataset_a == "inat18") & (off.dataset_b == "places365"))]
    others = off.drop(pair.index)
    if pair.empty or others.empty:
        return {"figure": "Fig. 4", "claim": "single-adapter accuracies correlate weakly across datasets, except iNat18 / Places365",
                "paper": "qualitative (Fig. 4)", "ours": "not enough data", "criterion": "-", "verdict": NOT_AVAILABLE}
    rho, median = pair.spearman.iloc[0], others.spearman.median()
    return {"figure": "Fig. 4", "claim": "single-adapter accuracies correlate weakly across datasets, except iNat18 / Places365",
            "paper": "qualitative (Fig. 4)", "ours": f"rho(inat18, places365) = {_fmt(rho)}, median of the other pairs {_fmt(median)}",
            "criterion": "the iNat18/Places365 correlation exceeds the median of the other pairs",
            "verdict": _verdict(bool(rho > median))}


def _beats(frame: pd.DataFrame, better: str, worse: str) -> tuple[int, int, list]:
    wide = frame.pivot_table(index="dataset", columns="method", values="mean")
    if better not in wide or worse not in wide:
        return 0, 0, []
    valid = wide[[better, worse]].dropna()
    hits = list(valid.index[valid[better] > valid[worse]])
    return len(hits), len(valid), hits


def finding_random_beats_parallel(table1: pd.DataFrame, paper1: pd.DataFrame) -> dict:
    k, total, hits = _beats(table1, "extended_max", "parallel_all")
    pk, ptotal, _ = _beats(paper1, "extended_max_24", "parallel_24")
    return {"figure": "Table 1", "claim": "the best of the random 2L-adapter placements beats parallel adapters",
            "paper": f"on {pk} of {ptotal} datasets", "ours": f"on {k} of {total} datasets ({', '.join(hits) or 'none'})",
            "criterion": "on at least half the datasets",
            "verdict": _verdict(k >= total / 2 if total else None)}


def finding_adapters_vs_probe(table1: pd.DataFrame, paper1: pd.DataFrame) -> dict:
    k, total, _ = _beats(table1, "parallel_all", "linear_probe")
    pk, ptotal, _ = _beats(paper1, "parallel_24", "linear_probe")
    return {"figure": "Table 1", "claim": "parallel adapters beat the linear probe",
            "paper": f"on {pk} of {ptotal} datasets", "ours": f"on {k} of {total} datasets",
            "criterion": "on at least half the datasets", "verdict": _verdict(k >= total / 2 if total else None)}


def finding_srank_accuracy(fig5: pd.DataFrame, paper4: pd.DataFrame) -> dict:
    rho = fig5.set_index("dataset").test_accuracy_spearman
    p = fig5.set_index("dataset").test_accuracy_p
    valid = rho.dropna()
    positive, significant = int((valid > 0).sum()), int(((valid > 0) & (p[valid.index] < 0.05)).sum())
    paper_rho = paper4.set_index("function").loc["srank_eta0.01", "test_accuracy_spearman"]
    listed = ", ".join(f"{d} {_fmt(v)}" for d, v in rho.items())
    return {"figure": "Fig. 5", "claim": "srank of the gradient correlates with single-adapter test accuracy",
            "paper": f"Spearman rho = {_fmt(paper_rho)} on iNat18 (Table 4); lower on dSpr, SVHN, SST2",
            "ours": f"Spearman rho: {listed}; positive on {positive} of {len(valid)}, p < 0.05 on {significant}",
            "criterion": "positive on more than half the datasets and significant on at least one",
            "verdict": _verdict(positive > len(valid) / 2 and significant >= 1 if len(valid) else None)}


def finding_srank_loss(fig5: pd.DataFrame) -> dict:
    rho = fig5.set_index("dataset").train_loss_spearman.dropna()
    negative = int((rho < 0).sum())
    return {"figure": "Fig. 11", "claim": "edges with a higher gradient srank reach a lower train loss",
            "paper": "Spearman rho = -0.93 on iNat18 (Table 4)",
            "ours": "; ".join(f"{d} {_fmt(v)}" for d, v in rho.items()) + f" (negative on {negative} of {len(rho)})",
            "criterion": "negative on more than half the datasets",
            "verdict": _verdict(negative > len(rho) / 2 if len(rho) else None)}


def finding_srank_best_function(table4: pd.DataFrame, paper4: pd.DataFrame) -> dict:
    valid = table4.dropna(subset=["test_accuracy_spearman", "train_loss_spearman"])
    if valid.empty or "srank" not in set(valid.function):
        return {"figure": "Table 4", "claim": "srank correlates best of the six score functions", "paper": "srank: 0.82 / -0.93",
                "ours": "not enough data", "criterion": "-", "verdict": NOT_AVAILABLE}
    best_acc = valid.loc[valid.test_accuracy_spearman.idxmax(), "function"]
    best_loss = valid.loc[valid.train_loss_spearman.idxmin(), "function"]
    srank = valid.set_index("function").loc["srank"]
    paper = paper4.set_index("function").loc["srank_eta0.01"]
    return {"figure": "Table 4", "claim": "of the six score functions, srank correlates best with test accuracy and train loss",
            "paper": f"srank: test {_fmt(paper.test_accuracy_spearman)}, train loss {_fmt(paper.train_loss_spearman)} (both the best)",
            "ours": f"srank: test {_fmt(srank.test_accuracy_spearman)}, train loss {_fmt(srank.train_loss_spearman)}; "
                    f"best for test: {best_acc}, for train loss: {best_loss}",
            "criterion": "srank is the best function for both",
            "verdict": _verdict(best_acc == "srank" and best_loss == "srank")}


def finding_head_steps(fig13: pd.DataFrame, paper13: pd.DataFrame) -> dict:
    def gain(frame):
        part = frame[np.isclose(frame.eta, 0.01)].sort_values("n_steps")
        if len(part) < 2 or not _finite(part.test_acc_corr.iloc[0], part.test_acc_corr.iloc[-1]):
            return None
        return abs(part.test_acc_corr.iloc[-1]) - abs(part.test_acc_corr.iloc[0])

    ours, theirs = gain(fig13), gain(paper13)
    return {"figure": "Fig. 13", "claim": "a longer head pre-training gives a better srank/accuracy correlation",
            "paper": f"|rho| gains {_fmt(theirs)} from the shortest to the longest (eta 0.01)",
            "ours": f"|rho| gains {_fmt(ours)}" if ours is not None else "not enough data",
            "criterion": "|rho| at the longest head pre-training >= at the shortest",
            "verdict": _verdict(None if ours is None else ours >= 0)}


def finding_gga_small_n(fig6: pd.DataFrame, small: int = 6) -> dict:
    ab = fig6[fig6.panel == "ab"]
    wins, total = 0, 0
    for (dataset, n), part in ab[ab.n_adapters <= small].groupby(["dataset", "n_adapters"]):
        means = part.set_index("selection")["mean"]
        if "gga" not in means or not np.isfinite(means["gga"]):
            continue
        for other, value in means.drop("gga").items():
            if np.isfinite(value):
                total += 1
                wins += means["gga"] >= value
    return {"figure": "Fig. 6a/b", "claim": f"GGA beats top-k, random, first-k and last-k with few adapters (N <= {small})",
            "paper": "GGA best at small N on iNat18 and Places365",
            "ours": f"GGA >= the baseline in {wins} of {total} (dataset, N, baseline) comparisons",
            "criterion": "in at least half of them", "verdict": _verdict(wins >= total / 2 if total else None)}


def finding_gga_matches_pa(fig6: pd.DataFrame, table1: pd.DataFrame, dataset: str = "inat18", n: int = 3) -> dict:
    ab = fig6[(fig6.panel == "ab") & (fig6.dataset == dataset)]
    gga = ab[(ab.selection == "gga") & (ab.n_adapters == n)]
    pa = table1[(table1.method == "parallel_all") & (table1.dataset == dataset)]
    if gga.empty or pa.empty:
        return {"figure": "Fig. 6a", "claim": f"GGA with {n} adapters matches parallel adapters on {dataset}", "paper": "yes",
                "ours": "not in this run", "criterion": "-", "verdict": NOT_AVAILABLE}
    g, p, s = gga["mean"].iloc[0], pa["mean"].iloc[0], pa["std"].iloc[0]
    return {"figure": "Fig. 6a", "claim": f"GGA with {n} adapters matches all parallel adapters on {dataset}",
            "paper": "yes (iNat18: N = 3; Places365: N = 12)", "ours": f"GGA {_fmt(g)} vs PA {_fmt(p)} +- {_fmt(s)}",
            "criterion": "GGA >= PA - std", "verdict": _verdict(bool(g >= p - s) if _finite(g, p, s) else None)}


def finding_gga_rank(fig6: pd.DataFrame) -> dict:
    c = fig6[fig6.panel == "c"].pivot_table(index="rank", columns="selection", values="mean")
    if not {"gga", "ffn_parallel"} <= set(c.columns):
        return {"figure": "Fig. 6c", "claim": "GGA beats FFN-parallel adapters at every rank", "paper": "yes",
                "ours": "not in this run", "criterion": "-", "verdict": NOT_AVAILABLE}
    diff = (c.gga - c.ffn_parallel).dropna()
    wins = int((diff > 0).sum())
    return {"figure": "Fig. 6c", "claim": "GGA beats FFN-parallel adapters at every rank, most at low rank",
            "paper": "at all 4 ranks", "ours": "GGA - FFN: " + ", ".join(f"r{int(r)} {_fmt(v)}" for r, v in diff.items()),
            "criterion": "GGA better at more than half the ranks", "verdict": _verdict(wins > len(diff) / 2 if len(diff) else None)}


def finding_single_matches_ffn(table5: pd.DataFrame) -> dict:
    valid = table5.dropna(subset=["all_parallel_ffn_mean", "single_best_mean"])
    tol = valid[["all_parallel_ffn_std", "single_best_std"]].max(axis=1).fillna(0)
    hits = int((valid.single_best_mean >= valid.all_parallel_ffn_mean - tol).sum())
    return {"figure": "Table 5", "claim": "one adapter of rank L*r at the best edge matches L FFN-parallel adapters of rank r",
            "paper": "at all 4 ranks (within 0.3 points)", "ours": f"at {hits} of {len(valid)} ranks (within one std)",
            "criterion": "at least half the ranks", "verdict": _verdict(hits >= len(valid) / 2 if len(valid) else None)}


def finding_mha_ffn(fig1: pd.DataFrame) -> dict:
    similar, total = 0, 0
    for _, part in fig1.groupby("dataset"):
        wide = part.pivot_table(index="block", columns="sublayer", values="mean")
        if {"MHA", "FFN"} <= set(wide.columns):
            total += 1
            similar += (wide.MHA - wide.FFN).abs().mean() <= 2 * part["std"].mean()
    return {"figure": "Fig. 7", "claim": "MHA vs FFN parallel placement differs little on most datasets",
            "paper": "exceptions: Clevr-Count, dSpr-Loc", "ours": f"difference within 2x seed std on {similar} of {total}",
            "criterion": "on at least half the datasets", "verdict": _verdict(similar >= total / 2 if total else None)}


def finding_linear(fig8: pd.DataFrame) -> list[dict]:
    from .analysis import spearman

    rho, p = spearman(fig8.mean_linear, fig8.mean_nonlinear)
    better = float((fig8.mean_linear > fig8.mean_nonlinear).mean()) if len(fig8) else math.nan
    return [
        {"figure": "Fig. 8", "claim": "linear and non-linear single adapters rank the edges alike",
         "paper": "high Pearson and Spearman", "ours": f"Spearman {_fmt(rho)} (p = {_fmt(p, 3)})",
         "criterion": "rho > 0 and p < 0.05", "verdict": _verdict(bool(rho > 0 and p < 0.05) if _finite(rho, p) else None)},
        {"figure": "Fig. 8", "claim": "linear adapters outperform non-linear ones at most edges",
         "paper": "most points below the diagonal", "ours": f"at {_fmt(100 * better, 0)}% of the edges",
         "criterion": "more than half", "verdict": _verdict(bool(better > 0.5) if _finite(better) else None)},
    ]


def finding_activations(fig9: pd.DataFrame) -> list[dict]:
    wide = fig9.pivot_table(index="n_adapters", columns="activation", values="mean")
    noise = fig9["std"].mean()
    spread = (wide.max(axis=1) - wide.min(axis=1)).mean() if len(wide) else math.nan
    out = [{"figure": "Fig. 9", "claim": "GELU, ReLU and identity adapters perform similarly",
            "paper": "similar", "ours": f"mean spread between activations {_fmt(spread)} points (seed std {_fmt(noise)})",
            "criterion": "spread <= 2x seed std", "verdict": _verdict(bool(spread <= 2 * noise) if _finite(spread, noise) else None)}]
    if {"gelu", "identity"} <= set(wide.columns) and len(wide) >= 2:
        gap = wide.gelu - wide.identity
        out.append({"figure": "Fig. 9", "claim": "the non-linearity matters more with more adapters",
                    "paper": "yes", "ours": f"GELU - identity: {_fmt(gap.iloc[0])} at N={gap.index[0]}, {_fmt(gap.iloc[-1])} at N={gap.index[-1]}",
                    "criterion": "the gap grows from the fewest to the most adapters",
                    "verdict": _verdict(bool(gap.iloc[-1] > gap.iloc[0]) if _finite(gap.iloc[0], gap.iloc[-1]) else None)})
    return out


def finding_table7(table7: pd.DataFrame, paper7: pd.DataFrame) -> list[dict]:
    ours = table7.set_index("method").accuracy_mean
    # the paper's rows carry the number of draws: extended_no_recurrent_max20, ..._max100
    theirs = paper7.assign(method=paper7.method.str.replace(r"_max\d+$", "_max", regex=True)).set_index("method").accuracy_mean
    best = ours.get("extended_no_recurrent_max", math.nan)
    rows = [{"figure": "Table 7", "claim": "the best random non-recurrent placement beats first-k and last-k",
             "paper": f"{_fmt(theirs['extended_no_recurrent_max'])} vs {_fmt(theirs['first_k'])} / {_fmt(theirs['last_k'])}",
             "ours": f"{_fmt(best)} vs {_fmt(ours.get('first_k', math.nan))} / {_fmt(ours.get('last_k', math.nan))}",
             "criterion": "above both", "verdict": _verdict(bool(best > ours["first_k"] and best > ours["last_k"])
                                                           if _finite(best, ours.get("first_k"), ours.get("last_k")) else None)},
            {"figure": "Table 7", "claim": "first-k beats last-k on SST2", "paper": f"{_fmt(theirs['first_k'])} vs {_fmt(theirs['last_k'])}",
             "ours": f"{_fmt(ours.get('first_k', math.nan))} vs {_fmt(ours.get('last_k', math.nan))}", "criterion": "first-k > last-k",
             "verdict": _verdict(bool(ours["first_k"] > ours["last_k"]) if _finite(ours.get("first_k"), ours.get("last_k")) else None)}]
    return rows


def finding_transfer(table8: pd.DataFrame, paper8: pd.DataFrame) -> dict:
    valid = table8.dropna(subset=["delta"])
    return {"figure": "Table 8", "claim": "a placement transferred from the other text task falls short of the tailored one",
            "paper": ", ".join(f"{r.dataset} delta {_fmt(r.delta)}" for r in paper8.itertuples()),
            "ours": ", ".join(f"{r.dataset} delta {_fmt(r.delta)}" for r in valid.itertuples()),
            "criterion": "delta > 0 on both", "verdict": _verdict(bool((valid.delta > 0).all()) if len(valid) else None)}


def finding_all_edges(fig15: pd.DataFrame) -> dict:
    best, everything = fig15["mean"].iloc[0], fig15["mean"].iloc[1]
    return {"figure": "Fig. 15", "claim": "all n^2 adapters at once do not beat the best random placement",
            "paper": "yes (SST2)", "ours": f"all {_fmt(everything)} vs best random {_fmt(best)}",
            "criterion": "all <= best random", "verdict": _verdict(bool(everything <= best) if _finite(best, everything) else None)}


def finding_scoring_cost(appk: pd.DataFrame) -> dict:
    scoring = appk[appk["item"] == "scoring (GGA)"]
    ratio = (scoring.measured_seconds / scoring.training_run_seconds).median() if len(scoring) else math.nan
    return {"figure": "App. K", "claim": "scoring all n^2 edges costs little next to training",
            "paper": "0.12% (110 TFLOPs vs 90 PFLOPs of training forward passes, ViT-B, 20000 steps)",
            "ours": f"scoring (gradients + SVDs) takes {_fmt(100 * ratio, 1)}% of one training run of parallel "
                    "adapters (median over datasets; measured seconds)",
            "criterion": "< 1% (depends on the run length: short runs make it larger)",
            "verdict": _verdict(bool(ratio < 0.01) if _finite(ratio) else None)}


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


def findings(tables: list[str], figure_data: list[str], paper: list[str]) -> list[dict]:
    t = lambda stem: _read(tables, stem)  # noqa: E731
    f = lambda stem: _read(figure_data, stem)  # noqa: E731
    p = lambda stem: _read(paper, stem)  # noqa: E731
    out = [finding_single_placement_matters(f("fig1")), finding_mha_ffn(f("fig1")),
           finding_recurrent_best(t("table3"), p("table3_best_single_by_type")),
           finding_single_vs_parallel(t("table3"), t("table1")), finding_dataset_correlation(f("fig4")),
           finding_random_beats_parallel(t("table1"), p("table1")), finding_adapters_vs_probe(t("table1"), p("table1")),
           finding_srank_accuracy(f("fig5"), p("table4_aggregation_inat18")), finding_srank_loss(f("fig5")),
           finding_srank_best_function(t("table4"), p("table4_aggregation_inat18")),
           finding_head_steps(f("fig13"), p("figure13_eta_nsteps_inat18")),
           finding_gga_small_n(f("fig6")), finding_gga_matches_pa(f("fig6"), t("table1")), finding_gga_rank(f("fig6")),
           finding_single_matches_ffn(t("table5"))]
    out += finding_linear(f("fig8")) + finding_activations(f("fig9")) + finding_table7(t("table7"), p("table7_sst2_nonrecurrent"))
    out += [finding_transfer(t("table8"), p("table8_transfer")), finding_all_edges(f("fig15")),
            finding_scoring_cost(t("appK"))]
    return out


PAPER_FOR_TABLE = {"table1": "table1", "table3": "table3_best_single_by_type", "table4": "table4_aggregation_inat18",
                   "table5": "table5_single_vs_ffn_parallel", "table7": "table7_sst2_nonrecurrent",
                   "table8": "table8_transfer", "appK": None}
TABLE_HEADINGS = {"table1": "Table 1 (test accuracy %, mean ± std over seeds)", "table3": "Table 3 (best single adapter per kind)",
                  "table4": "Table 4 (score functions, Spearman, on the scores dataset)",
                  "table5": "Table 5 (single adapter of rank L*r vs L FFN-parallel adapters, %)",
                  "table7": "Table 7 (random non-recurrent vs first-k / last-k, %)", "table8": "Table 8 (placement transfer, %)",
                  "appK": "App. K (FLOPs, analytic, and measured seconds)"}


def table1_side_by_side(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """One cell per (method, dataset): "ours ± std (paper ± std)"."""
    names = {"parallel_all": "parallel_24", "sequential_all": "sequential_24", "extended_max": "extended_max_24"}
    paper = paper.set_index(["method", "dataset"])
    rows = []
    for method, part in ours.groupby("method", sort=False):
        row = {"method": method}
        for r in part.itertuples():
            key = (names.get(method, method), r.dataset)
            theirs = f" ({paper.loc[key, 'mean']:.2f} ± {paper.loc[key, 'std']:.2f})" if key in paper.index else ""
            row[r.dataset] = f"{_fmt(r.mean)} ± {_fmt(r.std)}{theirs}"
        rows.append(row)
    return pd.DataFrame(rows)


def learnt(table1: pd.DataFrame, chance: Mapping[str, float]) -> pd.DataFrame:
    """Per dataset: chance level, LP / PA / FT, and whether any method clearly left chance (its
    mean above chance by 2 points and by twice its seed std). Findings on a dataset where nothing
    left chance compare noise; short embedded runs can end there."""
    rows = []
    for dataset, part in table1.groupby("dataset", sort=False):
        level = chance.get(dataset, math.nan)
        means = part.set_index("method")["mean"]
        best = part.loc[part["mean"].idxmax()]
        margin = best["mean"] - level
        rows.append({"dataset": dataset, "chance": level, **{m: means.get(m, math.nan) for m in
                     ("linear_probe", "parallel_all", "full_ft")}, "best": best["method"], "best_mean": best["mean"],
                     "learnt": bool(margin > 2 and margin > 2 * best["std"]) if _finite(level) else None})
    return pd.DataFrame(rows)


def render(spec: Mapping, inputs: Mapping, output_path: str) -> str:
    out_dir = os.path.dirname(output_path) or "."
    results = findings(inputs["tables"], inputs["figure_data"], inputs["paper"])
    counts = {v: sum(r["verdict"] == v for r in results) for v in (REPRODUCED, NOT_REPRODUCED)}
    lines = ["# Reproduction report: Towards Optimal Adapter Placement for Efficient Transfer Learning", "",
             "Generated by `snakemake report` from this run's tables and figures; the paper's numbers are",
             "transcribed in `paper/*.csv`. Models: " + ", ".join(f"`{m}` = `{s}`" for m, s in spec["model_specs"].items())
             + f"; seeds {spec['seeds']}. Every cell's MLflow runs are in the tables' `run_ids` column (below: the",
             "first 8 characters; the CSVs hold the full ids):",
             f"`mlflow ui --backend-store-uri {spec['tracking_uri']}` (experiments = tables and figures).", "",
             "Learning rates are selected once per dataset and method family (linear probe, full fine-tuning,",
             "adapters) on a reference placement (LP, FT, parallel adapters on all 2L parallel edges), by",
             "validation accuracy; every final run of that family uses it (see the last section).", "",
             *_learnt_section(_read(inputs["tables"], "table1"), spec.get("chance", {})),
             f"## Findings: {counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced, "
             f"{len(results) - sum(counts.values())} without a verdict", "",
             markdown(pd.DataFrame(results)[["figure", "claim", "paper", "ours", "criterion", "verdict"]]), ""]
    for name, paper_stem in PAPER_FOR_TABLE.items():
        ours = _read(inputs["tables"], name)
        lines += [f"## {TABLE_HEADINGS[name]}", "", f"This run (`{spec['results']}/tables/{name}.csv`):", ""]
        if name == "table1" and paper_stem:
            lines += [markdown(table1_side_by_side(ours, _read(inputs["paper"], paper_stem))), "",
                      "Cells: this run (paper). Best random placements and run ids:", ""]
            lines += [markdown(ours[ours.method == "extended_max"][["dataset", "placement", "draws", "run_ids"]]), ""]
        else:
            lines += [markdown(ours), ""]
            if paper_stem:
                lines += ["Paper:", "", markdown(_read(inputs["paper"], paper_stem)), ""]
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


def _learnt_section(table1: pd.DataFrame, chance: Mapping[str, float]) -> list[str]:
    frame = learnt(table1, chance)
    stuck = frame.loc[frame.learnt == False, "dataset"].tolist()  # noqa: E712 (None: no chance level)
    note = (f"Nothing left chance on {', '.join(stuck)}: the findings below that rest on these datasets "
            "compare noise, whatever their verdict." if stuck else "Every dataset left chance level.")
    return ["## What this run learnt (Table 1, test accuracy %)", "", markdown(frame), "", note, ""]


def write_report(spec: Mapping, inputs: Mapping, outputs: Mapping) -> None:
    text = render(spec, inputs, outputs["report"])
    with atomic.atomic_path(outputs["report"]) as tmp:
        tmp.write_text(text)
