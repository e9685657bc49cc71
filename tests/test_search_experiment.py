"""The search experiment (beyond the paper) as the pipeline plans, costs and reports it: its runs and
searches from the config, the compute of each run against a hand computation of App. K, and the
report's comparison with GGA on a table whose answers are known. Fast, no training."""
import json
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml

from adapter_placement import analysis
from adapter_placement import plan as X
from adapter_placement.plan import Placement, paths
from adapter_placement.data import known_tasks
from adapter_placement.flops import adapter_flops, forward_flops, score_flops
from adapter_placement.products.costs import search_comparison, search_paragraph, search_run_costs, search_table

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    return yaml.safe_load((ROOT / name).read_text())


def embedded_with_search():
    """config.yaml (the search off) with the search the README's ``--config`` turns on: read from the
    README, so the documented command is the one these tests check."""
    command = re.search(r"--config '(experiments=\{.*?\}\})'", (ROOT / "README.md").read_text(), re.S)
    assert command, "README: the --config line that turns the search on"
    overrides = X.command_line_values(yaml.safe_load(command.group(1).removeprefix("experiments=")))
    config = load("config.yaml")
    assert config["experiments"]["search"] is None
    config["experiments"]["search"] = overrides["search"]
    X.check_config(config, known_tasks())
    return config


def test_paper_search_plan_counts():
    paper = load("config/paper.yaml")
    runs = X.plan(paper, "search")
    # per dataset: parallel_all x 3 seeds + 4 N x (random, gga, 4 searches) x 3 seeds
    assert len(runs) == 2 * (3 + 4 * 6 * 3) == 150
    # iterative GGA and prune-and-regrow (2 criteria) at each N; one edge switch serves every N
    assert sum(len(X.dataset_searches(paper, d)) for d in ("inat18", "sst2")) == 2 * (3 * 4 + 1) * 3 == 78
    assert len(X.search_batches(paper)) == 78  # runs_per_job 1: one job per search
    switch = [s for s in X.dataset_searches(paper, "sst2") if s.method == "edge_switch"]
    assert [(s.n, s.counts, s.seed) for s in switch] == [(24, (3, 6, 12, 24), seed) for seed in (0, 1, 2)]
    assert switch[0].names == ["edge_switch3_000", "edge_switch6_000", "edge_switch12_000", "edge_switch24_000"]
    assert {r.group for r in runs if r.dataset == "sst2"} >= {"gga_24", "edge_switch_24", "parallel_all_24"}


def test_search_runs_read_the_search_that_chose_their_placement():
    config = embedded_with_search()
    config["runs_per_job"] = 5
    runs = [r for r in X.plan(config, "search") if r.placement.method in X.SEARCHED]
    assert runs
    for run in runs:
        derived = X.run_spec(config, run).io.derived_file
        searches = X.dataset_searches(config, run.dataset)
        index = next(k for k, s in enumerate(searches) if str(run.placement) in s.names)
        assert derived == paths.search_batch_file("results", run.dataset, run.model, index // 5)
        batch = int(derived.rsplit("batch", 1)[1].split(".")[0])
        assert str(run.placement) in [n for i in X.search_items(config, run.dataset, batch) for n in i["names"]]
    gga = next(r for r in X.plan(config, "search") if r.group == "gga_12")
    assert str(gga.placement) == "gga_12_g0.6"
    assert X.run_spec(config, gga).io.derived_file == f"results/placements/{gga.dataset}/{gga.model}/gga.json"
    assert gga.placement in X.gga_placements(config, gga.dataset, gga.model)
    assert X.gga_parameters(config, Placement.parse("gga_12_g0.6")) == (12, 0.6)


def test_search_items_give_each_method_its_options():
    config = embedded_with_search()
    config["experiments"]["search"]["n"] = [3, 12]  # one switch serves both N
    config["experiments"]["search"]["datasets"] = ["inat18"]
    items = {(i["key"]["method"], i["key"]["n"], i["key"]["seed"]): i
             for b in range(len([1 for d, _ in X.search_batches(config) if d == "inat18"]))
             for i in X.search_items(config, "inat18", b)}
    iterative = items[("iterative_gga", 12, 1)]  # N in {3, 12}, 2 rounds, 2 updates, 30 steps
    assert iterative["function"] == "iterative_gga"
    assert {k: iterative["options"][k] for k in ("n", "k", "gamma", "seed", "phase_steps", "head_steps")} == {
        "n": 12, "k": 6, "gamma": 0.6, "seed": 1, "phase_steps": 30, "head_steps": 3}
    switch = items[("edge_switch", 12, 0)]
    assert switch["options"]["steps"] == 30 and switch["options"]["candidates"] is None
    assert switch["options"]["n"] == 12 and switch["names"] == ["edge_switch3_000", "edge_switch12_000"]
    assert ("edge_switch", 3, 0) not in items
    taylor = items[("prune_taylor", 3, 0)]
    assert taylor["function"] == "prune_regrow" and taylor["options"]["criterion"] == "taylor"
    assert taylor["options"]["update_every"] == 10 and taylor["options"]["fraction"] == 0.3
    assert taylor["options"]["fn"] == "frobenius" and iterative["options"]["fn"] == "srank"  # RigL regrows by magnitude
    assert items[("prune_magnitude", 3, 0)]["options"]["criterion"] == "magnitude"
    assert iterative["lr_file"] == "results/lr/inat18/vit/adapters.json"


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(n=[3, 170]), r"experiments\.search\.n\[1\]: 170 adapters.*169 edges"),
    (lambda s: s.update(candidates=5, n=[3, 6]), r"experiments\.search\.candidates: 5 must lie between N = 6"),
])
def test_bad_search_configs_name_the_value(edit, message):
    config = embedded_with_search()
    edit(config["experiments"]["search"])
    with pytest.raises(X.ConfigError, match=message):
        X.check_config(config, known_tasks())


def test_a_config_without_the_search_plans_none_of_it():
    config = load("config.yaml")  # search: null
    assert X.plan(config, "search") == [] and X.search_batches(config) == []
    assert X.search_batch_files(config) == []
    X.check_config(config, known_tasks())
    del config["experiments"]["search"]
    assert X.plan(config, "search") == [] and X.search_batches(config) == []


# ---------------------------------------------------------------- compute of each run

MODEL = {"model": "m", "blocks": 2, "hidden_size": 8, "heads": 2, "ffn_size": 16, "tokens": 5}
SCORES = {"dataset": "d", "examples": 12, "num_nodes": 5, "tokens_per_example": None,
          "heads": {"default": {"head_steps": 3, "seconds": {"head": 0.5, "gradients": 1.0, "reduce": 0.25}}}}


def search_batch(tmp_path, runs):
    """A batch JSON of final runs: (placement, group, seed, accuracy, edges, seconds)."""
    items = [{"key": {"kind": "run", "experiment": "search", "dataset": "d", "placement": placement, "seed": seed,
                      "model": "m", "method": "adapters", "rank": 2, "activation": "gelu", "kind": "bottleneck",
                      "group": group},
              "folder": f"f/{placement}/{seed}", "edges": edges, "lr": 0.1, "steps": 10, "status": "finished",
              "metrics": {"test_accuracy": accuracy, "seconds": seconds, "mlflow_run_id": f"{placement}-{seed}"}}
             for placement, group, seed, accuracy, edges, seconds in runs]
    path = tmp_path / "search.json"
    path.write_text(json.dumps({"items": items}))
    return [str(path)]


def test_run_costs_follow_app_k(tmp_path):
    runs = analysis.load_runs(search_batch(tmp_path, [
        ("gga_2_g0.6", "gga_2", 0, 0.5, [[0, 1], [1, 2]], 3.0),
        ("edge_switch2_000", "edge_switch_2", 0, 0.6, [[3, 1], [0, 4]], 4.0),
        ("random2_000", "random_2", 0, 0.4, [[0, 2], [1, 1]], 2.0)]))
    searches = [{"key": {"dataset": "d"}, "name": "edge_switch2_000", "mlflow_run_id": "s0",
                 "seconds": {"total": 7.5}, "flops": {"total": 2.5e9}}]
    costs = search_run_costs(runs, searches, {"d": SCORES}, {"m": MODEL}, {"d": 4}).set_index("method")
    t, d = 5, 8
    fwd = forward_flops(t, d, 2, 16, 2)
    adapters = adapter_flops(2, t, d, 2)
    # training: 10 steps x 4 examples x forward and backward (2x), plus a first pass when recurrent
    assert costs.loc["gga", "training_gflops"] == pytest.approx(10 * 4 * 2 * (fwd + adapters) / 1e9)
    assert costs.loc["edge_switch", "training_gflops"] == pytest.approx(10 * 4 * (2 * (fwd + adapters) + fwd) / 1e9)
    # GGA: 3 head steps of 4 examples (forward only), then 12 examples forward + backward and 25 products
    gga = 3 * 4 * fwd + 12 * 2 * fwd + score_flops(12, 25, t, d)
    assert costs.loc["gga", "selection_gflops"] == pytest.approx(gga / 1e9)
    assert costs.loc["gga", "selection_seconds"] == 1.75
    assert costs.loc["edge_switch", ["selection_seconds", "selection_gflops"]].tolist() == [7.5, 2.5]
    assert costs.loc["edge_switch", "search_run_id"] == "s0" and costs.loc["random", "selection_gflops"] == 0.0
    assert costs.loc["random", "n_adapters"] == 2 and costs.loc["edge_switch", "training_seconds"] == 4.0
    table = search_table(costs.reset_index(), ["random", "gga", "edge_switch"])
    assert table.method.tolist() == ["random", "gga", "edge_switch"]
    row = table.set_index("method").loc["edge_switch"]
    assert row.total_seconds == 11.5 and row["mean"] == pytest.approx(60.0) and row.search_run_ids == "s0"


# ---------------------------------------------------------------- the report's comparison with GGA

def test_report_says_where_a_method_beats_gga():
    table = pd.DataFrame([
        {"dataset": "d", "method": m, "n_adapters": n, "mean": acc, "std": std, "total_seconds": s, "total_gflops": g}
        for m, n, acc, std, s, g in [("gga", 3, 50.0, 1.0, 10.0, 100.0), ("gga", 6, 60.0, 1.0, 10.0, 100.0),
                                     ("prune_taylor", 3, 55.0, 1.0, 30.0, 200.0),
                                     ("prune_taylor", 6, 59.5, 1.0, 50.0, 400.0),
                                     ("parallel_all", 12, 58.0, 0.5, 5.0, 50.0)]])
    comparison = search_comparison(table, "prune_taylor")
    assert [(p["n"], p["diff"], p["clear"]) for p in comparison["points"]] == [(3, 5.0, True), (6, -0.5, False)]
    text = search_paragraph(comparison)
    assert "beats GGA at 1 of 2 points: d N=3 (+5.0)" in text and "does not at d N=6 (-0.5, within noise)" in text
    assert "4.00x GGA's measured seconds and 3.00x its analytic FLOPs" in text  # medians of (3, 5) and (2, 4)
    # parallel_all has one N (2L): it is compared with GGA's largest N
    parallel = search_comparison(table, "parallel_all")["points"]
    assert [(p["n"], p["gga_n"], p["diff"], p["clear"]) for p in parallel] == [(12, 6, -2.0, True)]
    table.loc[table.method == "parallel_all", "mean"] = 62.0
    assert "beats GGA at 1 of 1 points: d N=12 (+2.0); it is never behind" in search_paragraph(
        search_comparison(table, "parallel_all"))
    assert "no point to compare" in search_paragraph(search_comparison(table, "edge_switch"))


def test_a_run_whose_search_diverged_is_recorded_as_diverged(tmp_path):
    from adapter_placement.pipeline import train_item

    config = embedded_with_search()
    run = next(r for r in X.plan(config, "search") if r.placement.method in X.SEARCHED)
    spec = X.run_spec(config, run)
    derived = tmp_path / "search.json"
    derived.write_text(json.dumps({str(run.placement): None, "searches": []}))
    io = replace(spec.io, derived_file=str(derived), folder=str(tmp_path / "run"))
    result = train_item(replace(spec, io=io).to_json())
    assert result["status"] == "diverged" and str(run.placement) in result["error"] and result["metrics"] == {}
    assert result["placement"] == run.placement.to_dict()
    assert not (tmp_path / "run").exists()  # nothing was trained


def test_one_edge_switch_gives_every_n_its_top_edges():
    from types import SimpleNamespace

    from adapter_placement.pipeline import placements_of

    ranked = [[3, 1, 0.9], [0, 2, 0.8], [4, 4, 0.5], [1, 0, 0.1]]
    switch = SimpleNamespace(edges=[(3, 1), (0, 2), (4, 4)], details={"gate_probability": ranked})
    assert placements_of(switch, [1, 3]) == [[[3, 1]], [[3, 1], [0, 2], [4, 4]]]
    assert placements_of(SimpleNamespace(edges=[(2, 3), (0, 1)], details={}), [2]) == [[[2, 3], [0, 1]]]
