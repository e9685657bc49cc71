"""The scores and placement jobs of the pipeline (pipeline.all_scores, select_placements,
best_placement) against ``scores.score_matrix``, ``gga.gga_select`` and answers written out by hand."""
import json
import math

import numpy as np
import pytest
import torch

from adapter_placement import edge_gradients, pipeline
from adapter_placement.gga import gga_select
from adapter_placement.scores import SCORE_FUNCTIONS, score_matrix
from conftest import small_vit

ETAS = [0.01, 0.05, 0.1, 0.15]  # Fig. 13

# Singular value profiles, d = 6, and srank at each eta of ETAS counted by hand (cumulative sums
# against (1 - eta) * total, every threshold at least 0.03 away from a partial sum):
PROFILES = {
    "zero": ([0, 0, 0, 0, 0, 0], [0, 0, 0, 0]),  # a zero matrix has srank 0
    "rank1": ([1, 0, 0, 0, 0, 0], [1, 1, 1, 1]),
    # total 8: partial sums 4, 6, 7, 7.5, 7.8, 8 against 7.92, 7.6, 7.2, 6.8
    "decay": ([4, 2, 1, 0.5, 0.3, 0.2], [6, 5, 4, 3]),
    # total 9.5: partial sums 3, 6, 7, 8, 9, 9.5 against 9.405, 9.025, 8.55, 8.075
    "steps": ([3, 3, 1, 1, 1, 0.5], [6, 6, 5, 5]),
    "flat": ([1, 1, 1, 1, 1, 1], [6, 6, 6, 6]),
}
LAYOUT = [["decay", "zero", "steps"], ["flat", "rank1", "decay"], ["steps", "decay", "rank1"]]  # n = 3


def constructed_gradients(seed=0):
    """A (3, 3, 6, 6) stack G_ij = U diag(s_ij) V^T with random orthogonal U, V and the profiles
    above, scaled per edge so that the norms differ: returns it and the scale of each edge."""
    g = torch.Generator().manual_seed(seed)
    grads = torch.zeros(3, 3, 6, 6)
    scale = torch.zeros(3, 3, dtype=torch.float64)
    for i in range(3):
        for j in range(3):
            u, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
            v, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
            scale[i, j] = 0.5 + 3 * i + j
            s = torch.tensor(PROFILES[LAYOUT[i][j]][0], dtype=torch.float64) * scale[i, j]
            grads[i, j] = (u @ torch.diag(s) @ v.T).float()
    return grads, scale


def test_all_scores_on_constructed_gradients_are_the_hand_counted_answers():
    grads, scale = constructed_gradients()
    by_fn, by_eta = pipeline.all_scores(grads, list(SCORE_FUNCTIONS), 0.1, ETAS)
    assert sorted(by_eta) == ["0.01", "0.05", "0.1", "0.15"]
    for k, eta in enumerate(ETAS):
        expected = [[PROFILES[LAYOUT[i][j]][1][k] for j in range(3)] for i in range(3)]
        assert by_eta[f"{eta:g}"] == expected, f"eta {eta}"
    # the srank score function is taken at the job's eta (0.1 here), not the first of the grid
    assert by_fn["srank"] == [[PROFILES[LAYOUT[i][j]][1][2] for j in range(3)] for i in range(3)]
    for i in range(3):
        for j in range(3):
            s = np.array(PROFILES[LAYOUT[i][j]][0]) * scale[i, j].item()
            assert by_fn["frobenius"][i][j] == pytest.approx(math.sqrt((s ** 2).sum()), rel=1e-5, abs=1e-6)
            assert by_fn["spectral"][i][j] == pytest.approx(s.max(), rel=1e-5, abs=1e-6)
            assert by_fn["nuclear"][i][j] == pytest.approx(s.sum(), rel=1e-5, abs=1e-5)
            columns = grads[i, j].double().abs().sum(0).numpy()  # sum over rows: one value per column
            assert by_fn["min_col"][i][j] == pytest.approx(columns.min(), rel=1e-6)
            assert by_fn["max_col"][i][j] == pytest.approx(columns.max(), rel=1e-6)


@pytest.mark.parametrize("eta", [0.01, 0.15])
def test_all_scores_equal_score_matrix_on_real_gradients(eta, images):
    grads = edge_gradients(small_vit(depth=2), [(images, torch.tensor([0, 3, 1, 4]))])
    assert grads.shape == (5, 5, 32, 32)
    by_fn, by_eta = pipeline.all_scores(grads, list(SCORE_FUNCTIONS), eta, ETAS)
    for fn in SCORE_FUNCTIONS:
        np.testing.assert_allclose(np.array(by_fn[fn]), score_matrix(grads, fn, eta).numpy(), rtol=1e-10,
                                   atol=0, err_msg=fn)
    for e in ETAS:
        np.testing.assert_array_equal(np.array(by_eta[f"{e:g}"]), score_matrix(grads, "srank", e).numpy())
    # the grid must differ between etas here, or the comparison above could not tell them apart
    assert len({tuple(np.array(by_eta[f"{e:g}"]).ravel()) for e in ETAS}) > 1


# ---------------------------------------------------------------- select-placements

SCORES = [[1.0, 5.0, 2.0],
          [4.0, 9.0, 3.0],
          [8.0, 7.0, 6.0]]


def _scores_file(tmp_path, srank, other=None):
    """The JSON the scores job writes, as select-placements reads it (only srank of the default
    head length is used; the other entries must be ignored)."""
    other = other if other is not None else [[0.0] * len(srank)] * len(srank)
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({
        "dataset": "d", "model": "m",
        "heads": {"default": {"scores": {"srank": srank, "frobenius": other}},
                  "50": {"scores": {"srank": other, "frobenius": other}}}}))
    return path


def test_select_placements_on_a_hand_made_score_file(tmp_path):
    path = _scores_file(tmp_path, SCORES, other=[[9.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    out = tmp_path / "out" / "gga.json"
    job = {"spec": {"names": {"topk_3": [3, 0.0], "gga_3": [3, 0.5], "gga_1": [1, 0.5]}},
           "input": {"scores": str(path)}, "output": {"placements": str(out)}}
    assert pipeline.main(["select-placements", json.dumps(job)]) == 0
    written = json.loads(out.read_text())
    # top-3: the three largest scores, 9, 8, 7
    # GGA, gamma 0.5, by hand: pick (1, 1) = 9; discount 1 - 0.5^L1: (2, 0): 8 * 0.75 = 6,
    # (2, 1): 7 * 0.5 = 3.5, (2, 2): 6 * 0.75 = 4.5 -> pick (2, 0); discount again: (2, 2):
    # 4.5 * 0.75 = 3.375, (0, 1): 5 * 0.5 * 0.875 = 2.1875, (2, 1): 3.5 * 0.5 = 1.75 -> pick (2, 2)
    assert written == {"topk_3": [[1, 1], [2, 0], [2, 1]], "gga_3": [[1, 1], [2, 0], [2, 2]], "gga_1": [[1, 1]]}
    assert written["gga_3"] == [list(e) for e in gga_select(SCORES, 3, 0.5)]


def test_select_placements_breaks_ties_row_major(tmp_path):
    scores = [[2.0, 3.0, 3.0], [3.0, 1.0, 0.0], [0.0, 3.0, 2.0]]  # four edges tie at 3
    out = tmp_path / "gga.json"
    job = {"spec": {"names": {"topk_5": [5, 0.0]}}, "input": {"scores": str(_scores_file(tmp_path, scores))},
           "output": {"placements": str(out)}}
    assert pipeline.select_placements(job) == {"topk_5": [[0, 1], [0, 2], [1, 0], [2, 1], [0, 0]]}
    assert json.loads(out.read_text()) == {"topk_5": [[0, 1], [0, 2], [1, 0], [2, 1], [0, 0]]}


# ---------------------------------------------------------------- best-placement

def _item(placement, seed, loss, edges, rank=4, status="finished", accuracy=0.5):
    key = {"experiment": "fig3", "dataset": "d", "placement": placement, "seed": seed, "model": "m",
           "method": "adapters", "rank": rank, "activation": "gelu", "kind": "bottleneck", "group": None}
    metrics = {} if status == "diverged" else {"test_accuracy": accuracy, "train_loss": loss}
    return {"key": key, "folder": f"runs/{placement}/{rank}/{seed}", "edges": edges, "lr": 0.01, "steps": 10,
            "status": status, "metrics": metrics}


def _best(tmp_path, items_by_file, method="edge", variant="adapters-r4-gelu"):
    paths = []
    for k, items in enumerate(items_by_file):
        paths.append(tmp_path / f"batch{k}.json")
        paths[-1].write_text(json.dumps({"items": items}))
    out = tmp_path / "best.json"
    job = {"spec": {"name": "best_single", "method": method, "variant": variant},
           "input": {"batches": [str(p) for p in paths]}, "output": {"placement": str(out)}}
    return pipeline.best_placement(job), json.loads(out.read_text())


def test_best_placement_is_the_lowest_mean_train_loss_over_seeds_of_the_matching_runs(tmp_path):
    """Chosen by train loss, never by test accuracy (which the tables then report)."""
    items = [
        [_item("edge_0_1", 0, 0.50, [[0, 1]]), _item("edge_0_1", 1, 0.30, [[0, 1]]),  # mean 0.400
         _item("edge_1_2", 0, 0.35, [[1, 2]], accuracy=0.2)],
        [_item("edge_1_2", 1, 0.40, [[1, 2]], accuracy=0.4),  # mean 0.375: the best, its seeds in two files
         _item("edge_2_0", 0, 0.20, [[2, 0]], accuracy=0.9), _item("edge_2_0", 1, 0.60, [[2, 0]]),  # mean 0.400
         _item("edge_2_2", 0, 0.10, [[2, 2]], rank=8),  # another variant
         _item("parallel_2", 0, 0.05, [[1, 2]])],  # another placement method
    ]
    chosen, written = _best(tmp_path, items)
    assert chosen["source"] == written["source"] and [list(e) for e in chosen["best_single"]] == [[1, 2]]
    assert written["best_single"] == [[1, 2]] and written["source"] == "edge_1_2"
    assert written["selected_on"] == "train_loss" and written["train_loss"] == pytest.approx(0.375, abs=1e-12)
    assert written["test_accuracy"] == pytest.approx(0.3, abs=1e-12)  # reported, not chosen on
    _, other = _best(tmp_path, items, variant="adapters-r8-gelu")
    assert other["source"] == "edge_2_2" and other["best_single"] == [[2, 2]]


def test_best_placement_ties_go_to_the_first_name_in_sorted_order(tmp_path):
    items = [[_item("edge_2_0", 0, 0.25, [[2, 0]]), _item("edge_1_1", 0, 0.25, [[1, 1]]),
              _item("edge_1_2", 0, 0.5, [[1, 2]])]]
    _, written = _best(tmp_path, items)
    assert written["source"] == "edge_1_1" and written["best_single"] == [[1, 1]]


def test_best_random_placement_keeps_its_edges(tmp_path):
    drawn = [[3, 1], [0, 4], [2, 2]]
    items = [[_item("random3_000", 0, 0.7, [[0, 1], [1, 2], [2, 3]]), _item("random3_001", 0, 0.4, drawn),
              _item("random3_001", 1, 0.6, drawn), _item("random3_002", 0, 0.55, [[4, 4], [0, 0], [1, 1]])]]
    _, written = _best(tmp_path, items, method="random")
    assert written["source"] == "random3_001" and written["best_single"] == drawn


def test_best_placement_without_matching_runs_says_so(tmp_path):
    with pytest.raises(ValueError, match=r"no finished runs of placement method 'edge' for best_single"):
        _best(tmp_path, [[_item("parallel_1", 0, 0.5, [[0, 1]])]])


def test_a_diverged_seed_counts_against_its_placement(tmp_path):
    """A placement whose seed diverged must not win on its other seeds alone: the diverged run counts
    as an infinite loss."""
    items = [[_item("edge_0_1", 0, 0.01, [[0, 1]]), _item("edge_0_1", 1, None, [[0, 1]], status="diverged"),
              _item("edge_1_2", 0, 0.60, [[1, 2]]), _item("edge_1_2", 1, 0.60, [[1, 2]])]]
    _, written = _best(tmp_path, items)
    assert written["source"] == "edge_1_2"  # edge_0_1: (0.01 + inf) / 2
    assert written["train_loss"] == pytest.approx(0.6)
