"""Per-set summaries of a long form and the orderings of set means the paper claims.

A long form is a data frame with one row per pair and set: columns ``set`` and
``distance`` (from :func:`difflens.analysis.sets.distance_sets`, or built by hand). Only
finite distances enter a set here; an empty set, or one of a single distance, gives NaN
where a number needs more (see :mod:`difflens.analysis.undefined`), with a ``reason``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from difflens.analysis.aggregates import SetAggregates
from difflens.analysis.sets import ORDERINGS, SETS
from difflens.analysis.undefined import undefined

SUMMARY_COLUMNS = ("n", "mean", "std", "median", "reason")


def finite_groups(
    long: pd.DataFrame, sets: Sequence[str] | None = None, keep_empty: bool = False
) -> dict[str, np.ndarray]:
    """The finite distances of each set of a long form.

    Args:
        long: a long form (columns ``set`` and ``distance``).
        sets: the sets wanted, in this order; default: those of ``SETS`` present in
            ``long``, in the order of ``SETS``.
        keep_empty: also give the wanted sets without a finite distance (empty arrays).

    Returns:
        ``{set: float64 (n_set,) distances}``; NaN and infinite distances left out.
    """
    names = long["set"].astype(str).to_numpy()
    values = long["distance"].to_numpy(np.float64)
    present = set(names)
    wanted = list(sets) if sets is not None else [s for s in SETS if s in present]
    out = {}
    for name in wanted:
        v = values[names == name]
        out[name] = v[np.isfinite(v)]
    return out if keep_empty else {k: v for k, v in out.items() if len(v)}


def _summary_reason(n: int, name: str) -> str:
    if n == 0:
        return f"{name} has no finite distance: mean, sd and median undefined"
    if n == 1:
        return f"{name} has one distance: no standard deviation"
    return ""


def set_summary(
    long: pd.DataFrame | SetAggregates, sets: Sequence[str] | None = None
) -> pd.DataFrame:
    """Count, mean, standard deviation and median of the finite distances of each set.

    Args:
        long: a long form, or the streamed :class:`~difflens.analysis.aggregates.SetAggregates`
            (its exact count, mean and sd, and the median from its histogram).
        sets: the rows, in this order, empty sets included (``n = 0``, NaN); default: the
            sets with a finite distance, in the order of ``SETS`` (for aggregates: all
            of their sets).

    Returns:
        Index ``set``; columns ``n`` (int), ``mean``, ``std`` (``ddof=1``), ``median``
        (float64, the distance's units) and ``reason`` (why a number is NaN, else ``""``).
    """
    if isinstance(long, SetAggregates):
        table = long.summary()
        names = list(sets) if sets is not None else list(table.index)
        rows = {
            s: table.loc[s, list(SUMMARY_COLUMNS)].to_dict() if s in table.index else _empty_row(s)
            for s in names
        }
        return _summary_frame(rows)
    groups = finite_groups(long, sets, keep_empty=sets is not None)
    rows = {}
    for name, v in groups.items():
        n = len(v)
        rows[name] = {
            "n": n,
            "mean": float(v.mean()) if n else np.nan,
            "std": float(v.std(ddof=1)) if n > 1 else np.nan,
            "median": float(np.median(v)) if n else np.nan,
            "reason": _summary_reason(n, name),
        }
    return _summary_frame(rows)


def _empty_row(name: str) -> dict:
    return {
        "n": 0,
        "mean": np.nan,
        "std": np.nan,
        "median": np.nan,
        "reason": _summary_reason(0, name),
    }


def _summary_frame(rows: dict) -> pd.DataFrame:
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(SUMMARY_COLUMNS))
    table["n"] = table["n"].astype(int)
    return table.rename_axis("set")


def ordering_holds(summary: pd.DataFrame, order: Sequence[str] = ORDERINGS["eq16"]) -> bool:
    """True if the set means increase strictly along ``order`` (the paper's Eq. 16 by default).

    Args:
        summary: a :func:`set_summary` table (index: set; column ``mean``).
        order: the sets in the claimed increasing order; sets missing from ``summary`` are
            skipped.

    Returns:
        Whether every mean is below the next. False, with an
        :class:`~difflens.analysis.undefined.UndefinedStatisticWarning`, when a mean along
        the chain is NaN (a set without a finite distance): the ordering cannot be shown.
    """
    names = [name for name in order if name in summary.index]
    means = np.array([summary.loc[name, "mean"] for name in names], dtype=np.float64)
    if np.isnan(means).any():
        empty = [n for n, m in zip(names, means) if np.isnan(m)]
        undefined(f"ordering {' < '.join(names)}: no mean for {', '.join(empty)}")
        return False
    return bool(np.all(np.diff(means) > 0))


def claimed_orderings(sets: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The orderings the paper claims among ``sets``: Eq. 16 / 17 chains and their pairs.

    Args:
        sets: the sets of a study (e.g. ``PAPER_SETS`` or ``TRANSFORM_SETS``).

    Returns:
        ``{label: chain}``; labels read like ``"scsi < scdi < dcsi < dcdi"`` (a chain of
        three or more sets) or ``"scsi < dcsi"`` (a pair).
    """
    present = set(sets)
    out: dict[str, tuple[str, ...]] = {}
    for chain in ORDERINGS.values():
        kept = tuple(s for s in chain if s in present)
        if len(kept) > 2:
            out[" < ".join(kept)] = kept
        for a, b in combinations(kept, 2):
            out[f"{a} < {b}"] = (a, b)
    return out
