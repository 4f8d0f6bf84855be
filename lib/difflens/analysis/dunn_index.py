"""Dunn indices between sets of distances, each reading of the paper's Eq. 10 under its name.

The paper's Eq. 10 is Dunn's (1974) ratio: the smallest gap between two sets over the
largest diameter within one. Between two overlapping sets of distances it is about 0, yet
the paper's Table 1 prints 0.05-0.8, so its numbers come from another formula, which is
not published. The variants here (see :data:`DUNN_VARIANTS`) reproduce that range:

``textbook``
    ``min |a_i - b_j| / max(diam A, diam B)`` (Eq. 10 for two sets; Dunn's Delta_1).
``mean_sd``
    ``|mean A - mean B| / max(sd A, sd B)``, a Cohen's d with the larger spread; the
    tables' default (:data:`DUNN_DEFAULT`).
``delta4_Delta3`` / ``delta4_Delta2``
    Bezdek and Pal's (1998) generalised Dunn indices: the distance of the centroids
    (delta_4) over the larger Delta_3 (twice the mean distance to the centroid) or
    Delta_2 (the mean distance between two members).

All run in O(n log n) on 1-D sets (sorted cumulative sums; no ``n x m`` array, unlike
``validclust.dunn``). An index its input cannot define is NaN with an
:class:`~difflens.analysis.undefined.UndefinedStatisticWarning` naming the sets (see
:mod:`difflens.analysis.undefined`): an empty set, a NaN value, one value where a spread
needs two (``sd``, Delta_2), and a zero denominator (every value equal within each set:
the ratio of a separation over no spread is not a number the tables can compare).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations

import numpy as np

from difflens.analysis.undefined import collect_reasons, sample_problems, undefined


def _float(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()


def _min_gap(a: np.ndarray, b: np.ndarray) -> float:
    b = np.sort(b)
    k = np.searchsorted(b, a)
    right = np.abs(b[np.minimum(k, len(b) - 1)] - a)
    left = np.abs(a - b[np.maximum(k - 1, 0)])
    return float(np.minimum(left, right).min())


def _mean_abs_difference(a: np.ndarray) -> float:
    s, n = np.sort(a), len(a)
    weights = 2 * np.arange(n) - n + 1
    return float(2 * (weights * s).sum() / (n * (n - 1)))


def _centroid_spread(a: np.ndarray) -> float:
    return float(2 * np.abs(a - a.mean()).mean())


def _sd(a: np.ndarray) -> float:
    return float(a.std(ddof=1))


def _diameter(a: np.ndarray) -> float:
    return float(a.max() - a.min())


def min_gap(a: np.ndarray, b: np.ndarray, *, names: tuple[str, str] = ("a", "b")) -> float:
    """Smallest ``|a_i - b_j|``, in O((n + m) log m) without an ``n x m`` array.

    Args:
        a: float ``(n,)`` values.
        b: float ``(m,)`` values.
        names: what ``a`` and ``b`` are, for the warning's message.

    Returns:
        The gap (the values' units); NaN (with a warning) when a set is empty or holds NaN.
    """
    a, b = _float(a), _float(b)
    problem = sample_problems({names[0]: a, names[1]: b})
    return undefined(f"smallest gap: {problem}") if problem else _min_gap(a, b)


def diameter(a: np.ndarray, *, name: str = "a") -> float:
    """Largest distance between two values of ``a``, ``max - min`` (Dunn's Delta_1).

    Args:
        a: float ``(n,)`` values.
        name: what ``a`` is, for the warning's message.

    Returns:
        The diameter (0 for one value); NaN (with a warning) when ``a`` is empty or holds NaN.
    """
    a = _float(a)
    problem = sample_problems({name: a})
    return undefined(f"diameter: {problem}") if problem else _diameter(a)


def mean_abs_difference(a: np.ndarray, *, name: str = "a") -> float:
    """Mean ``|a_i - a_j|`` over ordered pairs ``i != j`` (Bezdek and Pal's Delta_2).

    O(n log n): with ``s`` sorted, ``sum_{i<j} (s_j - s_i) = sum_k (2 k - n + 1) s_k``.

    Args:
        a: float ``(n,)`` values.
        name: what ``a`` is, for the warning's message.

    Returns:
        The mean difference; NaN (with a warning) for fewer than two values or a NaN value.
    """
    a = _float(a)
    problem = sample_problems({name: a}, min_size=2)
    return undefined(f"mean absolute difference: {problem}") if problem else _mean_abs_difference(a)


def centroid_spread(a: np.ndarray, *, name: str = "a") -> float:
    """Twice the mean distance to the centroid, ``2/n sum |a_i - mean|`` (Delta_3).

    Args:
        a: float ``(n,)`` values.
        name: what ``a`` is, for the warning's message.

    Returns:
        The spread (0 for one value); NaN (with a warning) when ``a`` is empty or holds NaN.
    """
    a = _float(a)
    problem = sample_problems({name: a})
    return undefined(f"centroid spread: {problem}") if problem else _centroid_spread(a)


def _ratio(separation: float, spread: float, what: str, names: Sequence[str]) -> float:
    if spread == 0:
        return undefined(
            f"{what}: {' and '.join(names)} have zero spread (all values equal within "
            "each set), so the ratio is undefined",
            stacklevel=4,
        )
    return float(separation / spread)


_MIN_SIZE = {"textbook": 1, "mean_sd": 2, "delta4_Delta3": 1, "delta4_Delta2": 2}
_SPREAD = {
    "textbook": _diameter,
    "mean_sd": _sd,
    "delta4_Delta3": _centroid_spread,
    "delta4_Delta2": _mean_abs_difference,
}


def _two_set_index(variant: str, a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> float:
    a, b = _float(a), _float(b)
    what = f"Dunn index ({variant})"
    problem = sample_problems({names[0]: a, names[1]: b}, min_size=_MIN_SIZE[variant])
    if problem:
        return undefined(f"{what}: {problem}", stacklevel=4)
    if variant == "textbook":
        separation = _min_gap(a, b)
    else:
        separation = abs(float(a.mean() - b.mean()))
    spread = max(_SPREAD[variant](a), _SPREAD[variant](b))
    return _ratio(separation, spread, what, list(names))


def dunn_textbook(a: np.ndarray, b: np.ndarray, *, names: tuple[str, str] = ("a", "b")) -> float:
    """Eq. 10 for two sets: ``min |a_i - b_j| / max(diam A, diam B)`` (about 0 if they overlap).

    Args:
        a: float ``(n,)`` distances of one set.
        b: float ``(m,)`` distances of the other.
        names: the sets' names, for the warning's message.

    Returns:
        The index, ``>= 0``; NaN (with a warning) for an empty set, a NaN value or two sets
        of zero diameter.
    """
    return _two_set_index("textbook", a, b, names)


def dunn_mean_sd(a: np.ndarray, b: np.ndarray, *, names: tuple[str, str] = ("a", "b")) -> float:
    """``|mean A - mean B| / max(sd A, sd B)``: reproduces the paper's magnitudes (default).

    Args:
        a: float ``(n,)`` distances of one set.
        b: float ``(m,)`` distances of the other.
        names: the sets' names, for the warning's message.

    Returns:
        The index, ``>= 0``; NaN (with a warning) for a set of fewer than two values, a NaN
        value or two sets of zero standard deviation.
    """
    return _two_set_index("mean_sd", a, b, names)


def dunn_delta4_Delta3(  # noqa: N802
    a: np.ndarray, b: np.ndarray, *, names: tuple[str, str] = ("a", "b")
) -> float:
    """Generalised Dunn (Bezdek and Pal): centroid distance over the larger ``Delta_3``.

    Args:
        a: float ``(n,)`` distances of one set.
        b: float ``(m,)`` distances of the other.
        names: the sets' names, for the warning's message.

    Returns:
        The index, ``>= 0``; NaN (with a warning) for an empty set, a NaN value or two sets
        of zero spread.
    """
    return _two_set_index("delta4_Delta3", a, b, names)


def dunn_delta4_Delta2(  # noqa: N802
    a: np.ndarray, b: np.ndarray, *, names: tuple[str, str] = ("a", "b")
) -> float:
    """Generalised Dunn (Bezdek and Pal): centroid distance over the larger ``Delta_2``.

    Args:
        a: float ``(n,)`` distances of one set.
        b: float ``(m,)`` distances of the other.
        names: the sets' names, for the warning's message.

    Returns:
        The index, ``>= 0``; NaN (with a warning) for a set of fewer than two values, a NaN
        value or two sets of zero spread.
    """
    return _two_set_index("delta4_Delta2", a, b, names)


#: Dunn index variants by name; ``mean_sd`` is the tables' default.
DUNN_VARIANTS: dict[str, Callable[..., float]] = {
    "textbook": dunn_textbook,
    "mean_sd": dunn_mean_sd,
    "delta4_Delta3": dunn_delta4_Delta3,
    "delta4_Delta2": dunn_delta4_Delta2,
}
DUNN_DEFAULT = "mean_sd"


def dunn_indices(
    a: np.ndarray, b: np.ndarray, *, names: tuple[str, str] = ("a", "b")
) -> dict[str, float]:
    """Every Dunn index variant between two sets of distances.

    Args:
        a: float ``(n,)`` distances of one set.
        b: float ``(m,)`` distances of the other.
        names: the sets' names, for the warnings' messages.

    Returns:
        ``{variant: index}`` in the order of :data:`DUNN_VARIANTS`; the variants that are
        undefined for one cause share one warning.
    """
    with collect_reasons() as reasons:
        out = {name: fn(a, b, names=names) for name, fn in DUNN_VARIANTS.items()}
    by_cause: dict[str, list[str]] = {}
    for reason in reasons:
        variant, cause = reason.split(": ", 1)
        by_cause.setdefault(cause, []).append(variant.removeprefix("Dunn index (")[:-1])
    for cause, variants in by_cause.items():
        undefined(f"Dunn index ({', '.join(variants)}): {cause}")
    return out


def dunn_index(groups: Mapping[str, np.ndarray], variant: str = "textbook") -> float:
    """Dunn index of several sets: the smallest separation over the largest spread.

    Eq. 10 for ``"textbook"`` (smallest gap between two sets over the largest diameter);
    the variant's own separation (distance of the means) and spread otherwise.

    Args:
        groups: ``{set: float distances}``.
        variant: a key of :data:`DUNN_VARIANTS`.

    Returns:
        The index, ``>= 0``; NaN (with a warning) for fewer than two sets, a set too small
        for the variant's spread, a NaN value or all spreads zero.

    Raises:
        ValueError: ``variant`` is unknown.
    """
    if variant not in DUNN_VARIANTS:
        raise ValueError(f"unknown Dunn variant {variant!r}; known: {list(DUNN_VARIANTS)}")
    arrays = {k: _float(v) for k, v in groups.items()}
    what = f"Dunn index ({variant})"
    if len(arrays) < 2:
        return undefined(f"{what}: needs two sets, has {len(arrays)}")
    problem = sample_problems(arrays, min_size=_MIN_SIZE[variant])
    if problem:
        return undefined(f"{what}: {problem}")
    pairs = list(combinations(arrays.values(), 2))
    if variant == "textbook":
        separation = min(_min_gap(a, b) for a, b in pairs)
    else:
        separation = min(abs(float(a.mean() - b.mean())) for a, b in pairs)
    spread = max(_SPREAD[variant](g) for g in arrays.values())
    return _ratio(separation, spread, what, list(arrays))
