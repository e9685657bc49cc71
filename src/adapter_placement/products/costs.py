"""What placement costs: analytic FLOPs and measured seconds of scoring and of the Table 1 placements
(App. K, with its finding), and, beyond the paper, the placement searches against GGA, random and
parallel_all in accuracy and compute (the search table, its figure and its section of the report)."""
from __future__ import annotations

import math
from typing import Mapping

import matplotlib
import numpy as np
import pandas as pd

from .. import verdicts as V
from ..analysis import first_random, load_runs, markdown, read_json, summarise
from ..flops import Arch, adapter_flops, forward_flops, pass_flops, score_flops
from .drawing import plt, sns
from .evidence import Finding, fmt
from .product import Batches, ModelInfos, Product, Scores, SearchFiles


def appk_table(scores: list[Mapping], models: Mapping[str, Mapping], table1_runs: pd.DataFrame,
               batch_sizes: Mapping[str, int]) -> pd.DataFrame:
    """Analytic FLOPs of scoring and of each Table 1 placement, next to measured seconds."""
    rows = []
    for s in scores:
        info = models[s["model"]]
        tokens = info["tokens"] or s["tokens_per_example"]
        fwd = forward_flops(tokens, info["hidden_size"], info["heads"], info["ffn_size"], info["blocks"])
        f_score = score_flops(s["examples"], s["num_nodes"] ** 2, tokens, info["hidden_size"])
        seconds = s["heads"]["default"]["seconds"]
        runs = table1_runs[table1_runs.dataset == s["dataset"]]
        step = runs[runs.placement == "parallel_all"]
        step_seconds = float((1.0 / step.steps_per_second).mean()) if len(step) else math.nan
        run_seconds = float((step.steps / step.steps_per_second).mean()) if len(step) else math.nan
        rows.append({"dataset": s["dataset"], "model": s["model"], "item": "scoring (GGA)", "tokens": tokens,
                     "gflops_forward_per_example": fwd / 1e9, "gflops": (2 * s["examples"] * fwd + f_score) / 1e9,
                     "gflops_score_products": f_score / 1e9,
                     "measured_seconds": seconds["gradients"] + seconds["reduce"],
                     "training_step_seconds": step_seconds, "training_run_seconds": run_seconds})
        batch = batch_sizes[s["dataset"]]
        for placement, part in runs[runs.method == "adapters"].groupby("placement"):
            if part.selection.iloc[0] == "random" and placement != first_random(runs):
                continue
            edges, rank = part.edges.iloc[0], int(part["rank"].iloc[0])
            recurrent = any(i > j for i, j in edges)
            flops = adapter_flops(len(edges), tokens, info["hidden_size"], rank) + (fwd if recurrent else 0.0)
            rows.append({"dataset": s["dataset"], "model": s["model"], "item": f"adapters {placement}",
                         "tokens": tokens, "gflops_forward_per_example": fwd / 1e9,
                         "gflops": batch * flops / 1e9, "gflops_score_products": math.nan,
                         "measured_seconds": float((part.steps / part.steps_per_second).mean()),
                         "training_step_seconds": float((1.0 / part.steps_per_second).mean()),
                         "training_run_seconds": float((part.steps / part.steps_per_second).mean())})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- beyond the paper: placement search

SEARCH_COST_COLUMNS = ("selection_seconds", "training_seconds", "selection_gflops", "training_gflops")


def arch_from_info(info: Mapping, rank: int) -> Arch:
    """The FLOP model's ``Arch`` from a model-info record (``pipeline.model_info``)."""
    return Arch(info["blocks"], info["hidden_size"], info["heads"], info["ffn_size"], rank, info["tokens"])


def gga_selection_cost(scores: Mapping, arch: Arch, batch_size: int) -> tuple[float, float]:
    """(seconds, FLOPs) of GGA's selection: head pre-training, one forward and backward pass over the
    scored examples and the n^2 gradient products (the scores job measured the seconds; its reduce
    time covers every score function, an upper bound for srank alone)."""
    head = scores["heads"]["default"]
    tokens = arch.tokens or scores["tokens_per_example"]
    flops = (pass_flops(arch, head["head_steps"] * batch_size, tokens, backward=False)
             + pass_flops(arch, scores["examples"], tokens, scored_edges=scores["num_nodes"] ** 2))
    return float(sum(head["seconds"].values())), flops


def search_run_costs(runs: pd.DataFrame, searches: list[Mapping], scores: Mapping[str, Mapping],
                     models: Mapping[str, Mapping], batch_sizes: Mapping[str, int]) -> pd.DataFrame:
    """Each final run of the search experiment with its method, N and compute: selection (the
    search's own scoring and training phases, GGA's scoring, nothing for random and parallel_all)
    and the final training (measured seconds; analytic FLOPs of its steps, App. K)."""
    by_name = {(s["key"]["dataset"], name): s for s in searches for name in s.get("names", [s["name"]])}
    rows = []
    for run in runs.itertuples(index=False):
        method, n_text = run.group.rsplit("_", 1)
        arch = arch_from_info(models[run.model], int(run.rank))
        tokens = arch.tokens or scores[run.dataset]["tokens_per_example"]
        recurrent = any(i > j for i, j in run.edges)
        step = pass_flops(arch, batch_sizes[run.dataset], tokens, run.n_adapters, first_pass=recurrent)
        found = by_name.get((run.dataset, run.placement))
        selection = (0.0, 0.0)
        if method == "gga":
            selection = gga_selection_cost(scores[run.dataset], arch, batch_sizes[run.dataset])
        elif found is not None:
            selection = (found["seconds"]["total"], found["flops"]["total"])
        rows.append({"dataset": run.dataset, "method": method, "n_adapters": int(n_text), "seed": run.seed,
                     "test_accuracy": run.test_accuracy, "status": run.status, "run_id": run.run_id,
                     "search_run_id": found["mlflow_run_id"] if found is not None else "",
                     "selection_seconds": selection[0], "training_seconds": run.seconds,
                     "selection_gflops": selection[1] / 1e9, "training_gflops": run.steps * step / 1e9})
    return pd.DataFrame(rows)


def search_table(costs: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Test accuracy (%, mean and std over seeds) and mean compute per dataset, method and N."""
    by = ["dataset", "method", "n_adapters"]
    out = summarise(costs, by, scale=100)
    means = costs.groupby(by, sort=False)[list(SEARCH_COST_COLUMNS)].mean().reset_index()
    out = out.merge(means, on=by)
    out["total_seconds"] = out.selection_seconds + out.training_seconds
    out["total_gflops"] = out.selection_gflops + out.training_gflops
    searches = costs.groupby(by, sort=False).search_run_id.agg(lambda v: ";".join(i for i in v if i))
    out = out.merge(searches.reset_index(name="search_run_ids"), on=by)
    order = {m: k for k, m in enumerate(methods)}
    return out.sort_values(["dataset", "n_adapters", "method"], key=lambda c: c.map(order) if c.name == "method"
                           else c).reset_index(drop=True)


def search_costs_from_inputs(context: Mapping, inputs: Mapping) -> pd.DataFrame:
    """``search_run_costs`` of the files a search table or figure job reads."""
    scores = {s["dataset"]: s for s in map(read_json, inputs["scores"])}
    searches = [s for path in inputs["searches"] for s in read_json(path)["searches"]]
    return search_run_costs(load_runs(inputs["search"]), searches, scores, _model_infos(inputs), _batch_sizes(context))


def _model_infos(inputs: Mapping) -> dict:
    return {info["model"]: info for info in map(read_json, inputs["models"])}


def _batch_sizes(context: Mapping) -> dict:
    return {d: e["batch_size"] for d, e in context["datasets"].items()}


# ---------------------------------------------------------------- drawing

def figure_search(data: pd.DataFrame):
    """Per dataset: test accuracy against N, against measured seconds and against analytic GFLOPs
    (selection plus training), one line per placement method (beyond the paper)."""
    datasets = list(dict.fromkeys(data.dataset))
    fig, axes = plt.subplots(len(datasets), 3, figsize=(13, 3.6 * len(datasets)), squeeze=False)
    methods = list(dict.fromkeys(data.method))
    palette = dict(zip(methods, sns.color_palette("tab10", len(methods))))
    for row, dataset in zip(axes, datasets):
        part = data[data.dataset == dataset]
        for ax, x, label in zip(row, ("n_adapters", "total_seconds", "total_gflops"),
                                ("number of adapters N", "seconds (selection + training)", "GFLOPs (selection + training)")):
            sns.lineplot(data=part, x=x, y="mean", hue="method", hue_order=methods, palette=palette, marker="o",
                         ax=ax, sort=True, legend=ax is row[0])
            ax.set(title=dataset, xlabel=label, ylabel="test accuracy (%)", xscale="log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labelled minor ticks overlap
        counts = sorted(part.n_adapters.unique())
        row[0].set_xticks(counts, [str(int(n)) for n in counts])
        row[0].minorticks_off()
        row[0].legend(fontsize=7)
    return fig


# ---------------------------------------------------------------- findings

SCORING_IS_CHEAP = Finding(
    "App. K", "scoring all n^2 edges costs little next to training",
    "0.12% (110 TFLOPs vs 90 PFLOPs of training forward passes, ViT-B, 20000 steps)",
    "< 1% (depends on the run length: short runs make it larger)", lambda e: finding_scoring_cost(e.table("appK")))


def finding_scoring_cost(appk: pd.DataFrame) -> dict:
    """A measured cost, not a seed-noise quantity: the ratio decides (one measurement per dataset)."""
    scoring = appk[appk["item"] == "scoring (GGA)"]
    ratio = (scoring.measured_seconds / scoring.training_run_seconds).median() if len(scoring) else math.nan
    verdict = V.INCONCLUSIVE if not V.finite(ratio) else V.REPRODUCED if ratio < 0.01 else V.NOT_REPRODUCED
    return SCORING_IS_CHEAP.record(f"scoring (gradients + SVDs) takes {fmt(100 * ratio, 1)}% of one training run of "
                                   "parallel adapters (median over datasets; measured seconds)",
                                   f"ratio {fmt(ratio, 4)}", verdict)


# ---------------------------------------------------------------- the search's section of the report

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


# ---------------------------------------------------------------- the products

def _appk(context, inputs):
    scores = [read_json(p) for p in inputs["scores"]]
    return appk_table(scores, _model_infos(inputs), load_runs(inputs["table1"]), _batch_sizes(context))


def _table_search(context, inputs):
    return search_table(search_costs_from_inputs(context, inputs), context["experiments"]["search"]["methods"])


SEARCH_READS = {"search": Batches("search"), "searches": SearchFiles(), "scores": Scores("search"),
                "models": ModelInfos("search")}
PRODUCTS = [
    Product("appK", "App. K: FLOPs of scoring and of the Table 1 placements (analytic) and measured seconds",
            {"scores": Scores("score_targets"), "models": ModelInfos("score_targets"), "table1": Batches("table1")},
            _appk, experiments=("table1",), reads_scores_config=True, findings=(SCORING_IS_CHEAP,)),
    Product("table_search", "Beyond the paper: placement searches vs GGA, random and parallel_all (test accuracy %, "
            "compute)", SEARCH_READS, _table_search, experiments=("search",), needs="search",
            report_section=search_section),
    Product("fig_search", "Placement search: test accuracy vs N and vs compute", SEARCH_READS, _table_search,
            experiments=("search",), needs="search", draw=lambda data, c, i: figure_search(data)),
]
