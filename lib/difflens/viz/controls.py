"""The controls figure: estimates with bootstrap intervals per arm and measure.

An undefined estimate (NaN, see :mod:`difflens.analysis.undefined`) gets no marker and an
undefined interval no bar.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from difflens.analysis.controls import MEASURES

ARM_COLOURS = {"trained": "#d62728", "random weights": "#7f7f7f", "shuffled labels": "#1f77b4"}


def plot_controls(
    results: pd.DataFrame, chance: float | None = None, title: str | None = None
) -> tuple[Figure, np.ndarray]:
    """Estimates with their bootstrap intervals, one panel per measure, one bar per arm.

    A dashed line marks no separation (0) and, for the accuracy, ``chance``.

    Args:
        results: the long table of :func:`difflens.analysis.controls.measure_arms`
            (``arm``, ``measure``, ``estimate``, ``low``, ``high``).
        chance: the accuracy of guessing (1 / number of classes), if known.
        title: the figure's title.

    Returns:
        ``(fig, axes)``: one axes per measure present.
    """
    import matplotlib.pyplot as plt

    measures_present = [m for m in MEASURES if m in set(results["measure"])]
    fig, axes = plt.subplots(1, len(measures_present), figsize=(4.2 * len(measures_present), 3.4))
    axes = np.atleast_1d(axes)
    for ax, measure in zip(axes, measures_present):
        rows = results[results["measure"] == measure].reset_index(drop=True)
        for k, row in rows.iterrows():
            colour = ARM_COLOURS.get(row["arm"], "black")
            estimate, low, high = (float(row[c]) for c in ("estimate", "low", "high"))
            if not np.isfinite(estimate):
                continue
            bounded = np.isfinite(low) and np.isfinite(high)
            ax.errorbar(
                k,
                estimate,
                yerr=[[estimate - low], [high - estimate]] if bounded else None,
                fmt="o",
                color=colour,
                capsize=6,
                ms=7,
            )
        reference = 0.0 if measure == "separation" else chance
        if reference is not None:
            ax.axhline(reference, color="black", lw=0.8, ls="--")
        ax.set_xticks(range(len(rows)), rows["arm"])
        ax.set_xlim(-0.5, len(rows) - 0.5)
        label = (
            "Cliff's delta, different- vs same-class"
            if measure == "separation"
            else ("leave-one-image-out accuracy")
        )
        ax.set_ylabel(label)
        ax.set_title(measure)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig, axes


def _band(ax, curve: pd.DataFrame, measure: str, colour: str) -> None:
    """An estimate with its interval as a shaded band against delta."""
    x = curve["delta"].to_numpy(float)
    ax.plot(x, curve[measure], "o-", color=colour, ms=4, label=measure)
    ax.fill_between(x, curve[f"{measure} low"], curve[f"{measure} high"], color=colour, alpha=0.2)


def plot_power_curve(
    curve: pd.DataFrame, chance: float | None = None, title: str | None = None
) -> tuple[Figure, np.ndarray]:
    """The planted controls: each measure against the planted signal size.

    Four panels: separation with its 95 % interval (dashed: 0); nearest-centroid accuracy
    with its interval (dashed: ``chance``); the ordering probabilities over bootstrap
    draws (dashed: 0.95); the pair-level Mann-Whitney ``-log10 p`` (dashed: p = 0.05; a
    hollow marker where the planted direction is reversed).

    Args:
        curve: :func:`difflens.analysis.controls.planted_power_curve`'s table.
        chance: the accuracy of guessing.
        title: the figure's title.

    Returns:
        ``(fig, axes)``: the four axes.
    """
    import matplotlib.pyplot as plt

    curve = curve.sort_values("delta")
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    _band(axes[0], curve, "separation", ARM_COLOURS["trained"])
    axes[0].axhline(0, color="black", lw=0.8, ls="--")
    axes[0].set_ylabel("Cliff's delta, different- vs same-class")
    _band(axes[1], curve, "centroid accuracy", ARM_COLOURS["shuffled labels"])
    if chance is not None:
        axes[1].axhline(chance, color="black", lw=0.8, ls="--")
    axes[1].set_ylabel("leave-one-image-out accuracy")
    for column in [c for c in curve.columns if c.startswith("P[")]:
        axes[2].plot(curve["delta"], curve[column], "o-", ms=3, label=column[2:-1])
    axes[2].axhline(0.95, color="black", lw=0.8, ls="--")
    axes[2].set_ylabel("P[ordering] over bootstrap draws")
    axes[2].legend(fontsize=6, frameon=False)
    for column in [c for c in curve.columns if c.startswith("log10 p ")]:
        a, b = column[len("log10 p ") :].split(" vs ")
        right = curve[f"{a} < {b}"].to_numpy(bool)
        y = -curve[column].to_numpy(float)
        line = axes[3].plot(curve["delta"], y, "-", lw=1, label=f"{a} < {b}")[0]
        axes[3].scatter(curve["delta"][right], y[right], color=line.get_color(), s=14)
        axes[3].scatter(
            curve["delta"][~right], y[~right], facecolors="none", edgecolors=line.get_color(), s=14
        )
    axes[3].axhline(-np.log10(0.05), color="black", lw=0.8, ls="--")
    axes[3].set_yscale("symlog", linthresh=10)
    axes[3].set_ylabel("-log10 p (pair-level Mann-Whitney)")
    axes[3].legend(fontsize=7, frameon=False)
    for ax in axes:
        ax.set_xlabel("planted signal delta (x pixel RMS spread)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig, axes
