"""Every pair of distance sets compared: the rows of the paper's Table 1.

One row per pair of sets: sizes and means, the Mann-Whitney U test and Dunn's post-hoc
test (each with Holm's correction over the pairs compared), Cliff's delta and every Dunn
index variant. A number its data cannot define is NaN and the row's ``reason`` says why
(see :mod:`difflens.analysis.undefined`); NaN p-values stay out of Holm's family.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from difflens.analysis.dunn_index import DUNN_VARIANTS, dunn_indices
from difflens.analysis.pvalues import holm_log10
from difflens.analysis.rank_tests import dunn_posthoc, mann_whitney
from difflens.analysis.summaries import finite_groups
from difflens.analysis.undefined import NAN, collect_reasons, join_reasons

#: The columns of a :func:`pairwise_tests` row before Holm's correction is added.
ROW_COLUMNS = (
    ("a", "b", "n_a", "n_b", "mean_a", "mean_b", "mean_diff", "U", "p_mwu", "log10_p_mwu")
    + ("z_dunn", "p_dunn", "log10_p_dunn", "cliffs_delta", "cles")
    + tuple(f"dunn_{k}" for k in DUNN_VARIANTS)
    + ("reason",)
)


def _pair_row(a: str, b: str, x: np.ndarray, y: np.ndarray, dunn: tuple | None) -> dict:
    """The comparison of set ``a`` (values ``x``) with set ``b`` (values ``y``)."""
    row: dict = dict.fromkeys(ROW_COLUMNS, NAN)
    row.update(a=a, b=b, n_a=len(x), n_b=len(y))
    row["mean_a"] = float(x.mean()) if len(x) else NAN
    row["mean_b"] = float(y.mean()) if len(y) else NAN
    empty = [name for name, v in ((a, x), (b, y)) if not len(v)]
    if empty:
        row["reason"] = f"{' and '.join(empty)} without a finite distance: nothing to compare"
        return row
    with collect_reasons() as reasons:
        mw = mann_whitney(x, y, names=(a, b))
        indices = dunn_indices(x, y, names=(a, b))
    row.update(mean_diff=row["mean_b"] - row["mean_a"], U=mw["U"])
    row.update(p_mwu=mw["p"], log10_p_mwu=mw["log10_p"])
    row.update(cliffs_delta=-mw["cliffs_delta"], cles=1.0 - mw["cles"])
    row.update({f"dunn_{k}": v for k, v in indices.items()})
    if dunn is not None:
        row.update(z_dunn=dunn[0], p_dunn=dunn[1], log10_p_dunn=dunn[2])
    dunn_reason = "" if dunn is None else dunn[3]
    row["reason"] = join_reasons(str(mw["reason"]), dunn_reason, *reasons)
    return row


def _dunn_by_pair(long: pd.DataFrame, sets: Sequence[str] | None) -> dict:
    """``{(a, b): (z, p, log10_p, reason)}`` in both orientations (``z`` signed for a -> b)."""
    out = {}
    for r in dunn_posthoc(long, sets).itertuples():
        out[(r.a, r.b)] = (r.z, r.p, r.log10_p, r.reason)
        out[(r.b, r.a)] = (-r.z, r.p, r.log10_p, r.reason)
    return out


def pairwise_tests(
    long: pd.DataFrame,
    pairs: Sequence[tuple[str, str]] | None = None,
    sets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every pair of sets compared (the paper's Table 1 rows, with image-blind p-values).

    Args:
        long: a long form (columns ``set`` and ``distance``); NaN distances left out.
        pairs: the pairs ``(a, b)`` to compare; default: every pair of ``sets`` in order.
        sets: the sets pooled for Dunn's ranks and paired by default; default: those of
            ``SETS`` present in ``long``. A set given here or in ``pairs`` without a finite
            distance still gets its rows, NaN with the reason.

    Returns:
        One row per pair: ``a``, ``b``, ``n_a``, ``n_b``, ``mean_a``, ``mean_b``,
        ``mean_diff`` (``mean_b - mean_a``), ``U``, ``p_mwu``, ``log10_p_mwu``,
        ``p_mwu_holm``, ``log10_p_mwu_holm``, ``z_dunn`` (``> 0`` when ``b`` ranks higher),
        ``p_dunn``, ``log10_p_dunn``, ``cliffs_delta`` (``P(b > a) - P(b < a)``), ``cles``
        (``P(b > a)``), ``dunn_<variant>`` for every Dunn index variant, ``reason`` (why a
        number is NaN or conventional, else ``""``), ``log10_p_dunn_holm``,
        ``p_dunn_holm``. The ``log10`` columns stay finite where p-values underflow.
    """
    wanted = list(sets) if sets is not None else None
    if pairs is not None and wanted is None:
        present = list(finite_groups(long))
        wanted = present + [s for pair in pairs for s in pair if s not in present]
    groups = finite_groups(long, wanted, keep_empty=True)
    pairs = list(combinations(groups, 2)) if pairs is None else list(pairs)
    dunn = _dunn_by_pair(long, sets)
    rows = [_pair_row(a, b, groups[a], groups[b], dunn.get((a, b))) for a, b in pairs]
    table = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    if len(table):
        at = table.columns.get_loc("log10_p_mwu") + 1
        table.insert(at, "log10_p_mwu_holm", holm_log10(table["log10_p_mwu"]))
        table.insert(at, "p_mwu_holm", 10 ** table["log10_p_mwu_holm"])
        table["log10_p_dunn_holm"] = holm_log10(table["log10_p_dunn"])
        table["p_dunn_holm"] = 10 ** table["log10_p_dunn_holm"]
    return table
