"""What a finding of the paper is and what its criterion rests on: the claim (written once, in its
``Finding``), the run's health (which runs collapsed, so that no finding counts them as evidence) and
the helpers the criteria share. The statistics themselves are in ``verdicts.py``.

A finding's verdict is one of four: reproduced, not reproduced, inconclusive (the data cannot
decide) or diverged (its runs never left the chance-level train loss; they are no evidence)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np
import pandas as pd

from .. import verdicts as V

FINDING_COLUMNS = ["figure", "claim", "paper", "ours", "criterion", "statistic", "verdict"]


@dataclass(frozen=True)
class Finding:
    """One claim of the paper. ``judge(evidence)`` returns its verdict record (FINDING_COLUMNS), or
    None when this run has nothing to say on it; the product's finding function fills the record
    with ``record``. ``claim`` may hold {fields} that the finding function fills (its parameters);
    ``paper`` / ``criterion`` are the texts when they do not depend on the data."""
    figure: str
    claim: str
    paper: str
    criterion: str
    judge: Callable[["Evidence"], Optional[dict]]

    def record(self, ours: str, statistic: str, verdict: str, *, paper: Optional[str] = None,
               criterion: Optional[str] = None, **claim_fields) -> dict:
        assert verdict in V.VERDICTS, verdict
        return {"figure": self.figure, "claim": self.claim.format(**claim_fields) if claim_fields else self.claim,
                "paper": self.paper if paper is None else paper, "ours": ours,
                "criterion": self.criterion if criterion is None else criterion, "statistic": statistic,
                "verdict": verdict}


@dataclass(frozen=True)
class Evidence:
    """What the findings judge: the pipeline's tables and figure data and the paper's CSVs (paths;
    read by stem), which runs collapsed, the seeds per cell and the scores config's dataset."""
    tables: list
    figure_data: list
    paper_csvs: list
    health: "Health"
    seeds: int = 1
    scores_dataset: str = "inat18"

    def table(self, stem: str) -> pd.DataFrame:
        return read_stem(self.tables, stem)

    def figure(self, stem: str) -> pd.DataFrame:
        return read_stem(self.figure_data, stem)

    def paper(self, stem: str) -> pd.DataFrame:
        return read_stem(self.paper_csvs, stem)

    @property
    def grid_edges(self) -> int:
        """Grid edges behind each Fig. 5 correlation (the fewest over the datasets)."""
        fig5 = self.figure("fig5")
        return int(fig5["edges"].min()) if len(fig5) else 0

    @property
    def score_edges(self) -> int:
        """Grid edges behind the Table 4 correlations (the scores dataset's)."""
        table4 = self.table("table4")
        return int(table4["edges"].min()) if "edges" in table4 and len(table4) else self.grid_edges


def read_stem(paths: list, stem: str) -> pd.DataFrame:
    for path in paths:
        if Path(path).stem == stem:
            return pd.read_csv(path)
    raise FileNotFoundError(f"no {stem}.csv among the inputs")


def fmt(value: float, digits: int = 2) -> str:
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


# ---------------------------------------------------------------- what the criteria share

def seeds_of(frame: pd.DataFrame, default: int, column: str = "seeds") -> pd.Series:
    """Seeds behind each cell: the table's own column where it has one, else the run's seed count."""
    if column in frame:
        return frame[column].fillna(default).astype(int)
    return pd.Series(default, index=frame.index)


def is_bad(row, health: Health, column: str = "run_ids") -> bool:
    """A cell (a table row) rests on a collapsed run: one of its run ids collapsed, or the table
    counts runs of it that diverged (``diverged`` column of analysis.summarise)."""
    diverged = row.get(column.replace("run_ids", "diverged"), 0)  # run_ids_linear -> diverged_linear
    return health.cell(row.get(column)) or bool(V.finite(diverged) and float(diverged) > 0)


def healthy(frame: pd.DataFrame, health: Health, column: str = "run_ids") -> pd.DataFrame:
    """The rows of ``frame`` whose runs did not collapse."""
    if frame.empty:
        return frame
    return frame[[not is_bad(row, health, column) for _, row in frame.iterrows()]]


def percent(frame: pd.DataFrame, columns=("mean", "std")) -> pd.DataFrame:
    """Table 3 holds fractions (as the paper prints it), the other tables percent: a table whose means
    are all <= 1 is taken as fractions. (A percent table with every accuracy <= 1% would be misread;
    no run of the pipeline's tasks with more than one cell is that low everywhere.)"""
    if frame.empty or frame["mean"].max() > 1.0:
        return frame
    return frame.assign(**{c: frame[c] * 100 for c in columns})


def tally(outcomes) -> str:
    outcomes = list(outcomes)
    return f"+{outcomes.count(1)} / -{outcomes.count(-1)} / 0: {outcomes.count(0)} of {len(outcomes)}"


def in_pooled_std(diff: float, pooled: float) -> str:
    """A difference in units of the pooled seed std, as the findings print it."""
    return f"{fmt(diff / pooled if pooled else math.nan)} pooled std"


def noise_of(rows: pd.DataFrame) -> tuple[float, int]:
    """The seed noise that ``rows`` share (the healthy cells of one dataset in a table or figure, with
    ``std`` and ``seeds``): their pooled std and its degrees of freedom. With two seeds a cell has one
    df of its own; a test of two cells against their own stds alone (Welch) rests on about two."""
    rows = rows.dropna(subset=["mean"]) if "mean" in rows else rows
    if "run_ids" in rows:  # a cell shown twice (the same runs under two names) is one cell of noise
        rows = rows[~(rows.run_ids.duplicated() & rows.run_ids.astype(str).ne(""))]
    return V.pooled_noise(rows["std"].tolist(), rows["seeds"].tolist())


def t_rows(a, b, noise: tuple[float, int]) -> tuple[int, str]:
    """Cell a vs cell b (rows with mean and seeds) against the shared seed noise (``noise_of``): the
    outcome and a short text."""
    t, df, p = V.pooled_t(a["mean"], int(a["seeds"]), b["mean"], int(b["seeds"]), *noise)
    return V.test_outcome(t, p), f"t={fmt(t)}, df={noise[1]}, p={fmt(p, 3)}"


def t_cells(frame: pd.DataFrame, better: str, worse: str, key: str, seeds: int, health: Health):
    """Per dataset: the ``better`` cell vs the ``worse`` cell (rows told apart by ``key``), a t test
    against the pooled seed noise of the dataset's healthy cells; cells with a collapsed run are left
    out. (outcomes, texts, datasets left out)."""
    outcomes, texts, left_out = [], [], 0
    for dataset, part in frame.groupby("dataset", sort=False):
        part = part.assign(seeds=seeds_of(part, seeds))
        cells = part.set_index(key)
        if better not in cells.index or worse not in cells.index:
            continue
        if is_bad(cells.loc[better], health) or is_bad(cells.loc[worse], health):
            left_out += 1
            continue
        if not V.finite(cells.loc[better, "mean"], cells.loc[worse, "mean"]):
            continue  # a missing cell
        outcome, text = t_rows(cells.loc[better], cells.loc[worse], noise_of(healthy(part, health)))
        outcomes.append(outcome)
        texts.append(f"{dataset} {text}")
    return outcomes, texts, left_out


def pooled_of(rows: pd.DataFrame) -> float:
    return V.pooled_std(rows["std"].tolist(), rows["seeds"].tolist())
