"""Paper-style figures: box plots of distance sets in the paper's colours.

Long forms with millions of pairs: draw the seeded subsample of
:func:`difflens.sets.set_aggregates` (``aggregates.sample``) and take the means and their
intervals from the exact aggregates and the image-level bootstrap.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from difflens.sets import SETS

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


def _finite_distances(long: pd.DataFrame, name: str, where: str) -> np.ndarray:
    values = long.loc[long["set"].astype(str) == name, "distance"].to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        warnings.warn(
            f"{where}: {int(bad.sum())} non-finite distances in {name} left out of the plot",
            stacklevel=3,
        )
    return values[~bad]


def boxplot_sets(
    long: pd.DataFrame,
    ax=None,
    sets: Sequence[str] | None = None,
    colours: dict | None = None,
    title: str | None = None,
    show_means: bool = True,
    showfliers: bool = False,
    mean_intervals: pd.DataFrame | None = None,
    ylabel: str = "distance",
):
    """One box per distance set, in the paper's colours; empty sets are left out.

    ``mean_intervals`` (index: set; columns ``estimate``, ``low``, ``high``, e.g.
    ``bootstrap_set_means(...).intervals()``) draws each set's mean with its bootstrap
    interval instead of the plain mean marker. Non-finite distances are dropped with a
    warning that counts them.
    """
    colours = colours or SET_COLOURS
    present = set(long["set"].astype(str).unique())
    sets = [s for s in (sets or SETS) if s in present]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * max(len(sets), 2) + 1.5, 3.5))
    data = [_finite_distances(long, s, title or "boxplot") for s in sets]
    keep = [k for k, d in enumerate(data) if len(d)]
    sets, data = [sets[k] for k in keep], [data[k] for k in keep]
    if not sets:
        ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
        if title:
            ax.set_title(title)
        return ax
    box = ax.boxplot(
        data,
        patch_artist=True,
        showfliers=showfliers,
        showmeans=show_means and mean_intervals is None,
        meanprops={"marker": "o", "markerfacecolor": "white", "markeredgecolor": "black"},
    )
    ax.set_xticks(range(1, len(sets) + 1), sets)
    for patch, name in zip(box["boxes"], sets):
        patch.set_facecolor(colours.get(name, "#cccccc"))
    for median in box["medians"]:
        median.set_color("black")
    if mean_intervals is not None:
        _mean_markers(ax, sets, mean_intervals)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def _mean_markers(ax, sets: Sequence[str], intervals: pd.DataFrame) -> None:
    """Each set's mean (white dot) with its interval (black bar) at its box."""
    for x, name in enumerate(sets, start=1):
        if name not in intervals.index:
            continue
        row = intervals.loc[name]
        mean, low, high = float(row["estimate"]), float(row["low"]), float(row["high"])
        if not np.isfinite(mean):
            continue
        err = [[max(mean - low, 0.0)], [max(high - mean, 0.0)]] if np.isfinite(low) else None
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
    colours: dict | None = None,
    ncols: int | None = None,
    sharey: bool = True,
    mean_intervals: Mapping[str, pd.DataFrame] | None = None,
    title: str | None = None,
    panel_size: tuple[float, float] = (3.0, 3.2),
    showfliers: bool = False,
    ylabel: str = "distance",
):
    """Paper-style figure: one box-plot panel per dataset or setting (e.g. one per metric
    for Fig. 3, per layer for Figs. 4-6, per timestep for Fig. 7, per transform for Fig. 8
    with ``colours=TRANSFORM_COLOURS``). ``mean_intervals`` maps a panel to its bootstrap
    intervals (see :func:`boxplot_sets`). Returns ``(fig, axes)``.
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


def save_figure(fig, figures_dir: str | Path, name: str) -> list[Path]:
    """Save ``fig`` as PNG and PDF under ``figures_dir``; returns the paths."""
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return paths


def record_numbers(numbers: dict, figures_dir: str | Path, name: str = "numbers") -> Path:
    """Write a notebook's key numbers as JSON next to its figures (NaN written as null)."""

    def clean(value):
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, (np.floating, float)):
            return float(value) if np.isfinite(value) else None
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.bool_):
            return bool(value)
        return value

    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(clean(numbers), indent=2, sort_keys=True))
    return path
