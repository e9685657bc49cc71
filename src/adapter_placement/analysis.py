"""What the tables and figures of DESIGN.md section 6 share (each one is a product: ``products/``).

``load_runs`` reads the batch JSONs that the training jobs write (one row per run), ``summarise``
gives mean, std and count per group with the MLflow run ids behind each cell in a ``run_ids``
column (each run's placement as the plan's ``Placement`` fields: ``selection`` (its method: random,
gga, edge, ...), ``edge`` for single-adapter placements, ``position`` and ``sublayer`` for parallel_K,
never parsed from its name here); the number formatting of the Markdown tables and of "this run | paper" cells;
``write_frame`` / ``markdown`` write a table as CSV and Markdown (the table job: ``tables.write_table``).

Accuracies are fractions in ``runs`` (as the runs' metrics hold them) and percent in every table
and figure data frame (one unit throughout: the paper's Table 3 prints fractions; its side by side
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
from .placements import edge_kind
from .plan.placement import Placement
from .plan.runs import variant_of

RUN_KEYS = ("experiment", "dataset", "placement", "seed", "model", "method", "rank", "activation", "kind", "group")
KIND_NAME = {"parallel": "parallel", "sequential": "sequential", "long-range": "long_range", "recurrent": "recurrent"}


# ---------------------------------------------------------------- loading

def load_runs(paths: Iterable[str]) -> pd.DataFrame:
    """One row per run of the given batch JSONs (finished and diverged)."""
    rows = []
    for path in paths:
        for item in json.loads(Path(path).read_text())["items"]:
            key, metrics = item["key"], item["metrics"]
            placement = Placement.parse(key["placement"])  # its fields, as item["placement"] records them
            rows.append({**{k: key.get(k) for k in RUN_KEYS}, "selection": placement.method,
                         "edge": placement.single_edge, "position": placement.position,
                         "sublayer": placement.sublayer, "edges": [tuple(e) for e in item["edges"]],
                         "n_adapters": len(item["edges"]), "lr": item["lr"], "steps": item["steps"],
                         "status": item["status"], "test_accuracy": metrics.get("test_accuracy", np.nan),
                         "train_loss": metrics.get("train_loss", np.nan), "seconds": metrics.get("seconds", np.nan),
                         "steps_per_second": metrics.get("steps_per_second", np.nan),
                         "trainable_parameters": metrics.get("trainable_parameters", np.nan),
                         "run_id": metrics.get("mlflow_run_id") or "", "folder": item["folder"]})
    columns = [*RUN_KEYS, "selection", "edge", "position", "sublayer", "edges", "n_adapters", "lr", "steps", "status", "test_accuracy", "train_loss",
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


def single_edges(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, edge): mean test accuracy (%) and train loss over the finished seeds, the edge's
    kind, run ids."""
    runs = runs.dropna(subset=["edge"])
    acc = summarise(runs, ["dataset", "placement", "edge"], scale=100)
    loss = summarise(runs, ["dataset", "placement"], value="train_loss")[["dataset", "placement", "mean"]]
    out = acc.merge(loss.rename(columns={"mean": "train_loss"}), on=["dataset", "placement"])
    out["i"] = out.edge.map(lambda e: e[0])
    out["j"] = out.edge.map(lambda e: e[1])
    out["kind"] = [KIND_NAME[edge_kind(i, j)] for i, j in zip(out.i, out.j)]
    return out.drop(columns="edge")


# ---------------------------------------------------------------- the best random placement (Table 8, Fig. 15)

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


# ---------------------------------------------------------------- a frame's first row, placement names

def first_value(summary: pd.DataFrame, column: str, default=math.nan):
    return summary.iloc[0][column] if len(summary) else default


def _placement_size(runs: pd.DataFrame, placement: str) -> int:
    match = runs[runs.placement == placement]
    return int(match.n_adapters.iloc[0]) if len(match) else 0


def first_random(runs: pd.DataFrame) -> str:
    """The first random draw by name (random12_000 before random12_001), "" without one."""
    names = sorted(runs.placement[runs.selection == "random"].unique())
    return names[0] if names else ""


# ---------------------------------------------------------------- numbers as the tables print them, "this run | paper" cells

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


def cell_text(mean, std=None) -> str:
    if std is None:
        return number(mean)
    return MISSING if number(mean) == MISSING else f"{number(mean)} ± {number(std)}"


def pair_text(ours: str, theirs: str) -> str:
    return f"{ours} | {theirs}"


def lookup(frame: pd.DataFrame, key, column):
    return frame.loc[key, column] if key in frame.index and column in frame.columns else math.nan


def pairs_by_dataset(ours, paper, row_key, ours_name=lambda m: m, scale=1.0) -> pd.DataFrame:
    """Rows ``row_key`` x dataset columns, cells "mean ± std | paper mean ± std"."""
    theirs = paper.set_index([row_key, "dataset"]) if len(paper) else pd.DataFrame()
    rows = []
    for key, part in ours.groupby(row_key, sort=False):
        row = {row_key: key}
        for r in part.itertuples(index=False):
            paper_key = (ours_name(key), r.dataset)
            mean, std = lookup(theirs, paper_key, "mean"), lookup(theirs, paper_key, "std")
            row[r.dataset] = pair_text(cell_text(r.mean, r.std), cell_text(mean * scale, std * scale))
        rows.append(row)
    return pd.DataFrame(rows)


def count_text(value) -> str:
    """A count (split size, classes): an integer, "–" when missing (a column with a gap is float)."""
    return MISSING if number(value) == MISSING else str(int(value))


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
