"""Table 1-style tables: numbers as DataFrames, exported to markdown and LaTeX.

A table is built from the outputs of :mod:`difflens.analysis.comparisons`,
:mod:`difflens.analysis.summaries` and :mod:`difflens.analysis.bootstrap` for several
columns (a dataset, a metric, a layer: any hashable key; a tuple key such as
``("Pascal-VOC", "correlation")`` becomes a two-level column header, as in the paper's
Table 1). The numbers stay numbers; p-values keep their ``log10`` in
``table.attrs["log10_p"]`` so that :func:`format_table` writes an underflowed p-value from
its logarithm (never as 0). An undefined number (NaN, see
:mod:`difflens.analysis.undefined`) is written ``n/a``; the comparison table keeps the
reasons in ``table.attrs["reasons"]``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

from difflens.analysis.bootstrap import BootstrapResult
from difflens.analysis.pvalues import format_p
from difflens.analysis.sets import SETS

#: Row labels of the measures a comparison table can show (columns of ``pairwise_tests``).
MEASURE_LABELS = {
    "p_mwu": "p-value (Mann-Whitney U)",
    "p_mwu_holm": "p-value (Mann-Whitney U, Holm)",
    "p_dunn": "p-value (Dunn)",
    "p_dunn_holm": "p-value (Dunn, Holm)",
    "dunn_mean_sd": "Dunn index (Δ mean / max sd)",
    "dunn_textbook": "Dunn index (Eq. 10, textbook)",
    "dunn_delta4_Delta3": "Dunn index (δ4 / Δ3)",
    "dunn_delta4_Delta2": "Dunn index (δ4 / Δ2)",
    "cliffs_delta": "Cliff's delta",
    "mean_diff": "difference of means",
}
#: Default rows under each comparison: a p-value and the paper-magnitude Dunn index.
TABLE1_MEASURES = ("p_mwu_holm", "dunn_mean_sd")


def _columns(keys: Sequence[Hashable]) -> pd.Index:
    if keys and all(isinstance(k, tuple) for k in keys):
        return pd.MultiIndex.from_tuples(keys)
    return pd.Index(list(keys))


def comparison_table(
    pairwise_by_column: Mapping[Hashable, pd.DataFrame],
    measures: Sequence[str] = TABLE1_MEASURES,
) -> pd.DataFrame:
    """The paper's Table 1 layout from ``pairwise_tests`` outputs, one per column.

    Args:
        pairwise_by_column: ``{column key: pairwise_tests(...) frame}``.
        measures: the rows under each comparison, keys of :data:`MEASURE_LABELS`.

    Returns:
        float64 values; rows ``(comparison, measure)``, e.g. ``("scsi vs scdi", "p-value
        (...)")``, in the order of the sets; columns the keys of ``pairwise_by_column``
        (two levels for tuple keys). ``attrs["log10_p"]`` holds the p-values' logarithms,
        ``attrs["p_rows"]`` the p-value row labels and ``attrs["reasons"]`` ``{(comparison,
        column): reason}`` for the comparisons with undefined numbers.

    Raises:
        ValueError: an unknown measure.
    """
    unknown = [m for m in measures if m not in MEASURE_LABELS]
    if unknown:
        raise ValueError(f"unknown measures {unknown}; known: {list(MEASURE_LABELS)}")
    keys = list(pairwise_by_column)
    comparisons: list[tuple[str, str]] = []
    for frame in pairwise_by_column.values():
        for a, b in zip(frame["a"], frame["b"]):
            if (a, b) not in comparisons:
                comparisons.append((a, b))
    rank = {s: k for k, s in enumerate(SETS)}
    comparisons.sort(key=lambda ab: (rank.get(ab[0], 99), rank.get(ab[1], 99)))
    index = pd.MultiIndex.from_tuples(
        [(f"{a} vs {b}", MEASURE_LABELS[m]) for a, b in comparisons for m in measures],
        names=["sets", "measure"],
    )
    values = pd.DataFrame(np.nan, index=index, columns=_columns(keys))
    logs = values.copy()
    reasons: dict[tuple[str, Hashable], str] = {}
    for key, frame in pairwise_by_column.items():
        by_pair = frame.set_index(["a", "b"])
        for a, b in comparisons:
            if (a, b) not in by_pair.index:
                continue
            row = by_pair.loc[(a, b)]
            if str(row.get("reason", "")):
                reasons[(f"{a} vs {b}", key)] = str(row["reason"])
            for m in measures:
                at = (f"{a} vs {b}", MEASURE_LABELS[m])
                values.loc[at, key] = float(row[m])
                log_col = "log10_" + m
                if m.startswith("p_") and log_col in row.index:
                    logs.loc[at, key] = float(row[log_col])
    values.attrs["log10_p"] = logs
    values.attrs["p_rows"] = [MEASURE_LABELS[m] for m in measures if m.startswith("p_")]
    values.attrs["reasons"] = reasons
    return values


def _number(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, or ``"n/a"`` when it is not a finite number."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def summary_table(summaries: Mapping[Hashable, pd.DataFrame], digits: int = 3) -> pd.DataFrame:
    """Mean ± sd of every set (rows) under every column (the supplement's Table S.1).

    Args:
        summaries: ``{column key: set_summary(...) table}``.
        digits: decimals.

    Returns:
        Text cells ``"0.412 ± 0.051"`` (``n/a`` for an undefined number, ``""`` for a set
        the column lacks); index ``set``.
    """
    keys = list(summaries)
    sets = [s for s in SETS if any(s in t.index for t in summaries.values())]
    out = pd.DataFrame("", index=pd.Index(sets, name="set"), columns=_columns(keys))
    for key, table in summaries.items():
        for s in sets:
            if s in table.index:
                mean, sd = table.loc[s, "mean"], table.loc[s, "std"]
                out.loc[s, key] = f"{_number(mean, digits)} ± {_number(sd, digits)}"
    return out


def bootstrap_table(results: Mapping[Hashable, BootstrapResult], digits: int = 3) -> pd.DataFrame:
    """Image-level results: each set mean with its interval, and P[ordering], per column.

    Args:
        results: ``{column key: BootstrapResult}`` (from ``bootstrap_set_means``).
        digits: decimals of the means and intervals.

    Returns:
        Text cells ``"0.412 [0.398, 0.427]"`` and ``"0.981"`` (``n/a`` for undefined
        numbers); index ``statistic``.
    """
    keys = list(results)
    rows: list[str] = []
    cells: dict[tuple[str, Hashable], str] = {}
    for key, result in results.items():
        pct = round(100 * result.level)
        for name, r in result.intervals().iterrows():
            label = f"mean {name} [{pct}% CI]"
            if label not in rows:
                rows.append(label)
            low, high = _number(r["low"], digits), _number(r["high"], digits)
            cells[(label, key)] = f"{_number(r['estimate'], digits)} [{low}, {high}]"
        for r in result.orderings.itertuples():
            label = f"P[{r.ordering}]"
            if label not in rows:
                rows.append(label)
            cells[(label, key)] = _number(r.probability, 3)
    out = pd.DataFrame("", index=pd.Index(rows, name="statistic"), columns=_columns(keys))
    for (label, key), text in cells.items():
        out.loc[label, key] = text
    return out


def format_table(table: pd.DataFrame, digits: int = 5, latex: bool = False) -> pd.DataFrame:
    r"""Numbers as strings for a printed table.

    Args:
        table: a table of this module (numbers, or text cells left unchanged).
        digits: decimals of the numbers that are not p-values.
        latex: write p-values in LaTeX (``$3.1\times10^{-32}$``).

    Returns:
        The same layout with text cells: p-value rows through
        :func:`~difflens.analysis.pvalues.format_p` (from their log10 below 1e-300), other
        numbers with ``digits`` decimals, ``n/a`` for a number that is not finite.
    """
    logs = table.attrs.get("log10_p")
    p_rows = set(table.attrs.get("p_rows", []))
    out = pd.DataFrame("", index=table.index, columns=table.columns)
    for r, index in enumerate(table.index):
        measure = index[-1] if isinstance(index, tuple) else index
        for c in range(table.shape[1]):
            value = table.iat[r, c]
            if isinstance(value, str):
                out.iat[r, c] = value
            elif measure in p_rows:
                log = None if logs is None else logs.iat[r, c]
                out.iat[r, c] = format_p(value, log, latex=latex)
            else:
                out.iat[r, c] = _number(value, digits)
    return out


def to_markdown(table: pd.DataFrame, digits: int = 5) -> str:
    """A markdown table (through ``tabulate``), numbers formatted by :func:`format_table`.

    Args:
        table: a table of this module.
        digits: decimals of the numbers that are not p-values.

    Returns:
        The markdown text; a two-level column header is joined with ``" · "``.
    """
    flat = format_table(table, digits).map(lambda v: v.replace("|", "\\|"))
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [" · ".join(map(str, c)) for c in flat.columns]
    if isinstance(flat.index, pd.MultiIndex):
        flat = flat.reset_index()
        return flat.to_markdown(index=False, disable_numparse=True)
    return flat.to_markdown(disable_numparse=True)


_LATEX_ESCAPES = {"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#"}
_LATEX_SYMBOLS = {"Δ": r"$\Delta$", "δ": r"$\delta$", "±": r"$\pm$"}


def _latex_text(text: str) -> str:
    for old, new in {**_LATEX_ESCAPES, **_LATEX_SYMBOLS}.items():
        text = text.replace(old, new)
    return text


def to_latex(table: pd.DataFrame, digits: int = 5, caption: str | None = None) -> str:
    r"""A LaTeX ``tabular`` (booktabs), p-values as ``3.1\times10^{-32}``.

    Args:
        table: a table of this module.
        digits: decimals of the numbers that are not p-values.
        caption: the table's caption, if any.

    Returns:
        The LaTeX text (``pandas.DataFrame.to_latex``), with ``_``, ``%``, ``&``, ``#``
        escaped and Δ, δ, ± written as math.
    """
    text = format_table(table, digits, latex=True)
    text = text.map(lambda v: v if v.startswith("$") else _latex_text(v))
    text.index = _rename_index(text.index)
    text.columns = _rename_index(text.columns)
    return text.to_latex(escape=False, caption=caption, multicolumn_format="c")


def _rename_index(index: pd.Index) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        return pd.MultiIndex.from_tuples(
            [tuple(_latex_text(str(v)) for v in t) for t in index],
            names=[None if n is None else _latex_text(str(n)) for n in index.names],
        )
    return pd.Index(
        [_latex_text(str(v)) for v in index],
        name=None if index.name is None else _latex_text(str(index.name)),
    )
