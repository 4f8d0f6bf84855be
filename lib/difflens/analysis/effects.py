"""Effect sizes between two sets of distances: Cliff's delta and the difference of means.

They say how far apart two sets are, whatever their size, where the pair-level p-values
of :mod:`difflens.analysis.rank_tests` only say that millions of pairs differ. Cliff's
delta comes from the Mann-Whitney ``U`` (``delta = 2 U / (n m) - 1``, the rank-biserial
correlation; ``scipy.stats.mannwhitneyu``'s U), so no ``n x m`` array is built (pingouin's
``mwu`` builds one).

An empty sample or a NaN value gives NaN with an
:class:`~difflens.analysis.undefined.UndefinedStatisticWarning` naming the samples (see
:mod:`difflens.analysis.undefined`). Two samples of one common value have ``delta = 0``
(no pair is larger or smaller) and a mean difference of 0: defined, no warning.
"""

from __future__ import annotations

import numpy as np

from difflens.analysis.rank_tests import u_statistic
from difflens.analysis.undefined import sample_problems, undefined


def cliffs_delta(x: np.ndarray, y: np.ndarray, *, names: tuple[str, str] = ("x", "y")) -> float:
    """Cliff's delta ``P(x > y) - P(x < y)`` (Cliff 1993), from the Mann-Whitney U.

    Args:
        x: float ``(n,)`` values.
        y: float ``(m,)`` values.
        names: what ``x`` and ``y`` are, for the warning's message.

    Returns:
        The delta in ``[-1, 1]``; NaN (with a warning) when a sample is empty or holds NaN.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    problem = sample_problems({names[0]: x, names[1]: y})
    if problem:
        return undefined(f"Cliff's delta: {problem}")
    return 2.0 * u_statistic(x, y) / (len(x) * len(y)) - 1.0


def rank_biserial(x: np.ndarray, y: np.ndarray, *, names: tuple[str, str] = ("x", "y")) -> float:
    """The rank-biserial correlation ``2 U / (n m) - 1`` (Kerby 2014); equal to Cliff's delta.

    Args:
        x: float ``(n,)`` values.
        y: float ``(m,)`` values.
        names: what ``x`` and ``y`` are, for the warning's message.

    Returns:
        The correlation in ``[-1, 1]``; NaN (with a warning) when a sample is empty or
        holds NaN.
    """
    return cliffs_delta(x, y, names=names)


def mean_difference(x: np.ndarray, y: np.ndarray, *, names: tuple[str, str] = ("x", "y")) -> float:
    """``mean(x) - mean(y)``, in the distance's units.

    Args:
        x: float ``(n,)`` values.
        y: float ``(m,)`` values.
        names: what ``x`` and ``y`` are, for the warning's message.

    Returns:
        The difference; NaN (with a warning) when a sample is empty or holds NaN.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    problem = sample_problems({names[0]: x, names[1]: y})
    if problem:
        return undefined(f"difference of means: {problem}")
    return float(x.mean() - y.mean())
