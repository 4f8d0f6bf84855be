"""Paper-style figures: box plots of distance sets in the paper's colours."""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def boxplot_sets(
    long: pd.DataFrame,
    ax=None,
    sets: Sequence[str] | None = None,
    colours: dict | None = None,
    title: str | None = None,
    show_means: bool = True,
    showfliers: bool = False,
):
    """One box per distance set, in the paper's colours; empty sets are left out."""
    colours = colours or SET_COLOURS
    present = set(long["set"].astype(str).unique())
    sets = [s for s in (sets or SETS) if s in present]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * max(len(sets), 2) + 1.5, 3.5))
    data = [long.loc[long["set"] == s, "distance"].to_numpy() for s in sets]
    data = [d[np.isfinite(d)] for d in data]
    if not sets:
        ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
        return ax
    box = ax.boxplot(
        data,
        patch_artist=True,
        showfliers=showfliers,
        showmeans=show_means,
        meanprops={"marker": "o", "markerfacecolor": "white", "markeredgecolor": "black"},
    )
    ax.set_xticks(range(1, len(sets) + 1), sets)
    for patch, name in zip(box["boxes"], sets):
        patch.set_facecolor(colours.get(name, "#cccccc"))
    for median in box["medians"]:
        median.set_color("black")
    ax.set_ylabel("distance")
    if title:
        ax.set_title(title)
    return ax


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
