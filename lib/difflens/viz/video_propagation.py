"""Figures of video label propagation.

Masks over a strip of frames, J&F per sequence, and J and F against the frame index, for one
or several arms (models) scored by :mod:`difflens.correspondence.davis_eval`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from difflens.correspondence.davis_eval import DavisResult
from difflens.data.vocabulary import voc_palette


def overlay_labels(
    image: ArrayLike, labels: ArrayLike, palette: ArrayLike | None = None, alpha: float = 0.55
) -> np.ndarray:
    """An image with its label map painted over it (background and void left clear).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        labels: ``(H, W)`` integer labels (0 background, 255 void: not painted).
        palette: ``(N, 3)`` uint8 colours, label k drawn as ``palette[k]`` (default: the
            DAVIS / VOC palette).
        alpha: opacity of the labels.

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Raises:
        ValueError: if the image and the labels differ in size.
    """
    rgb = np.asarray(image, dtype=np.float64)
    labels = np.asarray(labels)
    if rgb.shape[:2] != labels.shape:
        raise ValueError(f"overlay_labels: image {rgb.shape[:2]} and labels {labels.shape} differ")
    colours = np.asarray(voc_palette(256) if palette is None else palette, dtype=np.float64)
    painted = (labels > 0) & (labels != 255) & (labels < len(colours))
    rgb[painted] = (1 - alpha) * rgb[painted] + alpha * colours[labels[painted]]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def plot_propagation_strip(
    images: Sequence[np.ndarray],
    rows: Mapping[str, ArrayLike],
    frames: Sequence[int],
    palette: ArrayLike | None = None,
    size: float = 1.8,
) -> Figure:
    """Label maps over a strip of frames: one row per source (ground truth, each model).

    Args:
        images: the video's ``(H, W, 3)`` uint8 frames (indexed by ``frames`` only).
        rows: ``row title -> (T, H, W)`` label maps, e.g. ``{"ground truth": gt, "trained":
            pred}``.
        frames: the frame indices to show, left to right.
        palette: ``(N, 3)`` uint8 colours (default: the DAVIS palette).
        size: the side of one panel in inches.

    Returns:
        The figure (frame numbers as column titles, sources as row labels).
    """
    fig, axes = plt.subplots(
        len(rows), len(frames), figsize=(size * len(frames), size * len(rows)), squeeze=False
    )
    for r, (title, maps) in enumerate(rows.items()):
        for c, frame in enumerate(frames):
            ax = axes[r, c]
            ax.imshow(overlay_labels(images[frame], np.asarray(maps[frame]), palette))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {frame}", fontsize=9)
            if c == 0:
                ax.set_ylabel(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_jf_per_sequence(results: Mapping[str, DavisResult], ax: Axes | None = None) -> Axes:
    """J&F-Mean of every sequence (mean over its objects), one bar per arm (seaborn bars).

    Args:
        results: ``arm -> DavisResult`` (e.g. trained and random weights) on the same
            sequences.
        ax: the axes to draw on; a new figure when None.

    Returns:
        The axes.
    """
    import seaborn as sns

    tables = {arm: result.sequence_table()["J&F-Mean"] for arm, result in results.items()}
    frame = pd.DataFrame(tables)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(frame) + 2), 3.2))
    long = (
        frame.rename_axis("sequence")
        .reset_index()
        .melt(id_vars="sequence", var_name="arm", value_name="J&F-Mean")
    )
    long["sequence"] = long["sequence"].astype(str)
    sns.barplot(
        long,
        x="sequence",
        y="J&F-Mean",
        hue="arm",
        order=[str(s) for s in frame.index],
        hue_order=list(frame.columns),
        errorbar=None,
        ax=ax,
    )
    ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.set_xlabel("")
    ax.set_ylim(0, 1)
    ax.set_ylabel("J&F-Mean")
    ax.legend(fontsize=8)
    return ax


def plot_scores_by_frame(results: Mapping[str, DavisResult]) -> Figure:
    """J and F against the frame index: the mean over sequences at each index, per arm.

    Each sequence contributes the mean over its objects at each scored frame
    (:meth:`~difflens.correspondence.davis_eval.DavisResult.per_frame`); indices past the end
    of a shorter sequence are averaged over the sequences that reach them.

    Args:
        results: ``arm -> DavisResult``.

    Returns:
        The figure, J on the left and F on the right.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for arm, result in results.items():
        curve = result.per_frame().groupby("frame")[["J", "F"]].mean()
        for ax, column in zip(axes, ("J", "F")):
            ax.plot(curve.index, curve[column], marker=".", label=arm)
    for ax, column in zip(axes, ("J", "F")):
        ax.set_xlabel("frame index")
        ax.set_title(f"{column} (mean over sequences)", fontsize=10)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("score")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
