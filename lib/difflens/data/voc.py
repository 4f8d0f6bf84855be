"""Pascal-VOC 2012 instance segmentation from the official layout, one scene per image.

``<root>/JPEGImages/<id>.jpg``, ``<root>/SegmentationObject/<id>.png`` (instance index per
pixel), ``<root>/SegmentationClass/<id>.png`` (class label per pixel) and
``<root>/ImageSets/Segmentation/{train,val,trainval}.txt``. In both PNGs 0 is background
and 255 is void (object boundaries, uncertain pixels): a void pixel belongs to no object.
An instance's class is the most frequent VOC class among its pixels in SegmentationClass;
the two files agree in the official data, and any disagreement is logged and kept in
``scene.meta["mixed_class_pixels"]``.

Bad input, item by item (each a named, counted entry of ``dataset.skipped``; the other
images are still read): a missing or undecodable file, or a PNG whose size differs from the
JPEG's, skips the image; an instance with no class pixels under it (only background or
void in SegmentationClass) or only labels outside 1..20 skips that object.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.data.base import SceneDataset, build_scene
from difflens.data.images import read_image
from difflens.data.readers import read_id_list, read_label_png
from difflens.data.scene import Scene
from difflens.data.vocabulary import VOC_BACKGROUND, VOC_CLASSES, VOC_VOID, voc_class_of_label

logger = logging.getLogger("difflens")

VOC_SPLITS: tuple[str, ...] = ("train", "val", "trainval")
"""The segmentation splits listed in ``ImageSets/Segmentation``."""


def find_voc_root(root: str | Path) -> Path:
    """The ``VOC2012`` folder: ``root`` itself, ``root/VOC2012`` or ``root/VOCdevkit/VOC2012``.

    Args:
        root: a VOC2012 folder or a folder above it.

    Returns:
        The first candidate holding ``JPEGImages/`` and ``SegmentationObject/``.

    Raises:
        FileNotFoundError: no candidate does; the message says how to download VOC.
    """
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
    """The image id of a VOC file name.

    Args:
        name: ``2007_000032``, ``2007_000032.jpg`` or a path to it.

    Returns:
        ``"2007_000032"``.
    """
    return Path(str(name).strip()).stem


def voc_splits(root: Path) -> dict[str, str]:
    """The segmentation split of each listed image.

    Args:
        root: the ``VOC2012`` folder.

    Returns:
        Image id -> ``"train"`` or ``"val"``, from ``ImageSets/Segmentation/{train,val}.txt``
        (empty when the lists are absent).
    """
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

    A ``root`` without a VOC tree, or a split whose list file is absent, raises
    ``FileNotFoundError``.

    Raises:
        ValueError: ``split`` is not one of :data:`VOC_SPLITS`.
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
        """The image and the two annotation files of an image.

        Args:
            image_id: ``2007_000032``.

        Returns:
            ``{"image": JPEGImages/<id>.jpg, "objects": SegmentationObject/<id>.png,
            "classes": SegmentationClass/<id>.png}`` under the root.
        """
        return {
            "image": self.root / "JPEGImages" / f"{image_id}.jpg",
            "objects": self.root / "SegmentationObject" / f"{image_id}.png",
            "classes": self.root / "SegmentationClass" / f"{image_id}.png",
        }

    def read_item(self, image_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The image and its two label maps, checked to be present and of one size.

        Args:
            image_id: ``2007_000032``.

        Returns:
            ``(image, objects, classes)``: ``(H, W, 3)`` uint8 RGB and two ``(H, W)`` uint8
            label maps (instance index and class label per pixel).

        Raises:
            DatasetError: ``missing file`` (image), ``not annotated`` (a PNG missing),
                ``corrupt image`` (a file that does not decode) or ``size mismatch`` (a PNG
                whose size differs from the JPEG's).
        """
        paths = self.paths(image_id)
        if not paths["image"].is_file():
            raise DatasetError("missing file", f"image {paths['image']} does not exist")
        for key in ("objects", "classes"):
            if not paths[key].is_file():
                raise DatasetError(
                    "not annotated", f"{paths[key]} does not exist (no segmentation for it)"
                )
        image = read_image(paths["image"], colour="convert")
        objects = read_label_png(paths["objects"])
        classes = read_label_png(paths["classes"])
        for key, labels in (("objects", objects), ("classes", classes)):
            if labels.shape != image.shape[:2]:
                raise DatasetError(
                    "size mismatch",
                    f"{paths[key]} is {labels.shape[1]}x{labels.shape[0]} but "
                    f"{paths['image']} is {image.shape[1]}x{image.shape[0]} (width x height)",
                )
        return image, objects, classes

    def instance_class(self, image_id: str, value: int, class_counts: np.ndarray) -> str | None:
        """The class of one instance from the class labels under it, or ``None``.

        The most frequent VOC class (1..20) among the instance's pixels; a disagreement
        between the two PNGs is logged. ``None`` (recorded in ``self.skipped``) when the
        instance has no class pixels (only background/void under it) or only labels
        outside 1..20.

        Args:
            image_id: the image, for messages.
            value: the instance's value in SegmentationObject.
            class_counts: ``(256,)`` count of each SegmentationClass label under it.

        Returns:
            The VOC class name, or ``None`` when the instance is skipped.
        """
        paths = self.paths(image_id)
        object_counts = class_counts.copy()
        object_counts[[VOC_BACKGROUND, VOC_VOID]] = 0
        label = int(object_counts.argmax())
        found = {int(v): int(c) for v, c in enumerate(class_counts) if c}
        if object_counts[label] == 0:
            self.skipped.skip(
                f"{image_id}#{value}",
                f"no class pixels: object {value} of {paths['objects']} lies on background/void "
                f"only in {paths['classes']} (labels {found})",
            )
            return None
        name = voc_class_of_label(label)
        if name is None:
            self.skipped.skip(
                f"{image_id}#{value}",
                f"unknown class: object {value} of {paths['objects']} has class labels "
                f"{found} in {paths['classes']} (VOC classes are 1..20)",
            )
        return name

    def load_scene(self, image_id: str) -> Scene:
        """Read one image and its instances.

        Args:
            image_id: ``2007_000032``, ``2007_000032.jpg`` or a path to it.

        Returns:
            The scene, one mask per instance value of SegmentationObject (void pixels
            belong to none); instances without a VOC class are left out and recorded.

        Raises:
            DatasetError: as :meth:`read_item`, or ``empty mask`` when SegmentationObject
                holds only background and void.
        """
        image_id = voc_id(image_id)
        paths = self.paths(image_id)
        image, objects, classes = self.read_item(image_id)
        values = [int(v) for v in np.unique(objects) if v not in (VOC_BACKGROUND, VOC_VOID)]
        if not values:
            raise DatasetError(
                "empty mask", f"{paths['objects']} has no object pixels (only background/void)"
            )
        masks, names, ids, mixed = [], [], [], {}
        for value in values:
            mask = objects == value
            counts = np.bincount(classes[mask], minlength=256)
            name = self.instance_class(image_id, value, counts)
            if name is None:
                continue
            if counts[VOC_CLASSES.index(name) + 1] != counts.sum():
                mixed[value] = {
                    (voc_class_of_label(v) or str(v)): int(c) for v, c in enumerate(counts) if c
                }
                logger.warning(
                    "%s: object %d has pixels of several classes in %s: %s; using %s",
                    image_id,
                    value,
                    paths["classes"],
                    mixed[value],
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
        return build_scene(
            f"{image_id} ({paths['objects']})",
            image=image,
            masks=np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool),
            class_names=names,
            instance_ids=ids,
            image_id=image_id,
            meta=meta,
        )
