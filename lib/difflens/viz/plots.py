"""Paper-style figures: box and violin plots of distance sets in the paper's colours.

The boxes and violins are seaborn's (``seaborn.boxplot`` / ``seaborn.violinplot``, one hue per
set, ``saturation=1`` so that the paper's colours are drawn as given); the bootstrap mean
markers are matplotlib error bars placed on seaborn's category positions. Figures are saved
with their numbers (:func:`save_figure`, :func:`record_numbers`).

Long forms with millions of pairs: draw the seeded subsample of
:func:`difflens.analysis.aggregates.set_aggregates` (``aggregates.sample``) and take the
means and their intervals from the exact aggregates and the image-level bootstrap. A set
without a finite distance gets no box; an undefined mean or interval (NaN, see
:mod:`difflens.analysis.undefined`) gets no marker; :func:`record_numbers` writes NaN as
``null``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from difflens.analysis.sets import SETS

# Figs. 3-7: scsi red, scdi blue, dcsi green, dcdi yellow.
SET_COLOURS = {
    "scsi": "#d62728",
    "scdi": "#1f77b4",
    "dcsi": "#2ca02c",
    "dcdi": "#f2c200",
    "sidi": "#9467bd",
}
# Fig. 8 (transforms): scsi red, dcsi blue, sidi green.
TRANSFORM_COLOURS = {"scsi": "#d62728", "dcsi": "#1f77b4", "sidi": "#2ca02c"}
#: seaborn 0.13 passes ``vert=`` to ``Axes.bxp``, deprecated since matplotlib 3.11 (pending
#: since 3.10); these keywords override it with the ``orientation`` that replaces it.
_BOX_ORIENTATION = (
    {"vert": None, "orientation": "vertical"}
    if tuple(int(p) for p in matplotlib.__version__.split(".")[:2]) >= (3, 10)
    else {}
)
_MEAN_PROPS = {"marker": "o", "markerfacecolor": "white", "markeredgecolor": "black"}


def _finite_distances(long: pd.DataFrame, name: str, where: str) -> np.ndarray:
    """The finite distances of set ``name``; the others are counted in a warning."""
    values = long.loc[long["set"].astype(str) == name, "distance"].to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        warnings.warn(
            f"{where}: {int(bad.sum())} non-finite distances in {name} left out of the plot",
            stacklevel=3,
        )
    return values[~bad]


def _set_frame(
    long: pd.DataFrame, sets: Sequence[str] | None, where: str
) -> tuple[list[str], pd.DataFrame]:
    """The sets to draw (present, with a finite distance) and their finite distances."""
    present = set(long["set"].astype(str).unique())
    names = [s for s in (sets or SETS) if s in present]
    data = {s: _finite_distances(long, s, where) for s in names}
    names = [s for s in names if len(data[s])]
    frame = pd.DataFrame(
        {
            "set": np.repeat(names, [len(data[s]) for s in names]).astype(str),
            "distance": np.concatenate([data[s] for s in names]) if names else np.zeros(0),
        }
    )
    return names, frame


def _no_pairs(ax: Axes, title: str | None) -> Axes:
    """An axes that says it has nothing to draw."""
    ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
    if title:
        ax.set_title(title)
    return ax


def _finish(ax: Axes, ylabel: str, title: str | None) -> Axes:
    """Labels of a set plot: no x label (the ticks name the sets), the y label, the title."""
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def boxplot_sets(
    long: pd.DataFrame,
    ax: Axes | None = None,
    sets: Sequence[str] | None = None,
    colours: Mapping[str, str] | None = None,
    title: str | None = None,
    show_means: bool = True,
    showfliers: bool = False,
    mean_intervals: pd.DataFrame | None = None,
    ylabel: str = "distance",
) -> Axes:
    """One box per distance set, in the paper's colours (Figs. 3-8), drawn by seaborn.

    Non-finite distances are dropped with a warning that counts them; a set left without
    a distance gets no box, and an axes without any says ``"no pairs"``. A set of one
    value (or of equal values) is drawn as a flat box at that value. Boxes stand at
    seaborn's category positions ``0, 1, ...``, labelled with the set names.

    Args:
        long: a long form (columns ``set`` and ``distance``).
        ax: the axes to draw on; a new figure when None.
        sets: the sets, in this order; default: those of ``SETS`` present.
        colours: ``{set: colour}``; default :data:`SET_COLOURS`.
        title: the axes title (also names the plot in warnings).
        show_means: mark each set's mean (a white dot).
        showfliers: draw the points beyond the whiskers.
        mean_intervals: index set; columns ``estimate``, ``low``, ``high`` (e.g.
            ``bootstrap_set_means(...).intervals()``): each set's mean is drawn with its
            bootstrap interval instead of the plain mean marker; NaN ones are skipped.
        ylabel: the y-axis label.

    Returns:
        The axes.
    """
    colours = colours or SET_COLOURS
    names, frame = _set_frame(long, sets, title or "boxplot")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * max(len(names), 2) + 1.5, 3.5))
    if not names:
        return _no_pairs(ax, title)
    sns.boxplot(
        frame,
        x="set",
        y="distance",
        hue="set",
        order=names,
        hue_order=names,
        palette={s: colours.get(s, "#cccccc") for s in names},
        saturation=1,
        linecolor="black",
        legend=False,
        showfliers=showfliers,
        showmeans=show_means and mean_intervals is None,
        meanprops=_MEAN_PROPS,
        ax=ax,
        **_BOX_ORIENTATION,
    )
    if mean_intervals is not None:
        _mean_markers(ax, names, mean_intervals)
    return _finish(ax, ylabel, title)


def violinplot_sets(
    long: pd.DataFrame,
    ax: Axes | None = None,
    sets: Sequence[str] | None = None,
    colours: Mapping[str, str] | None = None,
    title: str | None = None,
    ylabel: str = "distance",
    inner: str | None = "quart",
) -> Axes:
    """One violin per distance set, in the paper's colours, drawn by seaborn.

    The densities are cut at each set's smallest and largest distance (``cut=0``) and every
    violin has the same width. Non-finite distances are dropped with a counting warning,
    as in :func:`boxplot_sets`.

    Args:
        long: a long form (columns ``set`` and ``distance``).
        ax: the axes to draw on; a new figure when None.
        sets: the sets, in this order; default: those of ``SETS`` present.
        colours: ``{set: colour}``; default :data:`SET_COLOURS`.
        title: the axes title.
        ylabel: the y-axis label.
        inner: seaborn's ``inner``: ``"quart"`` (quartile lines), ``"box"``, ``"point"``
            or None.

    Returns:
        The axes.
    """
    colours = colours or SET_COLOURS
    names, frame = _set_frame(long, sets, title or "violin plot")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * max(len(names), 2) + 1.5, 3.5))
    if not names:
        return _no_pairs(ax, title)
    sns.violinplot(
        frame,
        x="set",
        y="distance",
        hue="set",
        order=names,
        hue_order=names,
        palette={s: colours.get(s, "#cccccc") for s in names},
        saturation=1,
        legend=False,
        cut=0,
        density_norm="width",
        inner=inner,
        ax=ax,
    )
    return _finish(ax, ylabel, title)


def plot_distance_among_sets(
    long: pd.DataFrame,
    distance: float,
    ax: Axes | None = None,
    sets: Sequence[str] | None = None,
    colours: Mapping[str, str] | None = None,
    label: str | None = None,
    title: str | None = None,
    ylabel: str = "distance",
) -> Axes:
    """One pair's distance as a dashed line across the sets' violins.

    Args:
        long: the long form the pair's sets come from.
        distance: the pair's distance (a NaN one draws no line).
        ax: the axes to draw on; a new figure when None.
        sets: the sets; default: those of ``SETS`` present.
        colours: ``{set: colour}``; default :data:`SET_COLOURS`.
        label: the line's legend text (default ``"this pair: <distance>"``).
        title: the axes title.
        ylabel: the y-axis label.

    Returns:
        The axes.
    """
    ax = violinplot_sets(long, ax=ax, sets=sets, colours=colours, title=title, ylabel=ylabel)
    if np.isfinite(distance):
        ax.axhline(
            distance,
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=label or f"this pair: {distance:.3g}",
        )
        ax.legend(loc="best", frameon=False, fontsize=8)
    return ax


def _mean_markers(ax: Axes, sets: Sequence[str], intervals: pd.DataFrame) -> None:
    """Each set's mean (white dot) with its interval (black bar) at its box."""
    for x, name in enumerate(sets):
        if name not in intervals.index:
            continue
        row = intervals.loc[name]
        mean, low, high = float(row["estimate"]), float(row["low"]), float(row["high"])
        if not np.isfinite(mean):
            continue
        bounded = np.isfinite(low) and np.isfinite(high)
        err = [[max(mean - low, 0.0)], [max(high - mean, 0.0)]] if bounded else None
        ax.errorbar(
            [x],
            [mean],
            yerr=err,
            fmt="o",
            color="black",
            markerfacecolor="white",
            capsize=3,
            zorder=5,
        )


def boxplot_panels(
    long_by_panel: Mapping[str, pd.DataFrame],
    sets: Sequence[str] | None = None,
    colours: Mapping[str, str] | None = None,
    ncols: int | None = None,
    sharey: bool = True,
    mean_intervals: Mapping[str, pd.DataFrame] | None = None,
    title: str | None = None,
    panel_size: tuple[float, float] = (3.0, 3.2),
    showfliers: bool = False,
    ylabel: str = "distance",
) -> tuple[Figure, np.ndarray]:
    """Paper-style figure: one box-plot panel per dataset or setting.

    One panel per metric for Fig. 3, per layer for Figs. 4-6, per timestep for Fig. 7,
    per transform for Fig. 8 (with ``colours=TRANSFORM_COLOURS``).

    Args:
        long_by_panel: ``{panel title: long form}``.
        sets: the sets of every panel (see :func:`boxplot_sets`).
        colours: ``{set: colour}``.
        ncols: panels per row; default: up to 4.
        sharey: one y-axis for all panels.
        mean_intervals: ``{panel title: bootstrap intervals}`` (see :func:`boxplot_sets`).
        title: the figure's title.
        panel_size: ``(width, height)`` of a panel in inches.
        showfliers: draw the points beyond the whiskers.
        ylabel: the y-axis label of the first column.

    Returns:
        ``(fig, axes)``: axes is a ``(rows, ncols)`` array; unused cells are hidden.

    Raises:
        ValueError: ``long_by_panel`` is empty.
    """
    names = list(long_by_panel)
    if not names:
        raise ValueError("boxplot_panels needs at least one panel")
    ncols = ncols or min(len(names), 4)
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
        sharey=sharey,
        squeeze=False,
    )
    for k, name in enumerate(names):
        ax = axes[k // ncols][k % ncols]
        boxplot_sets(
            long_by_panel[name],
            ax=ax,
            sets=sets,
            colours=colours,
            title=str(name),
            showfliers=showfliers,
            mean_intervals=None if mean_intervals is None else mean_intervals.get(name),
            ylabel=ylabel if k % ncols == 0 else "",
        )
    for k in range(len(names), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig, axes


def save_figure(fig: Figure, figures_dir: str | Path, name: str) -> list[Path]:
    """Save ``fig`` as PNG (150 dpi) and PDF under ``figures_dir``.

    Args:
        fig: the figure.
        figures_dir: the folder, created if missing.
        name: the file name without suffix.

    Returns:
        The two paths written.
    """
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return paths


def json_ready(value: object) -> object:
    """``value`` with numpy and pandas scalars made plain and every non-finite number None.

    Args:
        value: numbers, strings, None, and dicts, lists, tuples or numpy arrays of them.

    Returns:
        The same structure in JSON's types: NaN, inf and ``pd.NA`` become None (JSON
        ``null``), dict keys strings, arrays and tuples lists.
    """
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def record_numbers(numbers: Mapping, figures_dir: str | Path, name: str = "numbers") -> Path:
    """Write a notebook's key numbers as JSON next to its figures.

    Undefined numbers (NaN, inf) are written as ``null``; the reasons a
    :class:`~difflens.analysis.set_analysis.SetAnalysis` gives in ``numbers()["reasons"]``
    travel with them.

    Args:
        numbers: the numbers (see :func:`json_ready` for what they may hold).
        figures_dir: the folder, created if missing.
        name: the file name without ``.json``.

    Returns:
        The path written (strict JSON: no ``NaN`` token, keys sorted).
    """
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(json_ready(numbers), indent=2, sort_keys=True, allow_nan=False))
    return path
