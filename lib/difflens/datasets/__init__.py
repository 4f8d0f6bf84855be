"""Datasets: each yields :class:`difflens.scene.Scene` objects.

``load(name, root, split=None, ids=None, **options)`` is the one entry point:

- ``voc``: Pascal-VOC 2012 (:class:`VOCDataset`), ``coco``: COCO 2017 (:class:`COCODataset`),
  ``davis``: DAVIS 2017 frames (:class:`DAVISDataset`);
- ``toyworld``: procedural toy scenes (:class:`ToyWorld`; ``root`` is ignored);
  ``toyvideos``: toy videos (:class:`ToyVideos`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from difflens.datasets.base import SceneDataset
from difflens.datasets.coco import COCODataset
from difflens.datasets.davis import PAPER_DAVIS_CLASSES, PAPER_DAVIS_SEQUENCES, DAVISDataset
from difflens.datasets.readers import DatasetError
from difflens.datasets.toyworld import TOY_CLASSES, ToyVideos, ToyWorld, make_toy_scene, toy_video
from difflens.datasets.voc import VOCDataset
from difflens.datasets.vocabulary import COCO_TO_VOC, DATASET_TAGS, VOC_CLASSES

_LOADERS = {"voc": VOCDataset, "coco": COCODataset, "davis": DAVISDataset}
_ALIASES = {
    "pascal": "voc",
    "voc2012": "voc",
    "coco2017": "coco",
    "davis2017": "davis",
    "toy": "toyworld",
    "toyvideo": "toyvideos",
}
DATASET_NAMES: tuple[str, ...] = ("voc", "coco", "davis", "toyworld", "toyvideos")


def canonical_name(name: str) -> str:
    """``voc`` from ``voc``, ``pascal`` or ``VOC2012`` (likewise the others)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    return key


def load(
    name: str,
    root: str | Path | None = None,
    split: str | None = None,
    ids: Iterable[str] | None = None,
    **options,
) -> SceneDataset | ToyWorld | ToyVideos:
    """The dataset ``name`` as an iterable of :class:`Scene` with ``len()``.

    Args:
        name: ``voc``, ``coco``, ``davis``, ``toyworld`` or ``toyvideos`` (``pascal`` is
            accepted for ``voc``).
        root: the dataset folder (see each loader); ignored by the toy datasets.
        split: the split to read (``train``/``val``/``trainval`` for VOC and DAVIS,
            ``val2017``/``train2017`` for COCO).
        ids: image ids, file names or DAVIS sequence names to read instead of a whole split.
        options: passed to the loader, e.g. ``include_crowd``, ``non_voc`` (COCO),
            ``classes``, ``semantics`` (DAVIS), ``n_images``, ``size``, ``seed`` (toy).

    On-disk datasets skip unreadable items with a logged reason and count them in
    ``dataset.skipped`` (``dataset.skipped.summary()``).
    """
    key = canonical_name(name)
    if key in ("toyworld", "toyvideos"):
        if split is not None or ids is not None:
            raise ValueError(
                f"{key} has no splits or ids; choose its images with n_images/n_videos and seed"
            )
        return ToyWorld(**options) if key == "toyworld" else ToyVideos(**options)
    if root is None:
        raise ValueError(f"load({key!r}) needs the dataset's root folder")
    return _LOADERS[key](root, split=split, ids=ids, **options)


__all__ = [
    "COCO_TO_VOC",
    "DATASET_NAMES",
    "DATASET_TAGS",
    "PAPER_DAVIS_CLASSES",
    "PAPER_DAVIS_SEQUENCES",
    "TOY_CLASSES",
    "VOC_CLASSES",
    "COCODataset",
    "DAVISDataset",
    "DatasetError",
    "SceneDataset",
    "ToyVideos",
    "ToyWorld",
    "VOCDataset",
    "canonical_name",
    "load",
    "make_toy_scene",
    "toy_video",
]
