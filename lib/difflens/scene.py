"""Scene: one image with its instance masks, the single data type every dataset yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
    """

    image: np.ndarray
    masks: np.ndarray
    class_names: list[str]
    instance_ids: list[int]
    image_id: str
    source_image: str | None = None
    source: str = "original"
    meta: dict[str, Any] = field(default_factory=dict)

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

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def n_objects(self) -> int:
        return int(self.masks.shape[0])

    def instance_key(self, index: int) -> str:
        """A key naming one physical object across transformed copies and frames."""
        return f"{self.source_image}#{self.instance_ids[index]}"

    def area_fractions(self) -> np.ndarray:
        """Fraction of the image area covered by each instance mask."""
        h, w = self.size
        return self.masks.reshape(self.n_objects, -1).sum(1) / float(h * w)
