"""Objects across video frames (the paper's Sec. 6.5, Figs. 9 and 10).

A reference frame of each sequence is compared with the frames at given offsets after it.
For one offset, each pair (object in the reference frame, object in the later frame) falls in

- ``sidi``: the same instance (the same person a few frames later),
- ``scdi``: another instance of the same class,
- ``dcdi``: an instance of another class,

and ``scsi`` holds the pairs of different instances of one class within the reference
frame itself (the paper's horizontal reference line, "S̄scsi = 0.58").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from difflens.distances import pairwise
from difflens.prototypes import PrototypeTable
from difflens.scene import Scene

PAPER_OFFSETS = (1, 2, 3, 4, 5, 10, 20, 30, 40)


def offset_tag(offset: int) -> str:
    return f"frame+{offset}"


def frames_at_offsets(
    frames: Sequence[Scene], offsets: Iterable[int] = PAPER_OFFSETS, reference: int = 0
) -> list[Scene]:
    """The reference frame and the frames ``offsets`` after it, tagged in ``Scene.source``.

    ``frames`` are the frames of one sequence in order. Offsets past the end are left out.
    """
    wanted = [0, *sorted(set(offsets))]
    out = []
    for offset in wanted:
        index = reference + offset
        if 0 <= index < len(frames):
            out.append(replace(frames[index], source=offset_tag(offset)))
    return out


def _offset_of(source: str) -> int:
    return int(source.split("+", 1)[1])


def offset_distance_sets(table: PrototypeTable, metric: str = "cosine") -> pd.DataFrame:
    """Long-form distances between reference-frame objects and objects at each offset.

    Columns: ``sequence``, ``offset``, ``set``, ``distance``, ``a`` (reference object),
    ``b``. Offset 0 rows are the ``scsi`` pairs within the reference frame.
    """
    meta = table.meta
    if not meta["source"].astype(str).str.startswith("frame+").all():
        raise ValueError("offset_distance_sets needs a table built from frames_at_offsets() scenes")
    offsets = meta["source"].map(_offset_of).to_numpy()
    frames = []
    for sequence, rows in meta.groupby("source_image", sort=True):
        idx = rows.index.to_numpy()
        ref = idx[offsets[idx] == 0]
        if len(ref) == 0:
            continue
        cls = meta["class_name"].to_numpy()
        inst = meta["instance_key"].to_numpy()
        keys = meta["object_key"].to_numpy()
        for offset in sorted(set(offsets[idx])):
            other = idx[offsets[idx] == offset]
            d = pairwise(table.features[ref], table.features[other], metric=metric)
            ii, jj = np.meshgrid(np.arange(len(ref)), np.arange(len(other)), indexing="ij")
            ii, jj = ii.ravel(), jj.ravel()
            a, b = ref[ii], other[jj]
            if offset == 0:
                keep = (cls[a] == cls[b]) & (inst[a] != inst[b]) & (ii < jj)
                names = np.where(keep, "scsi", "")
            else:
                names = np.where(
                    inst[a] == inst[b], "sidi", np.where(cls[a] == cls[b], "scdi", "dcdi")
                )
                keep = np.ones(len(a), bool)
            frames.append(
                pd.DataFrame(
                    {
                        "sequence": sequence,
                        "offset": int(offset),
                        "set": names[keep],
                        "distance": d[ii, jj][keep],
                        "a": keys[a[keep]],
                        "b": keys[b[keep]],
                    }
                )
            )
    columns = ["sequence", "offset", "set", "distance", "a", "b"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def offset_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count of each set at each offset (Fig. 9's numbers)."""
    return (
        long.groupby(["set", "offset"], observed=True)["distance"]
        .agg(mean="mean", std="std", n="size")
        .reset_index()
    )


def plot_offset_trend(summary: pd.DataFrame, ax=None, colours: dict | None = None):
    """Fig. 9: mean +- sd of ``sidi`` and ``scdi`` against the frame offset, ``scsi`` as a line."""
    colours = colours or {"sidi": "#d62728", "scdi": "#1f77b4", "scsi": "0.4"}
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name in ("sidi", "scdi"):
        rows = summary[(summary["set"] == name) & (summary["offset"] > 0)].sort_values("offset")
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
    axes=None,
):
    """Fig. 10: frames with each object's distance to one reference-frame object drawn on.

    ``scenes`` are frames of one sequence, the first being the reference frame. The
    reference object's own copies are labelled in green, the other objects in blue.
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
                f"{d:.2f}",
                color="white",
                ha="center",
                va="center",
                fontsize=9,
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 1.5, "edgecolor": "none"},
            )
    return axes
