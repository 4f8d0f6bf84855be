"""PCK (percentage of correct keypoints) with every reading named.

A predicted keypoint is correct iff ``||pred - gt||_2 <= alpha * base`` (``strict=True``:
``<``, SD-DINO's and GeoAware-SC's comparison). What ``base`` is, in which frame the distance
is measured, and how the correct keypoints are averaged differ between papers; here each
choice is a named value.

Threshold readings (``reading=``)
---------------------------------
``"target_bbox"``
    ``max(x2 - x1, y2 - y1)`` of the TARGET bounding box ``[x1, y1, x2, y2]``, distances in
    original target pixels. DIFT (``Tsingularity/dift: eval_spair.py``), Diffusion
    Hyperfeatures' ``pck_bbox``, SD-DINO and GeoAware-SC (in their padded square frames, with
    the box scaled accordingly). No ``+1`` on the box sides in any of them.
``"target_image"``
    ``max(Ht, Wt)`` of the target image. The usual PF-PASCAL threshold (SD-DINO / GeoAware with
    ``thresholds=None``: ``alpha * img_size``) and Diffusion Hyperfeatures' ``pck_img``.
``"source_bbox_512"``
    Hedlin et al.'s reading (``ubc-vision/LDM_correspondences: eval/dataset.py``
    ``get_pckthres`` uses ``batch['src_bbox']``): both images are resized anisotropically to
    512 x 512, the SOURCE box is scaled with its image (``x * 512 / Ws``, ``y * 512 / Hs``) and
    the threshold is the larger side of the scaled box. Distances are measured in the TARGET's
    512 x 512 frame: prediction and ground truth given in original target pixels are mapped by
    ``x * 512 / Wt``, ``y * 512 / Ht`` before the distance (``utils/evaluation.py``,
    ``classify_prd``: ``l2dist <= alpha * pckthres``).
``"keypoint_extent"``
    PF-WILLOW: ``max(max_x - min_x, max_y - min_y)`` of the target keypoints of the pair
    (``ubc-vision/LDM_correspondences: eval/pfwillow.py``, ``thres='bbox-kp'``).
``"keypoint_extent_padded"``
    the same loader's default ``thres='bbox'``, reproduced ONLY on request: the keypoint tensor
    is padded with ``-1`` to 40 columns before ``min``, so the minimum is ``-1`` and the
    "extent" is the largest coordinate plus one -- ``max over axes of (max - min(min, -1))``.
    This inflates the threshold and PCK (about 80 % instead of about 70 % on PF-WILLOW;
    ``juhongm999/dhpf`` issue 3). Applied in whatever frame the points are given
    (Hedlin's loader works in its 512 frame).
``"pixels"``
    a fixed threshold in original target pixels: the base is 1, so ``alpha`` IS the threshold
    in pixels (``alphas=(1, 3, 5)`` gives PCK at 1, 3 and 5 px). This is the geometric
    reading of HPatches-style evaluations, where the ground truth is a known homography and
    a match is correct within a few pixels (D2-Net's mean matching accuracy at 1-10 px;
    DIFT reports HPatches homography accuracy at 1, 3 and 5 px, a different quantity).

Averaging (``averaging=``)
--------------------------
``"per_image"``
    mean over pairs of each pair's fraction of correct keypoints -- DIFT's "per image" (over
    all test pairs pooled across categories), Hedlin's mean over pairs, GeoAware's default.
``"per_point"``
    pooled: total correct / total keypoints -- DIFT's "per point", Diffusion Hyperfeatures,
    SD-DINO's tables (its "All" is most probably pooled per point), GeoAware with
    ``--KPT_RESULT``.
Both are reported overall (``category="all"``) and per category. SD-DINO's printed "Average"
(mean of category means) can be computed from the per-category rows. Pairs without keypoints
are left out of both.

Intervals
---------
95 % intervals are percentile bootstrap intervals (``n_boot`` resamples, seeded). The unit
resampled is the pair (``bootstrap_unit="pair"``) or a group of pairs (``"group"``, the
``group`` field, e.g. the source image, for pairs that share images and are not independent);
a resample draws units with replacement and pools all pairs of the drawn units. The per-image
statistic of a resample is the mean of its pairs' accuracies, the per-point statistic its
pooled correct / total. Resamples are drawn as ``rng.integers(0, n_units, (rows, n_units))``
with ``rng = np.random.default_rng(seed)`` (a fresh generator for every category and for
"all"), in batches of rows of at most ``2**22`` draws: with a single batch the resamples are
those of ``scipy.stats.bootstrap(..., method="percentile", rng=np.random.default_rng(seed))``
on the pairs. The same resamples serve every reading and alpha.

Which paper uses which reading
------------------------------
:data:`PAPER_READINGS` (:func:`paper_readings` as a table) records it; in short:

* DIFT: ``target_bbox``, ``<=``, original pixels, alpha 0.1; the paper reports per image
  (52.9 for DIFT_sd on SPair-71k), the code prints per point too.
* Diffusion Hyperfeatures: ``target_bbox`` (``pck_bbox``) and ``target_image``
  (``pck_img``), ``<=``, per point, predictions made at ``load_size`` and rescaled.
* Hedlin et al.: ``source_bbox_512``, ``<=``, per image (mean over pairs), alphas 0.05 / 0.1,
  in the 512 x 512 frame; PF-WILLOW with ``keypoint_extent_padded`` (their loader's default).
* SD-DINO: ``target_bbox`` scaled into a padded square frame, strict ``<``, per point, alphas
  0.1 / 0.05 / 0.01 (PF-PASCAL: ``target_image``, 0.1 / 0.05 / 0.15).
* GeoAware-SC: as SD-DINO, but per image by default (per point with ``--KPT_RESULT``).

Numbers from different rows are not comparable: per image and per point differ by several
points on SPair-71k (DIFT_sd: 52.9 per image, 59.5 per point as the project notes quote it).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "READINGS",
    "AVERAGINGS",
    "DEFAULT_ALPHAS",
    "HEDLIN_FRAME",
    "PaperReading",
    "PAPER_READINGS",
    "paper_readings",
    "PairKeypoints",
    "pck",
    "correct_keypoints",
    "threshold_base",
    "to_reading_frame",
    "pair_correct",
    "bootstrap_interval",
    "evaluate_pck",
]

Reading = Literal[
    "target_bbox",
    "target_image",
    "source_bbox_512",
    "keypoint_extent",
    "keypoint_extent_padded",
    "pixels",
]
Averaging = Literal["per_image", "per_point"]

READINGS: tuple[str, ...] = (
    "target_bbox",
    "target_image",
    "source_bbox_512",
    "keypoint_extent",
    "keypoint_extent_padded",
    "pixels",
)
"""Named threshold readings (module docstring)."""
AVERAGINGS: tuple[str, ...] = ("per_image", "per_point")
"""Named averagings (module docstring)."""
DEFAULT_ALPHAS: tuple[float, ...] = (0.05, 0.1, 0.15)
"""Default alphas of :func:`evaluate_pck`."""
HEDLIN_FRAME = 512
"""Side of Hedlin et al.'s square evaluation frame, pixels."""

_BOOT_DRAWS = 1 << 22  # resample draws per batch


@dataclass(frozen=True)
class PaperReading:
    """How one paper's code reads PCK.

    Attributes:
        paper: short name and year.
        code: ``owner/repo: path`` of the evaluation code.
        dataset: benchmark the row is about.
        reading: the threshold reading (one of :data:`READINGS`).
        comparison: ``"<="`` or ``"<"``.
        averaging: ``"per_image"`` or ``"per_point"`` (as reported in the paper).
        frame: where distances are measured.
        alphas: alphas the code reports.
        note: anything else that matters for comparing numbers.
    """

    paper: str
    code: str
    dataset: str
    reading: str
    comparison: str
    averaging: str
    frame: str
    alphas: tuple[float, ...]
    note: str = ""


PAPER_READINGS: tuple[PaperReading, ...] = (
    PaperReading(
        "DIFT (Tang et al. 2023)",
        "Tsingularity/dift: eval_spair.py",
        "SPair-71k test (12,234 pairs)",
        "target_bbox",
        "<=",
        "per_image",
        "original target pixels (features upsampled to the original sizes)",
        (0.1,),
        "also prints per point; the paper's Table 1 (52.9 for DIFT_sd) is per image",
    ),
    PaperReading(
        "Diffusion Hyperfeatures (Luo et al. 2023)",
        "diffusion-hyperfeatures/diffusion_hyperfeatures: archs/correspondence_utils.py",
        "SPair-71k (360-pair subsets shipped)",
        "target_bbox",
        "<=",
        "per_point",
        "predicted at load_size, rescaled to original target pixels",
        (0.1,),
        "pck_bbox; pooled over the whole eval set",
    ),
    PaperReading(
        "Diffusion Hyperfeatures (Luo et al. 2023)",
        "diffusion-hyperfeatures/diffusion_hyperfeatures: archs/correspondence_utils.py",
        "SPair-71k (360-pair subsets shipped)",
        "target_image",
        "<=",
        "per_point",
        "predicted at load_size, rescaled to original target pixels",
        (0.1,),
        "pck_img",
    ),
    PaperReading(
        "Hedlin et al. 2023",
        "ubc-vision/LDM_correspondences: utils/evaluation.py, eval/dataset.py",
        "SPair-71k test",
        "source_bbox_512",
        "<=",
        "per_image",
        "512 x 512 anisotropically resized target frame",
        (0.05, 0.1),
        "threshold from the SOURCE box scaled to 512",
    ),
    PaperReading(
        "Hedlin et al. 2023",
        "ubc-vision/LDM_correspondences: eval/pfwillow.py",
        "PF-WILLOW (900 pairs)",
        "keypoint_extent_padded",
        "<=",
        "per_image",
        "512 x 512 frame",
        (0.05, 0.1),
        "thres='bbox' includes the -1 padding; 'bbox-kp' is keypoint_extent",
    ),
    PaperReading(
        "SD-DINO (Zhang et al. 2023)",
        "Junyi42/sd-dino: pck_spair_pascal.py",
        "SPair-71k test (--SAMPLE 20 pairs/category by default)",
        "target_bbox",
        "<",
        "per_point",
        "padded square frame (img_size), bbox scaled by trg_scale",
        (0.1, 0.05, 0.01),
        "prints the mean and a pair-weighted mean of per-category per-point PCK; the paper's "
        "'All' is probably pooled per point",
    ),
    PaperReading(
        "SD-DINO (Zhang et al. 2023)",
        "Junyi42/sd-dino: pck_spair_pascal.py",
        "PF-PASCAL test (299 pairs)",
        "target_image",
        "<",
        "per_point",
        "padded square frame (img_size)",
        (0.1, 0.05, 0.15),
        "threshold alpha * img_size of the square frame",
    ),
    PaperReading(
        "GeoAware-SC (Zhang et al. 2024)",
        "Junyi42/GeoAware-SC: pck_train.py",
        "SPair-71k test",
        "target_bbox",
        "<",
        "per_image",
        "padded square frame (ANNO_SIZE)",
        (0.1, 0.05, 0.01),
        "per keypoint with --KPT_RESULT; zero-shot eval adds flip alignment and window soft-argmax",
    ),
    PaperReading(
        "usual PF-PASCAL protocol",
        "Junyi42/sd-dino: data/prepare_pfpascal.sh",
        "PF-PASCAL test",
        "target_image",
        "<=",
        "per_point",
        "original target pixels",
        (0.05, 0.1, 0.15),
    ),
    PaperReading(
        "usual PF-WILLOW protocol",
        "ubc-vision/LDM_correspondences: eval/pfwillow.py ('bbox-kp')",
        "PF-WILLOW",
        "keypoint_extent",
        "<=",
        "per_image",
        "original target pixels",
        (0.05, 0.1),
    ),
)
"""Which paper uses which reading."""


def paper_readings() -> pd.DataFrame:
    """:data:`PAPER_READINGS` as a table.

    Returns:
        One row per entry, columns ``paper, code, dataset, reading, comparison, averaging,
        frame, alphas, note``.
    """
    return pd.DataFrame([asdict(r) for r in PAPER_READINGS])


# --------------------------------------------------------------------------- single pairs


def _points(x: object, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # torch tensors
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return a.reshape(0, 2)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must be (N, 2) x/y, got shape {a.shape}")
    return a


def correct_keypoints(
    pred: np.ndarray | Sequence[Sequence[float]],
    gt: np.ndarray | Sequence[Sequence[float]],
    threshold_base: float | np.ndarray,
    alpha: float = 0.1,
    *,
    strict: bool = False,
) -> np.ndarray:
    """Which predictions are correct: ``||pred - gt||_2 <= alpha * base``.

    Args:
        pred: ``(N, 2)`` predicted x/y (any frame; the same as ``gt``). Non-finite
            predictions count as incorrect.
        gt: ``(N, 2)`` ground-truth x/y.
        threshold_base: the base, a scalar or ``(N,)`` per keypoint, in the same units.
        alpha: the fraction of the base.
        strict: ``<`` instead of ``<=`` (SD-DINO, GeoAware-SC).

    Returns:
        ``(N,)`` bool.

    Raises:
        ValueError: if the shapes do not match.
    """
    p, g = _points(pred, "pred"), _points(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: {p.shape} vs {g.shape}")
    dist = np.sqrt(((p - g) ** 2).sum(axis=1))
    limit = alpha * np.asarray(threshold_base, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (dist < limit) if strict else (dist <= limit)


def pck(  # noqa: DOC502 (raised by the shared validation helpers)
    pred: np.ndarray | Sequence[Sequence[float]],
    gt: np.ndarray | Sequence[Sequence[float]],
    threshold_base: float | np.ndarray,
    alpha: float = 0.1,
    *,
    strict: bool = False,
) -> float:
    """Fraction of correct keypoints of one set: ``mean(||pred - gt||_2 <= alpha * base)``.

    Args:
        pred: ``(N, 2)`` predicted x/y.
        gt: ``(N, 2)`` ground-truth x/y, same frame.
        threshold_base: scalar or ``(N,)`` base (e.g. from :func:`threshold_base`).
        alpha: the fraction of the base.
        strict: ``<`` instead of ``<=``.

    Returns:
        PCK in ``[0, 1]``; NaN for no keypoints.

    Raises:
        ValueError: if the shapes do not match.
    """
    ok = correct_keypoints(pred, gt, threshold_base, alpha, strict=strict)
    return float(ok.mean()) if ok.size else float("nan")


def _box(box: object, name: str) -> np.ndarray:
    if box is None:
        raise ValueError(f"this reading needs {name}")
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or b[2] < b[0] or b[3] < b[1]:
        raise ValueError(f"{name} must be [x1, y1, x2, y2] with x2 >= x1, y2 >= y1, got {box!r}")
    return b


def _size(size: object, name: str) -> tuple[float, float]:
    if size is None:
        raise ValueError(f"this reading needs {name}")
    s = np.asarray(size, dtype=np.float64).reshape(-1)
    if s.shape != (2,) or (s <= 0).any():
        raise ValueError(f"{name} must be (H, W) > 0, got {size!r}")
    return float(s[0]), float(s[1])


def threshold_base(
    reading: Reading,
    *,
    trg_size: Sequence[int] | None = None,
    trg_bbox: Sequence[float] | None = None,
    src_size: Sequence[int] | None = None,
    src_bbox: Sequence[float] | None = None,
    trg_kps: np.ndarray | Sequence[Sequence[float]] | None = None,
) -> float:
    """The PCK base of one pair under a named reading (module docstring).

    Args:
        reading: one of :data:`READINGS`.
        trg_size: ``(Ht, Wt)`` of the original target image (``"target_image"``).
        trg_bbox: target box ``[x1, y1, x2, y2]``, original pixels (``"target_bbox"``).
        src_size: ``(Hs, Ws)`` of the original source image (``"source_bbox_512"``).
        src_bbox: source box, original source pixels (``"source_bbox_512"``).
        trg_kps: ``(N, 2)`` target keypoints (the ``keypoint_extent`` readings).

    Returns:
        The base in the reading's frame (pixels; the 512 frame for ``"source_bbox_512"``;
        1.0 for ``"pixels"``, whose alpha is the threshold in pixels).

    Raises:
        ValueError: for an unknown reading or a missing / malformed argument it needs.
    """
    if reading == "target_bbox":
        b = _box(trg_bbox, "trg_bbox")
        return float(max(b[2] - b[0], b[3] - b[1]))
    if reading == "target_image":
        return float(max(_size(trg_size, "trg_size")))
    if reading == "pixels":
        return 1.0
    if reading == "source_bbox_512":
        b = _box(src_bbox, "src_bbox")
        hs, ws = _size(src_size, "src_size")
        return float(max((b[2] - b[0]) * HEDLIN_FRAME / ws, (b[3] - b[1]) * HEDLIN_FRAME / hs))
    if reading in ("keypoint_extent", "keypoint_extent_padded"):
        if trg_kps is None:
            raise ValueError("this reading needs trg_kps")
        k = _points(trg_kps, "trg_kps")
        if not len(k):
            raise ValueError("keypoint_extent needs at least one target keypoint")
        low = k.min(axis=0)
        if reading == "keypoint_extent_padded":
            low = np.minimum(low, -1.0)  # the -1 padding columns enter the min
        return float((k.max(axis=0) - low).max())
    raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")


def to_reading_frame(
    reading: Reading,
    points: np.ndarray | Sequence[Sequence[float]],
    *,
    trg_size: Sequence[int] | None = None,
) -> np.ndarray:
    """Map target points from original pixels to the frame the reading measures in.

    Args:
        reading: one of :data:`READINGS`.
        points: ``(N, 2)`` x/y in original target pixels.
        trg_size: ``(Ht, Wt)``, needed by ``"source_bbox_512"``.

    Returns:
        ``(N, 2)`` float64: ``x * 512 / Wt, y * 512 / Ht`` for ``"source_bbox_512"``, the
        points unchanged otherwise.

    Raises:
        ValueError: for an unknown reading or a missing ``trg_size``.
    """
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
    p = _points(points, "points")
    if reading != "source_bbox_512":
        return p
    ht, wt = _size(trg_size, "trg_size")
    return p * np.array([HEDLIN_FRAME / wt, HEDLIN_FRAME / ht])


@dataclass(frozen=True)
class PairKeypoints:
    """Predictions and annotations of one image pair.

    Attributes:
        pred: ``(N, 2)`` predicted x/y in original target pixels.
        gt: ``(N, 2)`` ground-truth x/y in original target pixels.
        category: category name (``"all"`` is reserved for the overall rows).
        trg_size: ``(Ht, Wt)`` of the original target image.
        trg_bbox: target box ``[x1, y1, x2, y2]``.
        src_size: ``(Hs, Ws)`` of the original source image.
        src_bbox: source box ``[x1, y1, x2, y2]``.
        group: bootstrap group (e.g. the source image name) for ``bootstrap_unit="group"``.
        trg_kps: keypoints whose extent the ``keypoint_extent`` readings use; ``gt`` if None.
    """

    pred: np.ndarray
    gt: np.ndarray
    category: str = ""
    trg_size: tuple[int, int] | None = None
    trg_bbox: tuple[float, float, float, float] | None = None
    src_size: tuple[int, int] | None = None
    src_bbox: tuple[float, float, float, float] | None = None
    group: Hashable | None = None
    trg_kps: np.ndarray | None = None


_PAIR_FIELDS = {f.name for f in fields(PairKeypoints)}


def _as_pair(p: PairKeypoints | Mapping[str, object]) -> PairKeypoints:
    if isinstance(p, PairKeypoints):
        return p
    if isinstance(p, Mapping):
        extra = set(p) - _PAIR_FIELDS
        if extra:
            raise ValueError(f"unknown pair fields: {sorted(extra)}")
        return PairKeypoints(**p)  # type: ignore[arg-type]
    raise TypeError("pairs must be PairKeypoints or mappings with the same field names")


def pair_correct(
    pair: PairKeypoints | Mapping[str, object],
    reading: Reading,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    strict: bool = False,
) -> np.ndarray:
    """Correctness of one pair's keypoints under a reading, for several alphas.

    Args:
        pair: the pair (:class:`PairKeypoints` or a mapping with its field names).
        reading: one of :data:`READINGS`.
        alphas: the alphas.
        strict: ``<`` instead of ``<=``.

    Returns:
        ``(len(alphas), N)`` bool.

    Raises:
        ValueError: as :func:`threshold_base` and :func:`correct_keypoints`.
    """
    p = _as_pair(pair)
    pred, gt = _points(p.pred, "pred"), _points(p.gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {pred.shape} vs {gt.shape}")
    extent = gt if p.trg_kps is None else p.trg_kps
    if not len(gt):
        return np.zeros((len(alphas), 0), dtype=bool)
    base = threshold_base(
        reading,
        trg_size=p.trg_size,
        trg_bbox=p.trg_bbox,
        src_size=p.src_size,
        src_bbox=p.src_bbox,
        trg_kps=extent,
    )
    pred_f = to_reading_frame(reading, pred, trg_size=p.trg_size)
    gt_f = to_reading_frame(reading, gt, trg_size=p.trg_size)
    return np.stack([correct_keypoints(pred_f, gt_f, base, a, strict=strict) for a in alphas])


# --------------------------------------------------------------------------- bootstrap


def _unit_sums(
    correct: np.ndarray, points: np.ndarray, units: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-unit sums: correct ``(R, G)``, accuracy ``(R, G)``, points ``(G,)``, pairs ``(G,)``.

    ``correct`` is ``(R, P)`` correct counts of ``P`` pairs for ``R`` statistics.
    """
    acc = correct / points
    if units is None:
        return correct, acc, points.astype(np.float64), np.ones(points.shape[0])
    _, inv = np.unique(units, return_inverse=True)
    g = int(inv.max()) + 1

    def by_unit(x: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(inv, weights=row, minlength=g) for row in np.atleast_2d(x)])

    return by_unit(correct), by_unit(acc), by_unit(points)[0], np.bincount(inv, minlength=g) * 1.0


def _bootstrap_stats(
    correct: np.ndarray,
    points: np.ndarray,
    units: np.ndarray | None,
    n_boot: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap distributions ``(n_boot, R)`` of the per-image and per-point statistics."""
    c_u, a_u, p_u, n_u = _unit_sums(correct, points, units)
    g = p_u.shape[0]
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_DRAWS // g)
    per_image, per_point = [], []
    for b0 in range(0, n_boot, rows):
        b = min(rows, n_boot - b0)
        idx = rng.integers(0, g, (b, g))
        w = np.bincount((idx + g * np.arange(b)[:, None]).ravel(), minlength=b * g)
        w = w.reshape(b, g).astype(np.float64)
        per_image.append((w @ a_u.T) / (w @ n_u)[:, None])
        per_point.append((w @ c_u.T) / (w @ p_u)[:, None])
    return np.concatenate(per_image), np.concatenate(per_point)


def _percentile_interval(dist: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.percentile(dist, [100 * tail, 100 * (1 - tail)], axis=0)
    return low, high


def bootstrap_interval(
    n_correct: np.ndarray | Sequence[float],
    n_points: np.ndarray | Sequence[int],
    *,
    averaging: Averaging = "per_image",
    groups: Sequence[Hashable] | np.ndarray | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a PCK over pairs (or groups of pairs).

    Args:
        n_correct: ``(P,)`` correct keypoints of each pair.
        n_points: ``(P,)`` keypoints of each pair (> 0).
        averaging: ``"per_image"`` (mean of per-pair fractions) or ``"per_point"`` (pooled).
        groups: ``(P,)`` group of each pair to resample groups instead of pairs, or None.
        n_boot: number of resamples.
        confidence: coverage of the two-sided interval.
        seed: seed of ``np.random.default_rng``.

    Returns:
        ``(low, high)`` in ``[0, 1]``; NaNs if there are no pairs or ``n_boot == 0``.

    Raises:
        ValueError: for mismatched lengths, a pair without keypoints, or an unknown averaging.
    """
    if averaging not in AVERAGINGS:
        raise ValueError(f"averaging must be one of {AVERAGINGS}, got {averaging!r}")
    c = np.asarray(n_correct, dtype=np.float64).reshape(-1)
    p = np.asarray(n_points, dtype=np.float64).reshape(-1)
    if c.shape != p.shape or (groups is not None and len(groups) != len(c)):
        raise ValueError("n_correct, n_points (and groups) must have the same length")
    if (p <= 0).any():
        raise ValueError("every pair needs at least one keypoint")
    if not len(c) or n_boot <= 0:
        return float("nan"), float("nan")
    units = None if groups is None else pd.factorize(pd.Series(list(groups)))[0]
    per_image, per_point = _bootstrap_stats(c[None], p, units, n_boot, seed)
    dist = per_image if averaging == "per_image" else per_point
    low, high = _percentile_interval(dist, confidence)
    return float(low[0]), float(high[0])


# --------------------------------------------------------------------------- evaluation


def evaluate_pck(
    pairs: Iterable[PairKeypoints | Mapping[str, object]],
    *,
    readings: Sequence[Reading] = ("target_bbox",),
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    averagings: Sequence[Averaging] = AVERAGINGS,
    strict: bool = False,
    by_category: bool = True,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    bootstrap_unit: Literal["pair", "group"] = "pair",
) -> pd.DataFrame:
    """PCK of a set of pairs under named readings, averagings and alphas, with intervals.

    Args:
        pairs: :class:`PairKeypoints` (or mappings with its field names), coordinates in
            original pixels.
        readings: threshold readings, from :data:`READINGS`.
        alphas: alphas (default 0.05, 0.1, 0.15).
        averagings: ``"per_image"`` and/or ``"per_point"``.
        strict: ``<`` instead of ``<=`` (SD-DINO, GeoAware-SC).
        by_category: also one row per category (categories sorted by name).
        n_boot: bootstrap resamples; 0 gives NaN intervals.
        confidence: coverage of the percentile intervals.
        seed: seed of the resampling (the same resamples for every reading and alpha).
        bootstrap_unit: ``"pair"`` or ``"group"`` (each pair's ``group``).

    Returns:
        Tidy table, one row per (reading, alpha, averaging, category): columns ``reading``,
        ``alpha``, ``averaging``, ``category`` (``"all"`` for all pairs), ``pck`` (fraction in
        ``[0, 1]``), ``low``, ``high`` (interval), ``n_pairs``, ``n_points`` (pairs with at
        least one keypoint and their keypoints). ``attrs`` holds ``strict``, ``n_boot``,
        ``confidence``, ``seed`` and ``bootstrap_unit``.

    Raises:
        ValueError: for an unknown reading/averaging/unit, a category named ``"all"``, a
            missing group with ``bootstrap_unit="group"``, or pair data a reading needs.
    """
    _check_evaluation_options(readings, averagings, bootstrap_unit)
    items = [_as_pair(p) for p in pairs]
    items = [p for p in items if len(_points(p.gt, "gt"))]
    if any(p.category == "all" for p in items):
        raise ValueError("'all' is reserved for the overall rows; rename that category")
    if bootstrap_unit == "group" and any(p.group is None for p in items):
        raise ValueError("bootstrap_unit='group' needs a group for every pair")
    combos = [(r, a) for r in readings for a in alphas]
    n_pts = np.array([len(_points(p.gt, "gt")) for p in items], dtype=np.float64)
    correct = _correct_counts(items, readings, alphas, strict)
    cats = np.array([p.category for p in items], dtype=object)
    groups = pd.factorize(pd.Series([p.group for p in items], dtype=object))[0]
    subsets = [("all", np.ones(len(items), dtype=bool))]
    if by_category:
        subsets += [(c, cats == c) for c in sorted(set(cats.tolist()))]
    rows = []
    for cat, mask in subsets:
        units = groups[mask] if bootstrap_unit == "group" else None
        value, bounds = _subset_statistics(
            correct[:, mask], n_pts[mask], units, n_boot, confidence, seed
        )
        for k, (r, a) in enumerate(combos):
            for avg in averagings:
                rows.append(
                    {
                        "reading": r,
                        "alpha": float(a),
                        "averaging": avg,
                        "category": cat,
                        "pck": float(value[avg][k]),
                        "low": float(bounds[avg][0][k]),
                        "high": float(bounds[avg][1][k]),
                        "n_pairs": int(mask.sum()),
                        "n_points": int(n_pts[mask].sum()),
                    }
                )
    columns = ["reading", "alpha", "averaging", "category", "pck", "low", "high"]
    out = pd.DataFrame(rows, columns=[*columns, "n_pairs", "n_points"])
    out.attrs.update(
        strict=strict,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
        bootstrap_unit=bootstrap_unit,
    )
    return out


def _check_evaluation_options(
    readings: Sequence[str], averagings: Sequence[str], bootstrap_unit: str
) -> None:
    """``ValueError`` for an unknown reading, averaging or bootstrap unit."""
    for r in readings:
        if r not in READINGS:
            raise ValueError(f"reading must be one of {READINGS}, got {r!r}")
    for a in averagings:
        if a not in AVERAGINGS:
            raise ValueError(f"averaging must be one of {AVERAGINGS}, got {a!r}")
    if bootstrap_unit not in ("pair", "group"):
        raise ValueError(f"bootstrap_unit must be 'pair' or 'group', got {bootstrap_unit!r}")


def _correct_counts(
    items: Sequence[PairKeypoints],
    readings: Sequence[str],
    alphas: Sequence[float],
    strict: bool,
) -> np.ndarray:
    """Correct keypoints ``(len(readings) * len(alphas), P)``, reading-major, per pair."""
    correct = np.zeros((len(readings) * len(alphas), len(items)))
    for r_i, r in enumerate(readings):
        for k, p in enumerate(items):
            ok = pair_correct(p, r, alphas, strict=strict)
            correct[r_i * len(alphas) : (r_i + 1) * len(alphas), k] = ok.sum(axis=1)
    return correct


def _subset_statistics(
    c: np.ndarray,
    n: np.ndarray,
    units: np.ndarray | None,
    n_boot: int,
    confidence: float,
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per-image and per-point PCK ``(R,)`` of some pairs and their bootstrap intervals.

    ``c`` is ``(R, P)`` correct counts, ``n`` ``(P,)`` keypoints; NaNs without pairs or
    resamples.
    """
    n_stats = c.shape[0]
    if n.size:
        value = {"per_image": (c / n).mean(axis=1), "per_point": c.sum(axis=1) / n.sum()}
    else:
        value = {a: np.full(n_stats, np.nan) for a in AVERAGINGS}
    bounds = {a: (np.full(n_stats, np.nan),) * 2 for a in AVERAGINGS}
    if n.size and n_boot > 0:
        dists = dict(zip(AVERAGINGS, _bootstrap_stats(c, n, units, n_boot, seed)))
        bounds = {a: _percentile_interval(dists[a], confidence) for a in AVERAGINGS}
    return value, bounds
