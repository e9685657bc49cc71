"""The statistics behind the report's verdicts: pure functions of a table's summary numbers.

The tables hold, per cell, the mean and the *population* std (ddof = 0, as ``analysis.summarise``)
over ``n`` seeds, so every test here starts from (mean, std, n) and converts to the sample variance
itself. Four verdicts: a finding is "reproduced" or "not reproduced" only when the data decide it
against their own seed noise, "inconclusive" when they cannot, and "diverged" when the runs it rests
on never left the chance-level loss (they are never counted as evidence either way).

Outcomes of one comparison are +1 (the paper's direction, decided), -1 (the other way, decided) and
0 (undecided); ``majority`` turns the outcomes of several datasets into a verdict.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, DIVERGED = "reproduced", "not reproduced", "inconclusive", "diverged"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, DIVERGED)
ALPHA = 0.05  # two-sided level of every test
K_STD = 2.0  # a difference is clear when it exceeds K_STD pooled seed stds
COLLAPSE_TOLERANCE = 0.05  # a train loss within 5% of ln C is the loss of guessing


def finite(*values) -> bool:
    return all(v is not None and np.isfinite(float(v)) for v in values)


# ---------------------------------------------------------------- noise of one cell, of several

def sample_variance(std: float, n: int) -> float:
    """Unbiased variance from a population std over n seeds (NaN for a single seed: no noise estimate)."""
    if not finite(std) or n < 2:
        return math.nan
    return float(std) ** 2 * n / (n - 1)


def pooled_noise(stds: Sequence[float], ns: Sequence[int]) -> tuple[float, int]:
    """Pooled seed std of several cells and its degrees of freedom: sqrt(sum (n_i - 1) s_i^2 / sum
    (n_i - 1)) with s_i the sample std, df = sum (n_i - 1). With population stds, (n_i - 1) s_i^2 =
    n_i std_i^2. Cells without a finite std or with one seed carry no noise information and are left
    out; (NaN, 0) when none is left."""
    num, df = 0.0, 0
    for std, n in zip(stds, ns):
        if finite(std) and n is not None and n >= 2:
            num += n * float(std) ** 2
            df += int(n) - 1
    return (math.sqrt(num / df), df) if df > 0 else (math.nan, 0)


def pooled_std(stds: Sequence[float], ns: Sequence[int]) -> float:
    return pooled_noise(stds, ns)[0]


def difference_outcome(diff: float, pooled: float, k: float = K_STD) -> int:
    """+1 when diff > k pooled std, -1 when diff < -k pooled std, 0 in between or without a noise estimate."""
    if not finite(diff, pooled) or pooled <= 0:
        return 0
    return 1 if diff > k * pooled else -1 if diff < -k * pooled else 0


def match_outcome(diff: float, pooled: float) -> int:
    """For "A matches or beats B" (diff = A - B): +1 when A is at most one pooled std behind (the
    paper's own "within one std"), -1 when it is behind by more than K_STD, 0 in between."""
    if not finite(diff, pooled) or pooled <= 0:
        return 0
    return 1 if diff >= -pooled else -1 if diff < -K_STD * pooled else 0


def effect_outcome(p: float, spread: float, pooled: float) -> int:
    """Does a factor (placement, activation) change accuracy? +1 when its test has p < ALPHA; -1 (no
    effect) when p >= ALPHA and the spread of the group means is within K_STD pooled std; else 0."""
    if finite(p) and p < ALPHA:
        return 1
    if finite(p, spread, pooled) and pooled > 0 and spread <= K_STD * pooled:
        return -1
    return 0


# ---------------------------------------------------------------- tests from summary numbers

def contrast_test(means: Sequence[float], stds: Sequence[float], ns: Sequence[int],
                  weights: Sequence[float]) -> tuple[float, float, float]:
    """t test of the contrast sum w_i mu_i = 0 with unequal variances: (t, df, two-sided p), the df by
    Welch-Satterthwaite. Welch's two-sample t is weights (1, -1). NaN when a cell has fewer than two
    seeds or no variance at all (the noise is unknown, so nothing can be decided)."""
    v = [sample_variance(s, n) for s, n in zip(stds, ns)]
    if not finite(*means, *v):
        return math.nan, math.nan, math.nan
    parts = [w * w * vi / n for w, vi, n in zip(weights, v, ns)]
    se2 = sum(parts)
    if se2 <= 0:
        return math.nan, math.nan, math.nan
    from scipy.stats import t as student

    t = sum(w * m for w, m in zip(weights, means)) / math.sqrt(se2)
    df = se2 ** 2 / sum(p * p / (n - 1) for p, n in zip(parts, ns) if p > 0)
    return float(t), float(df), float(2 * student.sf(abs(t), df))


def pooled_contrast(means: Sequence[float], ns: Sequence[int], weights: Sequence[float],
                    pooled: float, df: int) -> tuple[float, float, float]:
    """t test of the contrast sum w_i mu_i = 0 against a noise estimate shared by the cells (the
    pooled seed std of every cell of the same dataset in a table, ``pooled_noise``): t = sum w_i m_i /
    (pooled sqrt(sum w_i^2 / n_i)), df those of the pooled std, two-sided p. This is the contrast of a
    one-way ANOVA: with two seeds a cell has one df of its own, so Welch's t of two cells rests on
    about two df; the dataset's cells together give it several. NaN without a noise estimate."""
    if not finite(*means, pooled) or pooled <= 0 or not df or df < 1:
        return math.nan, math.nan, math.nan
    from scipy.stats import t as student

    se = pooled * math.sqrt(sum(w * w / n for w, n in zip(weights, ns)))
    t = sum(w * m for w, m in zip(weights, means)) / se
    return float(t), float(df), float(2 * student.sf(abs(t), df))


def pooled_t(mean_a, n_a, mean_b, n_b, pooled: float, df: int) -> tuple[float, float, float]:
    """A vs B against the shared pooled std: (t, df, two-sided p); t > 0: A larger."""
    return pooled_contrast([mean_a, mean_b], [n_a, n_b], [1.0, -1.0], pooled, df)


def welch(mean_a, std_a, n_a, mean_b, std_b, n_b) -> tuple[float, float, float]:
    """Welch's t test of A vs B from means and population stds: (t, df, two-sided p); t > 0: A larger."""
    return contrast_test([mean_a, mean_b], [std_a, std_b], [n_a, n_b], [1.0, -1.0])


def test_outcome(t: float, p: float, alpha: float = ALPHA) -> int:
    """+1 when p < alpha with t > 0 (the paper's direction), -1 when p < alpha with t < 0, else 0."""
    if not finite(t, p) or p >= alpha:
        return 0
    return 1 if t > 0 else -1


def anova(means: Sequence[float], stds: Sequence[float], ns: Sequence[int]) -> tuple[float, float]:
    """One-way ANOVA from per-group summaries: (F, p). NaN with fewer than two groups or no
    within-group degrees of freedom or variance."""
    keep = [(m, s, n) for m, s, n in zip(means, stds, ns) if finite(m, s) and n >= 1]
    k, total = len(keep), sum(n for _, _, n in keep)
    if k < 2 or total - k <= 0:
        return math.nan, math.nan
    grand = sum(m * n for m, _, n in keep) / total
    between = sum(n * (m - grand) ** 2 for m, _, n in keep) / (k - 1)
    within = sum(n * s * s for _, s, n in keep) / (total - k)
    if within <= 0:
        return math.nan, math.nan
    from scipy.stats import f as fisher

    stat = between / within
    return float(stat), float(fisher.sf(stat, k - 1, total - k))


def spearman(x, y) -> tuple[float, float]:
    """Spearman's rho and its two-sided p (scipy); NaN when a side is constant or under 3 points."""
    from scipy.stats import spearmanr

    return _correlation(spearmanr, x, y)


def pearson(x, y) -> tuple[float, float]:
    """Pearson's r and its two-sided p (scipy); NaN when a side is constant or under 3 points."""
    from scipy.stats import pearsonr

    return _correlation(pearsonr, x, y)


def _correlation(test, x, y) -> tuple[float, float]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    result = test(x, y)
    return float(result.statistic), float(result.pvalue)


def correlation_p(rho: float, n: int) -> float:
    """Two-sided p of a correlation over n points (t = rho sqrt((n-2) / (1-rho^2)), df n - 2), as
    scipy's spearmanr computes it."""
    if not finite(rho) or n is None or n < 3:
        return math.nan
    from scipy.stats import t as student

    if abs(rho) >= 1:
        return 0.0
    t = rho * math.sqrt((n - 2) / (1 - rho * rho))
    return float(2 * student.sf(abs(t), n - 2))


def fisher_z(rho_a: float, rho_b: float, n: int) -> tuple[float, float]:
    """Is correlation a larger than b, both over n points? z = (atanh a - atanh b) / sqrt(2 / (n - 3)),
    two-sided normal p. Treats the two as independent, which is conservative for correlations measured
    on the same edges (they are positively dependent)."""
    if not finite(rho_a, rho_b) or n is None or n <= 3:
        return math.nan, math.nan
    clip = lambda r: float(np.clip(r, -0.999999, 0.999999))  # noqa: E731 (atanh(+-1) is infinite)
    z = (math.atanh(clip(rho_a)) - math.atanh(clip(rho_b))) / math.sqrt(2.0 / (n - 3))
    from scipy.stats import norm

    return float(z), float(2 * norm.sf(abs(z)))


def sign_test(positive: int, negative: int) -> float:
    """Two-sided exact binomial p of `positive` successes in positive + negative trials at 1/2 (ties
    are left out before); 1.0 with no trial."""
    trials = positive + negative
    if trials == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(positive, trials, 0.5).pvalue)


# ---------------------------------------------------------------- verdicts

def majority(outcomes: Iterable[int], diverged: int = 0) -> str:
    """The verdict of several datasets' outcomes (+1, -1, 0): reproduced when the decided +1 are at
    least half of the judged datasets and outnumber the -1; not reproduced symmetrically; else
    inconclusive. ``diverged`` counts datasets left out because their runs collapsed: with none
    judged, the verdict is diverged."""
    outcomes = list(outcomes)
    if not outcomes:
        return DIVERGED if diverged else INCONCLUSIVE
    plus, minus = outcomes.count(1), outcomes.count(-1)
    if plus >= len(outcomes) / 2 and plus > minus:
        return REPRODUCED
    if minus >= len(outcomes) / 2 and minus > plus:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def outcome_verdict(outcome: int) -> str:
    return {1: REPRODUCED, -1: NOT_REPRODUCED}.get(outcome, INCONCLUSIVE)


def collapsed(train_loss: float, num_classes: int, tolerance: float = COLLAPSE_TOLERANCE) -> bool:
    """A run whose final train loss is still at least (1 - tolerance) ln C: it learnt nothing beyond
    the loss of a uniform guess over C classes (an unknown loss is not evidence of a collapse)."""
    if not finite(train_loss) or num_classes is None or num_classes < 2:
        return False
    return float(train_loss) >= (1 - tolerance) * math.log(num_classes)
