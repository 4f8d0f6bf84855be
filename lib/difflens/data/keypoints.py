"""Keypoints: named object parts in image pixels, per instance and across image pairs.

Two types, filled the same way by the toy world and by the keypoint datasets (SPair-71k,
PF-PASCAL, PF-WILLOW, CUB-200-2011):

- :class:`InstanceKeypoints`, the parts of one object of a :class:`~difflens.data.scene.Scene`
  (``Scene.keypoints[k]``): names, x/y and a visibility flag;
- :class:`KeypointPair`, what semantic correspondence is evaluated on: a source and a
  target image with the same parts of one category in both, in the same order, with
  their bounding boxes and the dataset's difficulty flags (SPair-71k's field names).

Coordinates are always ``x`` (column) then ``y`` (row) in the ORIGINAL image's pixels,
as the datasets store them; a pixel's centre is at integer coordinates. Boxes are
``(x1, y1, x2, y2)`` in the same pixels, inclusive as SPair stores them (its side is
``x2 - x1``; no ``+ 1`` anywhere, as in DIFT and SD-DINO).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from difflens.core.errors import DatasetError

SPAIR_FLAGS = (
    "viewpoint_variation",
    "scale_variation",
    "truncation",
    "occlusion",
    "mirror",
    "src_pose",
    "trg_pose",
)
"""The difficulty flags a SPair-71k pair annotation carries (others leave them out)."""


@dataclass
class InstanceKeypoints:
    """The named parts of one object instance.

    Attributes:
        names: part names, e.g. ``["tip", "left tail", "right tail"]`` (length ``K``).
        xy: ``(K, 2)`` float32, x/y in image pixels (NaN where a part has no position).
        visible: ``(K,)`` bool, False where the part is hidden under another object,
            outside the image or not annotated.
    """

    names: list[str]
    xy: np.ndarray
    visible: np.ndarray

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.xy = np.asarray(self.xy, dtype=np.float32).reshape(-1, 2)
        self.visible = np.asarray(self.visible, dtype=bool).reshape(-1)
        if not len(self.names) == len(self.xy) == len(self.visible):
            raise ValueError(
                f"{len(self.names)} keypoint names, {len(self.xy)} positions and "
                f"{len(self.visible)} visibility flags"
            )
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"keypoint names repeat: {self.names}")

    def __len__(self) -> int:
        return len(self.names)

    def visible_points(self) -> tuple[list[str], np.ndarray]:
        """The visible parts only.

        Returns:
            Their names and their ``(V, 2)`` float32 x/y.
        """
        index = np.flatnonzero(self.visible)
        return [self.names[i] for i in index], self.xy[index]


@dataclass
class KeypointPair:
    """A source and a target image with corresponding keypoints (one category).

    Attributes:
        pair_id: a name unique within the dataset and split.
        category: the object category (SPair's folder name, e.g. ``"pottedplant"``).
        source_image: ``(Hs, Ws, 3)`` uint8 RGB.
        target_image: ``(Ht, Wt, 3)`` uint8 RGB.
        source_points: ``(N, 2)`` float32, x/y in source pixels.
        target_points: ``(N, 2)`` float32, x/y in target pixels, in the same order.
        keypoint_ids: ``N`` part ids (the dataset's ids as strings, or part names).
        source_box: ``(4,)`` float32 ``x1, y1, x2, y2`` of the source object.
        target_box: ``(4,)`` float32 ``x1, y1, x2, y2`` of the target object.
        source_name: the source image's file name or id.
        target_name: the target image's file name or id.
        flags: the dataset's difficulty flags (SPair: :data:`SPAIR_FLAGS`); empty when the
            dataset has none.
        meta: free-form extras (split, file paths, the transform of a geometric pair, ...).
    """

    pair_id: str
    category: str
    source_image: np.ndarray
    target_image: np.ndarray
    source_points: np.ndarray
    target_points: np.ndarray
    keypoint_ids: list[str]
    source_box: np.ndarray
    target_box: np.ndarray
    source_name: str = ""
    target_name: str = ""
    flags: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.source_points = np.asarray(self.source_points, dtype=np.float32).reshape(-1, 2)
        self.target_points = np.asarray(self.target_points, dtype=np.float32).reshape(-1, 2)
        self.source_box = np.asarray(self.source_box, dtype=np.float32).reshape(4)
        self.target_box = np.asarray(self.target_box, dtype=np.float32).reshape(4)
        self.keypoint_ids = [str(k) for k in self.keypoint_ids]

    def __len__(self) -> int:
        return len(self.keypoint_ids)

    @property
    def source_size(self) -> tuple[int, int]:
        """``(height, width)`` of the source image."""
        return int(self.source_image.shape[0]), int(self.source_image.shape[1])

    @property
    def target_size(self) -> tuple[int, int]:
        """``(height, width)`` of the target image."""
        return int(self.target_image.shape[0]), int(self.target_image.shape[1])


def box_side(box: np.ndarray) -> float:
    """The longer side of a box, ``max(x2 - x1, y2 - y1)`` (no ``+ 1``, as DIFT and SD-DINO).

    Args:
        box: ``(4,)`` ``x1, y1, x2, y2``.

    Returns:
        The side in pixels.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
    return max(x2 - x1, y2 - y1)


def check_pair(pair: KeypointPair) -> KeypointPair:
    """The pair, or a :class:`DatasetError` naming it and what is wrong.

    Checks: RGB uint8 images; as many source points, target points and ids, at least one;
    finite points inside their images; finite boxes with ``x1 <= x2`` and ``y1 <= y2`` and a
    positive longer side (the PCK threshold's base).

    Args:
        pair: the pair to check.

    Returns:
        The same pair.

    Raises:
        DatasetError: ``bad pair`` with the pair id and the first problem found.
    """
    name = f"pair {pair.pair_id} ({pair.category}: {pair.source_name} -> {pair.target_name})"
    for side, image in (("source", pair.source_image), ("target", pair.target_image)):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DatasetError("bad pair", f"{name}: {side} image is not (H, W, 3) uint8")
    n = {len(pair.source_points), len(pair.target_points), len(pair.keypoint_ids)}
    if len(n) != 1:
        raise DatasetError(
            "bad pair",
            f"{name}: {len(pair.source_points)} source points, {len(pair.target_points)} "
            f"target points and {len(pair.keypoint_ids)} keypoint ids",
        )
    if len(pair.keypoint_ids) == 0:
        raise DatasetError("bad pair", f"{name}: no keypoints")
    sides = (
        ("source", pair.source_points, pair.source_size, pair.source_box),
        ("target", pair.target_points, pair.target_size, pair.target_box),
    )
    for side, points, (h, w), box in sides:
        if not np.isfinite(points).all():
            raise DatasetError("bad pair", f"{name}: a {side} keypoint is not finite")
        outside = (points[:, 0] < 0) | (points[:, 0] > w - 1) | (points[:, 1] < 0)
        outside |= points[:, 1] > h - 1
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            raise DatasetError(
                "keypoint outside image",
                f"{name}: {side} keypoint {pair.keypoint_ids[k]} at "
                f"({points[k, 0]:g}, {points[k, 1]:g}) lies outside the {w} x {h} image",
            )
        if not np.isfinite(box).all() or not (box[0] <= box[2] and box[1] <= box[3]):
            raise DatasetError("bad pair", f"{name}: {side} box {box.tolist()} is inverted")
        if max(box[2] - box[0], box[3] - box[1]) <= 0:
            raise DatasetError(
                "bad pair",
                f"{name}: {side} box {box.tolist()} has no extent (a PCK threshold of 0)",
            )
    return pair
