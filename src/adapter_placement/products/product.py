"""What a product (one table, or one figure with its data) of DESIGN.md section 6 is: its name, title,
the inputs it reads (declared here, turned into paths by workflow/rules/tables.smk and figures.smk),
the function that computes its frame, the function that draws it (figures), the one that sets it side
by side with the paper's numbers (tables) and the findings of the paper it judges."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import pandas as pd

from .evidence import Finding


# ---------------------------------------------------------------- input declarations
# ``on`` says which datasets an input covers: None (every dataset the experiment runs on), "scores"
# (the scores config's dataset), "<experiment>.<field>" (that experiment's config field: a dataset or
# a list of them), or "score_targets" (every (dataset, model) the scores jobs score).

@dataclass(frozen=True)
class Batches:
    """The training batch files of ``experiment`` (a list of paths)."""
    experiment: str
    on: Optional[str] = None


@dataclass(frozen=True)
class Scores:
    """The score files of the datasets ``on`` names: one path for "scores", else a list."""
    on: str


@dataclass(frozen=True)
class ModelInfos:
    """The model-info files (``pipeline.model_info``) of the models the datasets ``on`` names use."""
    on: str


@dataclass(frozen=True)
class SearchFiles:
    """The placement searches' batch files (the search experiment)."""


Input = Batches | Scores | ModelInfos | SearchFiles


@dataclass(frozen=True)
class Product:
    """One table or figure. ``compute(context, inputs)`` returns its frame (the table's CSV, the
    figure's data CSV); ``draw(data, context, inputs)`` returns the matplotlib figure; ``pairs(ours,
    paper)`` the "this run | paper" table of the Markdown and the report. ``context`` is the part of the
    config the rule hands the job (tables.smk: ``table_context``), ``inputs`` the paths of ``reads``
    (plus "paper": the paper's CSV, when ``paper`` names one)."""
    name: str                      # the output's stem: table1, fig6 (the rule: table1, figure6)
    title: str
    reads: Mapping[str, Input]     # input name -> declaration
    compute: Callable[[Mapping, Mapping], pd.DataFrame]
    experiments: tuple[str, ...] = ()  # experiments whose config it reads (a change rebuilds it)
    reads_scores_config: bool = False
    dataset_details: tuple[str, ...] = ()  # dataset config keys beyond task, model, batch size, rank
    paper: Optional[str] = None    # stem of its paper/*.csv
    pairs: Optional[Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]] = None
    draw: Optional[Callable] = None
    findings: tuple[Finding, ...] = ()
    needs: Optional[str] = None    # beyond the paper: built only when the config has this experiment
    report_section: Optional[Callable[[pd.DataFrame, str], list[str]]] = None  # (table, results dir) -> its
    # lines of REPORT.md, in place of the standard section (side by side with the paper, then in full)

    @property
    def is_figure(self) -> bool:
        return self.draw is not None

    @property
    def rule(self) -> str:
        return self.name.replace("fig", "figure") if self.is_figure else self.name


def grid_nodes(context: Mapping) -> dict[str, int]:
    """Nodes n = 2L + 1 of each dataset's model (the grid is n x n)."""
    return {d: 2 * context["models"][e["model"]]["blocks"] + 1 for d, e in context["datasets"].items()}
