"""Figures of multi-layer features: mixing weights, learning curves and PCK rows.

- :func:`plot_mixing_weights`: the learned mixing weights of a Diffusion Hyperfeatures
  aggregator as a layers x timesteps heat map (Luo et al. 2023, Fig. 5: layers on the vertical
  axis, timesteps on the horizontal one; ``train_hyperfeatures.py``'s
  ``log_aggregation_network``);
- :func:`plot_learning_curves`: the training loss (each step and a running mean) with the
  validation loss and PCK;
- :func:`plot_pck_rows`: one horizontal bar per method with its bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_mixing_weights", "plot_learning_curves", "plot_pck_rows"]


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def plot_mixing_weights(
    table: pd.DataFrame,
    *,
    ax: Axes | None = None,
    title: str = "learned mixing weights",
    annotate: bool = True,
) -> tuple[Figure, Axes]:
    """The mixing weights as a layers x timesteps heat map.

    Args:
        table: ``L x S`` weights (rows: layer names, columns: timesteps), e.g. from
            :func:`~difflens.correspondence.hyperfeatures.mixing_table`.
        ax: draw into this axes (default: a new figure, no pyplot).
        title: the title.
        annotate: write each weight (in percent) in its cell.

    Returns:
        ``(fig, ax)``.
    """
    values = 100 * table.to_numpy(dtype=float)  # percent, as the cells and colour bar read
    fig, ax = _axes(ax, (1.2 + 0.55 * values.shape[1], 1.0 + 0.35 * values.shape[0]))
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_yticks(range(values.shape[0]), [str(i) for i in table.index])
    ax.set_xticks(range(values.shape[1]), [str(c) for c in table.columns])
    ax.set_xlabel("timestep")
    ax.set_ylabel("layer")
    ax.set_title(title)
    if annotate:
        top = values.max() if values.size else 0
        for (i, j), v in np.ndenumerate(values):
            colour = "black" if v > 0.6 * top else "white"
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(image, ax=ax, label="weight (%)")
    return fig, ax


def plot_learning_curves(
    history: pd.DataFrame,
    losses: Sequence[float],
    *,
    window: int = 50,
    title: str = "aggregator training",
) -> Figure:
    """Training loss per step (and its running mean), validation loss and PCK.

    Args:
        history: one row per validation: ``step``, ``loss``, ``val_pck``, ``val_loss``.
        losses: the training loss of every step.
        window: steps of the running mean.
        title: the figure's title.

    Returns:
        A figure with two panels: losses (left), validation PCK (right).
    """
    fig = Figure(figsize=(9, 3.2))
    left, right = fig.subplots(1, 2)
    loss = np.asarray(losses, dtype=float)
    steps = np.arange(1, len(loss) + 1)
    left.plot(steps, loss, color="#bbbbbb", lw=0.5, label="training pair")
    w = min(window, len(loss))
    if w > 1:
        left.plot(steps[w - 1 :], np.convolve(loss, np.ones(w) / w, "valid"), label=f"mean of {w}")
    if len(history):
        left.plot(history.step, history.val_loss, "o-", ms=3, label="validation")
        right.plot(history.step, history.val_pck, "o-", ms=3, color="#d62728")
    left.set_xlabel("step")
    left.set_ylabel("contrastive loss")
    left.legend(frameon=False, fontsize=8)
    right.set_xlabel("step")
    right.set_ylabel("validation PCK@0.1 (per image)")
    right.set_ylim(0, 1)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_pck_rows(
    table: pd.DataFrame,
    *,
    ax: Axes | None = None,
    highlight: Sequence[str] = (),
    title: str = "PCK@0.1 (target box, per image)",
) -> tuple[Figure, Axes]:
    """One horizontal bar per method with its interval.

    Args:
        table: columns ``method``, ``pck``, ``low``, ``high`` (fractions), one row per method,
            drawn top to bottom.
        ax: draw into this axes (default: a new figure).
        highlight: methods drawn in another colour.
        title: the title.

    Returns:
        ``(fig, ax)``.
    """
    fig, ax = _axes(ax, (6.5, 0.8 + 0.3 * len(table)))
    y = np.arange(len(table))[::-1]
    colours = ["#ff7f0e" if m in highlight else "#1f77b4" for m in table.method]
    pck = table.pck.to_numpy(float)
    err = np.vstack([pck - table.low.to_numpy(float), table.high.to_numpy(float) - pck])
    ax.barh(y, pck, color=colours, xerr=np.nan_to_num(err), capsize=2)
    ax.set_yticks(y, list(table.method))
    ax.set_xlim(0, 1)
    ax.set_xlabel("PCK")
    ax.set_title(title)
    return fig, ax
