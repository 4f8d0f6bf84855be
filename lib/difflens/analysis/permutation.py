"""Permutation test of class structure: class labels shuffled between object instances.

The statistic compares the distances between objects of different classes with those
between objects of the same class (pairs of one instance, e.g. an object and its
transformed copy, left out): ``"cliffs_delta"`` (P[between > within] - P[between <
within], which equals ANOSIM's R on these pairs) or ``"mean_difference"`` (mean between -
mean within). Labels move with instances, so copies of an object keep one label. The
one-sided p-value is ``(1 + #{null >= observed}) / (1 + n_perm)``, uniform under the null
(Phipson and Smyth 2010; ``scipy.stats.permutation_test`` counts the same way).

Undefined cases follow :mod:`difflens.analysis.undefined`: one class only, or no finite
distance on one side, gives a NaN statistic and p-value with a ``reason``. All distances
equal gives a statistic of 0 in every permutation and so ``p = 1``, as
``scipy.stats.permutation_test`` gives on constant data; the reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from difflens.analysis.distances import pairwise
from difflens.features.prototypes import PrototypeTable

PERMUTATION_STATISTICS = ("cliffs_delta", "mean_difference")


@dataclass
class PermutationResult:
    """Outcome of :func:`permutation_test`.

    Attributes:
        statistic: ``"cliffs_delta"`` or ``"mean_difference"``.
        observed: the statistic with the true labels (NaN when undefined).
        p_value: the one-sided permutation p-value (NaN when undefined).
        n_perm: the number of permutations.
        null: float64 ``(n_perm,)`` statistics of the permutations.
        n_within: same-class pairs with a finite distance (true labels).
        n_between: different-class pairs with a finite distance (true labels).
        reason: why ``observed`` or ``p_value`` is NaN or conventional, else ``""``.
    """

    statistic: str
    observed: float
    p_value: float
    n_perm: int
    null: np.ndarray
    n_within: int
    n_between: int
    reason: str = ""


def _class_per_instance(meta: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Instance code of every object and the class code of every instance."""
    inst, inst_names = pd.factorize(meta["instance_key"].astype(str))
    cls = meta["class_name"].astype(str).to_numpy()
    per_instance = pd.Series(cls).groupby(inst).unique()
    mixed = [inst_names[k] for k, v in per_instance.items() if len(v) > 1]
    if mixed:
        raise ValueError(f"instances with more than one class: {mixed[:5]}")
    labels, _ = pd.factorize(pd.Series([v[0] for v in per_instance.sort_index()]))
    return inst, labels


class _PairSums:
    """Sums of (ranked) distances and pair counts within classes, for many labelings at once.

    ``m`` holds the values of the valid pairs (symmetric, zero elsewhere) and ``z`` marks
    them; a labeling's within-class sum is ``sum_k onehot_k' m onehot_k / 2``.
    """

    def __init__(self, d: np.ndarray, inst: np.ndarray, statistic: str):
        n = len(d)
        iu = np.triu_indices(n, 1)
        self.valid = (inst[iu[0]] != inst[iu[1]]) & np.isfinite(d[iu])
        self.i, self.j = iu[0][self.valid], iu[1][self.valid]
        values = d[iu][self.valid]
        self.tied = bool(len(values)) and bool(np.all(values == values[0]))
        if statistic == "cliffs_delta":
            values = sps.rankdata(values)
        self.m, self.z = np.zeros((n, n)), np.zeros((n, n))
        self.m[self.i, self.j] = values
        self.z[self.i, self.j] = 1.0
        self.m += self.m.T
        self.z += self.z.T
        self.total_sum, self.total_n = float(values.sum()), float(len(values))
        self.inst, self.statistic = inst, statistic

    def stats(self, label_sets: np.ndarray, k: int) -> np.ndarray:
        """The statistic of every labeling: ``label_sets`` is ``(P, n_instances)``."""
        p, n = len(label_sets), len(self.m)
        onehot = np.zeros((n, p * k))
        cols = (np.arange(p)[:, None] * k + label_sets[:, self.inst]).T  # n x P
        np.put_along_axis(onehot, cols, 1.0, axis=1)
        within_sum = ((self.m @ onehot) * onehot).sum(0).reshape(p, k).sum(1) / 2
        within_n = ((self.z @ onehot) * onehot).sum(0).reshape(p, k).sum(1) / 2
        between_sum, between_n = self.total_sum - within_sum, self.total_n - within_n
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.statistic == "mean_difference":
                return between_sum / between_n - within_sum / within_n
            u = between_sum - between_n * (between_n + 1) / 2
            return 2 * u / (between_n * within_n) - 1


def _null(
    sums: _PairSums, labels: np.ndarray, k: int, n_perm: int, seed: int, batch: int, progress: bool
) -> np.ndarray:
    """The statistic of ``n_perm`` seeded permutations of ``labels``, ``batch`` at a time."""
    if n_perm == 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(labels) for _ in range(n_perm)])
    starts = range(0, n_perm, batch)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="permutations", unit="batch")
    return np.concatenate([sums.stats(perms[s : s + batch], k) for s in starts])


def _undefined_reason(sums: _PairSums, k: int, n_within: int, n_between: int) -> str:
    if sums.total_n == 0:
        return "no pair of different instances with a finite distance"
    if k < 2:
        return "one class only: no different-class pair"
    if n_within == 0:
        return "no same-class pair of different instances with a finite distance"
    if n_between == 0:
        return "no different-class pair with a finite distance"
    return ""


def permutation_test(
    table: PrototypeTable,
    metric: str = "correlation",
    statistic: str = "cliffs_delta",
    n_perm: int = 999,
    seed: int = 0,
    distances: np.ndarray | None = None,
    batch: int = 64,
    max_objects: int = 10_000,
    progress: bool = True,
) -> PermutationResult:
    """Permutation test of class structure: class labels shuffled between instances.

    Needs the ``N x N`` distance matrix (``distances`` or computed), so ``N <=
    max_objects``. See the module docstring for the statistic and the p-value.

    Args:
        table: the prototype table (``instance_key``, ``class_name``).
        metric: the distance, when ``distances`` is not given.
        statistic: ``"cliffs_delta"`` or ``"mean_difference"``.
        n_perm: the number of permutations.
        seed: seed of the permutations.
        distances: float ``(N, N)`` distances of the table, if already computed.
        batch: permutations evaluated at once.
        max_objects: the most objects accepted.
        progress: show a progress bar.

    Returns:
        The :class:`PermutationResult`.

    Raises:
        ValueError: an unknown statistic, more than ``max_objects`` objects, a distance
            matrix of the wrong shape, or an instance with two classes.
    """
    if statistic not in PERMUTATION_STATISTICS:
        raise ValueError(f"statistic must be one of {PERMUTATION_STATISTICS}, got {statistic!r}")
    n = len(table)
    if n > max_objects:
        raise ValueError(
            f"{n} objects exceed max_objects={max_objects} (an N x N matrix is needed); "
            "subsample images first"
        )
    inst, labels = _class_per_instance(table.meta)
    d = np.asarray(pairwise(table.features, metric=metric) if distances is None else distances)
    if d.shape != (n, n):
        raise ValueError(f"distances must be {n} x {n}, got {d.shape}")
    sums = _PairSums(d.astype(np.float64), inst, statistic)
    k = int(labels.max()) + 1 if len(labels) else 0
    same = labels[inst][sums.i] == labels[inst][sums.j]
    n_within, n_between = int(same.sum()), int((~same).sum())
    reason = _undefined_reason(sums, k, n_within, n_between)
    if reason:
        observed, null, p_value = float("nan"), np.zeros(0), float("nan")
    elif sums.tied:  # every labeling gives 0 exactly; rounding must not decide the p-value
        observed, null, p_value = 0.0, np.zeros(n_perm), 1.0
        reason = "all distances are equal: every permutation ties the observed 0, p = 1"
    else:
        observed = float(sums.stats(labels[None], k)[0])
        null = _null(sums, labels, k, n_perm, seed, batch, progress)
        p_value = (1 + int(np.sum(null >= observed - 1e-12 * abs(observed)))) / (1 + n_perm)
    return PermutationResult(
        statistic, observed, float(p_value), n_perm, null, n_within, n_between, reason
    )
