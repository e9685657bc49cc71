"""Tables from runs' metrics (analysis.py), on hand-made
batch JSONs whose answers are known."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from adapter_placement import analysis
from adapter_placement.products import baselines, scores, single
from adapter_placement import verdicts as V


def batch(tmp_path, name, runs):
    """A batch JSON like the training jobs write: runs = [(dataset, placement, seed, accuracy, extra)]."""
    items = []
    for dataset, placement, seed, accuracy, extra in runs:
        key = {"kind": "run", "experiment": "x", "dataset": dataset, "placement": placement, "seed": seed,
               "model": "m", "method": "adapters", "rank": 8, "activation": "gelu", "kind": "bottleneck", **extra}
        items.append({"key": key, "folder": f"f/{dataset}/{placement}/{seed}", "edges": [[0, 1]], "lr": 0.1, "steps": 10,
                      "status": "finished", "metrics": {"test_accuracy": accuracy, "train_loss": 1 - accuracy,
                                                        "mlflow_run_id": f"{dataset}-{placement}-{seed}",
                                                        "steps_per_second": 10.0, "trainable_parameters": 100}})
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"items": items}))
    return str(path)


def test_table1_takes_the_best_random_draw_by_mean_over_seeds(tmp_path):
    runs = [("sst2", "none", s, 0.5, {"method": "linear_probe"}) for s in (0, 1)]
    runs += [("sst2", "none", s, 0.9, {"method": "full_ft"}) for s in (0, 1)]
    runs += [("sst2", "parallel_all", s, a, {}) for s, a in ((0, 0.8), (1, 0.82))]
    runs += [("sst2", "sequential_all", s, 0.7, {}) for s in (0, 1)]
    runs += [("sst2", "random24_000", s, a, {}) for s, a in ((0, 0.95), (1, 0.65))]  # mean 0.80, one lucky seed
    runs += [("sst2", "random24_001", s, a, {}) for s, a in ((0, 0.86), (1, 0.84))]  # mean 0.85: the best
    table = baselines.table1(analysis.load_runs([batch(tmp_path, "t1", runs)]), ["sst2"]).set_index("method")
    best = table.loc["extended_max"]
    assert best.placement == "random24_001" and best["mean"] == pytest.approx(85.0) and best["std"] == pytest.approx(1.0)
    assert best.draws == 2 and best.run_ids == "sst2-random24_001-0;sst2-random24_001-1"
    assert table.loc["parallel_all", "mean"] == pytest.approx(81.0)
    assert table.loc["full_ft", "run_ids"] == "sst2-none-0;sst2-none-1"


def test_single_edges_kinds_and_table3(tmp_path):
    fig1 = [("d", f"parallel_{k}", 0, 0.5 + k / 100, {}) for k in (1, 2)]
    fig3 = [("d", "edge_0_0", 0, 0.4, {}), ("d", "edge_3_0", 0, 0.7, {}), ("d", "edge_0_3", 0, 0.6, {})]
    table = single.table3(analysis.load_runs([batch(tmp_path, "f1", fig1)]),
                            analysis.load_runs([batch(tmp_path, "f3", fig3)]), ["d"]).set_index("adapter_type")
    assert table.loc["parallel", "edge"] == "(1, 2)"
    assert table.loc["recurrent", "edge"] == "(3, 0)" and table.loc["recurrent", "mean"] == pytest.approx(70.0)
    assert table.loc["long_range", "edge"] == "(0, 3)" and table.loc["sequential", "edge"] == "(0, 0)"


def test_score_correlations_against_a_known_ranking(tmp_path):
    fig3 = [("d", f"edge_{i}_{j}", 0, 0.1 * (i + 2 * j) / 10, {}) for i in (0, 3, 6) for j in (0, 3, 6)]
    edges = analysis.single_edges(analysis.load_runs([batch(tmp_path, "f3", fig3)]))
    matrix = np.zeros((7, 7))
    for i, j in zip(edges.i, edges.j):
        matrix[i, j] = i + 2 * j  # the same order as accuracy, the reverse of train loss
    c = scores.score_correlations(edges, matrix)
    assert c["test_accuracy_spearman"] == pytest.approx(1.0) and c["train_loss_spearman"] == pytest.approx(-1.0)
    assert math.isnan(V.spearman([1, 1, 1], [1, 2, 3])[0])


def test_markdown_rounds_and_shortens_run_ids():
    frame = pd.DataFrame([{"a": 1.23456, "run_ids": "0123456789;abcdefghij", "b": math.nan}])
    text = analysis.markdown(frame)
    assert "| 1.235 | 01234567 abcdefgh |  |" in text


# The findings' verdicts and learnt.csv: tests/test_findings.py (known answers with seed noise).
