"""Prototypes: one feature vector per object, the mean of its feature map under its mask.

Masks are resized from the image's size to the feature map's, as the paper does. Two
readings of "the mask scaled to the resolution of the feature maps" are offered:

- ``"nearest"`` (default, the paper's figures): nearest-neighbour resizing (pixel centres),
  a binary mask; the prototype is the plain mean of the cells the mask keeps.
- ``"area"``: each cell weighted by the fraction of it the object covers (adaptive average
  pooling of the mask); small objects keep a prototype where ``"nearest"`` loses them.

An object whose resized mask is empty has no prototype; callers count it as a skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from difflens.core.skips import SkipLog
from difflens.data.scene import Scene

MASK_MODES = ("nearest", "area")
META_COLUMNS = (
    "object_key",
    "image_id",
    "source_image",
    "instance_id",
    "instance_key",
    "class_name",
    "source",
    "area_fraction",
)


def resize_masks(
    masks: np.ndarray | torch.Tensor, size: tuple[int, int], mode: str = "nearest"
) -> torch.Tensor:
    """Resize instance masks to a feature map's size, as weights in [0, 1].

    Args:
        masks: ``(K, H, W)`` bool or 0/1 masks at the image's size.
        size: ``(h, w)`` of the feature map.
        mode: ``"nearest"`` (``nearest-exact``, pixel centres; binary) or ``"area"``
            (adaptive average pooling: the fraction of each cell the object covers).

    Returns:
        ``(K, h, w)`` float32 CPU weights.

    Raises:
        ValueError: ``mode`` is not one of :data:`MASK_MODES`.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
    m = torch.as_tensor(np.asarray(masks), dtype=torch.float32)[:, None]
    if m.shape[0] == 0:
        return torch.zeros((0, *size))
    if mode == "nearest":
        out = F.interpolate(m, size=size, mode="nearest-exact")
    else:
        out = F.adaptive_avg_pool2d(m, size)
    return out[:, 0]


def masked_means(
    feature_map: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of a feature map under each of several weight maps.

    Args:
        feature_map: ``(C, h, w)`` features.
        weights: ``(K, h, w)`` weights, from :func:`resize_masks`.

    Returns:
        ``(K, C)`` float32 prototypes and a ``(K,)`` bool tensor, False where a weight map
        is all zero (that row of the prototypes is zero and must not be used).
    """
    f = feature_map.reshape(feature_map.shape[0], -1).float()  # C x hw
    w = weights.reshape(weights.shape[0], -1).float()  # K x hw
    total = w.sum(1)
    valid = total > 0
    protos = (w @ f.T) / total.clamp_min(1e-12)[:, None]
    return protos, valid


@dataclass
class PrototypeTable:
    """Prototypes of many objects: ``features[i]`` belongs to ``meta.iloc[i]``.

    Attributes:
        meta: one row per object with the columns of :data:`META_COLUMNS` (index reset).
        features: ``(N, D)`` float32 prototypes.
        skipped: the objects and images left out, with reasons.
        info: how the table was made (layers, timestep, model, counts, ...).

    Raises:
        ValueError: ``features`` is not ``(N, D)`` with one row per row of ``meta``.
    """

    meta: pd.DataFrame
    features: np.ndarray
    skipped: SkipLog = field(default_factory=SkipLog)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.meta = self.meta.reset_index(drop=True)
        self.features = np.asarray(self.features, dtype=np.float32)
        if self.features.ndim != 2 or len(self.features) != len(self.meta):
            raise ValueError(
                f"features must be (N, D) with N = {len(self.meta)} rows of meta, got {self.features.shape}"
            )

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def dim(self) -> int:
        """D, the length of one prototype (the channels of its layers together)."""
        return int(self.features.shape[1])

    def subset(self, mask: np.ndarray | Sequence[bool]) -> PrototypeTable:
        """The rows where ``mask`` is true.

        Args:
            mask: ``(N,)`` booleans, one per row.

        Returns:
            A new table with those rows; the skip log and info are kept.
        """
        index = np.flatnonzero(np.asarray(mask))
        return PrototypeTable(
            self.meta.iloc[index], self.features[index], self.skipped, dict(self.info)
        )

    @staticmethod
    def concat(tables: Sequence[PrototypeTable]) -> PrototypeTable:
        """Stack tables row-wise.

        Args:
            tables: tables of the same prototype length.

        Returns:
            One table with every row, the skip logs joined and the first table's info.
        """
        skipped = SkipLog(verbose=False)
        for table in tables:
            skipped.extend(table.skipped)
        return PrototypeTable(
            pd.concat([t.meta for t in tables], ignore_index=True),
            np.concatenate([t.features for t in tables])
            if tables
            else np.zeros((0, 0), np.float32),
            skipped,
            dict(tables[0].info) if tables else {},
        )


def scene_prototypes(
    feature_map: torch.Tensor,
    scene: Scene,
    mask_mode: str = "nearest",
    skipped: SkipLog | None = None,
) -> PrototypeTable:
    """Prototypes of every object of ``scene``: its feature map averaged under each mask.

    This is step 2 of the paper's method: each instance mask, resized to the map, selects
    the cells whose features are averaged into that object's prototype. An object whose
    resized mask is empty is skipped and recorded in ``skipped``.

    Args:
        feature_map: ``(C, h, w)`` features of the scene's image.
        scene: the scene, with its instance masks at the image's size.
        mask_mode: ``"nearest"`` or ``"area"`` (see :func:`resize_masks`).
        skipped: the skip log to record vanished objects in (default: a new one).

    Returns:
        The scene's :class:`PrototypeTable`, one row per kept object.
    """
    skipped = SkipLog() if skipped is None else skipped
    weights = resize_masks(scene.masks, tuple(feature_map.shape[-2:]), mask_mode)
    protos, valid = masked_means(feature_map, weights)
    fractions = scene.area_fractions()
    rows, keep = [], []
    for k in range(scene.n_objects):
        name = f"{scene.image_id}:{scene.instance_ids[k]} ({scene.class_names[k]})"
        if not bool(valid[k]):
            skipped.skip(
                name,
                f"mask vanishes at {tuple(feature_map.shape[-2:])}: object covers "
                f"{100 * fractions[k]:.2f}% of the image",
            )
            continue
        keep.append(k)
        rows.append(
            {
                "object_key": f"{scene.image_id}:{scene.instance_ids[k]}",
                "image_id": scene.image_id,
                "source_image": scene.source_image,
                "instance_id": scene.instance_ids[k],
                "instance_key": scene.instance_key(k),
                "class_name": scene.class_names[k],
                "source": scene.source,
                "area_fraction": float(fractions[k]),
            }
        )
    meta = pd.DataFrame(rows, columns=list(META_COLUMNS))
    features = protos[keep].numpy() if keep else np.zeros((0, feature_map.shape[0]), np.float32)
    return PrototypeTable(meta, features, skipped)
