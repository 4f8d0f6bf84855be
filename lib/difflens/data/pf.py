"""PF-PASCAL and PF-WILLOW keypoint pairs from the official Proposal Flow layouts.

**PF-PASCAL** (``PF-dataset-PASCAL.zip`` and the pair lists of the weakly-supervised
alignment work, ``{test,val}_pairs_pf_pascal.csv``): ``<pf>/JPEGImages/<image>.jpg``,
``<pf>/Annotations/<class>/<image stem>.mat`` (``kps``: K x 2 with NaN rows, ``bbox``:
``[x1, y1, x2, y2]``) and ``<pf>/{test,val,trn}_pairs_pf_pascal.csv`` (``trn`` is also
found as ``train_pairs_pf_pascal.csv``), where ``<pf>`` is the ``PF-dataset-PASCAL``
folder; ``root`` is that folder or the one above it, and the CSVs may lie in either. A CSV
has a header line (a file without one is read from its first line) and the columns
``source_image, target_image, class, XA, YA, XB, YB``, read by position as every public
loader does (``Junyi42/sd-dino: pck_spair_pascal.py``,
``juhongm999/dhpf: data/pfpascal.py``): image paths such as
``PF-dataset-PASCAL/JPEGImages/2009_000001.jpg`` (relative to the folder above ``<pf>``),
the class id 1-20 (the VOC classes in order, ``aeroplane`` ... ``tvmonitor``), and each
coordinate column a ``;``-separated list (x or y of each keypoint, in original pixels).
299 test pairs (:data:`PF_PASCAL_TEST_PAIRS`). The CSV gives no part ids: the keypoint
ids are the positions ``"0"``, ``"1"``, ... in the row.

PF-PASCAL's CSV carries no boxes; ``box=`` names where they come from:

- ``"annotation"`` (default): the ``bbox`` of ``Annotations/<class>/<stem>.mat`` of each
  image, the box the loaders of ``juhongm999/dhpf`` (and the CATs / GeoAware-SC loaders
  derived from it) read;
- ``"keypoints"``: the box around the pair's keypoints in each image;
- ``"image"``: the whole image, ``[0, 0, W - 1, H - 1]``.

The published PF-PASCAL PCK does not use a box: SD-DINO and dhpf's default
(``thres='img'``) threshold with the image size (``"target_image"`` in
:mod:`difflens.correspondence.pck`).

**PF-WILLOW** (``PF-dataset.zip`` and its pair list): ``<root>/PF-dataset/<folder>/
<image>.png`` with the ten folders of :data:`PF_WILLOW_CATEGORIES`, and the pair list
``test_pairs.csv`` (as the dhpf / LDM-correspondences copies name it) or
``test_pairs_pf.csv`` (as published with the weakly-supervised alignment code), in ``root``
or ``root/PF-dataset``: 900 rows, a header line and columns ``imageA, imageB, XA1..XA10,
YA1..YA10, XB1..XB10, YB1..YB10`` (image paths such as ``PF-dataset/car(G)/car_0001.png``;
10 keypoints per image, original pixels). The category is the image's folder
(``"car(G)"``), as the dhpf and LDM-correspondences loaders name it; ``meta["object"]`` is
the object (``"car"``). Boxes are the box around each image's keypoints (PF-WILLOW has
none).

PF-WILLOW's PCK threshold is the extent of the TARGET keypoints,
``max(max x - min x, max y - min y)``, kept in ``meta["keypoint_extent"]`` (original
pixels; it equals the larger side of ``target_box``). The loaders of ``juhongm999/dhpf``
and ``ubc-vision/LDM_correspondences`` (``thres='bbox'``) compute it on a keypoint tensor
padded with ``-1`` columns, so the minimum is ``-1`` and the "extent" becomes the largest
coordinate plus one (``juhongm999/dhpf`` issue 3: about 80 % PCK instead of about 70 %);
that padded value is kept in ``meta["keypoint_extent_padded"]`` (original pixels, see
:func:`~difflens.data.pairs.keypoint_extent`) so that their numbers can be reproduced.
They take it in their resized frame (240 or 512 pixels), where the ``+ 1`` is not scaled:
to match them exactly, compute the padded extent from the resized points
(:mod:`difflens.correspondence.pck`, ``reading="keypoint_extent_padded"``).

Bad input, pair by pair (each a named, counted entry of ``dataset.skipped``; the other
rows are still read): a row with missing coordinates, numbers that do not parse, an
unknown class id, a missing or undecodable image or annotation, unequal keypoint counts,
a keypoint outside its image.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

import numpy as np
from scipy.io import loadmat

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.data.keypoints import KeypointPair
from difflens.data.pairs import (
    PairDataset,
    build_pair,
    check_categories,
    keypoint_extent,
    points_box,
    read_pair_image,
)
from difflens.data.vocabulary import VOC_CLASSES

PF_PASCAL_SPLITS: tuple[str, ...] = ("trn", "val", "test")
"""The PF-PASCAL pair lists (``train`` is an alias of ``trn``)."""
PF_PASCAL_COLUMNS: tuple[str, ...] = (
    "source_image",
    "target_image",
    "class",
    "XA",
    "YA",
    "XB",
    "YB",
)
"""The columns of a PF-PASCAL pair CSV, in order."""
PF_PASCAL_BOXES: tuple[str, ...] = ("annotation", "keypoints", "image")
"""Where PF-PASCAL boxes come from (module docstring)."""
PF_PASCAL_TEST_PAIRS: dict[str, int] = dict(
    zip(VOC_CLASSES, (15, 30, 10, 6, 8, 32, 19, 27, 13, 3, 8, 24, 9, 27, 12, 7, 1, 13, 20, 15))
)
"""Test pairs per class (299 in all), as ``Junyi42/sd-dino: pck_spair_pascal.py`` weights them."""
PF_WILLOW_FILES: tuple[str, ...] = ("test_pairs.csv", "test_pairs_pf.csv")
"""The names PF-WILLOW's pair list is published under."""
PF_WILLOW_CATEGORIES: tuple[str, ...] = (
    "car(G)",
    "car(M)",
    "car(S)",
    "duck(S)",
    "motorbike(G)",
    "motorbike(M)",
    "motorbike(S)",
    "winebottle(M)",
    "winebottle(wC)",
    "winebottle(woC)",
)
"""The image folders of ``PF-dataset`` (the categories of PF-WILLOW pairs)."""
PF_WILLOW_POINTS = 10
"""Keypoints per PF-WILLOW image."""


def read_pairs_csv(
    path: Path, is_data: Callable[[list[str]], bool]
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the rows of a pair CSV.

    Args:
        path: the CSV file.
        is_data: tells a data row from a header row; a first row that is data (a file
            without a header line) is kept as a row.

    Returns:
        ``(header, [(line number, fields), ...])``, blank lines left out; the header is
        empty when the file has none.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    if not path.is_file():
        raise FileNotFoundError(f"pair list {path} does not exist")
    with path.open(newline="") as handle:
        rows = [(n, [f.strip() for f in r]) for n, r in enumerate(csv.reader(handle), 1)]
    rows = [(n, r) for n, r in rows if any(r)]
    if rows and not is_data(rows[0][1]):
        return rows[0][1], rows[1:]
    return [], rows


def parse_points(xs: str, ys: str, where: str) -> np.ndarray:
    """Keypoints from two ``;``-separated coordinate lists (PF-PASCAL's CSV cells).

    Args:
        xs: ``"12;40.5;7"``.
        ys: ``"30;2;18"``.
        where: names the row and side in messages.

    Returns:
        ``(N, 2)`` float64 x/y.

    Raises:
        DatasetError: ``missing coordinates`` (an empty list or an empty entry),
            ``corrupt annotation`` (a value that is not a number, or as many x as y not).
    """
    values = []
    for axis, cell in (("x", xs), ("y", ys)):
        items = [v.strip() for v in cell.split(";")]
        if not cell.strip() or not all(items):
            raise DatasetError("missing coordinates", f"{where}: {axis} list {cell!r} has gaps")
        try:
            values.append([float(v) for v in items])
        except ValueError as err:
            raise DatasetError(
                "corrupt annotation", f"{where}: {axis} list {cell!r}: {err}"
            ) from err
    if len(values[0]) != len(values[1]):
        raise DatasetError(
            "corrupt annotation",
            f"{where}: {len(values[0])} x values but {len(values[1])} y values",
        )
    return np.stack([values[0], values[1]], axis=1)


def resolve_image(entry: str, bases: Iterable[Path], fallback: Path | None = None) -> Path:
    """The file a CSV's image path names, tried below each base folder in turn.

    Args:
        entry: the path as the CSV writes it (``PF-dataset/car(G)/car_0001.png``).
        bases: folders to try it under, first as given, then without its first folder.
        fallback: a last candidate (e.g. ``JPEGImages/<file name>``).

    Returns:
        The first candidate that exists, else the first candidate (reading it then names
        it as missing).
    """
    parts = PurePosixPath(entry.replace("\\", "/")).parts
    candidates = []
    for base in bases:
        candidates.append(base.joinpath(*parts))
        if len(parts) > 1:
            candidates.append(base.joinpath(*parts[1:]))
    if fallback is not None:
        candidates.append(fallback)
    return next((c for c in candidates if c.is_file()), candidates[0])


def read_pf_annotation(path: Path, where: str) -> np.ndarray:
    """The ``bbox`` of a PF-PASCAL annotation file.

    Args:
        path: ``Annotations/<class>/<image stem>.mat``.
        where: names the pair in messages.

    Returns:
        ``(4,)`` float64 ``x1, y1, x2, y2``, original pixels.

    Raises:
        DatasetError: ``missing file`` (no such file), ``corrupt annotation`` (it does not
            load or has no 4-value ``bbox``).
    """
    if not path.is_file():
        raise DatasetError("missing file", f"{where}: annotation {path} does not exist")
    try:
        box = np.asarray(loadmat(str(path))["bbox"], dtype=np.float64).reshape(-1)
    except (KeyError, ValueError, TypeError, OSError, NotImplementedError) as err:
        raise DatasetError(
            "corrupt annotation", f"{where}: {path} has no readable bbox ({err})"
        ) from err
    if box.size != 4:
        raise DatasetError("corrupt annotation", f"{where}: bbox of {path} has {box.size} values")
    return box


def _pair_id(number: int, fields: list[str]) -> str:
    stems = [PurePosixPath(f.replace("\\", "/")).stem for f in fields[:2]]
    stems += ["?"] * (2 - len(stems))
    return f"{number:04d}-{stems[0]}-{stems[1]}"


class _CSVPairs(PairDataset):
    """Pairs listed by the rows of one CSV: ids, rows and the category filter."""

    def _list_rows(
        self,
        rows: list[tuple[int, list[str]]],
        category_of_row: Callable[[list[str]], str | None],
        categories: Iterable[str] | None,
        known: Iterable[str],
        dataset: str,
    ) -> None:
        wanted = None if categories is None else set(check_categories(categories, known, dataset))
        self.rows: dict[str, tuple[int, list[str]]] = {}
        for number, (line, fields) in enumerate(rows, start=1):
            pair_id = _pair_id(number, fields)
            category = category_of_row(fields)
            if wanted is not None and category not in wanted:
                if category is None:
                    self.skipped.skip(
                        pair_id,
                        f"corrupt annotation: line {line} of {self.csv_path} names no category",
                    )
                continue
            self.rows[pair_id] = (line, fields)
            self.category_of[pair_id] = category or ""
            self.ids.append(pair_id)

    def _keep(self, ids: Iterable[str]) -> None:
        wanted = [str(i) for i in ids]
        for pair_id in wanted:
            if pair_id not in self.rows:
                self.skipped.skip(pair_id, f"not in split: {pair_id} is no row of {self.csv_path}")
        self.ids = [i for i in wanted if i in self.rows]

    def _where(self, pair_id: str) -> str:
        return f"pair {pair_id} ({self._origin(pair_id)})"

    def _origin(self, pair_id: str) -> str:
        return f"line {self.rows[pair_id][0]} of {self.csv_path}"


def find_pf_pascal_root(root: str | Path) -> Path:
    """The ``PF-dataset-PASCAL`` folder: ``root`` itself or ``root/PF-dataset-PASCAL``.

    Args:
        root: the PF-dataset-PASCAL folder or the folder above it.

    Returns:
        The first candidate holding ``JPEGImages/``.

    Raises:
        FileNotFoundError: no candidate does; the message says how to download it.
    """
    root = Path(root).expanduser()
    for candidate in (root, root / "PF-dataset-PASCAL"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no PF-PASCAL tree at {root}: expected JPEGImages/ in it or in PF-dataset-PASCAL/ "
        "below it (python -m difflens.data download pf-pascal --root DIR fetches it)"
    )


def pf_pascal_class(value: str) -> str | None:
    """The VOC class of a PF-PASCAL class id.

    Args:
        value: the CSV's ``class`` cell, ``"1"`` .. ``"20"`` (``"1.0"`` accepted).

    Returns:
        ``"aeroplane"`` .. ``"tvmonitor"``; ``None`` for anything else.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not number.is_integer() or not 1 <= number <= len(VOC_CLASSES):
        return None
    return VOC_CLASSES[int(number) - 1]


class PFPascalDataset(_CSVPairs):
    """PF-PASCAL pairs of one split, as :class:`KeypointPair`.

    Args:
        root: the ``PF-dataset-PASCAL`` folder (or the folder above it).
        split: ``test`` (default), ``val`` or ``trn`` (alias ``train``).
        ids: pair ids (``"0001-<source stem>-<target stem>"``, row number first) to read
            instead of the whole split.
        box: where the boxes come from: ``"annotation"`` (default), ``"keypoints"`` or
            ``"image"`` (module docstring).
        categories: keep only these VOC classes.
        skipped: a :class:`SkipLog` to record skips in (a new one by default).

    A ``root`` without a PF-PASCAL tree, or a split whose CSV is absent, raises
    ``FileNotFoundError``.

    Raises:
        ValueError: an unknown split, box reading or category.
    """

    name = "pf-pascal"

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        ids: Iterable[str] | None = None,
        box: str = "annotation",
        categories: Iterable[str] | None = None,
        skipped: SkipLog | None = None,
    ):
        super().__init__(skipped)
        self.root = find_pf_pascal_root(root)
        self.split = {"train": "trn"}.get(str(split).lower(), str(split).lower())
        if self.split not in PF_PASCAL_SPLITS:
            raise ValueError(f"unknown PF-PASCAL split {split!r}; choose one of {PF_PASCAL_SPLITS}")
        if box not in PF_PASCAL_BOXES:
            raise ValueError(
                f"unknown PF-PASCAL box reading {box!r}; choose one of {PF_PASCAL_BOXES}"
            )
        self.box = box
        self.csv_path = self._csv()

        def category(fields: list[str]) -> str | None:
            return pf_pascal_class(fields[2]) if len(fields) > 2 else None

        self.header, rows = read_pairs_csv(self.csv_path, lambda f: category(f) is not None)

        self._list_rows(rows, category, categories, VOC_CLASSES, "PF-PASCAL")
        if ids is not None:
            self._keep(ids)

    def _csv(self) -> Path:
        names = {"trn": ("trn", "train")}.get(self.split, (self.split,))
        candidates = [
            folder / f"{name}_pairs_pf_pascal.csv"
            for name in names
            for folder in (self.root, self.root.parent)
        ]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"no PF-PASCAL pair list for split {self.split!r}: none of "
                f"{[str(c) for c in candidates]} exists (python -m difflens.data download "
                "pf-pascal --root DIR fetches the test and val lists)"
            )
        return found

    def load_pair(self, pair_id: str) -> KeypointPair:
        """Read one row: both images, the keypoints and the boxes, checked.

        Args:
            pair_id: an entry of ``self.ids``.

        Returns:
            The pair; ``meta`` holds the split, the CSV and line, the class id, the image
            paths and the box reading (and the annotation files for ``"annotation"``).

        Raises:
            DatasetError: ``missing coordinates``, ``corrupt annotation`` (a bad class id or
                number), ``missing file`` / ``corrupt image`` (an image or annotation),
                ``bad pair`` (unequal keypoint counts), ``keypoint outside image``.
        """
        where = self._where(pair_id)
        _, fields = self.rows[pair_id]
        if len(fields) < len(PF_PASCAL_COLUMNS) or not all(fields[3:7]):
            raise DatasetError(
                "missing coordinates",
                f"{where}: {len(fields)} columns {fields}, expected {PF_PASCAL_COLUMNS} all filled",
            )
        category = pf_pascal_class(fields[2])
        if category is None:
            raise DatasetError("corrupt annotation", f"{where}: class {fields[2]!r} is not 1..20")
        points = [
            parse_points(fields[3], fields[4], f"{where} source"),
            parse_points(fields[5], fields[6], f"{where} target"),
        ]
        bases = (self.root.parent, self.root, self.csv_path.parent)
        paths = [
            resolve_image(f, bases, self.root / "JPEGImages" / PurePosixPath(f).name)
            for f in fields[:2]
        ]
        images = [read_pair_image(p, where) for p in paths]
        meta = {
            "split": self.split,
            "csv": str(self.csv_path),
            "line": self.rows[pair_id][0],
            "class_id": VOC_CLASSES.index(category) + 1,
            "source_path": str(paths[0]),
            "target_path": str(paths[1]),
            "box_reading": self.box,
        }
        boxes = self._boxes(category, paths, images, points, where, meta)
        return build_pair(
            f"pair {pair_id}",
            self._origin(pair_id),
            pair_id=pair_id,
            category=category,
            source_image=images[0],
            target_image=images[1],
            source_points=points[0],
            target_points=points[1],
            keypoint_ids=[str(k) for k in range(len(points[0]))],
            source_box=boxes[0],
            target_box=boxes[1],
            source_name=paths[0].name,
            target_name=paths[1].name,
            meta=meta,
        )

    def _boxes(
        self,
        category: str,
        paths: list[Path],
        images: list[np.ndarray],
        points: list[np.ndarray],
        where: str,
        meta: dict,
    ) -> list[np.ndarray]:
        if self.box == "keypoints":
            return [points_box(p) if len(p) else np.zeros(4) for p in points]
        if self.box == "image":
            return [np.array([0, 0, i.shape[1] - 1, i.shape[0] - 1], float) for i in images]
        files = [self.root / "Annotations" / category / f"{p.stem}.mat" for p in paths]
        meta["source_annotation"], meta["target_annotation"] = str(files[0]), str(files[1])
        return [read_pf_annotation(f, where) for f in files]


def find_pf_willow_csv(root: str | Path) -> Path:
    """PF-WILLOW's pair list below ``root``.

    Args:
        root: the folder holding ``test_pairs.csv`` / ``test_pairs_pf.csv`` and
            ``PF-dataset/``, or ``PF-dataset`` itself.

    Returns:
        The first of :data:`PF_WILLOW_FILES` found in ``root``, ``root/PF-dataset`` or
        ``root/PF-WILLOW``.

    Raises:
        FileNotFoundError: none is found; the message says how to download it.
    """
    root = Path(root).expanduser()
    candidates = [
        folder / name
        for folder in (root, root / "PF-dataset", root / "PF-WILLOW")
        for name in PF_WILLOW_FILES
    ]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(
            f"no PF-WILLOW pair list below {root}: none of {[str(c) for c in candidates]} "
            "exists (python -m difflens.data download pf-willow --root DIR fetches it)"
        )
    return found


def _is_number_row(fields: list[str]) -> bool:
    try:
        return len(fields) > 2 and all(np.isfinite(float(v)) for v in fields[2:] if v)
    except ValueError:
        return False


def _willow_folder(entry: str) -> str:
    return PurePosixPath(entry.replace("\\", "/")).parent.name


class PFWillowDataset(_CSVPairs):
    """PF-WILLOW's 900 test pairs, as :class:`KeypointPair`.

    Args:
        root: the folder holding the pair list and ``PF-dataset/`` (module docstring).
        split: ``test`` (the only one).
        ids: pair ids (``"0001-<source stem>-<target stem>"``) to read instead of all.
        categories: keep only these folders (:data:`PF_WILLOW_CATEGORIES`).
        skipped: a :class:`SkipLog` to record skips in (a new one by default).

    A ``root`` without the pair list raises ``FileNotFoundError``.

    Raises:
        ValueError: a split other than ``test``, or an unknown category.
    """

    name = "pf-willow"

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        ids: Iterable[str] | None = None,
        categories: Iterable[str] | None = None,
        skipped: SkipLog | None = None,
    ):
        super().__init__(skipped)
        if split != "test":
            raise ValueError(f"PF-WILLOW has only a test split, not {split!r}")
        self.split = split
        self.csv_path = find_pf_willow_csv(root)
        self.root = self.csv_path.parent

        def category(fields: list[str]) -> str | None:
            return _willow_folder(fields[0]) or None if fields else None

        self.header, rows = read_pairs_csv(self.csv_path, _is_number_row)

        self._list_rows(rows, category, categories, PF_WILLOW_CATEGORIES, "PF-WILLOW")
        if ids is not None:
            self._keep(ids)

    def load_pair(self, pair_id: str) -> KeypointPair:
        """Read one row: both images and their 10 keypoints, checked.

        Args:
            pair_id: an entry of ``self.ids``.

        Returns:
            The pair; boxes around each image's keypoints; ``meta`` holds
            ``keypoint_extent`` and ``keypoint_extent_padded`` (module docstring), the
            object, the CSV and line and the image paths.

        Raises:
            DatasetError: ``missing coordinates``, ``corrupt annotation`` (a number that
                does not parse), ``missing file`` / ``corrupt image``,
                ``keypoint outside image``.
        """
        where = self._where(pair_id)
        _, fields = self.rows[pair_id]
        width = 2 + 4 * PF_WILLOW_POINTS
        if len(fields) < width or not all(fields[:width]):
            raise DatasetError(
                "missing coordinates",
                f"{where}: {sum(bool(f) for f in fields[2:width])} of {width - 2} coordinates",
            )
        try:
            values = np.array([float(v) for v in fields[2:width]]).reshape(4, PF_WILLOW_POINTS)
        except ValueError as err:
            raise DatasetError("corrupt annotation", f"{where}: {err}") from err
        points = [values[:2].T, values[2:].T]
        bases = (self.root, self.root.parent)
        paths = [resolve_image(f, bases) for f in fields[:2]]
        images = [read_pair_image(p, where) for p in paths]
        folder = _willow_folder(fields[0])
        meta = {
            "split": self.split,
            "csv": str(self.csv_path),
            "line": self.rows[pair_id][0],
            "object": folder.split("(")[0],
            "source_path": str(paths[0]),
            "target_path": str(paths[1]),
            "keypoint_extent": keypoint_extent(points[1]),
            "keypoint_extent_padded": keypoint_extent(points[1], padded=True),
        }
        return build_pair(
            f"pair {pair_id}",
            self._origin(pair_id),
            pair_id=pair_id,
            category=folder,
            source_image=images[0],
            target_image=images[1],
            source_points=points[0],
            target_points=points[1],
            keypoint_ids=[str(k) for k in range(PF_WILLOW_POINTS)],
            source_box=points_box(points[0]),
            target_box=points_box(points[1]),
            source_name=paths[0].name,
            target_name=paths[1].name,
            meta=meta,
        )
