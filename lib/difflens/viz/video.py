"""Figures of the video study: the offset trend (Fig. 9) and annotated frames (Fig. 10)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from difflens.analysis.distances import pairwise
from difflens.data.scene import Scene
from difflens.features.prototypes import PrototypeTable


def plot_offset_trend(
    summary: pd.DataFrame, ax: Axes | None = None, colours: dict[str, str] | None = None
) -> Axes:
    """Fig. 9: mean +- sd of ``sidi`` and ``scdi`` against the frame offset, ``scsi`` as a line.

    Offsets whose mean is undefined (NaN) get no point; an undefined sd no bar. The
    ``scsi`` line is the pair-weighted mean of the reference frames' ``scsi`` means, drawn
    only when some pair defines it.

    Args:
        summary: the output of :func:`difflens.analysis.video.offset_summary`.
        ax: the axes to draw on; a new figure when None.
        colours: ``{"sidi", "scdi", "scsi": colour}``.

    Returns:
        The axes.
    """
    colours = colours or {"sidi": "#d62728", "scdi": "#1f77b4", "scsi": "0.4"}
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name in ("sidi", "scdi"):
        rows = summary[(summary["set"] == name) & (summary["offset"] > 0)].sort_values("offset")
        rows = rows[np.isfinite(rows["mean"].astype(float))]
        if rows.empty:
            continue
        ax.errorbar(
            rows["offset"],
            rows["mean"],
            yerr=rows["std"].fillna(0),
            marker="o",
            capsize=3,
            color=colours[name],
            label=name,
        )
    scsi = summary[summary["set"] == "scsi"]
    scsi = scsi[np.isfinite(scsi["mean"].astype(float)) & (scsi["n"] > 0)]
    if not scsi.empty:
        mean = float(np.average(scsi["mean"], weights=scsi["n"]))
        ax.axhline(
            mean,
            color=colours["scsi"],
            linestyle="--",
            label=f"scsi (reference frame) = {mean:.2f}",
        )
    ax.set_xlabel("frame offset from the reference frame")
    ax.set_ylabel("distance")
    ax.legend(frameon=False)
    return ax


def plot_reference_distances(
    scenes: Sequence[Scene],
    table: PrototypeTable,
    reference_instance: int,
    metric: str = "cosine",
    axes: Sequence[Axes] | np.ndarray | None = None,
) -> np.ndarray:
    """Fig. 10: frames with each object's distance to one reference-frame object drawn on.

    The reference object's own copies are labelled in green, the other objects in blue;
    an undefined distance (a zero or constant prototype) is written ``n/a``.

    Args:
        scenes: frames of one sequence, the first being the reference frame.
        table: their prototypes.
        reference_instance: the instance id of the reference object.
        metric: a metric of :func:`difflens.analysis.distances.pairwise`.
        axes: one axes per scene; a new figure when None.

    Returns:
        The axes, a 1-D array.

    Raises:
        ValueError: the reference object has no prototype in ``table``.
    """
    meta = table.meta
    ref_scene = scenes[0]
    ref_key = f"{ref_scene.image_id}:{reference_instance}"
    ref_rows = np.flatnonzero(meta["object_key"].to_numpy() == ref_key)
    if len(ref_rows) == 0:
        raise ValueError(f"object {ref_key} has no prototype in the table")
    ref_feature = table.features[ref_rows[0]][None]
    if axes is None:
        _, axes = plt.subplots(1, len(scenes), figsize=(3.2 * len(scenes), 3.2))
    axes = np.atleast_1d(axes)
    for ax, scene in zip(axes, scenes):
        ax.imshow(scene.image)
        ax.set_title(
            scene.source.replace("frame", "frame ")
            if scene.source.startswith("frame+")
            else scene.image_id
        )
        ax.axis("off")
        for k, iid in enumerate(scene.instance_ids):
            rows = np.flatnonzero(meta["object_key"].to_numpy() == f"{scene.image_id}:{iid}")
            if len(rows) == 0:
                continue
            d = float(pairwise(ref_feature, table.features[rows[:1]], metric=metric)[0, 0])
            same = iid == reference_instance
            colour = "#2ca02c" if same else "#1f77b4"
            ax.contour(scene.masks[k], levels=[0.5], colors=[colour], linewidths=1.5)
            ys, xs = np.nonzero(scene.masks[k])
            ax.text(
                xs.mean(),
                ys.mean(),
                f"{d:.2f}" if np.isfinite(d) else "n/a",
                color="white",
                ha="center",
                va="center",
                fontsize=9,
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 1.5, "edgecolor": "none"},
            )
    return axes
