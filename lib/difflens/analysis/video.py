"""Distance sets between a reference frame's objects and the objects of later frames (Fig. 9).

For each sequence, every object of the reference frame (``frame+0``) is paired with every
object of the frame at each offset: its own later self is ``sidi``, another object of its
class ``scdi``, an object of another class ``dcdi``; offset 0 holds the reference frame's
``scsi`` pairs. Undefined numbers follow :mod:`difflens.analysis.undefined`: a pair without
a finite distance (a zero or constant prototype) is left out of the summary and counted,
and a set of one pair has no standard deviation (NaN, with the reason).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from difflens.analysis.distances import pairwise
from difflens.features.prototypes import PrototypeTable

OFFSET_COLUMNS = ("sequence", "offset", "set", "distance", "a", "b")
SUMMARY_COLUMNS = ("set", "offset", "mean", "std", "n", "n_nonfinite", "reason")


def _offset_pairs(
    table: PrototypeTable, ref: np.ndarray, other: np.ndarray, offset: int, metric: str
) -> dict[str, np.ndarray]:
    """The labelled pairs (reference object, object at ``offset``) of one sequence."""
    meta = table.meta
    cls = meta["class_name"].to_numpy()
    inst = meta["instance_key"].to_numpy()
    d = pairwise(table.features[ref], table.features[other], metric=metric)
    ii, jj = np.meshgrid(np.arange(len(ref)), np.arange(len(other)), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    a, b = ref[ii], other[jj]
    if offset == 0:
        keep = (cls[a] == cls[b]) & (inst[a] != inst[b]) & (ii < jj)
        names = np.where(keep, "scsi", "")
    else:
        same_class = np.where(cls[a] == cls[b], "scdi", "dcdi")
        names = np.where(inst[a] == inst[b], "sidi", same_class)
        keep = np.ones(len(a), bool)
    keys = meta["object_key"].to_numpy()
    return {
        "set": names[keep],
        "distance": np.asarray(d, dtype=np.float64)[ii, jj][keep],
        "a": keys[a[keep]],
        "b": keys[b[keep]],
    }


def offset_distance_sets(table: PrototypeTable, metric: str = "cosine") -> pd.DataFrame:
    """Long-form distances between reference-frame objects and objects at each offset.

    Args:
        table: prototypes of scenes from
            :func:`difflens.data.video.frames_at_offsets` (``source`` is ``frame+<k>``;
            ``source_image`` names the sequence).
        metric: a metric of :func:`difflens.analysis.distances.pairwise`.

    Returns:
        Columns ``sequence``, ``offset`` (int), ``set``, ``distance`` (float64, the
        metric's units; NaN where undefined), ``a`` (reference object), ``b``. Offset 0
        rows are the ``scsi`` pairs within the reference frame. A sequence without a
        reference-frame object gives no rows.

    Raises:
        ValueError: some ``source`` is not a ``frame+<k>`` tag (the first few are named).
    """
    meta = table.meta
    source = meta["source"].astype(str)
    tagged = source.str.fullmatch(r"frame\+\d+")
    if not tagged.all():
        bad = sorted(set(source[~tagged]))[:5]
        raise ValueError(
            "offset_distance_sets needs a table built from frames_at_offsets() scenes; "
            f"sources that are not frame+<k>: {bad}"
        )
    offsets = source.str.split("+").str[1].astype(int).to_numpy()
    frames = []
    for sequence, rows in meta.groupby("source_image", sort=True):
        idx = rows.index.to_numpy()
        ref = idx[offsets[idx] == 0]
        if len(ref) == 0:
            continue
        for offset in sorted(set(offsets[idx])):
            other = idx[offsets[idx] == offset]
            pairs = _offset_pairs(table, ref, other, int(offset), metric)
            frames.append(pd.DataFrame({"sequence": sequence, "offset": int(offset), **pairs}))
    if not frames:
        return pd.DataFrame(columns=list(OFFSET_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(OFFSET_COLUMNS)]


def _summary_row(name: str, offset: int, values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    n = len(finite)
    reason = ""
    if n == 0:
        reason = f"{name} at offset {offset} has no finite distance"
    elif n == 1:
        reason = f"{name} at offset {offset} has one pair: no standard deviation"
    return {
        "set": name,
        "offset": offset,
        "mean": float(finite.mean()) if n else np.nan,
        "std": float(finite.std(ddof=1)) if n > 1 else np.nan,
        "n": n,
        "n_nonfinite": len(values) - n,
        "reason": reason,
    }


def offset_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count of each set at each offset (Fig. 9's numbers).

    Args:
        long: the output of :func:`offset_distance_sets`.

    Returns:
        One row per (set, offset) present, sorted: ``set``, ``offset``, ``mean``, ``std``
        (``ddof=1``; the metric's units) and ``n`` over the finite distances,
        ``n_nonfinite`` (pairs left out) and ``reason`` (why ``mean`` or ``std`` is NaN,
        else ``""``).
    """
    rows = [
        _summary_row(str(name), int(offset), group.to_numpy(np.float64))
        for (name, offset), group in long.groupby(["set", "offset"], observed=True)["distance"]
    ]
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
