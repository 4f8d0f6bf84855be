"""Image lists: the authors' ``src,dataset`` CSV format, written, read and resolved to files.

A list has one row per image or video: ``src`` (a VOC or COCO file name such as
``2010_001313.jpg`` / ``000000286033.jpg``, or a DAVIS sequence name) and ``dataset``
(``pascal``, ``coco`` or ``davis``; see :data:`difflens.data.names.LIST_TAGS`). The authors'
list (``data_lists/diffprops_images_and_video_list.csv``) and the lists
:mod:`difflens.data.selection` writes share it.

Resolving finds each row's file and split. A row that does not resolve (no file, an empty
``src``, an unknown ``dataset`` tag, the same image listed again) is kept in the result
with its reason, counted, named and logged, never dropped, and never read twice.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from difflens.core.skips import logger
from difflens.data.coco import COCO_SPLITS, coco_id, find_coco_root
from difflens.data.davis import find_davis_root
from difflens.data.names import LIST_TAGS
from difflens.data.voc import find_voc_root, voc_id, voc_splits

LIST_COLUMNS: tuple[str, ...] = ("src", "dataset")
"""The columns of an image list, in order."""


def write_list(
    path: str | Path, rows: Iterable[tuple[str, str]], record: dict | None = None
) -> tuple[Path, Path]:
    """Write an image list and the record of how it was made.

    Args:
        path: the CSV file (folders are created).
        rows: ``(src, dataset tag)`` pairs.
        record: what to write as YAML beside it (``<same name>.yaml``); empty by default.

    Returns:
        ``(csv path, yaml path)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LIST_COLUMNS)
        for src, tag in rows:
            writer.writerow([src, tag])
    sidecar = path.with_suffix(".yaml")
    sidecar.write_text(yaml.safe_dump(record or {}, sort_keys=False))
    return path, sidecar


def read_list(path: str | Path) -> pd.DataFrame:
    """Read an image list.

    Args:
        path: a CSV with at least the columns ``src`` and ``dataset``.

    Returns:
        The rows as strings (other columns kept), ``src`` stripped and ``dataset`` stripped
        and in lower case.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not a readable CSV or lacks a column; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image list {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"image list {path} is not a readable CSV ({err})") from err
    missing = [c for c in LIST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: columns {missing} missing; an image list has the columns "
            f"{','.join(LIST_COLUMNS)} (found {list(frame.columns)})"
        )
    frame["src"] = frame["src"].str.strip()
    frame["dataset"] = frame["dataset"].str.strip().str.lower()
    return frame


RESOLVED_COLUMNS = ("src", "dataset", "image_id", "split", "path", "resolved", "reason")
"""The columns of :attr:`ResolvedList.frame`."""


@dataclass
class ResolvedList:
    """Each row of an image list with its file, split and whether it resolved.

    Attributes:
        frame: one row per list row, in list order, with :data:`RESOLVED_COLUMNS`
            (``reason`` says why a row did not resolve, or notes something about one that did).
        roots: the dataset folders given, per list tag (``pascal``, ``coco``, ``davis``).
        source: the list file, when it was read from one.
    """

    frame: pd.DataFrame
    roots: dict[str, Path | None]
    source: str = ""

    def resolved(self, dataset: str | None = None) -> pd.DataFrame:
        """The rows that resolved.

        Args:
            dataset: a list tag to keep only its rows; ``None`` for all.

        Returns:
            Those rows of :attr:`frame`.
        """
        rows = self.frame[self.frame["resolved"]]
        return rows if dataset is None else rows[rows["dataset"] == dataset]

    def unresolved(self, dataset: str | None = None) -> pd.DataFrame:
        """The rows that did not resolve, with their reasons.

        Args:
            dataset: a list tag to keep only its rows; ``None`` for all.

        Returns:
            Those rows of :attr:`frame`.
        """
        rows = self.frame[~self.frame["resolved"]]
        return rows if dataset is None else rows[rows["dataset"] == dataset]

    def ids(self, dataset: str) -> list[str]:
        """The resolved ids of one dataset, in list order.

        Args:
            dataset: ``pascal``, ``coco`` or ``davis``.

        Returns:
            VOC ids, 12-digit COCO ids or DAVIS sequence names, each once.
        """
        return list(self.resolved(dataset)["image_id"])

    def counts(self) -> pd.DataFrame:
        """Listed, resolved and unresolved rows per dataset.

        Returns:
            Index: the list tags in order of appearance; columns ``listed``, ``resolved``,
            ``unresolved`` (integers).
        """
        grouped = self.frame.groupby("dataset", sort=False)["resolved"]
        listed, resolved = grouped.size(), grouped.sum().astype(int)
        return pd.DataFrame(
            {"listed": listed, "resolved": resolved, "unresolved": listed - resolved}
        )

    def summary(self, max_names: int = 10) -> str:
        """One line per dataset for a log or a notebook.

        Args:
            max_names: how many unresolved names to show per dataset.

        Returns:
            e.g. ``"pascal: 1000 listed, 998 resolved, 2 unresolved (a.jpg, b.jpg)"``.
        """
        parts = []
        for tag, row in self.counts().iterrows():
            text = f"{tag}: {row['listed']} listed, {row['resolved']} resolved"
            if row["unresolved"]:
                names = list(self.unresolved(tag)["src"])
                shown = ", ".join(names[:max_names]) + (" ..." if len(names) > max_names else "")
                text += f", {row['unresolved']} unresolved ({shown})"
            parts.append(text)
        return "; ".join(parts) if parts else "empty list"

    def load(self, dataset: str, **options):
        """The loader over the resolved rows of one dataset.

        Args:
            dataset: ``pascal``, ``coco`` or ``davis``.
            **options: passed to :func:`difflens.data.registry.load` (e.g. ``classes``
                for DAVIS).

        Returns:
            The dataset loader, reading the resolved ids in list order.

        Raises:
            ValueError: no root folder was given for ``dataset``.
        """
        from difflens.data.registry import load

        name = {"pascal": "voc"}.get(dataset, dataset)
        root = self.roots.get(dataset)
        if root is None:
            raise ValueError(f"no root folder was given for {dataset}")
        return load(name, root, ids=self.ids(dataset), **options)


def _row(src, tag, image_id=None, split=None, path=None, ok=False, reason=""):
    return {
        "src": src,
        "dataset": tag,
        "image_id": image_id,
        "split": split,
        "path": None if path is None else str(path),
        "resolved": ok,
        "reason": reason,
    }


def _resolve_voc(names: list[str], root: str | Path | None) -> list[dict]:
    if root is None:
        return [_row(n, "pascal", reason="no VOC root given") for n in names]
    try:
        base = find_voc_root(root)
    except FileNotFoundError as err:
        return [_row(n, "pascal", reason=str(err)) for n in names]
    split_of = voc_splits(base)
    out = []
    for name in names:
        image_id = voc_id(name)
        image = base / "JPEGImages" / f"{image_id}.jpg"
        objects = base / "SegmentationObject" / f"{image_id}.png"
        if not image.is_file():
            out.append(_row(name, "pascal", image_id, reason=f"no file {image}"))
        elif not objects.is_file():
            out.append(_row(name, "pascal", image_id, reason=f"no segmentation {objects}"))
        else:
            split = split_of.get(image_id)
            note = "" if split else "not listed in ImageSets/Segmentation"
            out.append(_row(name, "pascal", image_id, split, image, True, note))
    return out


def _resolve_coco(names: list[str], root: str | Path | None, splits: Sequence[str]) -> list[dict]:
    if root is None:
        return [_row(n, "coco", reason="no COCO root given") for n in names]
    try:
        base = find_coco_root(root)
    except FileNotFoundError as err:
        return [_row(n, "coco", reason=str(err)) for n in names]
    absent = [s for s in splits if not (base / s).is_dir()]
    hint = (
        f" ({', '.join(absent)} not on disk: python -m difflens.data download coco "
        f"--parts {','.join(absent)})"
        if absent
        else ""
    )
    out = []
    for name in names:
        image_id = coco_id(name)
        for split in splits:
            path = base / split / f"{image_id}.jpg"
            if path.is_file():
                out.append(_row(name, "coco", image_id, split, path, True))
                break
        else:
            where = ", ".join(f"{s}/" for s in splits)
            out.append(_row(name, "coco", image_id, reason=f"in none of {where}{hint}"))
    return out


def _resolve_davis(names: list[str], root: str | Path | None, resolution: str) -> list[dict]:
    if root is None:
        return [_row(n, "davis", reason="no DAVIS root given") for n in names]
    try:
        base = find_davis_root(root, resolution)
    except FileNotFoundError as err:
        return [_row(n, "davis", reason=str(err)) for n in names]
    split_of: dict[str, str] = {}
    for split in ("train", "val"):
        listed = base / "ImageSets" / "2017" / f"{split}.txt"
        if listed.is_file():
            for seq in listed.read_text().split():
                split_of.setdefault(seq, split)
    out = []
    for name in names:
        frames = base / "JPEGImages" / resolution / name
        masks = base / "Annotations" / resolution / name
        if not frames.is_dir():
            out.append(_row(name, "davis", name, reason=f"no sequence folder {frames}"))
        elif not masks.is_dir():
            out.append(_row(name, "davis", name, reason=f"no annotation folder {masks}"))
        else:
            out.append(_row(name, "davis", name, split_of.get(name), frames, True))
    return out


def _resolve_rows(
    frame: pd.DataFrame,
    roots: dict[str, str | Path | None],
    coco_splits: Sequence[str],
    davis_resolution: str,
) -> pd.DataFrame:
    """Resolve each dataset's rows together; the result is in list order."""
    rows: list[dict] = []
    order: list[int] = []
    by_tag: dict[str, list[int]] = {}
    for position, tag in enumerate(frame["dataset"]):
        by_tag.setdefault(tag, []).append(position)
    srcs = list(frame["src"])
    for tag, positions in by_tag.items():
        names = [srcs[i] for i in positions]
        if tag == "pascal":
            resolved = _resolve_voc(names, roots["pascal"])
        elif tag == "coco":
            resolved = _resolve_coco(names, roots["coco"], coco_splits)
        elif tag == "davis":
            resolved = _resolve_davis(names, roots["davis"], davis_resolution)
        else:
            known = ", ".join(LIST_TAGS.values())
            resolved = [
                _row(n, tag, reason=f"unknown dataset {tag!r} (known: {known})") for n in names
            ]
        rows += resolved
        order += positions
    table = pd.DataFrame(rows, columns=list(RESOLVED_COLUMNS))
    table.index = order
    return table.sort_index().reset_index(drop=True)


def _mark_unusable(table: pd.DataFrame) -> pd.DataFrame:
    """Unresolve rows with an empty ``src`` and rows naming an image listed before."""
    first: dict[tuple[str, str], int] = {}
    for row in table.itertuples():
        if not str(row.src).strip():
            table.loc[row.Index, ["resolved", "reason"]] = [False, "empty src"]
            continue
        if not row.resolved:
            continue
        key = (row.dataset, str(row.image_id))
        if key in first:
            table.loc[row.Index, ["resolved", "reason"]] = [
                False,
                f"repeats row {first[key] + 1} ({row.image_id}); an image is read once",
            ]
        else:
            first[key] = row.Index
    return table


def resolve_list(
    image_list: str | Path | pd.DataFrame,
    voc_root: str | Path | None = None,
    coco_root: str | Path | None = None,
    davis_root: str | Path | None = None,
    coco_splits: Sequence[str] = COCO_SPLITS,
    davis_resolution: str = "480p",
) -> ResolvedList:
    """Resolve every row of an image list to its file and split.

    ``pascal`` rows need ``JPEGImages/<name>`` and its ``SegmentationObject`` PNG (split
    from ``ImageSets/Segmentation``); ``coco`` rows are looked up in ``coco_splits`` in
    order (val2017, then train2017: the authors' list does not say which); ``davis`` rows
    are sequence folders with their annotation folder (split from ``ImageSets/2017``).
    Unresolved rows stay in the result with their reason; their count and names are logged
    as a warning. A row naming an image an earlier row already names is unresolved
    (``repeats row N``), so that no image is read twice.

    Args:
        image_list: a list file (see :func:`read_list`) or its rows.
        voc_root: the Pascal-VOC 2012 folder (or a folder above it).
        coco_root: the COCO 2017 folder (or a folder above it).
        davis_root: the DAVIS 2017 folder (or a folder above it).
        coco_splits: the COCO splits to look in, in order.
        davis_resolution: ``480p`` or ``Full-Resolution``.

    Returns:
        The :class:`ResolvedList`, one row per list row, in list order.
    """
    source = "" if isinstance(image_list, pd.DataFrame) else str(image_list)
    frame = image_list if isinstance(image_list, pd.DataFrame) else read_list(image_list)
    roots = {"pascal": voc_root, "coco": coco_root, "davis": davis_root}
    table = _mark_unusable(_resolve_rows(frame, roots, coco_splits, davis_resolution))
    result = ResolvedList(
        table, {tag: None if root is None else Path(root) for tag, root in roots.items()}, source
    )
    missing = result.unresolved()
    if len(missing):
        logger.warning(
            "%s: %d of %d rows unresolved: %s",
            source or "image list",
            len(missing),
            len(table),
            result.summary(),
        )
    return result
