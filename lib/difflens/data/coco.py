"""COCO 2017 instance segmentation from the official layout, one scene per image.

``<root>/{val2017,train2017}/<12-digit id>.jpg`` and
``<root>/annotations/instances_{val2017,train2017}.json`` (the format of cocodataset.org,
"Data format"). Each annotation file is indexed once; each annotation's segmentation is
checked and decoded by :mod:`difflens.data.coco_segmentation` (pycocotools underneath).
Masks are the annotated ones and may overlap where COCO's annotations do.

Defaults (both switchable): crowd annotations (``iscrowd=1``, one region over a group of
objects) are excluded; objects whose class is not one of the 20 VOC classes are dropped
(``non_voc="drop"``; ``"keep"`` keeps them under their COCO name). Class names are
mapped onto VOC's vocabulary (airplane -> aeroplane, ...; see ``vocabulary.py``).

Bad input, item by item (each a named, counted entry of ``dataset.skipped``; the other
images are still read):

- an annotation whose segmentation is missing (bbox-only), of an unknown type, an RLE whose
  runs do not cover the image, a polygon with no drawable part, or a mask of another
  size: that object is skipped; a polygon part that cannot be drawn is dropped and the
  object kept (counted in ``dataset.repaired``);
- an annotation whose ``image_id`` names no image, or without one: skipped when the file is
  indexed (``orphan annotation``);
- an image record listed twice, or without a usable height and width: that image is
  skipped.

Annotation ids that repeat within an image, or are not integers (COCO exports where every
id is 0), are re-keyed rather than skipped: the annotations themselves are intact, and the
id only tells the image's objects apart. All objects of such an image are numbered 1, 2,
... in the order the file lists the image's annotations (crowd and non-VOC ones counted,
so the numbers do not depend on the options); the original ids stay in
``meta["annotation_ids"]`` and the image is counted in ``dataset.repaired``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.data.base import SceneDataset, build_scene
from difflens.data.coco_segmentation import decode_segmentation
from difflens.data.images import read_image
from difflens.data.scene import Scene
from difflens.data.vocabulary import voc_class_of_coco

logger = logging.getLogger("difflens")

COCO_SPLITS: tuple[str, ...] = ("val2017", "train2017")
"""The search order when an image's split is not given."""
NON_VOC_CHOICES: tuple[str, ...] = ("drop", "keep")
"""What to do with objects outside the 20 VOC classes."""


def find_coco_root(root: str | Path) -> Path:
    """The COCO folder: ``root`` or ``root/coco``, whichever holds ``annotations/`` or images.

    Args:
        root: a COCO folder or the folder above it.

    Returns:
        The folder holding ``annotations/`` or ``val2017/``/``train2017/``.

    Raises:
        FileNotFoundError: neither ``root`` nor ``root/coco`` looks like a COCO tree; the
            message says how to download one.
    """
    root = Path(root).expanduser()
    for candidate in (root, root / "coco"):
        if (candidate / "annotations").is_dir() or any(
            (candidate / split).is_dir() for split in COCO_SPLITS
        ):
            return candidate
    raise FileNotFoundError(
        f"no COCO 2017 tree at {root}: expected annotations/ and val2017/ or train2017/ in it "
        "or in coco/ below it (python -m difflens.data download coco --root DIR fetches it)"
    )


def coco_split(split: str) -> str:
    """The official split name.

    Args:
        split: ``val``, ``val2017``, ``train`` or ``train2017``.

    Returns:
        ``val2017`` or ``train2017``.

    Raises:
        ValueError: another name.
    """
    name = {"val": "val2017", "train": "train2017"}.get(split, split)
    if name not in COCO_SPLITS:
        raise ValueError(f"unknown COCO split {split!r}; choose one of {COCO_SPLITS}")
    return name


def coco_id(name: str | int | Path) -> str:
    """The 12-digit file stem of a COCO image.

    Args:
        name: ``286033``, ``"000000286033"``, ``"000000286033.jpg"`` or a path to it.

    Returns:
        ``"000000286033"``; a non-numeric stem is returned as it is.
    """
    if isinstance(name, int | np.integer):
        return f"{int(name):012d}"
    stem = Path(str(name).strip()).stem
    return stem.zfill(12) if stem.isascii() and stem.isdigit() else stem


def _as_id(value) -> int | None:
    """An integer id, or ``None`` for anything else (``bool``, float, text, missing)."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    return None


@dataclass
class COCOIndex:
    """One ``instances_<split>.json``, indexed by image.

    Attributes:
        path: the annotation file.
        images: image id -> its image record.
        annotations: image id -> its annotation records, in file order.
        categories: category id -> its category record.
        bad_images: image id -> why its record cannot be used (listed twice, ...).
    """

    path: Path
    images: dict[int, dict] = field(default_factory=dict)
    annotations: dict[int, list[dict]] = field(default_factory=dict)
    categories: dict[int, dict] = field(default_factory=dict)
    bad_images: dict[int, str] = field(default_factory=dict)


def _read_json(path: Path) -> dict:
    """The annotation file's top-level object, or a ``corrupt annotation`` error."""
    if not path.is_file():
        raise DatasetError("not annotated", f"annotation file {path} does not exist")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError("corrupt annotation", f"{path} is not readable JSON ({err})") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise DatasetError(
            "corrupt annotation", f"{path}: no 'images' list; not a COCO instances file"
        )
    for key in ("annotations", "categories"):
        if not isinstance(doc.get(key, []), list):
            raise DatasetError("corrupt annotation", f"{path}: '{key}' is not a list")
    return doc


def read_coco_index(path: Path, skipped: SkipLog) -> COCOIndex:
    """Index a COCO instances file, recording the records that belong to no image.

    A missing file is a ``not annotated`` :class:`DatasetError`, one that is not a JSON
    object with an ``images`` list a ``corrupt annotation`` one.

    Args:
        path: ``annotations/instances_<split>.json``.
        skipped: where annotations without a (known) image are recorded, as
            ``orphan annotation``, and image records without an integer id, as
            ``corrupt annotation``.

    Returns:
        The index.
    """
    doc = _read_json(path)
    index = COCOIndex(path)
    seen = Counter(_as_id(r.get("id")) for r in doc["images"] if isinstance(r, dict))
    for position, record in enumerate(doc["images"]):
        image_id = _as_id(record.get("id")) if isinstance(record, dict) else None
        if image_id is None:
            skipped.skip(
                f"{path.name}:images[{position}]",
                f"corrupt annotation: image record {str(record)[:80]} in {path} has no integer id",
            )
            continue
        index.images.setdefault(image_id, record)
        if seen[image_id] > 1:
            index.bad_images[image_id] = f"image id {image_id} is listed {seen[image_id]} times"
    for record in doc.get("categories") or []:
        if isinstance(record, dict) and _as_id(record.get("id")) is not None:
            index.categories[_as_id(record["id"])] = record
    for position, ann in enumerate(doc.get("annotations") or []):
        image_id = _as_id(ann.get("image_id")) if isinstance(ann, dict) else None
        if image_id is None or image_id not in index.images:
            ann_id = ann.get("id") if isinstance(ann, dict) else None
            given = ann.get("image_id") if isinstance(ann, dict) else None
            target = (
                f"image_id {given!r}, not an integer id"
                if image_id is None
                else f"image_id {image_id}, not an image"
            )
            skipped.skip(
                f"{path.name}:annotations[{position}]",
                f"orphan annotation: annotation {ann_id} in {path} has {target} of the file",
            )
            continue
        index.annotations.setdefault(image_id, []).append(ann)
    return index


@dataclass
class _Objects:
    """The objects of one image, gathered annotation by annotation."""

    masks: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    annotation_ids: list = field(default_factory=list)
    coco_names: list[str] = field(default_factory=list)
    crowd: list[bool] = field(default_factory=list)
    n_crowd: int = 0
    n_non_voc: int = 0


def object_ids(annotations: list[dict]) -> tuple[list[int], str | None]:
    """Instance ids for an image's annotations: the annotation ids, re-keyed when unusable.

    Args:
        annotations: all annotations of one image, in file order.

    Returns:
        ``(ids, problem)``: the annotation ids and ``None`` when they are integers unique
        within the image; else ``1..n`` in file order and what was wrong.
    """
    raw = [ann.get("id") for ann in annotations]
    ids = [_as_id(value) for value in raw]
    if None not in ids and len(set(ids)) == len(ids):
        return ids, None
    repeats = sorted({i for i in ids if i is not None and ids.count(i) > 1})
    odd = [value for value, i in zip(raw, ids) if i is None]
    problem = f"repeated annotation ids {repeats}" if repeats else ""
    if odd:
        problem += ("; " if problem else "") + f"ids that are not integers {odd[:5]}"
    return list(range(1, len(annotations) + 1)), problem


class COCODataset(SceneDataset):
    """COCO 2017 scenes with one mask per (non-crowd, VOC-class) annotation.

    ``instance_ids`` are COCO annotation ids (or, where those repeat within an image, the
    annotations' positions 1..n; see the module docstring).

    Args:
        root: the COCO folder (holding ``annotations/`` and the image folders).
        split: ``val2017``/``val`` or ``train2017``/``train``. Without it, ``ids`` are looked
            up in val2017 then train2017 (by file), and without ids val2017 is read whole.
        ids: image names (``000000286033.jpg``, ``000000286033`` or the integer id).
        include_crowd: keep crowd annotations (default: excluded).
        non_voc: ``"drop"`` (default) objects outside the 20 VOC classes, or ``"keep"``
            them under their COCO class name.
        skipped: a :class:`SkipLog` to record skips in.
        skip_empty: skip (and count) scenes left without objects.

    A ``root`` without a COCO tree raises ``FileNotFoundError``; without ``ids``, a missing
    or corrupt annotation file of the split raises :class:`DatasetError` (with ``ids``, it
    makes each image a counted skip instead).

    Raises:
        ValueError: ``non_voc`` is not a known choice (``split`` likewise, from
            :func:`coco_split`).
    """

    name = "coco"

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        ids: Iterable[str | int] | None = None,
        include_crowd: bool = False,
        non_voc: str = "drop",
        skipped: SkipLog | None = None,
        skip_empty: bool = True,
    ):
        super().__init__(skipped, skip_empty)
        if non_voc not in NON_VOC_CHOICES:
            raise ValueError(f"non_voc must be one of {NON_VOC_CHOICES}, got {non_voc!r}")
        self.root = find_coco_root(root)
        self.include_crowd = include_crowd
        self.non_voc = non_voc
        self._indexes: dict[str, COCOIndex | DatasetError] = {}
        if split is not None:
            self.splits: tuple[str, ...] = (coco_split(split),)
        elif ids is None:
            self.splits = ("val2017",)
        else:
            self.splits = COCO_SPLITS
        if ids is None:
            index = self.index(self.splits[0])
            self.ids = [coco_id(i) for i in sorted(index.images)]
        else:
            self.ids = [coco_id(i) for i in ids]

    def annotation_file(self, split: str) -> Path:
        """The annotation file of a split.

        Args:
            split: ``val2017`` or ``train2017``.

        Returns:
            ``<root>/annotations/instances_<split>.json``.
        """
        return self.root / "annotations" / f"instances_{split}.json"

    def index(self, split: str) -> COCOIndex:
        """The indexed annotation file of ``split`` (read once; a failure is kept too).

        Args:
            split: ``val2017`` or ``train2017``.

        Returns:
            Its :class:`COCOIndex`.

        Raises:
            DatasetError: the file is missing or corrupt (raised again on every call).
        """
        if split not in self._indexes:
            start = time.perf_counter()
            try:
                self._indexes[split] = read_coco_index(self.annotation_file(split), self.skipped)
            except DatasetError as err:
                self._indexes[split] = err
            logger.info(
                "indexed %s in %.1f s", self.annotation_file(split), time.perf_counter() - start
            )
        found = self._indexes[split]
        if isinstance(found, DatasetError):
            raise DatasetError(found.kind, found.detail)
        return found

    def locate(self, image_id: str) -> tuple[str, Path]:
        """Where an image is: the first split whose folder holds its file.

        Args:
            image_id: any form :func:`coco_id` accepts.

        Returns:
            ``(split, image path)``.

        Raises:
            DatasetError: ``missing file`` when no split folder holds it.
        """
        name = f"{coco_id(image_id)}.jpg"
        for split in self.splits:
            path = self.root / split / name
            if path.is_file():
                return split, path
        where = ", ".join(str(self.root / split) for split in self.splits)
        raise DatasetError("missing file", f"{name} is in none of {where}")

    def _image_record(self, image_id: str) -> tuple[str, Path, dict, COCOIndex]:
        split, path = self.locate(image_id)
        index = self.index(split)
        stem = coco_id(image_id)
        numeric = int(stem) if stem.isascii() and stem.isdigit() else None
        if numeric not in index.images:
            raise DatasetError("not annotated", f"{path.name} is not in {index.path}")
        if numeric in index.bad_images:
            raise DatasetError("corrupt annotation", f"{index.path}: {index.bad_images[numeric]}")
        return split, path, index.images[numeric], index

    def annotations(self, image_id: str) -> list[dict]:
        """The raw COCO annotations of an image (crowd ones included), in file order.

        Args:
            image_id: any form :func:`coco_id` accepts.

        Returns:
            The annotation records (dicts as in the JSON file). An image or annotation file
            that cannot be found or read raises :class:`DatasetError`.
        """
        _, _, info, index = self._image_record(image_id)
        return list(index.annotations.get(_as_id(info["id"]), []))

    def image_categories(self, image_id: str, include_crowd: bool | None = None) -> list[str]:
        """COCO class names of an image's annotations.

        Args:
            image_id: any form :func:`coco_id` accepts.
            include_crowd: count crowd annotations; default: the dataset's setting.

        Returns:
            One COCO class name per annotation (``"<category N>"`` for an unknown id). An
            image or annotation file that cannot be found or read raises
            :class:`DatasetError`.
        """
        _, _, info, index = self._image_record(image_id)
        crowd = self.include_crowd if include_crowd is None else include_crowd
        names = []
        for ann in index.annotations.get(_as_id(info["id"]), []):
            if ann.get("iscrowd", 0) and not crowd:
                continue
            cat = index.categories.get(_as_id(ann.get("category_id")))
            names.append(str(cat.get("name")) if cat else f"<category {ann.get('category_id')}>")
        return names

    def load_scene(self, image_id: str) -> Scene:
        """Read one image and the masks of its annotations.

        Args:
            image_id: any form :func:`coco_id` accepts.

        Returns:
            The scene; objects that cannot be used are left out and recorded in
            ``self.skipped`` (``<image id>#<annotation id>``).

        Raises:
            DatasetError: the image file is missing or corrupt, not in the annotation file,
                its record is unusable or its size differs from the record's.
        """
        image_id = coco_id(image_id)
        split, path, info, index = self._image_record(image_id)
        expected = _record_size(info, index.path)
        image = read_image(path, colour="convert")
        if image.shape[:2] != expected:
            raise DatasetError(
                "size mismatch",
                f"{path} is {image.shape[1]}x{image.shape[0]} but {index.path} "
                f"gives {expected[1]}x{expected[0]} (width x height)",
            )
        annotations = index.annotations.get(_as_id(info["id"]), [])
        ids, problem = object_ids(annotations)
        if problem:
            self.repaired.skip(
                image_id,
                f"re-keyed ids: {problem} among the annotations of image {info['id']} in "
                f"{index.path}; its objects are numbered 1..{len(ids)} in file order",
            )
        objects = _Objects()
        for ann, object_id in zip(annotations, ids):
            self._add_object(objects, ann, object_id, image_id, expected, index)
        return self._scene(image_id, image, objects, split, path, info, index, problem)

    def _add_object(
        self,
        objects: _Objects,
        ann: dict,
        object_id: int,
        image_id: str,
        size: tuple[int, int],
        index: COCOIndex,
    ) -> None:
        """Decode one annotation into ``objects``, or record why it is left out."""
        item = f"{image_id}#{object_id}"
        where = f"annotation {ann.get('id')} of {image_id} in {index.path}"
        if ann.get("iscrowd", 0) and not self.include_crowd:
            objects.n_crowd += 1
            return
        cat = index.categories.get(_as_id(ann.get("category_id")))
        if cat is None or not isinstance(cat.get("name"), str):
            self.skipped.skip(
                item,
                f"unknown class: category id {ann.get('category_id')} of {where} is not among "
                "its categories (or has no name)",
            )
            return
        name = voc_class_of_coco(cat["name"])
        if name is None:
            if self.non_voc == "drop":
                objects.n_non_voc += 1
                return
            name = cat["name"]
        try:
            mask, dropped = decode_segmentation(ann.get("segmentation"), size, where)
        except DatasetError as err:
            self.skipped.skip(item, str(err))
            return
        for note in dropped:
            self.repaired.skip(item, f"dropped polygon part: {note}")
        if not mask.any():
            self.skipped.skip(item, f"empty mask: {where} ({cat['name']}) covers no pixel")
            return
        objects.masks.append(mask)
        objects.names.append(name)
        objects.ids.append(object_id)
        objects.annotation_ids.append(ann.get("id"))
        objects.coco_names.append(cat["name"])
        objects.crowd.append(bool(ann.get("iscrowd", 0)))

    def _scene(
        self,
        image_id: str,
        image: np.ndarray,
        objects: _Objects,
        split: str,
        path: Path,
        info: dict,
        index: COCOIndex,
        problem: str | None,
    ) -> Scene:
        """The scene of one image from its gathered objects."""
        h, w = image.shape[:2]
        meta = {
            "dataset": "coco",
            "split": split,
            "file": path.name,
            "image_path": str(path),
            "annotation": str(index.path),
            "coco_id": int(info["id"]),
            "coco_classes": objects.coco_names,
            "annotation_ids": objects.annotation_ids,
            "crowd": objects.crowd,
            "crowd_excluded": objects.n_crowd,
            "non_voc_dropped": objects.n_non_voc,
        }
        if problem:
            meta["rekeyed"] = problem
        return build_scene(
            f"{image_id} ({path})",
            image=image,
            masks=np.stack(objects.masks) if objects.masks else np.zeros((0, h, w), dtype=bool),
            class_names=objects.names,
            instance_ids=objects.ids,
            image_id=image_id,
            meta=meta,
        )


def _record_size(info: dict, path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image record, or a ``corrupt annotation`` error."""
    height, width = _as_id(info.get("height")), _as_id(info.get("width"))
    if height is None or width is None or height < 1 or width < 1:
        raise DatasetError(
            "corrupt annotation",
            f"{path}: image {info.get('id')} has no usable height/width "
            f"({info.get('height')!r} x {info.get('width')!r})",
        )
    return height, width
