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

from difflens.report import SkipLog
from difflens.scene import Scene

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
    """Resize ``(K, H, W)`` masks to ``(K, h, w)`` weights in [0, 1]."""
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
    """Weighted mean of a ``(C, h, w)`` map under each of ``(K, h, w)`` weights.

    Returns ``(K, C)`` prototypes and a ``(K,)`` bool tensor, False where a weight map is
    all zero (that row of the prototypes is zero and must not be used).
    """
    f = feature_map.reshape(feature_map.shape[0], -1).float()  # C x hw
    w = weights.reshape(weights.shape[0], -1).float()  # K x hw
    total = w.sum(1)
    valid = total > 0
    protos = (w @ f.T) / total.clamp_min(1e-12)[:, None]
    return protos, valid


@dataclass
class PrototypeTable:
    """Prototypes of many objects: ``features[i]`` belongs to ``meta.iloc[i]``."""

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
        return int(self.features.shape[1])

    def subset(self, mask) -> PrototypeTable:
        index = np.flatnonzero(np.asarray(mask))
        return PrototypeTable(
            self.meta.iloc[index], self.features[index], self.skipped, dict(self.info)
        )

    @staticmethod
    def concat(tables: Sequence[PrototypeTable]) -> PrototypeTable:
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
    """Prototypes of every object of ``scene`` from its ``(C, h, w)`` feature map."""
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
