"""Rank tests between distance sets: Kruskal-Wallis, Mann-Whitney U, Dunn's post-hoc test.

The paper compares its sets with Kruskal-Wallis and pairwise p-values after a
Shapiro-Wilk test showed the distances are not normal. These tests treat every pair as an
independent observation, which they are not (each object sits in ``N - 1`` pairs), so
with millions of pairs every p-value underflows: each test also gives ``log10_p``
(:mod:`difflens.analysis.pvalues`). The image-level numbers to read are in
:mod:`difflens.analysis.bootstrap`.

Undefined tests follow :mod:`difflens.analysis.undefined`: NaN with a ``reason``, or the
value scipy gives on the same input. All distances tied: Kruskal-Wallis H and p are NaN
(``scipy.stats.kruskal``), Dunn's z and p NaN (``scikit_posthocs.posthoc_dunn``), the
Mann-Whitney p is 1 (``scipy.stats.mannwhitneyu``). Fewer than two sets with a finite
distance, or an empty sample: NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as sps

from difflens.analysis.pvalues import LN10, log10_chi2_sf, log10_p_normal
from difflens.analysis.summaries import finite_groups
from difflens.analysis.undefined import NAN, sample_problems

DUNN_COLUMNS = ("a", "b", "z", "p", "log10_p", "reason")


def tie_sum(values: np.ndarray) -> float:
    """``sum(t^3 - t)`` over the groups of tied values, the tie correction of rank tests.

    Args:
        values: float ``(n,)`` values, in any order.

    Returns:
        The sum (0 without ties); ``n^3 - n`` when all ``n`` values are tied.
    """
    sorted_values = np.sort(np.asarray(values, dtype=np.float64))
    if len(sorted_values) < 2:
        return 0.0
    change = np.flatnonzero(np.diff(sorted_values) != 0)
    bounds = np.concatenate([[0], change + 1, [len(sorted_values)]])
    t = np.diff(bounds).astype(np.float64)
    return float((t**3 - t).sum())


def u_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney ``U`` of ``x``: the pairs with ``x > y``, ties counted 1/2.

    From the rank sum of ``x`` in the pooled sample (``U = R_x - n (n + 1) / 2``), so no
    ``n x m`` array is built; equal to ``scipy.stats.mannwhitneyu(x, y).statistic``.

    Args:
        x: float ``(n,)`` finite values, ``n >= 1``.
        y: float ``(m,)`` finite values, ``m >= 1``.

    Returns:
        ``U`` in ``[0, n m]``.
    """
    n1 = len(x)
    ranks = sps.rankdata(np.concatenate([x, y]))
    return float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)


def kruskal_sets(long: pd.DataFrame, sets: Sequence[str] | None = None) -> dict:
    """Kruskal-Wallis H test across the sets of a long form (``scipy.stats.kruskal``).

    The sets with at least one finite distance are tested; NaN distances are left out.

    Args:
        long: a long form (columns ``set`` and ``distance``).
        sets: the sets to test; default: those of ``SETS`` present in ``long``.

    Returns:
        ``{"H", "p", "log10_p", "k", "n", "sets", "reason"}``: the statistic, its chi-square
        p-value (``k - 1`` df) and that p-value's log10 (finite where ``p`` underflows),
        the number of sets tested and of distances, the sets' names and why H is NaN
        (fewer than two sets with a finite distance; all distances identical) or ``""``.
    """
    groups = finite_groups(long, sets, keep_empty=True)
    present = {k: v for k, v in groups.items() if len(v)}
    empty = [k for k, v in groups.items() if not len(v)]
    n = int(sum(len(v) for v in present.values()))
    out = {"H": NAN, "p": NAN, "log10_p": NAN, "k": len(present), "n": n}
    out.update(sets=list(present), reason="")
    if len(present) < 2:
        missing = f" ({', '.join(empty)} without a finite distance)" if empty else ""
        out["reason"] = f"Kruskal-Wallis needs two sets with finite distances, has {len(present)}"
        out["reason"] += missing
        return out
    pooled = np.concatenate(list(present.values()))
    if np.all(pooled == pooled[0]):
        out["reason"] = (
            f"all {n} distances of {', '.join(present)} are identical ({pooled[0]:g}): "
            "H is 0/0, NaN as scipy.stats.kruskal"
        )
        return out
    result = sps.kruskal(*present.values())
    h = float(result.statistic)
    out.update(H=h, p=float(result.pvalue), log10_p=log10_chi2_sf(h, len(present) - 1))
    return out


def mann_whitney(
    x: np.ndarray, y: np.ndarray, *, names: tuple[str, str] = ("x", "y")
) -> dict[str, float | str]:
    """Two-sided Mann-Whitney U test with its effect sizes.

    Normal approximation with tie and continuity corrections, as
    ``scipy.stats.mannwhitneyu(method="asymptotic")``, plus the p-value's log10 where it
    underflows. Never builds an ``n x m`` array.

    Args:
        x: float ``(n,)`` values.
        y: float ``(m,)`` values.
        names: what ``x`` and ``y`` are, for the reason (e.g. ``("scsi", "scdi")``).

    Returns:
        ``U`` (pairs with ``x > y``, ties 1/2), ``z``, ``p``, ``log10_p``, ``cles`` (``U /
        (n m)``, the probability that a value of ``x`` exceeds one of ``y``),
        ``cliffs_delta`` (``2 cles - 1``, equal to the rank-biserial correlation) and
        ``reason``. An empty sample or a NaN value: every number NaN. All values tied:
        ``z`` NaN (0/0), ``p = 1`` and ``log10_p = 0`` as scipy, ``cliffs_delta = 0``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    problem = sample_problems({names[0]: x, names[1]: y})
    if problem:
        out: dict[str, float | str] = dict.fromkeys(("U", "z", "p", "log10_p", "cles"), NAN)
        return {**out, "cliffs_delta": NAN, "reason": f"Mann-Whitney U: {problem}"}
    n1, n2 = len(x), len(y)
    n = n1 + n2
    u1 = u_statistic(x, y)
    cles = u1 / (n1 * n2)
    pooled = np.concatenate([x, y])
    sigma2 = n1 * n2 / 12.0 * ((n + 1) - tie_sum(pooled) / (n * (n - 1)))
    effects = {"U": u1, "cles": cles, "cliffs_delta": 2 * cles - 1}
    if sigma2 <= 0:  # every value tied
        reason = (
            f"Mann-Whitney U: all {n} values of {names[0]} and {names[1]} are tied "
            f"({pooled[0]:g}): z is 0/0 (NaN), p = 1 as scipy.stats.mannwhitneyu"
        )
        return {**effects, "z": NAN, "p": 1.0, "log10_p": 0.0, "reason": reason}
    u = max(u1, n1 * n2 - u1)
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(sigma2)
    # two-sided as scipy: 2 sf(z) with z from the larger U, capped at 1
    log10_p = min((math.log(2.0) + float(sps.norm.logsf(z))) / LN10, 0.0)
    return {**effects, "z": float(z), "p": float(10**log10_p), "log10_p": log10_p, "reason": ""}


def dunn_posthoc(long: pd.DataFrame, sets: Sequence[str] | None = None) -> pd.DataFrame:
    """Dunn's test (1964) for every pair of sets, after Kruskal-Wallis.

    Ranks are pooled over all the sets given, with the tie correction of
    ``scikit_posthocs.posthoc_dunn``; ``z = (mean rank b - mean rank a) / sqrt((n (n + 1)
    / 12 - T / (12 (n - 1))) (1 / n_a + 1 / n_b))`` and ``p = 2 sf(|z|)``, unadjusted
    (:func:`difflens.analysis.comparisons.pairwise_tests` applies Holm's correction).

    Args:
        long: a long form (columns ``set`` and ``distance``); NaN distances left out.
        sets: the sets to pool and compare; default: those of ``SETS`` present.

    Returns:
        One row per pair of sets with a finite distance: ``a``, ``b``, ``z`` (``> 0`` when
        ``b`` ranks higher), ``p``, ``log10_p`` and ``reason`` (all distances tied: ``z``
        and ``p`` NaN, as scikit-posthocs). No rows with fewer than two such sets.
    """
    groups = finite_groups(long, sets)
    if len(groups) < 2:
        return pd.DataFrame(columns=list(DUNN_COLUMNS))
    pooled = np.concatenate(list(groups.values()))
    n = len(pooled)
    ranks = sps.rankdata(pooled)
    bounds = np.cumsum([0] + [len(g) for g in groups.values()])
    mean_rank = {k: ranks[bounds[i] : bounds[i + 1]].mean() for i, k in enumerate(groups)}
    spread = n * (n + 1) / 12.0 - tie_sum(pooled) / (12.0 * (n - 1))
    reason = ""
    if spread <= 0:
        reason = (
            f"Dunn's test: all {n} distances of {', '.join(groups)} are tied ({pooled[0]:g}): "
            "z is 0/0, NaN as scikit_posthocs.posthoc_dunn"
        )
    rows = []
    for a, b in combinations(groups, 2):
        var = spread * (1 / len(groups[a]) + 1 / len(groups[b]))
        z = (mean_rank[b] - mean_rank[a]) / math.sqrt(var) if var > 0 else NAN
        p = min(1.0, 2.0 * float(sps.norm.sf(abs(z)))) if var > 0 else NAN
        rows.append((a, b, z, p, float(log10_p_normal(z)), reason))
    return pd.DataFrame(rows, columns=list(DUNN_COLUMNS))


def shapiro_sets(
    long: pd.DataFrame, max_n: int = 5000, seed: int = 0, sets: Sequence[str] | None = None
) -> pd.DataFrame:
    """Shapiro-Wilk per set (``scipy.stats.shapiro``) on a seeded subsample.

    scipy's p-value is not accurate above 5,000 values, and with millions of pairs any
    departure from normality is "significant"; the rank-based tests used here do not need
    normality anyway. Reported because the paper chose Kruskal-Wallis after this test.

    Args:
        long: a long form (columns ``set`` and ``distance``); NaN distances left out.
        max_n: the most values tested per set (drawn without replacement).
        seed: seed of the subsample.
        sets: the sets; default: those of ``SETS`` present.

    Returns:
        Index ``set``; columns ``n``, ``n_used``, ``W``, ``p`` and ``reason``: fewer than 3
        values gives NaN (scipy's minimum); values all equal give ``W = p = 1``, as scipy.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for name, values in finite_groups(long, sets).items():
        sample = values if len(values) <= max_n else rng.choice(values, max_n, replace=False)
        row = {"set": name, "n": len(values), "n_used": len(sample), "W": NAN, "p": NAN}
        if len(sample) < 3:
            row["reason"] = f"{name} has {len(sample)} value(s); Shapiro-Wilk needs 3"
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", ".*range zero")
                result = sps.shapiro(sample)
            row.update(W=float(result.statistic), p=float(result.pvalue), reason="")
            if np.all(sample == sample[0]):
                row["reason"] = f"all values of {name} are equal: W = p = 1 as scipy"
        rows.append(row)
    return pd.DataFrame(rows).set_index("set") if rows else pd.DataFrame()
