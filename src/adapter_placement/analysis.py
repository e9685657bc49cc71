"""Tables of DESIGN.md section 6 as pandas DataFrames, computed from the runs' metrics.

``load_runs`` reads the batch JSONs that the training jobs write (one row per run); every table
function is pure: DataFrames in, a DataFrame out, with the MLflow run ids behind each cell in a
``run_ids`` column. ``write_table`` is the job that writes one table as CSV and Markdown.

Accuracies are fractions in ``runs`` (as the runs' metrics hold them) and percent in every table
and figure data frame (one unit throughout: the paper's Table 3 prints fractions; ``side_by_side``
shows it in percent too). Means and standard deviations are over the seeds whose run finished
(population std, as ``train.run_protocol``); a cell's ``diverged`` column counts the runs that did
not finish, so a run that diverged is visible, never silently averaged in or away.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Mapping, Optional

import numpy as np
import pandas as pd

from . import atomic
from .flops import Arch, adapter_flops, forward_flops, pass_flops, score_flops
from .placements import edge_kind
from .verdicts import pearson, spearman  # noqa: F401  (figures reads analysis.spearman)

RUN_KEYS = ("experiment", "dataset", "placement", "seed", "model", "method", "rank", "activation", "kind", "group")
PAPER_METHOD = {"full_ft": "full_ft", "linear_probe": "linear_probe", "parallel_all": "parallel_24",
                "sequential_all": "sequential_24", "extended_max": "extended_max_24"}
PAPER_FUNCTION = {"min_col": "min_abs_column_sum", "max_col": "max_abs_column_sum", "frobenius": "frobenius",
                  "spectral": "spectral", "nuclear": "nuclear", "srank": "srank_eta0.01"}
KIND_NAME = {"parallel": "parallel", "sequential": "sequential", "long-range": "long_range", "recurrent": "recurrent"}


# ---------------------------------------------------------------- loading

def variant_of(method: str, rank: int, activation: str, kind: str) -> str:
    if method != "adapters":
        return method
    return "adapters-linear" if kind == "linear" else f"adapters-r{rank}-{activation}"


def load_runs(paths: Iterable[str]) -> pd.DataFrame:
    """One row per run of the given batch JSONs (finished and diverged)."""
    rows = []
    for path in paths:
        for item in json.loads(Path(path).read_text())["items"]:
            key, metrics = item["key"], item["metrics"]
            rows.append({**{k: key.get(k) for k in RUN_KEYS}, "edges": [tuple(e) for e in item["edges"]],
                         "n_adapters": len(item["edges"]), "lr": item["lr"], "steps": item["steps"],
                         "status": item["status"], "test_accuracy": metrics.get("test_accuracy", np.nan),
                         "train_loss": metrics.get("train_loss", np.nan), "seconds": metrics.get("seconds", np.nan),
                         "steps_per_second": metrics.get("steps_per_second", np.nan),
                         "trainable_parameters": metrics.get("trainable_parameters", np.nan),
                         "run_id": metrics.get("mlflow_run_id") or "", "folder": item["folder"]})
    columns = [*RUN_KEYS, "edges", "n_adapters", "lr", "steps", "status", "test_accuracy", "train_loss",
               "seconds", "steps_per_second", "trainable_parameters", "run_id", "folder"]
    runs = pd.DataFrame(rows, columns=columns)
    runs["variant"] = [variant_of(*v) for v in zip(runs.method, runs["rank"], runs.activation, runs.kind)]
    return runs


def summarise(runs: pd.DataFrame, by: list[str], value: str = "test_accuracy", scale: float = 1.0) -> pd.DataFrame:
    """Mean, std (population) and count of ``value`` over the finished seeds, the number of runs that
    diverged (status not finished, or no value), and the run ids, per group."""
    if runs.empty:
        return pd.DataFrame(columns=[*by, "mean", "std", "seeds", "diverged", "run_ids"])
    finished = runs.status == "finished" if "status" in runs else True  # a frame of finished runs only
    runs = runs.assign(_value=np.where(finished, runs[value].astype(float), np.nan))
    grouped = runs.groupby(by, sort=False)
    out = grouped._value.agg(mean="mean", std=lambda v: _std(v), seeds="count").reset_index()
    out["mean"] *= scale
    out["std"] *= scale
    out["diverged"] = grouped._value.agg(lambda v: int(v.isna().sum())).values
    ids = grouped.run_id.agg(lambda v: ";".join(i for i in v if i)).reset_index(name="run_ids")
    return out.merge(ids, on=by)


def _std(values: pd.Series) -> float:
    finite = values.dropna()
    return float(np.std(finite, ddof=0)) if len(finite) else math.nan


def _edge_of(placement: str) -> Optional[tuple[int, int]]:
    parts = placement.split("_")
    if placement.startswith("edge_"):
        return int(parts[1]), int(parts[2])
    if placement.startswith("parallel_") and parts[1].isdigit():
        return int(parts[1]) - 1, int(parts[1])
    return None


def single_edges(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, edge): mean test accuracy (%) and train loss over the finished seeds, the edge's
    kind, run ids."""
    runs = runs.assign(edge=runs.placement.map(_edge_of)).dropna(subset=["edge"])
    acc = summarise(runs, ["dataset", "placement", "edge"], scale=100)
    loss = summarise(runs, ["dataset", "placement"], value="train_loss")[["dataset", "placement", "mean"]]
    out = acc.merge(loss.rename(columns={"mean": "train_loss"}), on=["dataset", "placement"])
    out["i"] = out.edge.map(lambda e: e[0])
    out["j"] = out.edge.map(lambda e: e[1])
    out["kind"] = [KIND_NAME[edge_kind(i, j)] for i, j in zip(out.i, out.j)]
    return out.drop(columns="edge")


# ---------------------------------------------------------------- Table 1

def table1(runs: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """FT, LP, parallel_all, sequential_all and the best random placement (by mean test accuracy over
    seeds; ties go to the lower draw), test accuracy in percent."""
    rows = []
    for dataset in datasets:
        mine = runs[runs.dataset == dataset]
        for method in ("full_ft", "linear_probe"):
            rows.append(_row(summarise(mine[mine.method == method], ["method"], scale=100), method, dataset, "none"))
        for placement in ("parallel_all", "sequential_all"):
            part = summarise(mine[mine.placement == placement], ["placement"], scale=100)
            rows.append(_row(part, placement, dataset, placement))
        random = summarise(mine[mine.placement.str.startswith("random")], ["placement"], scale=100)
        best = random.sort_values(["mean", "placement"], ascending=[False, True]).head(1)
        rows.append(_row(best, "extended_max", dataset, best.placement.iloc[0] if len(best) else "",
                         draws=len(random)))
    return pd.DataFrame(rows)


SELECTED_ON = "train_loss"  # what a "best placement" of Table 8 and Fig. 15 is chosen by (never test)


def best_by_train_loss(runs: pd.DataFrame) -> Optional[str]:
    """The placement with the lowest mean final train loss over its seeds, or None without runs.

    Table 8 and Fig. 15 compare against "the best random placement"; picking it by test accuracy
    (the paper's max) would make its lead over the other side positive by construction. The final
    runs train on train+val, so no validation score is left: the train loss is the score that
    does not look at test. A seed that diverged counts as an infinite loss; ties go to the lower
    name."""
    if runs.empty:
        return None
    finished = (runs.status == "finished") & runs.train_loss.notna()
    loss = runs.train_loss.where(finished, np.inf)
    means = loss.groupby(runs.placement).mean().sort_index()
    return str(means.idxmin())


def _row(summary: pd.DataFrame, method: str, dataset: str, placement: str, **extra) -> dict:
    if summary.empty:
        return {"method": method, "dataset": dataset, "mean": math.nan, "std": math.nan, "seeds": 0,
                "diverged": 0, "placement": placement, "run_ids": "", **extra}
    first = summary.iloc[0]
    return {"method": method, "dataset": dataset, "mean": first["mean"], "std": first["std"],
            "seeds": int(first["seeds"]), "diverged": int(first["diverged"]), "placement": placement,
            "run_ids": first["run_ids"], **extra}


# ---------------------------------------------------------------- Table 2

def table2(datasets: Mapping[str, Mapping], tasks: Mapping[str, Mapping], paper: pd.DataFrame) -> pd.DataFrame:
    """The datasets (paper Table 2): per paper dataset key, the task trained here (an embedded
    stand-in or the tfds task itself), its classes, split sizes (the config's; NaN: the task's own
    full splits), steps (the candidates selected on val) and batch size, next to the paper's task,
    classes and split sizes. ``tasks``: per task name, ``classes``, ``paper_task`` (the tfds task it
    stands in for, or itself) and ``paper_classes`` (the task registry, ``data``)."""
    theirs = paper.set_index("dataset")
    rows = []
    for dataset, entry in datasets.items():
        task, sizes = tasks[entry["task"]], entry.get("sizes") or {}
        row = theirs.loc[dataset] if dataset in theirs.index else None
        rows.append({"dataset": dataset, "task": entry["task"], "classes": task["classes"],
                     **{split: sizes.get(split, math.nan) for split in ("train", "val", "test")},
                     "steps": "/".join(str(int(v)) for v in entry["steps"]), "batch_size": int(entry["batch_size"]),
                     "paper_task": task["paper_task"], "paper_classes": task["paper_classes"],
                     "paper_train": row["train_size"] if row is not None else math.nan,
                     "paper_test": row["test_size"] if row is not None else math.nan,
                     "paper_validation": row["validation"] if row is not None else ""})
    return pd.DataFrame(rows)


def task_registry(names: Iterable[str]) -> dict:
    """``table2``'s ``tasks`` from the data registry (``data.EMBEDDED_TASKS`` / ``TFDS_TASKS``)."""
    from .data import EMBEDDED_TASKS, TFDS_TASKS

    out = {}
    for name in names:
        paper_task = EMBEDDED_TASKS[name].stands_in_for if name in EMBEDDED_TASKS else name
        classes = EMBEDDED_TASKS[name].num_classes if name in EMBEDDED_TASKS else TFDS_TASKS[name].num_classes
        out[name] = {"classes": classes, "paper_task": paper_task, "paper_classes": TFDS_TASKS[paper_task].num_classes}
    return out


# ---------------------------------------------------------------- Table 6

def table6(runs: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """The train loss (mean over the finished seeds of each run's last steps) of the Table 1 cells;
    the extended_max row is the random placement that Table 1 picks by test accuracy."""
    picked = table1(runs, datasets)
    rows = []
    for cell in picked.itertuples(index=False):
        mine = runs[runs.dataset == cell.dataset]
        mine = mine[mine.method == cell.method] if cell.method in ("full_ft", "linear_probe") else \
            mine[mine.placement == cell.placement]
        rows.append(_row(summarise(mine, ["dataset"], value="train_loss"), cell.method, cell.dataset, cell.placement))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Table 3

def table3(fig1_runs: pd.DataFrame, fig3_runs: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """The best single adapter of each kind: parallel from Fig. 1, the others from the Fig. 3 grid."""
    edges = pd.concat([single_edges(fig1_runs), single_edges(fig3_runs)], ignore_index=True)
    rows = []
    for dataset in datasets:
        for kind in ("parallel", "sequential", "long_range", "recurrent"):
            part = edges[(edges.dataset == dataset) & (edges.kind == kind)]
            if part.empty:
                rows.append({"adapter_type": kind, "dataset": dataset, "mean": math.nan, "std": math.nan,
                             "edge": "", "run_ids": ""})
                continue
            best = part.sort_values(["mean", "i", "j"], ascending=[False, True, True]).iloc[0]  # ties: lower edge
            rows.append({"adapter_type": kind, "dataset": dataset, "mean": best["mean"], "std": best["std"],
                         "edge": f"({best.i}, {best.j})", "run_ids": best.run_ids})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- scores vs single adapters (Table 4, Fig. 5, 10-13)

def score_correlations(edges: pd.DataFrame, matrix) -> dict:
    """Spearman of a score matrix against the single-edge test accuracy and train loss."""
    matrix = np.asarray(matrix, float)
    scores = [matrix[i, j] for i, j in zip(edges.i, edges.j)]
    rho_acc, p_acc = spearman(scores, edges["mean"])
    rho_loss, p_loss = spearman(scores, edges.train_loss)
    return {"test_accuracy_spearman": rho_acc, "test_accuracy_p": p_acc,
            "train_loss_spearman": rho_loss, "train_loss_p": p_loss, "edges": len(scores)}


def table4(fig3_runs: pd.DataFrame, scores: Mapping, dataset: str) -> pd.DataFrame:
    """Each score function vs the single-adapter train loss and test accuracy (Table 4)."""
    edges = single_edges(fig3_runs[fig3_runs.dataset == dataset])
    rows = [{"function": fn, "paper_name": PAPER_FUNCTION.get(fn, fn), **score_correlations(edges, matrix)}
            for fn, matrix in scores["heads"]["default"]["scores"].items()]
    return pd.DataFrame(rows)


def fig5_correlations(fig3_runs: pd.DataFrame, scores_by_dataset: Mapping[str, Mapping]) -> pd.DataFrame:
    """srank (the config's eta) vs test accuracy and train loss, per dataset (Fig. 5, 11), and
    test accuracy vs log train loss (Fig. 12)."""
    rows = []
    for dataset, scores in scores_by_dataset.items():
        edges = single_edges(fig3_runs[fig3_runs.dataset == dataset])
        rho, p = spearman(edges["mean"], np.log(edges.train_loss))
        rows.append({"dataset": dataset, **score_correlations(edges, scores["heads"]["default"]["scores"]["srank"]),
                     "accuracy_vs_log_loss_spearman": rho, "accuracy_vs_log_loss_p": p})
    return pd.DataFrame(rows)


def fig13_correlations(fig3_runs: pd.DataFrame, scores: Mapping, dataset: str) -> pd.DataFrame:
    """srank at each eta and head pre-training length (the grid) vs train loss and test accuracy (Fig. 13)."""
    edges = single_edges(fig3_runs[fig3_runs.dataset == dataset])
    rows = []
    grid = [head for name, head in scores["heads"].items() if name != "default"]
    for head in sorted(grid, key=lambda h: h["head_steps"]):
        for eta, matrix in head["srank_by_eta"].items():
            c = score_correlations(edges, matrix)
            rows.append({"n_steps": head["head_steps"], "eta": float(eta), "train_loss_corr": c["train_loss_spearman"],
                         "test_acc_corr": c["test_accuracy_spearman"]})
    return pd.DataFrame(rows, columns=["n_steps", "eta", "train_loss_corr", "test_acc_corr"])


def fig4_correlations(fig3_runs: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """Spearman between datasets of the single-adapter test accuracies on the grid (Fig. 4)."""
    edges = single_edges(fig3_runs)
    wide = edges.pivot_table(index="placement", columns="dataset", values="mean")
    rows = []
    for a in datasets:
        for b in datasets:
            rho = 1.0 if a == b else spearman(wide.get(a, []), wide.get(b, []))[0]
            rows.append({"dataset_a": a, "dataset_b": b, "spearman": rho})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Table 5, 7, 8, Fig. 6, 9, 15

def table5(runs: pd.DataFrame, ranks: list[int], blocks: int) -> pd.DataFrame:
    """L FFN-parallel adapters of rank r vs one adapter of rank L*r on the best grid edge (App. I).

    Every grid edge is trained at rank L*r. The final runs train on train+val and report only test
    accuracy, so no validation accuracy can choose the edge; choosing it by test accuracy would make
    the single adapter the best of many noisy draws. ``single_best_*`` is the edge with the lowest
    mean train loss (it sees no test example; ties go to the higher test accuracy, then the lower
    edge), ``single_max_*`` the paper's protocol, the best test accuracy over the edges (an
    optimistic, oracle choice). Accuracies in percent."""
    rows = []
    for rank in ranks:
        ffn = summarise(runs[(runs.placement == "ffn_parallel") & (runs["rank"] == rank)], ["placement"], scale=100)
        edges = single_edges(runs[runs["rank"] == rank * blocks]).dropna(subset=["mean"])
        by_loss = _first(edges, ["train_loss", "mean", "i", "j"], [True, False, True, True])
        by_test = _first(edges, ["mean", "i", "j"], [False, True, True])
        rows.append({"rank": rank, "single_rank": rank * blocks,
                     "all_parallel_ffn_mean": _get(ffn, "mean"), "all_parallel_ffn_std": _get(ffn, "std"),
                     "single_best_mean": _get(by_loss, "mean"), "single_best_std": _get(by_loss, "std"),
                     "single_edge": _edge_text(by_loss), "single_best_train_loss": _get(by_loss, "train_loss"),
                     "single_max_mean": _get(by_test, "mean"), "single_max_std": _get(by_test, "std"),
                     "single_max_edge": _edge_text(by_test), "edges": len(edges),
                     "run_ids": ";".join(filter(None, [_get(ffn, "run_ids", ""), _get(by_loss, "run_ids", "")]))})
    return pd.DataFrame(rows)


def _first(frame: pd.DataFrame, by: list[str], ascending: list[bool]) -> pd.DataFrame:
    return frame.sort_values(by, ascending=ascending).head(1)


def _edge_text(summary: pd.DataFrame) -> str:
    return f"({int(summary.i.iloc[0])}, {int(summary.j.iloc[0])})" if len(summary) else ""


def _get(summary: pd.DataFrame, column: str, default=math.nan):
    return summary.iloc[0][column] if len(summary) else default


def table7(runs: pd.DataFrame, table1_runs: pd.DataFrame, dataset: str, n_adapters: int) -> pd.DataFrame:
    """Best random non-recurrent placement of N vs first-N, last-N, and Table 1's references."""
    mine = runs[runs.dataset == dataset]
    randnr = summarise(mine[mine.placement.str.startswith("randnr")], ["placement"], scale=100)
    best_nr = randnr.sort_values(["mean", "placement"], ascending=[False, True]).head(1)
    t1 = table1(table1_runs, [dataset]).set_index("method")
    rows = [
        {"method": "extended_no_recurrent_max", **_stats(best_nr), "n_adapters": n_adapters,
         "placement": _get(best_nr, "placement", ""), "draws": len(randnr)},
        {"method": "last_k", **_stats(summarise(mine[mine.placement == f"last_{n_adapters}"], ["placement"], scale=100)),
         "n_adapters": n_adapters, "placement": f"last_{n_adapters}"},
        {"method": "first_k", **_stats(summarise(mine[mine.placement == f"first_{n_adapters}"], ["placement"], scale=100)),
         "n_adapters": n_adapters, "placement": f"first_{n_adapters}"},
    ]
    for method, name in (("extended_with_recurrent_max", "extended_max"), ("parallel_all", "parallel_all")):
        ref = t1.loc[name] if name in t1.index else None
        rows.append({"method": method, "accuracy_mean": ref["mean"] if ref is not None else math.nan,
                     "accuracy_std": ref["std"] if ref is not None else math.nan,
                     "run_ids": ref["run_ids"] if ref is not None else "",
                     "n_adapters": _placement_size(table1_runs, ref["placement"] if ref is not None else ""),
                     "placement": ref["placement"] if ref is not None else ""})
    return pd.DataFrame(rows)


def _stats(summary: pd.DataFrame) -> dict:
    return {"accuracy_mean": _get(summary, "mean"), "accuracy_std": _get(summary, "std"),
            "run_ids": _get(summary, "run_ids", "")}


def _placement_size(runs: pd.DataFrame, placement: str) -> int:
    match = runs[runs.placement == placement]
    return int(match.n_adapters.iloc[0]) if len(match) else 0


def table8(runs: pd.DataFrame, table1_runs: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """Each dataset's own best random placement (tailored) vs the other dataset's (transfer)."""
    rows = []
    for dataset in datasets:
        name, tailored = _best_random(table1_runs, dataset)
        transfer = summarise(runs[runs.dataset == dataset], ["placement"], scale=100)
        rows.append({"dataset": dataset, "tailored_mean": _get(tailored, "mean"), "tailored_std": _get(tailored, "std"),
                     "transfer_mean": _get(transfer, "mean"), "transfer_std": _get(transfer, "std"),
                     "delta": _get(tailored, "mean") - _get(transfer, "mean"),
                     "tailored_placement": name or "", "transfer_placement": _get(transfer, "placement", ""),
                     "selected_on": SELECTED_ON,
                     "run_ids": ";".join(filter(None, [_get(tailored, "run_ids", ""), _get(transfer, "run_ids", "")]))})
    return pd.DataFrame(rows)


def _best_random(table1_runs: pd.DataFrame, dataset: str) -> tuple[Optional[str], pd.DataFrame]:
    """The Table 1 random placement of ``dataset`` chosen by train loss, and its summary (percent)."""
    mine = table1_runs[(table1_runs.dataset == dataset) & table1_runs.placement.str.match(r"^random\d+_\d+$")]
    name = best_by_train_loss(mine)
    return name, summarise(mine[mine.placement == name], ["placement"], scale=100)


def method_of(placement: str) -> str:
    """The selection method of a Fig. 6 placement name: gga, topk, random, first, last."""
    return placement.split("_")[0].rstrip("0123456789")


def fig6_data(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy (%) per dataset, selection method and number of adapters (Fig. 6a, 6b)."""
    runs = runs.assign(selection=runs.placement.map(method_of))
    return summarise(runs, ["dataset", "selection", "n_adapters"], scale=100)


def fig6c_data(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy (%) per rank and method, with the trainable parameters (Fig. 6c)."""
    runs = runs.assign(selection=np.where(runs.placement == "ffn_parallel", "ffn_parallel", "gga"))
    out = summarise(runs, ["selection", "rank"], scale=100)
    params = runs.groupby(["selection", "rank"]).trainable_parameters.mean().reset_index()
    return out.merge(params, on=["selection", "rank"])


def fig9_data(runs: pd.DataFrame) -> pd.DataFrame:
    return summarise(runs, ["activation", "n_adapters"], scale=100)


def fig8_data(linear_runs: pd.DataFrame, fig3_runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per grid edge: linear and non-linear single-adapter test accuracy (%, Fig. 8), with the
    Pearson and Spearman correlations over the edges (App. D reports both) on every row."""
    linear = single_edges(linear_runs[linear_runs.dataset == dataset])
    nonlinear = single_edges(fig3_runs[fig3_runs.dataset == dataset])
    data = linear.merge(nonlinear, on=["dataset", "placement", "i", "j", "kind"], suffixes=("_linear", "_nonlinear"))
    return data.assign(**linear_correlations(data))


def linear_correlations(data: pd.DataFrame) -> dict:
    """Pearson and Spearman (with p-values) of non-linear vs linear single-adapter accuracy."""
    r, r_p = pearson(data.mean_linear, data.mean_nonlinear)
    rho, rho_p = spearman(data.mean_linear, data.mean_nonlinear)
    return {"pearson": r, "pearson_p": r_p, "spearman": rho, "spearman_p": rho_p}


def fig15_data(runs: pd.DataFrame, table1_runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """All n^2 adapters against the best random placement (chosen by train loss: ``best_by_train_loss``)."""
    name, best = _best_random(table1_runs, dataset)
    everything = summarise(runs[runs.dataset == dataset], ["placement"], scale=100)
    return pd.DataFrame([
        {"setup": f"best random ({name})", "mean": _get(best, "mean"), "std": _get(best, "std"),
         "run_ids": _get(best, "run_ids", "")},
        {"setup": "all n^2 adapters", "mean": _get(everything, "mean"), "std": _get(everything, "std"),
         "run_ids": _get(everything, "run_ids", "")},
    ])


# ---------------------------------------------------------------- Fig. 14: GGA's discounting

def discount_matrix(num_nodes: int, edge: tuple[int, int], gamma: float) -> np.ndarray:
    """d_kl(i, j) = 1 - gamma ** L1((i, j), (k, l)) of App. H for the picked edge (k, l) = ``edge``."""
    rows, cols = np.indices((num_nodes, num_nodes))
    return 1.0 - gamma ** (np.abs(rows - edge[0]) + np.abs(cols - edge[1]))


def cumulative_discount(num_nodes: int, edges, gamma: float) -> np.ndarray:
    """The product of the discount matrices of every picked edge: what GGA has multiplied the scores
    by once it picked ``edges`` (each picked edge itself ends at 0)."""
    out = np.ones((num_nodes, num_nodes))
    for edge in edges:
        out *= discount_matrix(num_nodes, edge, gamma)
    return out


def fig14_data(scores, n_adapters: int, gamma: float) -> pd.DataFrame:
    """Per edge (i, j): the score, the discount matrix of GGA's first pick, the product of the
    discounts of all ``n_adapters`` picks, the score after selection (their product), and the pick
    order (0-based; -1 for edges not picked) of Algorithm 1 (``gga.gga_select``)."""
    from .gga import gga_select

    s = np.asarray(scores, float)
    n = s.shape[0]
    picks = [tuple(e) for e in gga_select(s, n_adapters, gamma)]
    first, every = discount_matrix(n, picks[0], gamma), cumulative_discount(n, picks, gamma)
    order = {edge: k for k, edge in enumerate(picks)}
    rows, cols = np.indices(s.shape)
    return pd.DataFrame({"i": rows.ravel(), "j": cols.ravel(), "score": s.ravel(), "discount_first": first.ravel(),
                         "discount_all": every.ravel(), "score_after": (s * every).ravel(),
                         "pick": [order.get((i, j), -1) for i, j in zip(rows.ravel(), cols.ravel())]})


def fig1_data(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and parallel position k: mean accuracy (%), block and sub-layer (Fig. 1, 7)."""
    out = summarise(runs, ["dataset", "placement"], scale=100)
    out["position"] = out.placement.map(lambda p: int(p.split("_")[1]))
    out["block"] = (out.position + 1) // 2
    out["sublayer"] = np.where(out.position % 2 == 1, "MHA", "FFN")
    return out.sort_values(["dataset", "position"])


def baselines(table1_runs: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """FT, LP and parallel_all (%) per dataset: the dashed lines of Fig. 1, 3, 6, 7."""
    t1 = table1(table1_runs, datasets)
    return t1[t1.method.isin(["full_ft", "linear_probe", "parallel_all"])]


# ---------------------------------------------------------------- App. K: FLOPs

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
            if placement.startswith("random") and placement != _first_random(runs):
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


def _first_random(runs: pd.DataFrame) -> str:
    names = sorted(p for p in runs.placement.unique() if p.startswith("random"))
    return names[0] if names else ""


# ---------------------------------------------------------------- side by side with the paper

PAPER_TABLE = {"table1": "table1", "table2": "table2_datasets", "table3": "table3_best_single_by_type",
               "table4": "table4_aggregation_inat18", "table5": "table5_single_vs_ffn_parallel",
               "table7": "table7_sst2_nonrecurrent", "table8": "table8_transfer"}
MISSING = "–"


def number(value, digits: int = 2) -> str:
    """A number as the tables print it: fixed digits, scientific below 10^-digits (1e-4, never
    0.000), "–" when missing."""
    if value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return MISSING
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if value != 0 and abs(value) < 10 ** -digits:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:.{digits}f}"


def _cell(mean, std=None) -> str:
    if std is None:
        return number(mean)
    return MISSING if number(mean) == MISSING else f"{number(mean)} ± {number(std)}"


def _pair(ours: str, theirs: str) -> str:
    return f"{ours} | {theirs}"


def _lookup(frame: pd.DataFrame, key, column):
    return frame.loc[key, column] if key in frame.index and column in frame.columns else math.nan


def side_by_side(name: str, ours: pd.DataFrame, paper: Optional[pd.DataFrame]) -> pd.DataFrame:
    """Table ``name`` with one cell per number: "this run | paper" (paper from ``paper/*.csv``, in
    percent like ours; "–" where a side has no number). Tables without transcribed paper numbers
    (Table 6, App. K) get "–" on the paper's side."""
    paper = paper if paper is not None else pd.DataFrame()
    return SIDE_BY_SIDE[name](ours, paper)


def _by_dataset(ours, paper, row_key, ours_name=lambda m: m, scale=1.0) -> pd.DataFrame:
    """Rows ``row_key`` x dataset columns, cells "mean ± std | paper mean ± std"."""
    theirs = paper.set_index([row_key, "dataset"]) if len(paper) else pd.DataFrame()
    rows = []
    for key, part in ours.groupby(row_key, sort=False):
        row = {row_key: key}
        for r in part.itertuples(index=False):
            paper_key = (ours_name(key), r.dataset)
            mean, std = _lookup(theirs, paper_key, "mean"), _lookup(theirs, paper_key, "std")
            row[r.dataset] = _pair(_cell(r.mean, r.std), _cell(mean * scale, std * scale))
        rows.append(row)
    return pd.DataFrame(rows)


def _table1_pairs(ours, paper):
    return _by_dataset(ours, paper, "method", lambda m: PAPER_METHOD.get(m, m))


def _table3_pairs(ours, paper):
    return _by_dataset(ours, paper, "adapter_type", scale=100)  # the paper prints Table 3 in fractions


def _table6_pairs(ours, paper):
    return _by_dataset(ours, pd.DataFrame(), "method")  # Table 6 is an image in the paper: not transcribed


def _table4_pairs(ours, paper):
    theirs = paper.set_index("function") if len(paper) else pd.DataFrame()
    return pd.DataFrame([{"function": r.function, **{column: _pair(number(getattr(r, column)),
                                                                  number(_lookup(theirs, r.paper_name, column)))
                                                     for column in ("train_loss_spearman", "test_accuracy_spearman")}}
                         for r in ours.itertuples(index=False)])


def _table5_pairs(ours, paper):
    theirs = paper.set_index("rank") if len(paper) else pd.DataFrame()
    ranks = sorted({int(r) for r in [*ours["rank"], *theirs.index]}, reverse=True)  # as the paper: 16, 8, 4, 2
    mine = ours.set_index("rank")
    rows = []
    for rank in ranks:
        ffn, single = _lookup(theirs, rank, "all_parallel_ffn_12"), _lookup(theirs, rank, "single_best_rank_x12")
        rows.append({"rank": rank,
                     "all parallel (FFN)": _pair(_cell(_lookup(mine, rank, "all_parallel_ffn_mean"),
                                                       _lookup(mine, rank, "all_parallel_ffn_std")), number(ffn)),
                     "single, lowest train loss": _pair(_cell(_lookup(mine, rank, "single_best_mean"),
                                                              _lookup(mine, rank, "single_best_std")), number(single)),
                     "single, best test (paper's choice)": _pair(_cell(_lookup(mine, rank, "single_max_mean"),
                                                                       _lookup(mine, rank, "single_max_std")), number(single))})
    return pd.DataFrame(rows)


def _table7_pairs(ours, paper):
    names = {"parallel_24": "parallel_all"}
    theirs = paper.assign(method=paper.method.str.replace(r"_max\d+$", "_max", regex=True).replace(names)) \
        .set_index("method") if len(paper) else pd.DataFrame()
    return pd.DataFrame([{"method": r.method,
                          "accuracy": _pair(_cell(r.accuracy_mean, r.accuracy_std),
                                            _cell(_lookup(theirs, r.method, "accuracy_mean"),
                                                  _lookup(theirs, r.method, "accuracy_std"))),
                          "n_adapters": _pair(_count(r.n_adapters), _count(_lookup(theirs, r.method, "n_adapters")))}
                         for r in ours.itertuples(index=False)])


def _table8_pairs(ours, paper):
    theirs = paper.set_index("dataset") if len(paper) else pd.DataFrame()
    return pd.DataFrame([{"dataset": r.dataset,
                          "tailored": _pair(_cell(r.tailored_mean, r.tailored_std),
                                            _cell(_lookup(theirs, r.dataset, "tailored_mean"),
                                                  _lookup(theirs, r.dataset, "tailored_std"))),
                          "transfer": _pair(_cell(r.transfer_mean, r.transfer_std),
                                            _cell(_lookup(theirs, r.dataset, "transfer_mean"),
                                                  _lookup(theirs, r.dataset, "transfer_std"))),
                          "delta": _pair(number(r.delta), number(_lookup(theirs, r.dataset, "delta")))}
                         for r in ours.itertuples(index=False)])


def _count(value) -> str:
    """A count (split size, classes): an integer, "–" when missing (a column with a gap is float)."""
    return MISSING if number(value) == MISSING else str(int(value))


def _table2_pairs(ours, paper):
    # table2 carries the paper's columns itself (they come from paper/table2_datasets.csv)
    def text(value):
        return value if isinstance(value, str) and value else MISSING

    return pd.DataFrame([{"dataset": r.dataset, "task": _pair(r.task, r.paper_task),
                          "classes": _pair(_count(r.classes), _count(r.paper_classes)),
                          "train": _pair(_count(r.train), _count(r.paper_train)),
                          "val": _pair(_count(r.val), text(r.paper_validation)),
                          "test": _pair(_count(r.test), _count(r.paper_test)),
                          "steps": r.steps, "batch_size": r.batch_size}
                         for r in ours.itertuples(index=False)])


SIDE_BY_SIDE = {"table1": _table1_pairs, "table2": _table2_pairs, "table3": _table3_pairs, "table4": _table4_pairs,
                "table5": _table5_pairs, "table6": _table6_pairs, "table7": _table7_pairs, "table8": _table8_pairs}


# ---------------------------------------------------------------- the job

def write_frame(frame: pd.DataFrame, csv_path: str, md_path: Optional[str] = None, title: str = "",
                pairs: Optional[pd.DataFrame] = None) -> None:
    """CSV (full precision) and, if asked, a Markdown table (rounded; with ``pairs``, the side-by-side
    table "this run | paper" first), both written atomically."""
    with atomic.atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    if md_path:
        text = f"# {title}\n\n" if title else ""
        if pairs is not None:
            text += "Cells: this run | paper (`paper/*.csv`).\n\n" + markdown(pairs) + "\n\nThis run in full:\n\n"
        text += markdown(frame) + "\n"
        with atomic.atomic_path(md_path) as tmp:
            tmp.write_text(text)


def markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub Markdown table (no tabulate dependency); run ids are shortened to 8 characters;
    numbers below 10^-digits in scientific notation (a learning rate prints as 1e-4); a "|" inside a
    cell (side_by_side's "ours | paper") is escaped, so it does not split the cell."""
    def cell(value, column):
        if isinstance(value, (float, np.floating)):
            return "" if math.isnan(value) else number(value, digits)
        if column == "run_ids" and isinstance(value, str):
            ids = [v[:8] for v in value.split(";") if v]
            return " ".join(ids[:6]) + (f" (+{len(ids) - 6})" if len(ids) > 6 else "")
        return str(value).replace("|", "\\|")

    columns = [str(c).replace("|", "\\|") for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v, c) for v, c in zip(row, columns)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


TABLE_TITLES = {
    "table1": "Table 1: FT, LP, parallel and sequential adapters, best random placement (test accuracy %)",
    "table2": "Table 2: the datasets, the paper's and the tasks trained here (classes, split sizes, steps, batch)",
    "table3": "Table 3: best single adapter of each kind (test accuracy %)",
    "table4": "Table 4: score functions vs single-adapter train loss and test accuracy (Spearman)",
    "table5": "Table 5: one adapter of rank L*r on the best grid edge vs L FFN-parallel adapters of rank r (test accuracy %)",
    "table6": "Table 6: train loss of the Table 1 runs (the paper's Table 6 is not transcribed)",
    "table7": "Table 7: random non-recurrent placements vs first-k and last-k (test accuracy %)",
    "table8": "Table 8: tailored vs transferred best placement (test accuracy %)",
    "appK": "App. K: FLOPs of scoring and of the Table 1 placements (analytic) and measured seconds",
    "table_search": "Beyond the paper: placement searches vs GGA, random and parallel_all (test accuracy %, compute)",
}


def build_table(name: str, context: Mapping, inputs: Mapping) -> pd.DataFrame:
    """The table ``name`` from the job's input files (see workflow/rules/tables.smk)."""
    exp = context["experiments"]
    if name == "table1":
        return table1(load_runs(inputs["table1"]), exp["table1"]["datasets"])
    if name == "table2":
        tasks = task_registry({e["task"] for e in context["datasets"].values()})
        return table2(context["datasets"], tasks, pd.read_csv(inputs["paper"]))
    if name == "table6":
        return table6(load_runs(inputs["table1"]), exp["table1"]["datasets"])
    if name == "table3":
        datasets = [d for d in exp["fig3"]["datasets"] if d in exp["fig1"]["datasets"]]
        return table3(load_runs(inputs["fig1"]), load_runs(inputs["fig3"]), datasets)
    if name == "table4":
        return table4(load_runs(inputs["fig3"]), read_json(inputs["scores"]), context["scores"]["dataset"])
    if name == "table5":
        dataset = exp["table5"]["dataset"]
        blocks = context["models"][context["datasets"][dataset]["model"]]["blocks"]
        return table5(load_runs(inputs["table5"]), exp["table5"]["ranks"], blocks)
    if name == "table7":
        return table7(load_runs(inputs["table7"]), load_runs(inputs["table1"]), exp["table7"]["dataset"],
                      exp["table7"]["n"])
    if name == "table8":
        return table8(load_runs(inputs["table8"]), load_runs(inputs["table1"]), exp["table8"]["datasets"])
    if name == "appK":
        models, batch_sizes = _model_infos(inputs), _batch_sizes(context)
        return appk_table([read_json(p) for p in inputs["scores"]], models, load_runs(inputs["table1"]), batch_sizes)
    if name == "table_search":
        return search_table(search_costs_from_inputs(context, inputs), exp["search"]["methods"])
    raise ValueError(f"unknown table {name!r}")


def search_costs_from_inputs(context: Mapping, inputs: Mapping) -> pd.DataFrame:
    """``search_run_costs`` of the files a search table or figure job reads."""
    scores = {s["dataset"]: s for s in map(read_json, inputs["scores"])}
    searches = [s for path in inputs["searches"] for s in read_json(path)["searches"]]
    return search_run_costs(load_runs(inputs["search"]), searches, scores, _model_infos(inputs), _batch_sizes(context))


def _model_infos(inputs: Mapping) -> dict:
    return {info["model"]: info for info in map(read_json, inputs["models"])}


def _batch_sizes(context: Mapping) -> dict:
    return {d: e["batch_size"] for d, e in context["datasets"].items()}


def write_table(spec: Mapping, inputs: Mapping, outputs: Mapping) -> pd.DataFrame:
    """The table job: CSV of this run, Markdown side by side with the paper's numbers where the
    paper has the table (``inputs["paper"]``: its ``paper/*.csv``)."""
    name = spec["name"]
    frame = build_table(name, spec["context"], inputs)
    pairs = None
    if name in SIDE_BY_SIDE:
        pairs = side_by_side(name, frame, pd.read_csv(inputs["paper"]) if inputs.get("paper") else None)
    write_frame(frame, outputs["csv"], outputs["md"], TABLE_TITLES[name], pairs)
    return frame
