"""COCO 2017 instance segmentation from the official layout, decoded by pycocotools.

``<root>/{val2017,train2017}/<12-digit id>.jpg`` and
``<root>/annotations/instances_{val2017,train2017}.json``. Polygons, compressed and
uncompressed RLE are all decoded by ``pycocotools.coco.COCO.annToMask``. Masks are the
annotated ones and may overlap where COCO's annotations do.

Defaults (both switchable): crowd annotations (``iscrowd=1``, one region over a group of
objects) are excluded; objects whose class is not one of the 20 VOC classes are dropped
(``non_voc="drop"``; ``"keep"`` keeps them under their COCO name). Class names are
mapped onto VOC's vocabulary (airplane -> aeroplane, ...; see ``vocabulary.py``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from difflens.datasets.base import SceneDataset
from difflens.datasets.readers import DatasetError, read_rgb
from difflens.datasets.vocabulary import voc_class_of_coco
from difflens.report import SkipLog
from difflens.scene import Scene

logger = logging.getLogger("difflens")

COCO_SPLITS: tuple[str, ...] = ("val2017", "train2017")
"""The search order when an image's split is not given."""
NON_VOC_CHOICES: tuple[str, ...] = ("drop", "keep")


def find_coco_root(root: str | Path) -> Path:
    """The COCO folder: ``root`` or ``root/coco``, whichever holds ``annotations/`` or images."""
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
    """``val2017`` from ``val`` or ``val2017`` (likewise train)."""
    name = {"val": "val2017", "train": "train2017"}.get(split, split)
    if name not in COCO_SPLITS:
        raise ValueError(f"unknown COCO split {split!r}; choose one of {COCO_SPLITS}")
    return name


def coco_id(name: str | int | Path) -> str:
    """The 12-digit file stem: ``000000286033`` from ``286033``, ``000000286033.jpg``, ..."""
    if isinstance(name, (int, np.integer)):
        return f"{int(name):012d}"
    stem = Path(str(name).strip()).stem
    return stem.zfill(12) if stem.isdigit() else stem


def _rle_problem(segmentation, size: tuple[int, int]) -> str | None:
    """What is wrong with an RLE segmentation, if anything (pycocotools does not check)."""
    if not isinstance(segmentation, dict):
        return None
    rle_size = [int(v) for v in segmentation.get("size", [])]
    if rle_size != list(size):
        return f"RLE size {rle_size} differs from the image size {list(size)}"
    counts = segmentation.get("counts")
    if isinstance(counts, list) and sum(counts) != size[0] * size[1]:
        return f"run lengths sum to {sum(counts)}, not {size[0] * size[1]} pixels"
    return None


class COCODataset(SceneDataset):
    """COCO 2017 scenes with one mask per (non-crowd, VOC-class) annotation.

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

    ``instance_ids`` are COCO annotation ids.
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
        self._apis: dict[str, object] = {}
        if split is not None:
            self.splits: tuple[str, ...] = (coco_split(split),)
        elif ids is None:
            self.splits = ("val2017",)
        else:
            self.splits = COCO_SPLITS
        if ids is None:
            api = self._api(self.splits[0])
            self.ids = [coco_id(i) for i in sorted(api.imgs)]
        else:
            self.ids = [coco_id(i) for i in ids]

    def annotation_file(self, split: str) -> Path:
        return self.root / "annotations" / f"instances_{split}.json"

    def _api(self, split: str):
        """pycocotools' ``COCO`` index of ``split`` (loaded once)."""
        if split not in self._apis:
            from pycocotools.coco import COCO

            path = self.annotation_file(split)
            if not path.is_file():
                raise DatasetError("not annotated", f"annotation file {path} does not exist")
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                self._apis[split] = COCO(str(path))
            logger.info("loaded %s in %.1f s", path, time.perf_counter() - start)
        return self._apis[split]

    def locate(self, image_id: str) -> tuple[str, Path]:
        """``(split, image path)`` of ``image_id``: the first split whose folder holds it."""
        name = f"{coco_id(image_id)}.jpg"
        for split in self.splits:
            path = self.root / split / name
            if path.is_file():
                return split, path
        where = ", ".join(str(self.root / split) for split in self.splits)
        raise DatasetError("missing file", f"{name} is in none of {where}")

    def _image_record(self, image_id: str) -> tuple[str, Path, dict, object]:
        split, path = self.locate(image_id)
        api = self._api(split)
        numeric = int(coco_id(image_id))
        if numeric not in api.imgs:
            raise DatasetError(
                "not annotated", f"{path.name} is not in {self.annotation_file(split)}"
            )
        return split, path, api.imgs[numeric], api

    def annotations(self, image_id: str) -> list[dict]:
        """The raw COCO annotations of ``image_id`` (crowd ones included)."""
        _, _, info, api = self._image_record(image_id)
        return list(api.imgToAnns.get(info["id"], []))

    def image_categories(self, image_id: str, include_crowd: bool | None = None) -> list[str]:
        """COCO class names of the image's annotations (crowd per ``include_crowd``)."""
        _, _, info, api = self._image_record(image_id)
        crowd = self.include_crowd if include_crowd is None else include_crowd
        names = []
        for ann in api.imgToAnns.get(info["id"], []):
            if ann.get("iscrowd", 0) and not crowd:
                continue
            cat = api.cats.get(ann["category_id"])
            names.append(cat["name"] if cat else f"<category {ann['category_id']}>")
        return names

    def load_scene(self, image_id: str) -> Scene:
        image_id = coco_id(image_id)
        split, path, info, api = self._image_record(image_id)
        image = read_rgb(path)
        expected = (int(info["height"]), int(info["width"]))
        if image.shape[:2] != expected:
            raise DatasetError(
                "size mismatch",
                f"{path} is {image.shape[1]}x{image.shape[0]} but {self.annotation_file(split)} "
                f"gives {expected[1]}x{expected[0]} (width x height)",
            )
        masks, names, ids, coco_names, crowd = [], [], [], [], []
        n_crowd = n_non_voc = 0
        for ann in api.imgToAnns.get(info["id"], []):
            is_crowd = bool(ann.get("iscrowd", 0))
            if is_crowd and not self.include_crowd:
                n_crowd += 1
                continue
            item = f"{image_id}#{ann['id']}"
            cat = api.cats.get(ann["category_id"])
            if cat is None:
                self.skipped.skip(
                    item,
                    f"unknown class: category id {ann['category_id']} of annotation {ann['id']} "
                    f"is not among the categories of {self.annotation_file(split)}",
                )
                continue
            name = voc_class_of_coco(cat["name"])
            if name is None:
                if self.non_voc == "drop":
                    n_non_voc += 1
                    continue
                name = cat["name"]
            problem = _rle_problem(ann.get("segmentation"), expected)
            if problem:
                self.skipped.skip(
                    item,
                    f"corrupt annotation: annotation {ann['id']} in "
                    f"{self.annotation_file(split)}: {problem}",
                )
                continue
            try:
                mask = api.annToMask(ann).astype(bool)
            except Exception as err:  # malformed segmentation: pycocotools raises many types
                self.skipped.skip(
                    item,
                    f"corrupt annotation: segmentation of annotation {ann['id']} in "
                    f"{self.annotation_file(split)} cannot be decoded ({err})",
                )
                continue
            if mask.shape != expected:
                self.skipped.skip(
                    item,
                    f"size mismatch: annotation {ann['id']} decodes to {mask.shape} but "
                    f"{path.name} is {expected}",
                )
                continue
            if not mask.any():
                self.skipped.skip(
                    item,
                    f"empty mask: annotation {ann['id']} ({cat['name']}) of {path.name} "
                    "covers no pixel",
                )
                continue
            masks.append(mask)
            names.append(name)
            ids.append(int(ann["id"]))
            coco_names.append(cat["name"])
            crowd.append(is_crowd)
        h, w = expected
        return Scene(
            image=image,
            masks=np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool),
            class_names=names,
            instance_ids=ids,
            image_id=image_id,
            meta={
                "dataset": "coco",
                "split": split,
                "file": path.name,
                "image_path": str(path),
                "annotation": str(self.annotation_file(split)),
                "coco_id": int(info["id"]),
                "coco_classes": coco_names,
                "crowd": crowd,
                "crowd_excluded": n_crowd,
                "non_voc_dropped": n_non_voc,
            },
        )
