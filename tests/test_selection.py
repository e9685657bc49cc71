"""GGA against a brute-force reading of Algorithm 1, and the baseline placements."""
import itertools

import numpy as np
import pytest

from adapter_placement import edge_kind, gga_select, placements


def gga_brute_force(scores, n, gamma):
    """Algorithm 1 with plain loops: discount by 1 - gamma^L1 to the picked edge, never re-pick."""
    size = len(scores)
    s = {(i, j): float(scores[i][j]) for i in range(size) for j in range(size)}
    picked = []
    for _ in range(n):
        best = None
        for i, j in itertools.product(range(size), range(size)):  # row-major: first max wins
            if (i, j) not in picked and (best is None or s[(i, j)] > s[best]):
                best = (i, j)
        picked.append(best)
        k, l = best
        for i, j in s:
            s[(i, j)] *= 1 - gamma ** (abs(i - k) + abs(j - l))
    return picked


@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.6, 0.8, 0.99])
@pytest.mark.parametrize("seed", range(4))
def test_gga_matches_brute_force(gamma, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(1, 12, size=(7, 7)).astype(float)  # integer scores: many ties
    assert gga_select(scores, 20, gamma) == gga_brute_force(scores.tolist(), 20, gamma)


def test_gamma_zero_is_top_n_with_row_major_ties():
    scores = np.array([[1.0, 5.0, 5.0], [5.0, 2.0, 3.0], [0.5, 5.0, 4.0]])
    assert gga_select(scores, 6, gamma=0) == [(0, 1), (0, 2), (1, 0), (2, 1), (2, 2), (1, 2)]
    rng = np.random.default_rng(1)
    s = rng.random((9, 9))
    top = [divmod(int(f), 9) for f in np.argsort(-s, axis=None, kind="stable")[:30]]
    assert gga_select(s, 30, gamma=0.0) == top


def test_gga_spreads_out_and_never_repeats():
    s = np.ones((9, 9))
    s[4, 4] = 2.0
    s[4, 5] = s[5, 4] = 1.9  # right next to the best: GGA should not take them next
    picked = gga_select(s, 81, gamma=0.6)
    assert len(set(picked)) == 81
    assert picked[0] == (4, 4) and (4, 5) != picked[1] and (5, 4) != picked[1]
    assert gga_select(s, 3, gamma=0.0)[:3] == [(4, 4), (4, 5), (5, 4)]


def test_gga_accepts_tensors():
    import torch

    s = torch.arange(25.0).reshape(5, 5)
    assert gga_select(s, 2, gamma=0.0) == [(4, 4), (4, 3)]


def test_placement_counts():
    n = 25
    assert placements.parallel_all(n) == [(k - 1, k) for k in range(1, 25)]
    assert placements.sequential_all(n) == [(k, k) for k in range(1, 25)]
    assert placements.first_k(n, 3) == [(0, 1), (1, 2), (2, 3)]
    assert placements.last_k(n, 2) == [(22, 23), (23, 24)]
    ffn = placements.ffn_parallel(n)
    assert len(ffn) == 12 and all(j % 2 == 0 and i == j - 1 for i, j in ffn)
    assert len(placements.ffn_parallel(81)) == 40  # ViT-g/14
    g = placements.grid(n, 3)
    assert len(g) == 81 and len(set(g)) == 81 and (24, 24) in g and (3, 21) in g
    assert len(placements.all_edges(n)) == 625


def test_random_placements_are_seeded_and_distinct():
    draws = [placements.random(25, 24, seed=s) for s in range(100)]
    for d in draws:
        assert len(d) == len(set(d)) == 24 and all(0 <= i < 25 and 0 <= j < 25 for i, j in d)
    assert draws[7] == placements.random(25, 24, seed=7)
    assert len({tuple(d) for d in draws}) == 100
    assert sorted(placements.random(3, 9, seed=0)) == placements.all_edges(3)


def test_edge_kind():
    assert [edge_kind(*e) for e in [(3, 4), (4, 4), (1, 4), (4, 1), (0, 0), (24, 0)]] == [
        "parallel", "sequential", "long-range", "recurrent", "sequential", "recurrent"]
    kinds = [edge_kind(*e) for e in placements.all_edges(25)]
    assert kinds.count("parallel") == 24 and kinds.count("sequential") == 25
    assert kinds.count("recurrent") == 300  # strictly below the diagonal
    assert kinds.count("long-range") == 300 - 24  # strictly above it, less the parallel ones
    # the paper: parallel and sequential cover (2n - 1) / n^2 of the graph
    assert kinds.count("parallel") + kinds.count("sequential") == 2 * 25 - 1
