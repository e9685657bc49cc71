"""figures.py on constructed inputs: every figure of the pipeline is built from hand-made batch and
score files as its job reads them, drawn, and written; the PNG is a real, non-empty image, the
figure-data CSV reads back as the frame, and the numbers the figure plots are the frame's."""
import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from adapter_placement import figures, products

matplotlib.use("Agg")
approx = pytest.approx

GRID = [(0, 0), (0, 2), (2, 0), (2, 2)]  # the stride-2 grid of a 1-block model (n = 3)


def item(dataset, placement, seed, accuracy, loss=None, edges=((0, 1),), rank=4, **key):
    key = {"kind": "run", "experiment": "x", "dataset": dataset, "placement": placement, "seed": seed, "model": "m",
           "method": "adapters", "rank": rank, "activation": "gelu", "kind": "bottleneck", "group": "", **key}
    metrics = {"test_accuracy": accuracy, "train_loss": 1 - accuracy if loss is None else loss,
               "mlflow_run_id": f"{dataset}-{placement}-{seed}", "steps_per_second": 10.0,
               "trainable_parameters": 100 * rank, "seconds": 1.0}
    return {"key": key, "folder": "f", "edges": [list(e) for e in edges], "lr": 0.1, "steps": 10,
            "status": "finished", "metrics": metrics}


def table1_items(dataset, base):
    items = [item(dataset, "none", 0, base + 0.3, method="full_ft"), item(dataset, "none", 0, base, method="linear_probe"),
             item(dataset, "parallel_all", 0, base + 0.2), item(dataset, "sequential_all", 0, base + 0.1)]
    return items + [item(dataset, f"random2_{k:03d}", 0, base + 0.05 * k) for k in range(2)]


def scores_file(tmp_path, dataset, srank):
    s = np.array(srank, float)
    record = {"dataset": dataset, "model": "m", "examples": 4, "num_nodes": 3, "tokens_per_example": None,
              "heads": {"default": {"head_steps": 2, "scores": {"srank": s.tolist(), "frobenius": (s[::-1]).tolist()},
                                    "seconds": {"head": 0.1, "gradients": 0.2, "reduce": 0.3}},
                        "1": {"head_steps": 1, "srank_by_eta": {"0.01": s.tolist(), "0.1": (-s).tolist()}},
                        "4": {"head_steps": 4, "srank_by_eta": {"0.01": s.T.tolist(), "0.1": s.tolist()}}}}
    path = tmp_path / f"scores_{dataset}.json"
    path.write_text(json.dumps(record))
    return str(path)


def batch(tmp_path, name, items):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"items": items}))
    return [str(path)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs of every figure job: two datasets (vision inat18, text sst2), 1-block models (n = 3)."""
    tmp = tmp_path_factory.mktemp("figures")
    fig3 = [item(d, f"edge_{i}_{j}", s, acc + 0.02 * s, loss=2.0 - acc)
            for d, accs in (("inat18", (0.1, 0.2, 0.4, 0.3)), ("sst2", (0.6, 0.7, 0.9, 0.8)))
            for (i, j), acc in zip(GRID, accs) for s in (0, 1)]
    fig1 = [item(d, f"parallel_{k}", 0, acc) for d, accs in (("inat18", (0.15, 0.25)), ("sst2", (0.65, 0.75)))
            for k, acc in zip((1, 2), accs)]
    fig6ab = [item("inat18", f"{m}_{n}", 0, acc, edges=[(0, 1)] * n)
              for n in (1, 2) for m, acc in (("gga", 0.3 + 0.1 * n), ("topk", 0.2 + 0.1 * n), ("first", 0.1 * n), ("last", 0.05 * n))]
    fig6ab += [item("inat18", f"random{n}_000", 0, 0.15 * n, edges=[(0, 1)] * n, group=f"random_{n}") for n in (1, 2)]
    fig6c = [item("inat18", name, 0, acc, rank=r) for r in (2, 4) for name, acc in (("gga_1_g0.8", 0.1 * r), ("ffn_parallel", 0.08 * r))]
    fig8 = [item("sst2", f"edge_{i}_{j}", 0, acc, kind="linear") for (i, j), acc in zip(GRID, (0.75, 0.7, 0.95, 0.9))]
    fig9 = [item("sst2", f"spread_{n}", 0, acc, activation=a, edges=[(0, 1)] * n)
            for a, base in (("gelu", 0.6), ("relu", 0.55)) for n, acc in ((1, base), (2, base + 0.1))]
    srank = [[1.0, 5.0, 2.0], [3.0, 4.0, 6.0], [7.0, 0.5, 8.0]]
    inputs = {"fig1": batch(tmp, "fig1", fig1), "fig3": batch(tmp, "fig3", fig3),
              "table1": batch(tmp, "table1", table1_items("inat18", 0.2) + table1_items("sst2", 0.6)),
              "fig6ab": batch(tmp, "fig6ab", fig6ab), "fig6c": batch(tmp, "fig6c", fig6c), "fig8": batch(tmp, "fig8", fig8),
              "fig9": batch(tmp, "fig9", fig9), "fig15": batch(tmp, "fig15", [item("sst2", "all_edges", 0, 0.5)])}
    inputs["scores_by_dataset"] = [scores_file(tmp, "inat18", srank), scores_file(tmp, "sst2", np.array(srank).T)]
    context = {"experiments": {"table1": {"datasets": ["inat18", "sst2"]}, "fig3": {"datasets": ["inat18", "sst2"]},
                               "fig6ab": {"datasets": ["inat18"], "gamma": 0.5}, "fig8": {"dataset": "sst2"},
                               "fig15": {"dataset": "sst2"}},
               "datasets": {"inat18": {"model": "vit"}, "sst2": {"model": "minilm"}},
               "models": {"vit": {"blocks": 1}, "minilm": {"blocks": 1}}, "scores": {"dataset": "inat18"}}
    return tmp, inputs, context


def build_figure(name, context, inputs):
    """(data, draw) of the figure product ``name``: its frame, and a function that draws it."""
    product = products.PRODUCTS[name]
    data = product.compute(context, inputs)
    return data, lambda: product.draw(data, context, inputs)


def inputs_of(name, inputs):
    """What the figure's rule hands it (figures.smk): one scores file or all of the Fig. 3 datasets'."""
    out = {k: v for k, v in inputs.items() if k != "scores_by_dataset"}
    if name in ("fig5", "fig11"):
        out["scores"] = inputs["scores_by_dataset"]
    elif name in ("fig10", "fig13", "fig14"):
        out["scores"] = inputs["scores_by_dataset"][0]
    return out


def plotted(fig) -> np.ndarray:
    """Every number the figure draws: line points, scatter offsets, heatmap cells, bar heights."""
    values = []
    for ax in fig.axes:
        for line in ax.lines:
            values += list(np.asarray(line.get_xydata(), float).ravel())
        for collection in ax.collections:
            array = collection.get_array()
            if array is not None:
                values += list(np.ma.filled(np.ma.asarray(array, float), np.nan).ravel())
            values += list(np.asarray(collection.get_offsets(), float).ravel())
        values += [p.get_height() for p in ax.patches if hasattr(p, "get_height")]
    return np.array([v for v in values if np.isfinite(v)])


def assert_plotted(fig, numbers):
    drawn = plotted(fig)
    for value in np.asarray(numbers, float):
        if np.isfinite(value):
            assert np.isclose(drawn, value, atol=1e-9).any(), f"{value} is not drawn"


# per figure: the frame's columns that the figure draws, and a known value of its data
PLOTS = {
    "fig1": (["mean"], lambda d: d.set_index(["dataset", "position"]).loc[("sst2", 2), "mean"] == approx(75.0)),
    "fig7": (["mean"], lambda d: d.set_index(["dataset", "position"]).loc[("inat18", 1), "sublayer"] == "MHA"),
    "fig3": (["mean"], lambda d: d.set_index(["dataset", "placement"]).loc[("inat18", "edge_2_0"), "mean"] == approx(41.0)),
    "fig4": (["spearman"], lambda d: d.set_index(["dataset_a", "dataset_b"]).loc[("inat18", "sst2"), "spearman"] == approx(1.0)),
    "fig5": ([], lambda d: d.set_index("dataset").loc["inat18", "test_accuracy_spearman"] == approx(0.8)),
    "fig11": ([], lambda d: d.set_index("dataset").loc["inat18", "train_loss_spearman"] == approx(-0.8)),
    "fig6": (["mean"], lambda d: d[(d.panel == "ab") & (d.selection == "gga") & (d.n_adapters == 2)]["mean"].iloc[0] == approx(50.0)),
    "fig8": (["mean_linear", "mean_nonlinear"], lambda d: d.pearson.iloc[0] == approx(400 / math.sqrt(425 * 500))),
    "fig9": (["mean"], lambda d: d.set_index(["activation", "n_adapters"]).loc[("relu", 2), "mean"] == approx(65.0)),
    "fig10": ([], lambda d: d.set_index("function").loc["srank", "test_accuracy_spearman"] == approx(0.8)),
    "fig12": (["mean"], lambda d: d.set_index(["dataset", "placement"]).loc[("sst2", "edge_0_0"), "mean"] == approx(61.0)),
    "fig13": (["train_loss_corr", "test_acc_corr"], lambda d: d.n_steps.tolist() == [1, 1, 4, 4]),
    "fig14": (["discount_first", "score_after"], lambda d: d[d.pick == 0][["i", "j"]].values.tolist() == [[2, 2]]),
    "fig15": (["mean"], lambda d: d["mean"].tolist() == approx([65.0, 50.0])),  # SST2's best draw: 001
}


@pytest.mark.parametrize("name", list(PLOTS))
def test_each_figure_draws_its_frame_and_writes_a_png(world, name, tmp_path):
    _, inputs, context = world
    columns, known = PLOTS[name]
    data, draw = build_figure(name, context, inputs_of(name, inputs))
    assert known(data), data
    fig = draw()
    for column in columns:
        assert_plotted(fig, data[column])
    matplotlib.pyplot.close(fig)
    out = {"png": str(tmp_path / "f.png"), "pdf": str(tmp_path / "f.pdf"), "data": str(tmp_path / "f.csv")}
    written = figures.write_figure({"name": name, "title": name, "context": context}, inputs_of(name, inputs), out)
    png = (tmp_path / "f.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 5000
    back = pd.read_csv(out["data"])
    for column in columns:
        assert back[column].tolist() == approx(written[column].tolist(), nan_ok=True)


def test_fig5_plots_each_edges_score_against_its_accuracy(world):
    _, inputs, context = world
    _, draw = build_figure("fig5", context, inputs_of("fig5", inputs))
    fig = draw()
    # inat18: srank at (0,0), (0,2), (2,0), (2,2) = 1, 2, 7, 8; accuracies (mean of seeds) 11, 21, 41, 31 %
    offsets = np.asarray(sorted(map(tuple, np.asarray(fig.axes[0].collections[0].get_offsets()).tolist())))
    assert offsets == approx(np.array([(1.0, 11.0), (2.0, 21.0), (7.0, 41.0), (8.0, 31.0)]))
    assert "rho = 0.80" in fig.axes[0].get_title()
    matplotlib.pyplot.close(fig)


def test_fig8_title_gives_pearson_and_spearman(world):
    _, inputs, context = world
    data, draw = build_figure("fig8", context, inputs_of("fig8", inputs))
    fig = draw()
    # linear 75, 70, 95, 90 vs non-linear 61, 71, 91, 81 (mean of two seeds): ranks (2, 1, 4, 3) vs
    # (1, 2, 4, 3), Spearman 0.8; Pearson 400 / sqrt(425 * 500) = 0.87
    assert data.spearman.iloc[0] == approx(0.8)
    assert f"Pearson {data.pearson.iloc[0]:.2f}, Spearman 0.80" in fig.axes[1].get_title()
    heat = np.ma.filled(np.ma.asarray(fig.axes[0].collections[0].get_array(), float), np.nan).reshape(2, 2)
    assert heat.tolist() == [[75.0, 70.0], [95.0, 90.0]]
    matplotlib.pyplot.close(fig)


def test_fig14_heatmaps_are_the_discount_and_the_scores_after_selection(world):
    _, inputs, context = world
    data, draw = build_figure("fig14", context, inputs_of("fig14", inputs))
    fig = draw()
    left, right = (np.ma.filled(np.ma.asarray(ax.collections[0].get_array(), float), np.nan).reshape(3, 3)
                   for ax in fig.axes[:2])  # the colour bars' axes come after
    # first pick (2, 2) (score 8) with gamma 0.5: d = 1 - 0.5 ** (|i - 2| + |j - 2|)
    assert left.tolist() == [[1 - 1 / 16, 1 - 1 / 8, 0.75], [1 - 1 / 8, 0.75, 0.5], [0.75, 0.5, 0.0]]
    assert right == approx(data.score_after.to_numpy().reshape(3, 3))
    assert int((data.pick >= 0).sum()) == 2 and not math.isnan(right.sum())
    matplotlib.pyplot.close(fig)


def test_fig6_first_and_last_at_2L_are_table1_parallel_all():
    """plan_fig6ab trains no first-2L / last-2L (they are parallel_all): the figure takes Table 1's
    runs of parallel_all at that N, and nothing at an N the figure does not have."""
    from adapter_placement.products.gga import fig6_data

    def runs(rows):
        return pd.DataFrame([{"dataset": d, "placement": p, "selection": s, "n_adapters": n, "status": "finished",
                              "test_accuracy": a, "run_id": i} for d, p, s, n, a, i in rows])

    fig6ab = runs([("places365", "gga_12", "gga", 12, 0.5, "g0"), ("places365", "gga_12", "gga", 12, 0.7, "g1"),
                   ("places365", "first_3", "first", 3, 0.2, "f0")])
    table1 = runs([("places365", "parallel_all", "parallel_all", 12, 0.4, "p0"),
                   ("places365", "parallel_all", "parallel_all", 12, 0.6, "p1"),
                   ("places365", "linear_probe", "none", 0, 0.1, "l0"),
                   ("inat18", "parallel_all", "parallel_all", 12, 0.9, "q0")])
    data = fig6_data(fig6ab, table1).set_index(["dataset", "selection", "n_adapters"])
    for end in ("first", "last"):
        assert data.loc[("places365", end, 12), "mean"] == pytest.approx(50.0)
        assert data.loc[("places365", end, 12), "run_ids"] == "p0;p1"
    assert ("places365", "last", 3) not in data.index and "inat18" not in data.index.get_level_values(0)
    assert len(fig6_data(fig6ab)) == 2  # without Table 1: the runs alone
