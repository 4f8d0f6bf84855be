"""DAVIS 2017 semi-supervised evaluation (region J, boundary F, J&F), re-implemented.

The official scorer, ``davis2017-evaluation`` (github ``davisvideochallenge/davis2017-evaluation``),
is not on PyPI, so difflens carries its own implementation of the definitions and writes results
in the layout that toolkit reads. What is re-implemented, and where each definition comes from:

* region similarity J, :func:`j_measure` -- ``davis2017/metrics.py``, ``db_eval_iou``;
* boundary accuracy F, :func:`boundary_map`, :func:`bound_pixels`,
  :func:`boundary_precision_recall` and :func:`f_measure` -- ``davis2017/metrics.py``,
  ``_seg2bmap`` and ``f_measure``;
* per-object Mean / Recall / Decay, :func:`db_statistics` -- ``davis2017/utils.py``,
  ``db_statistics``;
* one sequence of the semi-supervised task, :func:`evaluate_sequence` -- ``davis2017/davis.py``
  (``get_all_masks``), ``davis2017/results.py`` (``read_masks``) and ``davis2017/evaluation.py``
  (``_evaluate_semisupervised``);
* the global and per-object tables and their CSV files, :func:`evaluate` and :func:`write_csvs`
  -- ``evaluation_method.py``;
* result PNGs, :func:`write_results` / :func:`read_results` -- the ``<results>/<sequence>/<frame>.png``
  indexed-PNG layout read by ``davis2017/results.py``.

Beyond the toolkit (its numbers are not changed by them): :func:`result_from_scores` assembles
the tables from sequences scored one at a time, :func:`bootstrap_over_sequences` gives
percentile intervals of the object-weighted means with sequences (videos) drawn with
replacement, and :meth:`DavisResult.sequence_table` / :meth:`DavisResult.per_frame` give the
per-sequence means and the per-frame curves that figures draw.

Deliberate differences from the toolkit (the numbers are otherwise the same):

1. Decay bins use integer indices. The toolkit casts the bin edges to ``uint8``, which wraps for
   sequences of more than 256 scored frames (its last bin then is wrong or empty and its Decay
   NaN); here the edges are exact for any length.
2. Errors raise instead of ending the process (``sys.exit``): a prediction with more objects than
   the ground truth raises :class:`ValueError`, a missing result frame
   :class:`FileNotFoundError` -- or, with ``missing="empty"``, the frame is scored as an
   all-background prediction. A missing sequence folder is always an error.
3. The boundary dilation (``cv2.dilate`` with a ``skimage.morphology.disk`` kernel in the toolkit)
   is computed as a nearest-neighbour search: a boundary pixel is matched when a pixel of the
   other boundary lies at integer offset ``(dy, dx)`` with ``dy**2 + dx**2 <= r**2``, which is the
   disk footprint exactly. Neither OpenCV nor scikit-image is needed, and one 854x480 frame takes a
   few milliseconds.
4. A pixel tolerance ``bound_th >= 1`` must be a whole number: for a fractional one the toolkit
   builds an even-sized, off-centre kernel.
5. Sequences with fewer than three frames are rejected (nothing is left once the first and the
   last frames are dropped).
6. Nothing is cached: the toolkit's ``evaluation_method.py`` silently re-reads
   ``global_results-<set>.csv`` and ``per-sequence_results-<set>.csv`` when both exist in the
   results folder, so delete them (or write them elsewhere) before re-scoring with the toolkit.
7. Only the semi-supervised task is implemented (no unsupervised Hungarian matching), and
   ``_seg2bmap``'s resizing to another width/height is not.

As in the toolkit's semi-supervised path, void pixels (label 255) are NOT excluded from scoring:
ground-truth void becomes background before objects are counted, and a prediction holding label
255 counts it as an object (and so is an error).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from PIL import Image, UnidentifiedImageError
from scipy.spatial import KDTree

__all__ = [
    "DEFAULT_BOUND_TH",
    "GLOBAL_COLUMNS",
    "PER_SEQUENCE_COLUMNS",
    "VOID_LABEL",
    "DavisResult",
    "LabelFrames",
    "SequenceScores",
    "Statistics",
    "bound_pixels",
    "boundary_map",
    "boundary_precision_recall",
    "bootstrap_over_sequences",
    "db_statistics",
    "evaluate",
    "evaluate_sequence",
    "f_measure",
    "j_measure",
    "read_results",
    "result_from_scores",
    "write_csvs",
    "write_results",
]

VOID_LABEL = 255
"""Label of void pixels in DAVIS annotations."""
DEFAULT_BOUND_TH = 0.008
"""The toolkit's boundary tolerance: a fraction of the image diagonal (8 px at 854x480)."""
GLOBAL_COLUMNS: tuple[str, ...] = (
    "J&F-Mean",
    "J-Mean",
    "J-Recall",
    "J-Decay",
    "F-Mean",
    "F-Recall",
    "F-Decay",
)
"""Columns of ``global_results-<set>.csv``, in the toolkit's order."""
PER_SEQUENCE_COLUMNS: tuple[str, ...] = ("Sequence", "J-Mean", "F-Mean")
"""Columns of ``per-sequence_results-<set>.csv`` (one row per object, ``<sequence>_<object>``)."""

_STAT_COLUMNS: tuple[str, ...] = ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")

PathLike: TypeAlias = str | os.PathLike[str]
LabelSource: TypeAlias = ArrayLike | tuple[Sequence[str], ArrayLike]
MissingPolicy: TypeAlias = Literal["error", "empty"]


class Statistics(NamedTuple):
    """Per-object statistics over frames, as returned by :func:`db_statistics`.

    Attributes:
        mean: NaN-ignoring mean of the per-frame values.
        recall: fraction of frames whose value is > 0.5.
        decay: mean of the first quarter-bin minus mean of the last quarter-bin.
    """

    mean: float
    recall: float
    decay: float


class LabelFrames(NamedTuple):
    """Label maps of one sequence with their frame names, as read by :func:`read_results`.

    Attributes:
        frame_names: frame names without extension (``"00000"``), sorted.
        label_maps: ``(T, H, W)`` uint8 label maps (0 background, 1..N objects).
        palette: ``(N, 3)`` uint8 palette of the first frame; None for greyscale PNGs.
    """

    frame_names: list[str]
    label_maps: np.ndarray
    palette: np.ndarray | None


@dataclass(frozen=True)
class SequenceScores:
    """Per-object, per-frame J and F of one sequence (see :func:`evaluate_sequence`).

    Attributes:
        sequence: the sequence name.
        j: ``(n_objects, T - 2)`` float64 region similarity per object and scored frame.
        f: ``(n_objects, T - 2)`` float64 boundary F per object and scored frame.
    """

    sequence: str
    j: np.ndarray
    f: np.ndarray

    @property
    def n_objects(self) -> int:
        """Number of objects (labels 1..N of the first ground-truth frame)."""
        return int(self.j.shape[0])

    @property
    def object_names(self) -> list[str]:
        """The toolkit's per-object names, ``<sequence>_<object id>``, ids from 1."""
        return [f"{self.sequence}_{k}" for k in range(1, self.n_objects + 1)]

    def statistics(self) -> pd.DataFrame:
        """Mean / Recall / Decay of J and F for every object (``utils.db_statistics``).

        Returns:
            One row per object: column ``Sequence`` (``<sequence>_<object>``) then ``J-Mean``,
            ``J-Recall``, ``J-Decay``, ``F-Mean``, ``F-Recall``, ``F-Decay`` (float, in [0, 1]
            except Decay, in [-1, 1]).
        """
        rows = []
        for name, j_row, f_row in zip(self.object_names, self.j, self.f):
            rows.append((name, *db_statistics(j_row), *db_statistics(f_row)))
        return pd.DataFrame(rows, columns=["Sequence", *_STAT_COLUMNS])


@dataclass(frozen=True)
class DavisResult:
    """The outcome of :func:`evaluate` (``evaluation_method.py``'s two tables).

    Attributes:
        global_metrics: the global row, indexed by :data:`GLOBAL_COLUMNS`; every value is a mean
            over ALL objects of all sequences (object-weighted), and ``J&F-Mean`` is
            ``(J-Mean + F-Mean) / 2``.
        per_object: one row per object in evaluation order: ``Sequence`` (``<sequence>_<object>``),
            ``J-Mean``, ``J-Recall``, ``J-Decay``, ``F-Mean``, ``F-Recall``, ``F-Decay``. The
            toolkit's per-sequence CSV holds the first, ``J-Mean`` and ``F-Mean`` columns
            (:meth:`per_sequence_table`); the global row is the mean of the other columns.
        sequences: per-frame scores of every sequence, by name, in evaluation order.
    """

    global_metrics: pd.Series
    per_object: pd.DataFrame
    sequences: dict[str, SequenceScores]

    def per_sequence_table(self) -> pd.DataFrame:
        """The toolkit's ``per-sequence_results-<set>.csv`` table.

        Returns:
            Columns :data:`PER_SEQUENCE_COLUMNS`, one row per object (``<sequence>_<object>``).
        """
        return self.per_object.loc[:, list(PER_SEQUENCE_COLUMNS)].reset_index(drop=True)

    def sequence_table(self) -> pd.DataFrame:
        """Each sequence's means over its objects (for a per-sequence figure; not a toolkit CSV).

        Returns:
            Indexed by sequence (evaluation order, sequences with objects only): ``J-Mean``,
            ``F-Mean`` (means of the per-object values), ``J&F-Mean`` (their mean) and
            ``n_objects``.
        """
        rows = []
        for name, scores in self.sequences.items():
            if scores.n_objects == 0:
                continue
            table = scores.statistics()
            j, f = float(table["J-Mean"].mean()), float(table["F-Mean"].mean())
            rows.append((name, j, f, (j + f) / 2, scores.n_objects))
        columns = ["sequence", "J-Mean", "F-Mean", "J&F-Mean", "n_objects"]
        return pd.DataFrame(rows, columns=columns).set_index("sequence")

    def per_frame(self) -> pd.DataFrame:
        """J and F of every scored frame, averaged over the objects of its sequence.

        Returns:
            Long table, one row per sequence and scored frame: ``sequence``, ``frame`` (the
            frame's index in the sequence, 1..T-2), ``J`` and ``F`` (NaN-ignoring means over
            the sequence's objects).
        """
        parts = []
        for name, scores in self.sequences.items():
            if scores.n_objects == 0:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=RuntimeWarning)
                j, f = np.nanmean(scores.j, axis=0), np.nanmean(scores.f, axis=0)
            frames = np.arange(1, scores.j.shape[1] + 1)
            parts.append(pd.DataFrame({"sequence": name, "frame": frames, "J": j, "F": f}))
        if not parts:
            return pd.DataFrame(columns=["sequence", "frame", "J", "F"])
        return pd.concat(parts, ignore_index=True)

    def sequence_weighted(self) -> pd.Series:
        """Sequence-weighted means: every sequence counts once, whatever its object count.

        This is NOT a toolkit number (the toolkit weights by object); it is offered for
        comparison only. Sequences without objects are left out.

        Returns:
            Float Series indexed by :data:`GLOBAL_COLUMNS`: each statistic averaged first over
            the objects of a sequence, then over sequences; ``J&F-Mean`` is
            ``(J-Mean + F-Mean) / 2``.
        """
        per_sequence = [
            scores.statistics()[list(_STAT_COLUMNS)].mean(axis=0)
            for scores in self.sequences.values()
            if scores.n_objects > 0
        ]
        return _global_row(pd.DataFrame(per_sequence))


def _mask_pair(pred: ArrayLike, gt: ArrayLike, what: str):
    """Both masks as bool arrays, and what is wrong with them (None: one shape, 2-D or 3-D)."""
    p = np.asarray(pred).astype(bool)
    g = np.asarray(gt).astype(bool)
    problem = None
    if p.shape != g.shape:
        problem = f"{what}: prediction {p.shape} and ground truth {g.shape} differ in shape"
    elif p.ndim not in (2, 3):
        problem = f"{what}: expected (H, W) or (T, H, W) masks, got shape {p.shape}"
    return p, g, problem


def j_measure(pred: ArrayLike, gt: ArrayLike) -> float | np.ndarray:
    """Region similarity J: the intersection over union of two binary masks.

    Follows ``db_eval_iou`` in ``davis2017/metrics.py`` (without void pixels, as the
    semi-supervised evaluation calls it): ``|P & G| / |P | G|``, and 1.0 when the union is empty.

    Args:
        pred: predicted mask, ``(H, W)`` or ``(T, H, W)``; any nonzero value is foreground.
        gt: ground-truth mask of the same shape.

    Returns:
        For ``(H, W)`` masks a float in [0, 1]; for ``(T, H, W)`` masks a ``(T,)`` float64 array,
        one J per frame.

    Raises:
        ValueError: if the shapes differ or are neither 2-D nor 3-D.
    """
    p, g, problem = _mask_pair(pred, gt, "j_measure")
    if problem:
        raise ValueError(problem)
    inter = np.count_nonzero(p & g, axis=(-2, -1))
    union = np.count_nonzero(p | g, axis=(-2, -1))
    j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float(j) if p.ndim == 2 else j.astype(np.float64)


def boundary_map(mask: ArrayLike) -> np.ndarray:
    """One-pixel-wide boundary map of a binary mask, by the toolkit's ``_seg2bmap`` rule.

    Follows ``_seg2bmap`` in ``davis2017/metrics.py``: a pixel is a boundary pixel when it differs
    from its right, lower or lower-right neighbour. In the last row only the right neighbour is
    compared, in the last column only the lower one, and the bottom-right pixel is never a
    boundary pixel. Nothing is compared with the outside of the image, so a mask touching the
    image border has no boundary there (a full-frame mask has no boundary at all).

    Args:
        mask: binary mask ``(..., H, W)``; any nonzero value is foreground. Leading dimensions
            (frames) are handled independently.

    Returns:
        Bool array of the same shape, True on boundary pixels.

    Raises:
        ValueError: if ``mask`` has fewer than two dimensions.
    """
    seg = np.asarray(mask).astype(bool)
    if seg.ndim < 2:
        raise ValueError(f"boundary_map: expected a (..., H, W) mask, got shape {seg.shape}")
    b = np.zeros_like(seg)
    inner = seg[..., :-1, :-1]
    b[..., :-1, :-1] = (
        (inner != seg[..., :-1, 1:]) | (inner != seg[..., 1:, :-1]) | (inner != seg[..., 1:, 1:])
    )
    b[..., -1, :-1] = seg[..., -1, :-1] != seg[..., -1, 1:]
    b[..., :-1, -1] = seg[..., :-1, -1] != seg[..., 1:, -1]
    return b


def bound_pixels(shape: Sequence[int], bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Boundary tolerance in pixels, as ``f_measure`` in ``davis2017/metrics.py`` computes it.

    ``bound_th`` itself when ``bound_th >= 1``, else ``ceil(bound_th * sqrt(H**2 + W**2))``
    (8 px for 854x480 frames with the default 0.008).

    Args:
        shape: the frame shape ``(H, W)``.
        bound_th: fraction of the image diagonal (< 1) or a whole number of pixels (>= 1).

    Returns:
        The tolerance radius r in pixels (int >= 0).

    Raises:
        ValueError: if ``bound_th`` is negative, not finite, or >= 1 but not a whole number (see
            the module docstring, difference 4), or if ``shape`` is not 2-D.
    """
    if len(shape) != 2:
        raise ValueError(f"bound_pixels: expected a frame shape (H, W), got {tuple(shape)}")
    if not math.isfinite(bound_th) or bound_th < 0:
        raise ValueError(f"bound_th must be a finite number >= 0, got {bound_th}")
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(
                f"bound_th={bound_th}: a tolerance in pixels (>= 1) must be a whole number"
            )
        return int(bound_th)
    height, width = (int(n) for n in shape)
    return int(math.ceil(bound_th * math.sqrt(height * height + width * width)))


def _count_matched(points: np.ndarray, others: np.ndarray, radius: int) -> int:
    """How many ``points`` lie within the disk of ``radius`` around some point of ``others``."""
    distance, _ = KDTree(others).query(points, k=1, distance_upper_bound=radius + 0.5)
    # Offsets are integers: compare squared distances exactly (inf stays unmatched).
    return int(np.count_nonzero(np.rint(distance * distance) <= radius * radius))


def _precision_recall_frame(
    pred_boundary: np.ndarray, gt_boundary: np.ndarray, radius: int
) -> tuple[float, float]:
    """Boundary precision and recall of one frame from its two boundary maps."""
    pred_points = np.argwhere(pred_boundary)
    gt_points = np.argwhere(gt_boundary)
    n_pred, n_gt = len(pred_points), len(gt_points)
    if n_pred == 0 and n_gt == 0:
        return 1.0, 1.0
    if n_pred == 0:
        return 1.0, 0.0
    if n_gt == 0:
        return 0.0, 1.0
    precision = _count_matched(pred_points, gt_points, radius) / n_pred
    recall = _count_matched(gt_points, pred_points, radius) / n_gt
    return precision, recall


def boundary_precision_recall(
    pred: ArrayLike, gt: ArrayLike, bound_th: float = DEFAULT_BOUND_TH
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Boundary precision and recall within a tolerance, as in ``davis2017/metrics.py``.

    Follows ``f_measure`` there: boundaries by :func:`boundary_map` (``_seg2bmap``), tolerance
    ``r = bound_pixels((H, W), bound_th)``, precision = the fraction of predicted boundary pixels
    within the disk of radius r (``x**2 + y**2 <= r**2``, ``skimage.morphology.disk(r)``) of a
    ground-truth boundary pixel, recall = the converse. Conventions when a boundary is EMPTY
    (note: a mask touching nothing but the image border, e.g. a full frame, has an empty
    boundary): both empty -> P = R = 1; only the ground truth empty -> P = 0, R = 1; only the
    prediction empty -> P = 1, R = 0.

    Args:
        pred: predicted mask, ``(H, W)`` or ``(T, H, W)``; any nonzero value is foreground.
        gt: ground-truth mask of the same shape.
        bound_th: tolerance, fraction of the diagonal (< 1) or whole pixels (>= 1).

    Returns:
        ``(precision, recall)``: floats in [0, 1] for ``(H, W)`` masks, ``(T,)`` float64 arrays
        for ``(T, H, W)`` masks.

    Raises:
        ValueError: if the shapes differ or are neither 2-D nor 3-D, or ``bound_th`` is invalid
            (see :func:`bound_pixels`).
    """
    p, g, problem = _mask_pair(pred, gt, "boundary_precision_recall")
    if problem:
        raise ValueError(problem)
    radius = bound_pixels(p.shape[-2:], bound_th)
    pb, gb = boundary_map(p), boundary_map(g)
    if p.ndim == 2:
        return _precision_recall_frame(pb, gb, radius)
    pr = np.array([_precision_recall_frame(pb[t], gb[t], radius) for t in range(p.shape[0])])
    pr = pr.reshape(p.shape[0], 2)
    return pr[:, 0].astype(np.float64), pr[:, 1].astype(np.float64)


def f_measure(
    pred: ArrayLike, gt: ArrayLike, bound_th: float = DEFAULT_BOUND_TH
) -> float | np.ndarray:
    """Boundary accuracy F of binary masks, as ``f_measure`` in ``davis2017/metrics.py``.

    ``F = 2 P R / (P + R)`` from :func:`boundary_precision_recall`, 0 when ``P + R = 0``. With the
    empty-boundary conventions this gives F = 1 when both boundaries are empty and F = 0 when only
    one is.

    Args:
        pred: predicted mask, ``(H, W)`` or ``(T, H, W)``; any nonzero value is foreground.
        gt: ground-truth mask of the same shape.
        bound_th: tolerance, fraction of the diagonal (< 1) or whole pixels (>= 1); the default
            0.008 gives 8 px at 854x480.

    Returns:
        For ``(H, W)`` masks a float in [0, 1]; for ``(T, H, W)`` masks a ``(T,)`` float64 array.

    Raises:
        ValueError: if the shapes differ or are neither 2-D nor 3-D, or ``bound_th`` is invalid.
    """
    pred_mask, gt_mask, problem = _mask_pair(pred, gt, "f_measure")
    if problem:
        raise ValueError(problem)
    precision, recall = boundary_precision_recall(pred_mask, gt_mask, bound_th)
    p = np.asarray(precision, dtype=np.float64)
    r = np.asarray(recall, dtype=np.float64)
    total = p + r
    f = np.where(total == 0, 0.0, 2 * p * r / np.where(total == 0, 1.0, total))
    return float(f) if f.ndim == 0 else f


def db_statistics(per_frame: ArrayLike) -> Statistics:
    """Mean, Recall and Decay of one object's per-frame scores (``davis2017/utils.py``).

    Follows ``db_statistics`` there: Mean = ``nanmean(v)``; Recall = ``nanmean(v > 0.5)`` (a NaN
    frame counts as a miss); Decay: bin edges ``ids = round(linspace(1, N, 5) + 1e-10) - 1``
    (the ``1e-10`` rounds halves up), four overlapping bins ``v[ids[i] : ids[i + 1] + 1]`` and
    Decay = ``nanmean(bin 0) - nanmean(bin 3)``. Unlike the toolkit, the edges are not cast to
    ``uint8``, so sequences longer than 256 frames are binned correctly.

    Args:
        per_frame: ``(N,)`` per-frame J or F values, N >= 1.

    Returns:
        :class:`Statistics` ``(mean, recall, decay)`` as floats (NaN where every value involved
        is NaN).

    Raises:
        ValueError: if ``per_frame`` is not a non-empty 1-D array.
    """
    values = np.asarray(per_frame, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"db_statistics: expected a non-empty (N,) array, got {values.shape}")
    ids = np.round(np.linspace(1, values.size, 5) + 1e-10).astype(np.int64) - 1
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.nanmean(values > 0.5)
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return Statistics(float(mean), float(recall), float(decay))


def _label_array(labels: ArrayLike, what: str) -> np.ndarray:
    """``(T, H, W)`` non-negative integer label maps."""
    array = np.asarray(labels)
    if array.ndim != 3:
        raise ValueError(f"{what}: expected (T, H, W) label maps, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what}: label maps must be integers, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(f"{what}: label maps hold negative labels")
    return array


def evaluate_sequence(
    pred_labels: ArrayLike,
    gt_labels: ArrayLike,
    *,
    sequence: str = "sequence",
    bound_th: float = DEFAULT_BOUND_TH,
) -> SequenceScores:
    """J and F of every object of one sequence, semi-supervised protocol.

    Follows ``davis2017/davis.py`` (``get_all_masks``), ``davis2017/results.py``
    (``read_masks``) and ``davis2017/evaluation.py`` (``_evaluate_semisupervised``):

    * ground-truth void (255) becomes background; the objects are labels 1..N with N the largest
      label of the FIRST ground-truth frame, one binary mask per object and frame (larger labels
      appearing later are ignored);
    * the first and the last frames are not scored (nor read: whatever the prediction holds
      there is ignored);
    * the prediction's object count is its largest label over the scored frames; more objects
      than the ground truth is an error, fewer are zero-padded (absent objects score as empty
      predictions);
    * void pixels are not excluded from J or F.

    Args:
        pred_labels: ``(T, H, W)`` integer predicted label maps (0 background, k object k), one
            per ground-truth frame.
        gt_labels: ``(T, H, W)`` integer ground-truth label maps (255 void), T >= 3.
        sequence: the sequence name, used in object names and error messages.
        bound_th: boundary tolerance for F (see :func:`bound_pixels`).

    Returns:
        :class:`SequenceScores` with ``j`` and ``f`` of shape ``(N, T - 2)`` (float64; row k - 1 is
        object k, column t is frame t + 1).

    Raises:
        ValueError: if the shapes differ, are not ``(T, H, W)``, T < 3, the labels are not
            non-negative integers, or the prediction holds a label larger than N in a scored
            frame.
    """
    pred = _label_array(pred_labels, f"sequence {sequence!r}, prediction")
    gt = _label_array(gt_labels, f"sequence {sequence!r}, ground truth")
    if pred.shape != gt.shape:
        raise ValueError(
            f"sequence {sequence!r}: prediction {pred.shape} and ground truth {gt.shape} "
            "differ in shape (one label map per ground-truth frame is expected)"
        )
    if gt.shape[0] < 3:
        raise ValueError(
            f"sequence {sequence!r}: {gt.shape[0]} frames; the semi-supervised evaluation drops "
            "the first and the last frames and needs at least 3"
        )
    gt = np.where(gt == VOID_LABEL, 0, gt)
    n_objects = int(gt[0].max())
    pred_scored, gt_scored = pred[1:-1], gt[1:-1]
    n_pred = int(pred_scored.max())
    if n_pred > n_objects:
        frame = 1 + int(np.flatnonzero((pred_scored > n_objects).any(axis=(1, 2)))[0])
        raise ValueError(
            f"sequence {sequence!r}: the prediction holds label {n_pred} (first in frame index "
            f"{frame}) but the first ground-truth frame has {n_objects} object(s), labels "
            f"1..{n_objects}; label {VOID_LABEL} (void) in a prediction also counts as an object"
        )
    n_scored = gt_scored.shape[0]
    j = np.zeros((n_objects, n_scored), dtype=np.float64)
    f = np.zeros((n_objects, n_scored), dtype=np.float64)
    for k in range(1, n_objects + 1):
        pred_mask, gt_mask = pred_scored == k, gt_scored == k
        j[k - 1] = j_measure(pred_mask, gt_mask)
        f[k - 1] = f_measure(pred_mask, gt_mask, bound_th)
    return SequenceScores(sequence=sequence, j=j, f=f)


def _global_row(stats: pd.DataFrame) -> pd.Series:
    """The global row from per-object (or per-sequence) statistics: plain column means."""
    means = {
        column: float(np.mean(stats[column].to_numpy(dtype=np.float64))) for column in _STAT_COLUMNS
    }
    row = {"J&F-Mean": (means["J-Mean"] + means["F-Mean"]) / 2, **means}
    return pd.Series([row[c] for c in GLOBAL_COLUMNS], index=list(GLOBAL_COLUMNS), dtype=float)


def _name_problem(name: str, what: str) -> str | None:
    """Why ``name`` is not a plain, non-empty file name, or None."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        return f"invalid {what} name {name!r}: it must be a plain, non-empty file name"
    return None


def _check_name(name: str, what: str) -> str:
    problem = _name_problem(name, what)
    if problem:
        raise ValueError(problem)
    return name


def _read_label_png(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """One indexed (or greyscale) PNG -> ``(H, W)`` uint8 labels and its ``(N, 3)`` palette."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise ValueError(
                    f"{path}: mode {image.mode!r}; label maps must be indexed ('P') PNGs"
                )
            labels = np.array(image, dtype=np.uint8)
            raw = image.getpalette() if image.mode == "P" else None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read the label PNG {path}: {err}") from err
    palette = None if raw is None else np.asarray(raw, dtype=np.uint8).reshape(-1, 3)
    return labels, palette


def write_results(
    folder: PathLike,
    sequence: str,
    frame_names: Sequence[str],
    label_maps: ArrayLike,
    palette: ArrayLike | None = None,
) -> Path:
    """Write one sequence's label maps as indexed PNGs in the toolkit's results layout.

    The layout is the one ``davis2017/results.py`` reads: ``<folder>/<sequence>/<frame>.png``,
    one palette ("P" mode) PNG per frame whose pixel values are the labels. For the
    semi-supervised task the toolkit reads every ground-truth frame but the first and the last,
    by the ground truth's frame names.

    Args:
        folder: the results folder (created if needed).
        sequence: the sequence name (a plain folder name).
        frame_names: T frame names without extension, e.g. ``"00000"``.
        label_maps: ``(T, H, W)`` integer labels in 0..255.
        palette: ``(N, 3)`` uint8 colours, label k drawn as ``palette[k]``; every label written
            needs an entry. Default: the DAVIS palette, i.e. the 256-colour PASCAL VOC colour map
            (``difflens.data.vocabulary.voc_palette``).

    Returns:
        The sequence folder ``<folder>/<sequence>``.

    Raises:
        ValueError: if a name is not a plain file name, the names are not unique or do not match
            the number of label maps, a label is outside 0..255 or has no palette entry, or the
            palette is not ``(N, 3)`` with 1 <= N <= 256 and values in 0..255.
    """
    _check_name(sequence, "sequence")
    labels = _label_array(label_maps, f"write_results({sequence!r})")
    names = [str(name) for name in frame_names]
    if len(names) != labels.shape[0]:
        raise ValueError(
            f"write_results({sequence!r}): {len(names)} frame names for {labels.shape[0]} label maps"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"write_results({sequence!r}): frame names are not unique")
    for name in names:
        _check_name(name, "frame")
        if name.lower().endswith(".png"):
            raise ValueError(f"frame name {name!r}: give names without the .png extension")
    if palette is None:
        from difflens.data.vocabulary import voc_palette

        palette = voc_palette(256)
    colours = np.asarray(palette)
    if (
        colours.ndim != 2
        or colours.shape[1] != 3
        or not 1 <= colours.shape[0] <= 256
        or not np.issubdtype(colours.dtype, np.integer)
        or colours.min() < 0
        or colours.max() > 255
    ):
        raise ValueError(
            f"palette must be an (N, 3) integer array, 1 <= N <= 256, values 0..255; got "
            f"shape {colours.shape}, dtype {colours.dtype}"
        )
    top = int(labels.max()) if labels.size else 0
    if top > 255:
        raise ValueError(f"write_results({sequence!r}): label {top} does not fit an indexed PNG")
    if top >= colours.shape[0]:
        raise ValueError(
            f"write_results({sequence!r}): label {top} has no palette entry (the palette has "
            f"{colours.shape[0]} colours); an indexed PNG would corrupt it"
        )
    flat_palette = colours.astype(np.uint8).ravel().tolist()
    out = Path(folder) / sequence
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(names, labels):
        image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
        image.putpalette(flat_palette)
        image.save(out / f"{name}.png")
    return out


def read_results(folder: PathLike, sequence: str) -> LabelFrames:
    """Read one sequence's indexed PNGs back (``<folder>/<sequence>/*.png``, sorted by name).

    Reads the layout of ``davis2017/results.py`` (and of the DAVIS ``Annotations/480p``
    folders): the pixel values of an indexed PNG are its labels.

    Args:
        folder: the results (or annotations) folder.
        sequence: the sequence name.

    Returns:
        :class:`LabelFrames`: sorted frame names, ``(T, H, W)`` uint8 label maps and the first
        frame's ``(N, 3)`` uint8 palette (None for greyscale PNGs).

    Raises:
        FileNotFoundError: if the sequence folder is missing or holds no PNG.
        ValueError: if a PNG cannot be read, is not indexed or greyscale, or the frames differ
            in size.
    """
    seq_folder = Path(folder) / _check_name(sequence, "sequence")
    if not seq_folder.is_dir():
        raise FileNotFoundError(f"sequence {sequence!r}: no folder {seq_folder}")
    paths = sorted(seq_folder.glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"sequence {sequence!r}: no PNG frames in {seq_folder}")
    frames, palette = [], None
    for index, path in enumerate(paths):
        labels, frame_palette = _read_label_png(path)
        if index == 0:
            palette = frame_palette
        elif labels.shape != frames[0].shape:
            raise ValueError(
                f"sequence {sequence!r}: frame {path.stem!r} is {labels.shape}, "
                f"frame {paths[0].stem!r} is {frames[0].shape}"
            )
        frames.append(labels)
    return LabelFrames([path.stem for path in paths], np.stack(frames), palette)


def _is_folder(source: object) -> bool:
    return isinstance(source, (str, os.PathLike))


def _gt_folder(ground_truth: PathLike) -> Path:
    """An annotations folder (``<folder>/<sequence>/*.png``) or a DAVIS root above it."""
    root = Path(ground_truth)
    davis_annotations = root / "Annotations" / "480p"
    if davis_annotations.is_dir():
        return davis_annotations
    if not root.is_dir():
        raise FileNotFoundError(f"no ground-truth folder {root}")
    return root


def _split_source(value: LabelSource) -> tuple[list[str] | None, np.ndarray]:
    """A mapping value: label maps, or a ``(frame_names, label_maps)`` pair."""
    if isinstance(value, LabelFrames):
        return list(value.frame_names), np.asarray(value.label_maps)
    if isinstance(value, tuple) and len(value) == 2:
        names, maps = value
        return [str(name) for name in names], np.asarray(maps)
    return None, np.asarray(value)


def _prediction_from_names(
    sequence: str,
    gt_names: list[str],
    gt_shape: tuple[int, ...],
    lookup: dict[str, np.ndarray] | None,
    folder: Path | None,
    missing: MissingPolicy,
) -> np.ndarray:
    """``(T, H, W)`` predictions aligned to the ground-truth names (frames 0 and T-1 left 0)."""
    dtype = np.uint8 if not lookup else np.result_type(*(np.asarray(v) for v in lookup.values()))
    pred = np.zeros(gt_shape, dtype=dtype)
    for t in range(1, len(gt_names) - 1):
        name = gt_names[t]
        frame: np.ndarray | None
        if folder is not None:
            path = folder / f"{name}.png"
            frame = _read_label_png(path)[0] if path.is_file() else None
        else:
            assert lookup is not None
            frame = lookup.get(name)
        if frame is None:
            if missing == "empty":
                continue
            raise FileNotFoundError(
                f"sequence {sequence!r}: result frame {name!r} not found (every ground-truth frame "
                "but the first and the last needs one; pass missing='empty' to score a missing "
                "frame as an empty prediction)"
            )
        frame = np.asarray(frame)
        if frame.shape != gt_shape[1:]:
            raise ValueError(
                f"sequence {sequence!r}: result frame {name!r} is {frame.shape}, the ground truth "
                f"is {gt_shape[1:]}"
            )
        pred[t] = frame
    return pred


def evaluate(
    results: PathLike | Mapping[str, LabelSource],
    ground_truth: PathLike | Mapping[str, LabelSource],
    *,
    sequences: Sequence[str] | None = None,
    bound_th: float = DEFAULT_BOUND_TH,
    missing: MissingPolicy = "error",
) -> DavisResult:
    """DAVIS 2017 semi-supervised J&F over many sequences (``evaluation_method.py``).

    Every sequence is scored by :func:`evaluate_sequence`; per object the Mean, Recall and
    Decay of J and F come from :func:`db_statistics`; every global number is a mean over ALL
    objects of all sequences (object-weighted, so a sequence with five objects weighs five times
    one with one object), and ``J&F-Mean = (J-Mean + F-Mean) / 2``.

    Args:
        results: a results folder (``<folder>/<sequence>/<frame>.png``, indexed PNGs named as
            the ground-truth frames; the first and last frames need not exist), or a mapping
            ``sequence -> label maps``, where label maps are a ``(T, H, W)`` integer array
            aligned with the ground truth frame by frame, or a ``(frame_names, label_maps)``
            pair (e.g. a :class:`LabelFrames`) matched to the ground truth by frame name.
        ground_truth: an annotations folder (``<folder>/<sequence>/<frame>.png``, e.g. DAVIS's
            ``Annotations/480p``; a DAVIS root holding ``Annotations/480p`` is accepted too), or a
            mapping ``sequence -> label maps`` in the same two forms. A results folder needs frame
            names on the ground-truth side (a folder or pairs).
        sequences: the sequences to score, in order. Default: the ground truth's sequences (the
            mapping's order, or the annotation folder's subfolders sorted by name).
        bound_th: boundary tolerance for F (see :func:`bound_pixels`).
        missing: what to do with a result frame that is missing: ``"error"`` (the default, like
            the toolkit's "frame not found") raises; ``"empty"`` scores it as an all-background
            prediction. A missing sequence is always an error.

    Returns:
        :class:`DavisResult` with the global row, the per-object table and the per-frame scores.

    Raises:
        FileNotFoundError: if a folder, a sequence or (with ``missing="error"``) a result frame is
            missing.
        ValueError: if a sequence fails :func:`evaluate_sequence`, no sequence has an object,
            ``missing`` is unknown, or results given as a folder meet ground truth without frame
            names.
    """
    if missing not in ("error", "empty"):
        raise ValueError(f"missing must be 'error' or 'empty', got {missing!r}")
    gt_root = _gt_folder(ground_truth) if _is_folder(ground_truth) else None
    gt_mapping = None if gt_root is not None else ground_truth
    results_root = Path(results) if _is_folder(results) else None
    if results_root is not None and not results_root.is_dir():
        raise FileNotFoundError(f"no results folder {results_root}")
    if sequences is None:
        sequences = _ground_truth_sequences(gt_root, gt_mapping)
    scores: dict[str, SequenceScores] = {}
    for sequence in sequences:
        gt_names, gt = _ground_truth_of(sequence, gt_root, gt_mapping)
        if results_root is not None:
            pred = _prediction_from_folder(sequence, results_root, gt_names, gt, missing)
        else:
            pred = _prediction_from_mapping(sequence, results, gt_names, gt, missing)
        scores[sequence] = evaluate_sequence(pred, gt, sequence=sequence, bound_th=bound_th)
    return result_from_scores(scores)


def _ground_truth_sequences(gt_root: Path | None, gt_mapping: object) -> list[str]:
    """The ground truth's sequences: the folder's subfolders sorted, or the mapping's order."""
    if gt_root is not None:
        return sorted(p.name for p in gt_root.iterdir() if p.is_dir())
    assert isinstance(gt_mapping, Mapping)
    return list(gt_mapping)


def _ground_truth_of(
    sequence: str, gt_root: Path | None, gt_mapping: object
) -> tuple[list[str] | None, np.ndarray]:
    """A sequence's ground-truth frame names (None when not given) and label maps."""
    if gt_root is not None:
        gt_frames = read_results(gt_root, sequence)
        return gt_frames.frame_names, gt_frames.label_maps
    assert isinstance(gt_mapping, Mapping)
    if sequence not in gt_mapping:
        raise FileNotFoundError(f"sequence {sequence!r}: no ground truth")
    return _split_source(gt_mapping[sequence])


def _prediction_from_folder(
    sequence: str,
    results_root: Path,
    gt_names: list[str] | None,
    gt: np.ndarray,
    missing: MissingPolicy,
) -> np.ndarray:
    """A sequence's predictions read from ``<results>/<sequence>/<frame>.png``."""
    if gt_names is None:
        raise ValueError(
            "results given as a folder need the ground truth's frame names: give the "
            "ground truth as a folder or as (frame_names, label_maps) pairs"
        )
    if not (results_root / sequence).is_dir():
        raise FileNotFoundError(f"sequence {sequence!r}: no results folder")
    return _prediction_from_names(
        sequence, gt_names, gt.shape, None, results_root / sequence, missing
    )


def _prediction_from_mapping(
    sequence: str,
    results: object,
    gt_names: list[str] | None,
    gt: np.ndarray,
    missing: MissingPolicy,
) -> np.ndarray:
    """A sequence's predictions from a mapping: aligned arrays, or matched by frame name."""
    assert isinstance(results, Mapping)
    if sequence not in results:
        raise FileNotFoundError(f"sequence {sequence!r}: no results")
    pred_names, pred = _split_source(results[sequence])
    if pred_names is None:
        return pred
    if gt_names is None:
        raise ValueError(
            f"sequence {sequence!r}: results come with frame names but the ground "
            "truth does not; give both or neither"
        )
    if gt.ndim != 3:
        raise ValueError(f"sequence {sequence!r}: ground truth is not (T, H, W)")
    lookup = dict(zip(pred_names, pred))
    return _prediction_from_names(sequence, gt_names, gt.shape, lookup, None, missing)


def result_from_scores(scores: Mapping[str, SequenceScores]) -> DavisResult:
    """The global row and per-object table from every sequence's per-frame scores.

    What :func:`evaluate` does after scoring; useful when sequences are scored one at a time
    with :func:`evaluate_sequence` (a long video set need not be held in memory at once).

    Args:
        scores: ``sequence -> SequenceScores``, in evaluation order.

    Returns:
        :class:`DavisResult` (object-weighted global means, as ``evaluation_method.py``).

    Raises:
        ValueError: if no sequence has an object.
    """
    tables = [s.statistics() for s in scores.values() if s.n_objects > 0]
    if not tables:
        raise ValueError("no objects to score: no sequence has an object in its first frame")
    per_object = pd.concat(tables, ignore_index=True)
    return DavisResult(
        global_metrics=_global_row(per_object), per_object=per_object, sequences=dict(scores)
    )


def bootstrap_over_sequences(
    result: DavisResult, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """Percentile bootstrap intervals of J&F-Mean, J-Mean and F-Mean over sequences (videos).

    Every draw takes as many sequences as have an object, with replacement (all objects of
    a drawn sequence come along; ``difflens.analysis.bootstrap.draw_counts``), and recomputes
    the toolkit's object-weighted means: ``sum_s c_s J_s / sum_s c_s n_s`` with ``c_s`` the
    draw's count of sequence ``s``, ``J_s`` the sum of its objects' J-Mean and ``n_s`` its
    object count (F likewise; ``J&F = (J + F) / 2``). Sequences, not objects, are the
    independent units.

    Args:
        result: the outcome of :func:`evaluate` or :func:`result_from_scores`.
        n_boot: the number of draws.
        seed: seed of the draws.
        level: the intervals' coverage, in (0, 1).

    Returns:
        One row per statistic (``J&F-Mean``, ``J-Mean``, ``F-Mean``), columns ``estimate``
        (the full data's, equal to ``result.global_metrics``), ``low``, ``high`` (percentiles
        of the draws; NaN with fewer than two sequences) and ``n_sequences``.

    Raises:
        ValueError: if ``n_boot < 1`` or ``level`` is not in (0, 1).
    """
    from difflens.analysis.bootstrap import draw_counts

    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot} and {level}")
    scored = [s for s in result.sequences.values() if s.n_objects > 0]
    stats = [s.statistics() for s in scored]
    sums = np.array([[t["J-Mean"].sum(), t["F-Mean"].sum()] for t in stats], dtype=np.float64)
    counts_of = np.array([s.n_objects for s in scored], dtype=np.float64)
    draws = draw_counts(len(scored), n_boot, seed).astype(np.float64)
    j, f = ((draws @ sums[:, i]) / (draws @ counts_of) for i in range(2))
    replicates = {"J&F-Mean": (j + f) / 2, "J-Mean": j, "F-Mean": f}
    rows = []
    for name, values in replicates.items():
        low, high = np.nan, np.nan
        if len(scored) > 1:
            low, high = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
        estimate = float(result.global_metrics[name])
        rows.append((name, estimate, float(low), float(high), len(scored)))
    frame = pd.DataFrame(rows, columns=["statistic", "estimate", "low", "high", "n_sequences"])
    return frame.set_index("statistic")


def write_csvs(folder: PathLike, result: DavisResult, set_name: str = "val") -> tuple[Path, Path]:
    """Write the toolkit's two CSV files (``evaluation_method.py``).

    ``global_results-<set>.csv`` (columns :data:`GLOBAL_COLUMNS`, one row) and
    ``per-sequence_results-<set>.csv`` (columns :data:`PER_SEQUENCE_COLUMNS`, one row per
    object), no index, values formatted ``%.3f``. Note: the toolkit's ``evaluation_method.py``
    reuses these files instead of scoring again when it finds both in its results folder.

    Args:
        folder: the folder to write to (created if needed), usually the results folder.
        result: the outcome of :func:`evaluate`.
        set_name: the DAVIS subset name in the file names (``"val"``, ``"train"``, ...).

    Returns:
        The paths of the global and of the per-sequence CSV files.

    Raises:
        ValueError: if ``set_name`` is not a plain file-name part.
    """
    problem = _name_problem(set_name, "set")
    if problem:
        raise ValueError(problem)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    global_path = out / f"global_results-{set_name}.csv"
    per_sequence_path = out / f"per-sequence_results-{set_name}.csv"
    table_g = pd.DataFrame([result.global_metrics.loc[list(GLOBAL_COLUMNS)].to_numpy()])
    table_g.columns = list(GLOBAL_COLUMNS)
    table_g.to_csv(global_path, index=False, float_format="%.3f", lineterminator="\n")
    result.per_sequence_table().to_csv(
        per_sequence_path, index=False, float_format="%.3f", lineterminator="\n"
    )
    return global_path, per_sequence_path
