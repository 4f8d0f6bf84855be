"""p-value arithmetic: logarithms where the float range ends, Holm's correction, table text.

With millions of pairs the pair-level p-values of the paper's tests underflow to 0. Each
test therefore also gives ``log10_p``, computed from log survival functions
(``scipy.stats.norm.logsf``, ``scipy.stats.chi2.logsf`` and, beyond them, mpmath's
regularised incomplete gamma function); Holm's correction works on those logarithms, and
:func:`format_p` writes an underflowed p-value from its logarithm, never as 0.

NaN p-values (a test its data cannot define, see :mod:`difflens.analysis.undefined`) stay
NaN through every function here: Holm's correction leaves them out of the family, as R's
``p.adjust`` does with ``NA``, and :func:`format_p` writes them as ``"n/a"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

LN10 = math.log(10.0)
#: The smallest p-value printed as a number without its logarithm.
P_FLOOR = 1e-300


def format_p(p: float, log10_p: float | None = None, digits: int = 2, latex: bool = False) -> str:
    r"""A p-value for a table: ``0.0274``, ``3.1e-32``, ``2.3e-412`` (from ``log10_p``).

    Below ``1e-300`` the value is written from ``log10_p`` when given, else as
    ``"< 1e-300"``; it is never written as 0.

    Args:
        p: the p-value; NaN or None when the test is undefined.
        log10_p: its base-10 logarithm, finite where ``p`` underflowed to 0.
        digits: significant digits of the mantissa (``p >= 1e-3`` gets ``digits + 2``
            decimals).
        latex: write ``$3.1\times10^{-32}$`` instead of ``3.1e-32``.

    Returns:
        The text; ``"n/a"`` when neither ``p`` nor ``log10_p`` is a number.
    """
    if p is None or (isinstance(p, float) and math.isnan(p)):
        if log10_p is None or not np.isfinite(log10_p):
            return "n/a"
        p = 0.0
    p = float(p)
    if p >= 1e-3:
        text = f"{p:.{digits + 2}f}"
        return f"${text}$" if latex else text
    if p >= P_FLOOR:
        log10_p = math.log10(p)
    elif log10_p is None or not np.isfinite(log10_p):
        return r"$< 10^{-300}$" if latex else "< 1e-300"
    exponent = math.floor(log10_p)
    mantissa = 10 ** (log10_p - exponent)
    if round(mantissa, digits - 1) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    if latex:
        return f"${mantissa:.{digits - 1}f}\\times10^{{{exponent}}}$"
    return f"{mantissa:.{digits - 1}f}e{exponent}"


def log10_p_normal(z: np.ndarray | float) -> np.ndarray:
    """log10 of the two-sided normal p-value ``2 sf(|z|)``, capped at 0.

    Args:
        z: standard normal statistics, any shape; NaN stays NaN.

    Returns:
        float64 array of ``z``'s shape, ``<= 0`` (NaN where ``z`` is NaN).
    """
    z = np.abs(np.asarray(z, dtype=np.float64))
    return np.minimum((math.log(2.0) + sps.norm.logsf(z)) / LN10, 0.0)


def log10_chi2_sf(x: float, df: float) -> float:
    """log10 of the chi-square survival function, also where it underflows.

    ``scipy.stats.chi2.logsf`` down to ``e^-700``; below, the regularised upper incomplete
    gamma function ``Q(df / 2, x / 2)`` of mpmath, whose exponent range has no end.

    Args:
        x: the statistic (e.g. Kruskal-Wallis H).
        df: degrees of freedom, ``> 0``.

    Returns:
        ``log10 P[chi2_df > x]``: 0 for ``x <= 0``, ``-inf`` for ``x = inf``, NaN when ``x``
        or ``df`` is NaN or ``df <= 0`` (an undefined test stays undefined).
    """
    x, df = float(x), float(df)
    if math.isnan(x) or math.isnan(df) or df <= 0 or math.isinf(df):
        return float("nan")
    if x == math.inf:
        return -math.inf
    value = float(sps.chi2.logsf(x, df))
    if np.isfinite(value) and value > -700:
        return value / LN10
    import mpmath

    q = mpmath.gammainc(df / 2.0, x / 2.0, mpmath.inf, regularized=True)
    return float(mpmath.log10(q))


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (as ``statsmodels.multipletests(method="holm")``).

    Args:
        p: unadjusted p-values in ``[0, 1]``; NaN ones are left out of the family (as R's
            ``p.adjust``) and stay NaN.

    Returns:
        float64 ``(m,)`` adjusted p-values in the order given.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return p
    with np.errstate(divide="ignore"):
        return 10 ** holm_log10(np.log10(np.clip(p, 0, 1)))


def holm_log10(log10_p: Sequence[float]) -> np.ndarray:
    """Holm's adjustment applied to ``log10`` p-values, so that underflowed ones survive.

    ``log10 p_(k)`` adjusted to ``min(0, max_{j <= k} (log10 p_(j) + log10(m - j + 1)))``
    over the p-values sorted in increasing order, Holm (1979).

    Args:
        log10_p: base-10 logarithms of unadjusted p-values; NaN ones are left out of the
            family (``m`` counts the others) and stay NaN.

    Returns:
        float64 ``(m,)`` adjusted logarithms, ``<= 0``, in the order given.
    """
    lp = np.asarray(log10_p, dtype=np.float64)
    out = np.full(lp.shape, np.nan)
    finite = ~np.isnan(lp)
    m = int(finite.sum())
    if m == 0:
        return out
    values = lp[finite]
    order = np.argsort(values, kind="stable")
    scaled = values[order] + np.log10(m - np.arange(m))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 0.0)
    out[finite] = adjusted
    return out
