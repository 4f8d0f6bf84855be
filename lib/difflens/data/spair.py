"""SPair-71k keypoint pairs from the official layout of ``SPair-71k.tar.gz``.

``<root>/JPEGImages/<category>/<imname>.jpg`` (18 category folders),
``<root>/PairAnnotation/{trn,val,test}/<pair>.json`` (one JSON per pair),
``<root>/Layout/{large,small}/{trn,val,test}.txt`` (one pair per line,
``<pair_id 6 digits>-<source stem>-<target stem>:<category>``, the pair file's stem),
``<root>/ImageAnnotation/<category>/<imname>.json`` and ``<root>/Segmentation/`` (not read
here). ``root`` is the ``SPair-71k`` folder or the folder above it.

Which pairs a split holds (``pairs_from``):

- ``"layout"`` (default): the lines of ``Layout/<layout>/<split>.txt``, ``layout="large"``
  (53,340 trn / 5,384 val / 12,234 test pairs; the loaders of ``juhongm999/dhpf`` and
  ``ubc-vision/LDM_correspondences`` read it) or ``layout="small"`` (a smaller subset of
  the same pairs). A line naming a pair file that does not exist is a counted skip.
- ``"directory"``: every ``*.json`` of ``PairAnnotation/<split>``, in sorted file-name
  order, as DIFT does (``Tsingularity/dift: eval_spair.py``; also SD-DINO's sorted
  per-category glob). The Layout files are not read. For the test split the official
  archive holds the 12,234 files the large layout lists (per-category counts in
  ``SPAIR_TEST_PAIRS``), so the two readings differ only in order, unless files were added
  or lost; the small layout is a subset. A sample drawn per category (``subset``) depends
  on that order.

Every field of a pair JSON is read (:data:`SPAIR_PAIR_FIELDS`): the images ``src_imname``
/ ``trg_imname`` from ``JPEGImages/<category>/``, ``src_kps`` / ``trg_kps`` (``[x, y]``
in original pixels, only the points visible in both, same order) as
``source_points`` / ``target_points``, ``kps_ids`` as ``keypoint_ids`` (strings),
``src_bndbox`` / ``trg_bndbox`` (``[x1, y1, x2, y2]``) as the boxes, ``category``; the
difficulty flags ``viewpoint_variation``, ``scale_variation`` (0-2), ``truncation``,
``occlusion``, ``mirror``, ``src_pose`` and ``trg_pose`` in ``pair.flags`` under those
names; ``pair_id``, ``filename``, ``src_imname``, ``trg_imname``, ``src_imsize`` and
``trg_imsize`` (``[W, H, C]``) in ``pair.meta`` with any other field of the file.
:func:`spair_record` gives the JSON fields back from a pair.

Bad input, pair by pair (each a named, counted entry of ``dataset.skipped``; the other
pairs are still read): a Layout line without ``:<category>``, a pair file that is missing
or not valid JSON or lacks a field, a category folder that is missing, a missing or
undecodable image, an ``imsize`` whose width or height is not the image's, unequal
numbers of source points, target points and ids, a keypoint outside its image.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.data.keypoints import SPAIR_FLAGS, KeypointPair
from difflens.data.pairs import (
    PairDataset,
    build_pair,
    check_categories,
    read_pair_image,
    subset_per_category,
)

SPAIR_SPLITS: tuple[str, ...] = ("trn", "val", "test")
"""The splits of ``PairAnnotation`` and ``Layout`` (``train``/``validation`` are aliases)."""
SPAIR_SPLIT_ALIASES: dict[str, str] = {"train": "trn", "validation": "val"}
"""Other split names accepted."""
SPAIR_LAYOUTS: tuple[str, ...] = ("large", "small")
"""The folders of ``Layout``."""
SPAIR_PAIR_SOURCES: tuple[str, ...] = ("layout", "directory")
"""How a split's pairs are listed (module docstring)."""
SPAIR_CATEGORIES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "train",
    "tvmonitor",
)
"""The 18 category folders of ``JPEGImages`` (alphabetical)."""
SPAIR_TEST_PAIRS: dict[str, int] = dict(
    zip(
        SPAIR_CATEGORIES,
        (690, 650, 702, 702, 870, 644, 564, 600, 646, 640, 600, 600, 702, 650, 862, 664, 756, 692),
    )
)
"""Test pairs per category (12,234 in all), as ``Junyi42/sd-dino: pck_spair_pascal.py``
weights them."""
SPAIR_PAIR_FIELDS: tuple[str, ...] = (
    "pair_id",
    "filename",
    "src_imname",
    "trg_imname",
    "src_imsize",
    "trg_imsize",
    "src_bndbox",
    "trg_bndbox",
    "src_pose",
    "trg_pose",
    "src_kps",
    "trg_kps",
    "kps_ids",
    "category",
    "mirror",
    "viewpoint_variation",
    "scale_variation",
    "truncation",
    "occlusion",
)
"""The fields of a pair JSON, all read into the pair."""
_REQUIRED = (
    "src_imname",
    "trg_imname",
    "src_imsize",
    "trg_imsize",
    "src_bndbox",
    "trg_bndbox",
    "src_kps",
    "trg_kps",
    "kps_ids",
    "category",
)
_META = ("pair_id", "filename", "src_imname", "trg_imname", "src_imsize", "trg_imsize")
_MAPPED = {*_META, *SPAIR_FLAGS, *_REQUIRED}


def find_spair_root(root: str | Path) -> Path:
    """The ``SPair-71k`` folder: ``root`` itself or ``root/SPair-71k``.

    Args:
        root: the SPair-71k folder or the folder above it.

    Returns:
        The first candidate holding ``JPEGImages/`` and ``PairAnnotation/``.

    Raises:
        FileNotFoundError: no candidate does; the message says how to download it.
    """
    root = Path(root).expanduser()
    for candidate in (root, root / "SPair-71k"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "PairAnnotation").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no SPair-71k tree at {root}: expected JPEGImages/ and PairAnnotation/ in it or in "
        "SPair-71k/ below it (python -m difflens.data download spair --root DIR fetches it)"
    )


def spair_split(split: str) -> str:
    """The SPair folder name of a split.

    Args:
        split: ``trn``, ``val``, ``test`` or an alias (``train``, ``validation``).

    Returns:
        One of :data:`SPAIR_SPLITS`.

    Raises:
        ValueError: an unknown split.
    """
    key = SPAIR_SPLIT_ALIASES.get(str(split).lower(), str(split).lower())
    if key not in SPAIR_SPLITS:
        raise ValueError(f"unknown SPair-71k split {split!r}; choose one of {SPAIR_SPLITS}")
    return key


def spair_categories(root: str | Path) -> list[str]:
    """The categories of an SPair-71k tree: the folder names of ``JPEGImages``.

    Args:
        root: the SPair-71k folder (or the folder above it).

    Returns:
        The folder names, sorted (18 in the official archive).
    """
    images = find_spair_root(root) / "JPEGImages"
    return sorted(p.name for p in images.iterdir() if p.is_dir())


def pair_category(stem: str) -> str | None:
    """The category of a pair from its file stem or Layout line.

    Args:
        stem: ``000001-2008_000585-2008_003996:aeroplane`` (a ``.json`` suffix is allowed).

    Returns:
        ``"aeroplane"``; ``None`` when there is no ``:<category>``.
    """
    stem = stem.removesuffix(".json")
    if ":" not in stem:
        return None
    category = stem.rsplit(":", 1)[1].strip()
    return category or None


def read_layout(path: Path, skipped: SkipLog) -> list[tuple[str, str]]:
    """The pairs of a Layout file.

    Args:
        path: ``Layout/<layout>/<split>.txt``.
        skipped: where a line without ``:<category>`` is recorded (item ``<file>:<line>``).

    Returns:
        ``(pair stem, category)`` for each line, in file order (blank lines ignored).

    Raises:
        FileNotFoundError: the file does not exist.
    """
    if not path.is_file():
        raise FileNotFoundError(f"SPair-71k layout file {path} does not exist")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stem = line.strip()
        if not stem:
            continue
        category = pair_category(stem)
        if category is None:
            skipped.skip(
                f"{path.name}:{number}",
                f"bad layout line: line {number} of {path} reads {stem!r}, not "
                "<pair_id>-<source>-<target>:<category>",
            )
            continue
        pairs.append((stem, category))
    return pairs


def read_pair_json(path: Path, pair_id: str, listed_in: str = "") -> dict[str, Any]:
    """A pair annotation, checked to hold the fields the loader needs.

    Args:
        path: ``PairAnnotation/<split>/<pair>.json``.
        pair_id: the pair, for messages.
        listed_in: what listed the pair (``"Layout/large/test.txt"``), for the message
            of a missing file.

    Returns:
        The JSON object.

    Raises:
        DatasetError: ``missing file`` (no such file), ``corrupt annotation`` (not JSON, not
            an object, or a field missing).
    """
    if not path.is_file():
        listed = f" (listed in {listed_in})" if listed_in else ""
        raise DatasetError(
            "missing file", f"pair {pair_id}: pair annotation {path} does not exist{listed}"
        )
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(
            "corrupt annotation", f"pair {pair_id}: {path} is not valid JSON ({err})"
        ) from err
    if not isinstance(record, dict):
        raise DatasetError("corrupt annotation", f"pair {pair_id}: {path} is not a JSON object")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise DatasetError("corrupt annotation", f"pair {pair_id}: {path} lacks {missing}")
    return record


def check_imsize(pair_id: str, field: str, imsize: object, image: np.ndarray, path: Path) -> None:
    """Check an ``imsize`` field (``[W, H, C]``) against the image read.

    Width and height must match; the channel count is not compared (the loader returns
    RGB whatever the file stores).

    Args:
        pair_id: the pair, for messages.
        field: ``src_imsize`` or ``trg_imsize``.
        imsize: the field's value.
        image: ``(H, W, 3)`` the image read.
        path: the image file.

    Raises:
        DatasetError: ``corrupt annotation`` when the field is not ``[W, H, ...]`` numbers,
            ``size mismatch`` when they are not the image's.
    """
    try:
        width, height = (int(v) for v in list(imsize)[:2])
    except (TypeError, ValueError) as err:
        raise DatasetError(
            "corrupt annotation", f"pair {pair_id}: {field} {imsize!r} is not [W, H, C]"
        ) from err
    if (width, height) != (image.shape[1], image.shape[0]):
        raise DatasetError(
            "size mismatch",
            f"pair {pair_id}: {field} says {width} x {height} but {path} is "
            f"{image.shape[1]} x {image.shape[0]} (width x height)",
        )


def spair_record(pair: KeypointPair) -> dict[str, Any]:
    """The pair-JSON fields of an SPair-71k pair, back from the pair.

    Args:
        pair: a pair read by :class:`SPairDataset`.

    Returns:
        ``{field: value}`` for the fields of :data:`SPAIR_PAIR_FIELDS` the file held
        (points and boxes as lists of floats, ``kps_ids`` as strings).
    """
    record: dict[str, Any] = {key: pair.meta[key] for key in _META if key in pair.meta}
    record.update(
        src_bndbox=pair.source_box.tolist(),
        trg_bndbox=pair.target_box.tolist(),
        src_kps=pair.source_points.tolist(),
        trg_kps=pair.target_points.tolist(),
        kps_ids=list(pair.keypoint_ids),
        category=pair.category,
    )
    record.update(pair.flags)
    return record


class SPairDataset(PairDataset):
    """SPair-71k pairs of one split, as :class:`KeypointPair`.

    Args:
        root: the ``SPair-71k`` folder (or the folder above it).
        split: ``trn``, ``val`` or ``test`` (default; aliases ``train``, ``validation``).
        ids: pair file stems (``000001-2008_000585-2008_003996:aeroplane``, ``.json``
            allowed) to read instead of the listed split, e.g. a published subset.
        layout: ``"large"`` (default) or ``"small"``, with ``pairs_from="layout"``.
        pairs_from: ``"layout"`` (default) or ``"directory"`` (module docstring).
        categories: keep only these categories (names of :data:`SPAIR_CATEGORIES` or of
            the ``JPEGImages`` folders).
        max_pairs_per_category: keep at most this many pairs of each category (SD-DINO's
            and Diffusion Hyperfeatures' 20-per-category subsets; PCK on such a subset is
            not comparable with PCK on the whole split).
        subset: how those are drawn: ``"seeded"`` or ``"sd-dino"``
            (:func:`~difflens.data.pairs.subset_per_category`).
        seed: the seed of the draw.
        skipped: a :class:`SkipLog` to record skips in (a new one by default).

    A ``root`` without an SPair tree, or a Layout file that does not exist, raises
    ``FileNotFoundError``.

    Raises:
        ValueError: an unknown split, layout, ``pairs_from``, category or ``subset``.
    """

    name = "spair"

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        ids: Iterable[str] | None = None,
        layout: str = "large",
        pairs_from: str = "layout",
        categories: Iterable[str] | None = None,
        max_pairs_per_category: int | None = None,
        subset: str = "seeded",
        seed: int = 0,
        skipped: SkipLog | None = None,
    ):
        super().__init__(skipped)
        self.root = find_spair_root(root)
        self.split = spair_split(split)
        if layout not in SPAIR_LAYOUTS:
            raise ValueError(f"unknown SPair-71k layout {layout!r}; choose one of {SPAIR_LAYOUTS}")
        if pairs_from not in SPAIR_PAIR_SOURCES:
            raise ValueError(f"pairs_from must be one of {SPAIR_PAIR_SOURCES}, got {pairs_from!r}")
        self.layout, self.pairs_from = layout, pairs_from
        self.all_categories = spair_categories(self.root)
        self.listed_from = "ids" if ids is not None else self.listing
        listed = self._list(ids)
        if categories is not None:
            known = (*SPAIR_CATEGORIES, *self.all_categories)
            wanted = set(check_categories(categories, known, "SPair-71k"))
            listed = [(stem, c) for stem, c in listed if c in wanted]
        self.category_of = dict(listed)
        self.ids = [stem for stem, _ in listed]
        if max_pairs_per_category is not None:
            self.ids = subset_per_category(
                self.ids, self.category_of, max_pairs_per_category, seed, subset
            )

    @property
    def listing(self) -> str:
        """Where the pairs come from: ``"Layout/large/test.txt"`` or ``"PairAnnotation/test"``."""
        if self.pairs_from == "layout":
            return f"Layout/{self.layout}/{self.split}.txt"
        return f"PairAnnotation/{self.split}"

    def _list(self, ids: Iterable[str] | None) -> list[tuple[str, str]]:
        if ids is not None:
            stems = [str(i).strip().removesuffix(".json") for i in ids]
        elif self.pairs_from == "layout":
            return read_layout(self.root / self.listing, self.skipped)
        else:
            folder = self.root / self.listing
            if not folder.is_dir():
                raise FileNotFoundError(f"SPair-71k pair folder {folder} does not exist")
            stems = sorted(p.stem for p in folder.glob("*.json"))
        listed = []
        for stem in stems:
            category = pair_category(stem)
            if category is None:
                self.skipped.skip(
                    stem, f"bad pair name: {stem!r} is not <pair_id>-<source>-<target>:<category>"
                )
                continue
            listed.append((stem, category))
        return listed

    def pair_file(self, pair_id: str) -> Path:
        """The annotation file of a pair.

        Args:
            pair_id: the pair's stem.

        Returns:
            ``PairAnnotation/<split>/<pair_id>.json`` under the root.
        """
        return self.root / "PairAnnotation" / self.split / f"{pair_id}.json"

    def load_pair(self, pair_id: str) -> KeypointPair:
        """Read one pair: its JSON, both images, checked.

        Args:
            pair_id: the pair's stem (an entry of ``self.ids``).

        Returns:
            The pair (module docstring for where each field goes).

        Raises:
            DatasetError: as listed in the module docstring (``missing file``,
                ``corrupt annotation``, ``corrupt image``, ``size mismatch``, ``bad pair``,
                ``keypoint outside image``).
        """
        path = self.pair_file(pair_id)
        record = read_pair_json(path, pair_id, self.listed_from)
        category = str(record["category"])
        listed = self.category_of.get(pair_id)
        if listed is not None and listed != category:
            raise DatasetError(
                "corrupt annotation",
                f"pair {pair_id}: {path} says category {category!r}, its name {listed!r}",
            )
        folder = self.root / "JPEGImages" / category
        if not folder.is_dir():
            raise DatasetError(
                "missing file", f"pair {pair_id}: category folder {folder} does not exist"
            )
        images = {}
        for side in ("src", "trg"):
            image_path = folder / str(record[f"{side}_imname"])
            images[side] = read_pair_image(image_path, f"pair {pair_id}")
            check_imsize(
                pair_id, f"{side}_imsize", record[f"{side}_imsize"], images[side], image_path
            )
        return self._pair(pair_id, record, images, path)

    def _pair(
        self, pair_id: str, record: dict, images: dict[str, np.ndarray], path: Path
    ) -> KeypointPair:
        folder = self.root / "JPEGImages" / str(record["category"])
        meta = {key: value for key, value in record.items() if key not in _MAPPED}
        meta.update({key: record[key] for key in _META if key in record})
        meta.update(
            split=self.split,
            listing=self.listed_from,
            pair_file=str(path),
            source_path=str(folder / str(record["src_imname"])),
            target_path=str(folder / str(record["trg_imname"])),
        )
        kps_ids = record["kps_ids"]
        if not isinstance(kps_ids, list):
            raise DatasetError("corrupt annotation", f"pair {pair_id}: kps_ids is not a list")
        return build_pair(
            f"pair {pair_id}",
            str(path),
            pair_id=pair_id,
            category=str(record["category"]),
            source_image=images["src"],
            target_image=images["trg"],
            source_points=record["src_kps"],
            target_points=record["trg_kps"],
            keypoint_ids=[str(k) for k in kps_ids],
            source_box=record["src_bndbox"],
            target_box=record["trg_bndbox"],
            source_name=str(record["src_imname"]),
            target_name=str(record["trg_imname"]),
            flags={key: record[key] for key in SPAIR_FLAGS if key in record},
            meta=meta,
        )
