"""Scene: one image with its instance masks, the single data type every dataset yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from difflens.data.keypoints import InstanceKeypoints

PIXEL_META_KEYS: tuple[str, ...] = ("layout", "amodal_boxes", "visible_fraction", "truncated")
"""``Scene.meta`` entries that describe the scene's own pixels (the toy world writes them);
a transformed copy cannot keep them true, so :mod:`difflens.data.transforms` leaves them out."""


@dataclass
class Scene:
    """An RGB image and its object instances.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB array.
        masks: ``(K, H, W)`` bool array, one visible-pixel mask per instance.
        class_names: the class of each instance (length ``K``).
        instance_ids: an id per instance, unique within the image and persistent across
            the frames of a video or the transformed copies of an image.
        image_id: a name unique within the dataset (e.g. ``2007_000032`` or
            ``dancing/00010``).
        source_image: the picture this scene derives from: a transformed copy shares it
            with its original, the frames of a video share the sequence name. Together
            with ``instance_ids`` it names a physical object (``instance_key``), and it is
            the unit that image-level bootstraps resample.
        source: ``"original"``, a transform name (``"hflip"``) or a frame offset tag.
        meta: free-form extras (dataset, split, file path, frame index, ...).
        keypoints: optional named parts of each instance
            (:class:`~difflens.data.keypoints.InstanceKeypoints`, or ``None`` for an
            instance without them); ``None`` when the dataset has no keypoints.
        boxes: optional ``(K, 4)`` float32 ``x1, y1, x2, y2`` box of each instance.
    """

    image: np.ndarray
    masks: np.ndarray
    class_names: list[str]
    instance_ids: list[int]
    image_id: str
    source_image: str | None = None
    source: str = "original"
    meta: dict[str, Any] = field(default_factory=dict)
    keypoints: list[InstanceKeypoints | None] | None = None
    boxes: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image)
        self.masks = np.asarray(self.masks, dtype=bool)
        if self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(
                f"Scene {self.image_id!r}: image must be (H, W, 3) RGB, got shape {self.image.shape}"
            )
        if self.image.dtype != np.uint8:
            raise ValueError(
                f"Scene {self.image_id!r}: image must be uint8, got {self.image.dtype}"
            )
        if self.masks.ndim == 2:
            self.masks = self.masks[None]
        if self.masks.shape[0] == 0:
            self.masks = np.zeros((0, *self.image.shape[:2]), dtype=bool)
        if self.masks.shape[1:] != self.image.shape[:2]:
            raise ValueError(
                f"Scene {self.image_id!r}: masks are {self.masks.shape[1:]} but the image is "
                f"{self.image.shape[:2]}"
            )
        k = self.masks.shape[0]
        if len(self.class_names) != k or len(self.instance_ids) != k:
            raise ValueError(
                f"Scene {self.image_id!r}: {k} masks but {len(self.class_names)} class names and "
                f"{len(self.instance_ids)} instance ids"
            )
        if len(set(self.instance_ids)) != k:
            raise ValueError(f"Scene {self.image_id!r}: instance ids repeat: {self.instance_ids}")
        self.class_names = [str(c) for c in self.class_names]
        self.instance_ids = [int(i) for i in self.instance_ids]
        if self.source_image is None:
            self.source_image = self.image_id
        if self.keypoints is not None and len(self.keypoints) != k:
            raise ValueError(
                f"Scene {self.image_id!r}: {k} masks but keypoints for {len(self.keypoints)}"
            )
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
            if len(self.boxes) != k:
                raise ValueError(f"Scene {self.image_id!r}: {k} masks but {len(self.boxes)} boxes")

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def n_objects(self) -> int:
        """The number of instances ``K``."""
        return int(self.masks.shape[0])

    def instance_key(self, index: int) -> str:
        """A key naming one physical object across transformed copies and frames.

        Args:
            index: the instance's position ``0..K-1`` in this scene.

        Returns:
            ``"<source_image>#<instance id>"``, e.g. ``"dancing#2"``.
        """
        return f"{self.source_image}#{self.instance_ids[index]}"

    def area_fractions(self) -> np.ndarray:
        """Fraction of the image area covered by each instance mask.

        Returns:
            ``(K,)`` float64 in [0, 1]: mask pixels over ``H * W``.
        """
        h, w = self.size
        return self.masks.reshape(self.n_objects, -1).sum(1) / float(h * w)
