"""Pascal-VOC 2012 instance segmentation from the official layout.

``<root>/JPEGImages/<id>.jpg``, ``<root>/SegmentationObject/<id>.png`` (instance index per
pixel), ``<root>/SegmentationClass/<id>.png`` (class label per pixel) and
``<root>/ImageSets/Segmentation/{train,val,trainval}.txt``. In both PNGs 0 is background
and 255 is void (object boundaries, uncertain pixels): a void pixel belongs to no object.
An instance's class is the most frequent VOC class among its pixels in SegmentationClass;
the two files agree in the official data, and any disagreement is logged and kept in
``scene.meta["mixed_class_pixels"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from difflens.datasets.base import SceneDataset
from difflens.datasets.readers import DatasetError, read_id_list, read_label_png, read_rgb
from difflens.datasets.vocabulary import VOC_BACKGROUND, VOC_VOID, voc_class_of_label
from difflens.report import SkipLog
from difflens.scene import Scene

logger = logging.getLogger("difflens")

VOC_SPLITS: tuple[str, ...] = ("train", "val", "trainval")


def find_voc_root(root: str | Path) -> Path:
    """The ``VOC2012`` folder: ``root`` itself, ``root/VOC2012`` or ``root/VOCdevkit/VOC2012``."""
    root = Path(root).expanduser()
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "SegmentationObject").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no Pascal-VOC 2012 tree at {root}: expected JPEGImages/ and SegmentationObject/ in it "
        "or in VOC2012/ or VOCdevkit/VOC2012/ below it "
        "(python -m difflens.data download voc --root DIR fetches it)"
    )


def voc_id(name: str | Path) -> str:
    """``2007_000032`` from ``2007_000032``, ``2007_000032.jpg`` or a path to it."""
    return Path(str(name).strip()).stem


def voc_splits(root: Path) -> dict[str, str]:
    """Image id -> ``train`` or ``val`` from ``ImageSets/Segmentation``."""
    split_of: dict[str, str] = {}
    for split in ("train", "val"):
        path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if path.is_file():
            for image_id in read_id_list(path):
                split_of.setdefault(image_id, split)
    return split_of


class VOCDataset(SceneDataset):
    """Pascal-VOC 2012 scenes, one instance mask per object.

    Args:
        root: the ``VOC2012`` folder (or a folder holding ``VOCdevkit/VOC2012``).
        split: ``train``, ``val`` or ``trainval`` (default when ``ids`` is not given).
        ids: image ids (``2007_000032`` or ``2007_000032.jpg``); with ``split`` too, ids
            outside the split are skipped and counted.
        skipped: a :class:`SkipLog` to record skips in (a new one by default).
        skip_empty: skip (and count) scenes left without objects.
    """

    name = "voc"

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        ids: Iterable[str] | None = None,
        skipped: SkipLog | None = None,
        skip_empty: bool = True,
    ):
        super().__init__(skipped, skip_empty)
        self.root = find_voc_root(root)
        if split is not None and split not in VOC_SPLITS:
            raise ValueError(f"unknown VOC split {split!r}; choose one of {VOC_SPLITS}")
        self.split_of = voc_splits(self.root)
        if ids is None:
            split = split or "trainval"
            self.ids = read_id_list(self.root / "ImageSets" / "Segmentation" / f"{split}.txt")
        else:
            wanted = [voc_id(i) for i in ids]
            if split is not None:
                members = set(
                    read_id_list(self.root / "ImageSets" / "Segmentation" / f"{split}.txt")
                )
                for image_id in wanted:
                    if image_id not in members:
                        self.skipped.skip(
                            image_id, f"not in split: {image_id} is not listed in {split}.txt"
                        )
                wanted = [i for i in wanted if i in members]
            self.ids = wanted
        self.split = split

    def paths(self, image_id: str) -> dict[str, Path]:
        """The image and the two annotation files of ``image_id``."""
        return {
            "image": self.root / "JPEGImages" / f"{image_id}.jpg",
            "objects": self.root / "SegmentationObject" / f"{image_id}.png",
            "classes": self.root / "SegmentationClass" / f"{image_id}.png",
        }

    def load_scene(self, image_id: str) -> Scene:
        image_id = voc_id(image_id)
        paths = self.paths(image_id)
        if not paths["image"].is_file():
            raise DatasetError("missing file", f"image {paths['image']} does not exist")
        for key in ("objects", "classes"):
            if not paths[key].is_file():
                raise DatasetError(
                    "not annotated", f"{paths[key]} does not exist (no segmentation for it)"
                )
        image = read_rgb(paths["image"])
        objects = read_label_png(paths["objects"])
        classes = read_label_png(paths["classes"])
        for key, labels in (("objects", objects), ("classes", classes)):
            if labels.shape != image.shape[:2]:
                raise DatasetError(
                    "size mismatch",
                    f"{paths[key]} is {labels.shape[1]}x{labels.shape[0]} but "
                    f"{paths['image']} is {image.shape[1]}x{image.shape[0]} (width x height)",
                )
        values = [int(v) for v in np.unique(objects) if v not in (VOC_BACKGROUND, VOC_VOID)]
        if not values:
            raise DatasetError(
                "empty mask", f"{paths['objects']} has no object pixels (only background/void)"
            )
        masks, names, ids, mixed = [], [], [], {}
        for value in values:
            mask = objects == value
            counts = np.bincount(classes[mask], minlength=256)
            object_counts = counts.copy()
            object_counts[[VOC_BACKGROUND, VOC_VOID]] = 0
            label = int(object_counts.argmax())
            name = voc_class_of_label(label) if object_counts[label] > 0 else None
            if name is None:
                found = {int(v): int(c) for v, c in enumerate(counts) if c}
                self.skipped.skip(
                    f"{image_id}#{value}",
                    f"unknown class: object {value} of {paths['objects']} has class labels "
                    f"{found} in {paths['classes']} (VOC classes are 1..20)",
                )
                continue
            if counts[label] != counts.sum():
                found = {
                    (voc_class_of_label(v) or str(v)): int(c) for v, c in enumerate(counts) if c
                }
                mixed[value] = found
                logger.warning(
                    "%s: object %d has pixels of several classes in %s: %s; using %s",
                    image_id,
                    value,
                    paths["classes"],
                    found,
                    name,
                )
            masks.append(mask)
            names.append(name)
            ids.append(value)
        meta = {
            "dataset": "voc",
            "split": self.split_of.get(image_id),
            "file": f"{image_id}.jpg",
            "image_path": str(paths["image"]),
            "annotation": str(paths["objects"]),
        }
        if mixed:
            meta["mixed_class_pixels"] = mixed
        h, w = image.shape[:2]
        return Scene(
            image=image,
            masks=np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool),
            class_names=names,
            instance_ids=ids,
            image_id=image_id,
            meta=meta,
        )
