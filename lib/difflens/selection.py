"""The paper's subset rules, seeded samples written as image lists, and reading image lists.

Rules (Sec. 3.1): an image qualifies when at least one of its objects covers more than 1 %
of the image area; COCO is restricted to the 20 VOC classes. The class restriction reads two
ways, both offered (``SelectionRules.class_rule``):

- ``"any_voc"`` (default): at least one object is in a VOC class. Objects of other classes
  are dropped from the scene by the COCO loader (``non_voc="drop"``), so every object the
  study sees is in a VOC class, and VOC and COCO share one vocabulary.
- ``"all_voc"``: every (non-crowd) object of the image is in a VOC class.

The 1 % rule counts the objects in ``counted_classes`` (the VOC classes), i.e. the objects
the scene keeps. A sample is the first ``n`` qualifying images of a seeded permutation of
the candidates (a uniform sample without replacement of the qualifying images), written
as a CSV with the authors' columns ``src,dataset`` and a YAML file beside it recording the
seed, the rules and the candidate pool.

Image lists (the authors' ``src,dataset`` CSV or ours) are resolved row by row to a file
and a split; rows that do not resolve are kept, counted, named and logged, never dropped.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from difflens.datasets.coco import COCO_SPLITS, coco_id, find_coco_root
from difflens.datasets.davis import find_davis_root
from difflens.datasets.readers import DatasetError
from difflens.datasets.voc import find_voc_root, voc_id, voc_splits
from difflens.datasets.vocabulary import DATASET_TAGS, VOC_CLASSES, voc_class_of_coco
from difflens.report import SkipLog
from difflens.scene import Scene

logger = logging.getLogger("difflens")

CLASS_RULES: tuple[str, ...] = ("any_voc", "all_voc")
LIST_COLUMNS: tuple[str, ...] = ("src", "dataset")
LIST_TAGS: tuple[str, ...] = ("pascal", "coco", "davis")


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class SelectionRules:
    """The subset rules: an object over ``min_area_fraction`` and the COCO class rule."""

    min_area_fraction: float = 0.01
    class_rule: str = "any_voc"
    counted_classes: tuple[str, ...] | None = VOC_CLASSES

    def __post_init__(self) -> None:
        if self.class_rule not in CLASS_RULES:
            raise ValueError(f"class_rule must be one of {CLASS_RULES}, got {self.class_rule!r}")
        if not 0 <= self.min_area_fraction < 1:
            raise ValueError(f"min_area_fraction must be in [0, 1), got {self.min_area_fraction}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["counted_classes"] = (
            None if self.counted_classes is None else list(self.counted_classes)
        )
        return out


def size_rule_failure(scene: Scene, rules: SelectionRules) -> str | None:
    """``None`` when some counted object covers more than the minimum fraction, else why not."""
    fractions = scene.area_fractions()
    counted = [
        f
        for f, name in zip(fractions, scene.class_names)
        if rules.counted_classes is None or name in rules.counted_classes
    ]
    if not counted:
        return "no object of a counted class"
    if max(counted) <= rules.min_area_fraction:
        return f"no object over {100 * rules.min_area_fraction:g}% of the image"
    return None


def class_rule_failure(coco_names: Sequence[str], rules: SelectionRules) -> str | None:
    """``None`` when the image's COCO classes pass the class rule, else why not."""
    in_voc = [voc_class_of_coco(name) is not None for name in coco_names]
    if not any(in_voc):
        return "no object in a VOC class"
    if rules.class_rule == "all_voc" and not all(in_voc):
        return "an object outside the VOC classes"
    return None


# --------------------------------------------------------------------------- sampling


@dataclass
class Selection:
    """A seeded sample of qualifying images and how it was drawn."""

    dataset: str
    src: list[str]
    image_ids: list[str]
    splits: list[str | None]
    seed: int
    n_requested: int
    rules: SelectionRules
    n_candidates: int
    candidates_sha256: str
    examined: int
    rejected: Counter = field(default_factory=Counter)
    skipped: SkipLog = field(default_factory=SkipLog)

    @property
    def complete(self) -> bool:
        return len(self.src) == self.n_requested

    def to_frame(self) -> pd.DataFrame:
        """The list in the authors' format: columns ``src``, ``dataset``."""
        return pd.DataFrame({"src": self.src, "dataset": [self.dataset] * len(self.src)})

    def record(self) -> dict:
        """What the YAML file beside the list holds."""
        from difflens import __version__

        return {
            "dataset": self.dataset,
            "n_requested": self.n_requested,
            "n_selected": len(self.src),
            "seed": self.seed,
            "sampling": "first n qualifying images of numpy.random.default_rng(seed)"
            ".permutation(candidates)",
            "rules": self.rules.to_dict(),
            "candidates": {"count": self.n_candidates, "sha256": self.candidates_sha256},
            "examined": self.examined,
            "rejected": dict(self.rejected),
            "skipped": self.skipped.summary(),
            "splits": dict(Counter(str(s) for s in self.splits)),
            "difflens_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def write(self, path: str | Path) -> tuple[Path, Path]:
        """Write the CSV list and ``<same name>.yaml`` beside it; returns both paths."""
        return write_list(path, zip(self.src, [self.dataset] * len(self.src)), self.record())


def ids_digest(ids: Iterable[str]) -> str:
    """SHA-256 of the newline-joined ids: names a candidate pool in the record."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def select(
    dataset,
    n: int,
    seed: int = 0,
    rules: SelectionRules | None = None,
    progress: bool = True,
) -> Selection:
    """A seeded sample of ``n`` images of ``dataset`` (VOC or COCO loader) passing ``rules``.

    The candidates (``dataset.ids``, in the dataset's order) are permuted with
    ``numpy.random.default_rng(seed)`` and examined in that order until ``n`` qualify.
    Unreadable images are skipped and counted; an image failing a rule is counted per
    reason in ``rejected``. Fewer than ``n`` qualifying images give an incomplete selection
    (``selection.complete`` is false) and a warning.
    """
    rules = rules or SelectionRules()
    ids = list(dataset.ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    tag = DATASET_TAGS.get(getattr(dataset, "name", ""), getattr(dataset, "name", "unknown"))
    picked_src: list[str] = []
    picked_ids: list[str] = []
    splits: list[str | None] = []
    rejected: Counter = Counter()
    skipped = SkipLog()
    examined = 0
    has_classes = hasattr(dataset, "image_categories")
    bar = tqdm(total=n, desc=f"select {tag}", unit="img", disable=not progress)
    for index in order:
        if len(picked_src) >= n:
            break
        image_id = ids[int(index)]
        examined += 1
        try:
            if has_classes:
                reason = class_rule_failure(dataset.image_categories(image_id), rules)
                if reason:
                    rejected[reason] += 1
                    continue
            scene = dataset.load_scene(image_id)
        except DatasetError as err:
            skipped.skip(image_id, str(err))
            continue
        reason = size_rule_failure(scene, rules)
        if reason:
            rejected[reason] += 1
            continue
        picked_src.append(str(scene.meta.get("file", scene.image_id)))
        picked_ids.append(scene.image_id)
        splits.append(scene.meta.get("split"))
        bar.update(1)
    bar.close()
    selection = Selection(
        dataset=tag,
        src=picked_src,
        image_ids=picked_ids,
        splits=splits,
        seed=seed,
        n_requested=n,
        rules=rules,
        n_candidates=len(ids),
        candidates_sha256=ids_digest(ids),
        examined=examined,
        rejected=rejected,
        skipped=skipped,
    )
    if not selection.complete:
        logger.warning(
            "%s: only %d of %d requested images qualify among %d candidates",
            tag,
            len(picked_src),
            n,
            len(ids),
        )
    return selection


# --------------------------------------------------------------------------- list files


def write_list(
    path: str | Path, rows: Iterable[tuple[str, str]], record: dict | None = None
) -> tuple[Path, Path]:
    """Write ``rows`` as a ``src,dataset`` CSV and ``record`` as YAML beside it."""
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
    """An image list with columns ``src`` and ``dataset`` (other columns are kept)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image list {path} does not exist")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
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


@dataclass
class ResolvedList:
    """Each row of an image list with its file, split and whether it resolved."""

    frame: pd.DataFrame
    roots: dict[str, Path | None]
    source: str = ""

    def resolved(self, dataset: str | None = None) -> pd.DataFrame:
        rows = self.frame[self.frame["resolved"]]
        return rows if dataset is None else rows[rows["dataset"] == dataset]

    def unresolved(self, dataset: str | None = None) -> pd.DataFrame:
        rows = self.frame[~self.frame["resolved"]]
        return rows if dataset is None else rows[rows["dataset"] == dataset]

    def ids(self, dataset: str) -> list[str]:
        """Resolved ids of one dataset (``pascal``, ``coco``, ``davis``), in list order."""
        return list(self.resolved(dataset)["image_id"])

    def counts(self) -> pd.DataFrame:
        """Listed / resolved / unresolved rows per dataset."""
        grouped = self.frame.groupby("dataset", sort=False)["resolved"]
        listed, resolved = grouped.size(), grouped.sum().astype(int)
        return pd.DataFrame(
            {"listed": listed, "resolved": resolved, "unresolved": listed - resolved}
        )

    def summary(self, max_names: int = 10) -> str:
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
        """The loader over the resolved rows of ``dataset`` (``pascal``, ``coco``, ``davis``)."""
        from difflens.datasets import load

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
    order (val2017, then train2017); ``davis`` rows are sequence folders (split from
    ``ImageSets/2017``). Unresolved rows stay in the result with their reason; their count
    and names are logged as a warning.
    """
    source = "" if isinstance(image_list, pd.DataFrame) else str(image_list)
    frame = image_list if isinstance(image_list, pd.DataFrame) else read_list(image_list)
    rows: list[dict] = []
    order: list[int] = []
    by_tag: dict[str, list[int]] = {}
    for position, tag in enumerate(frame["dataset"]):
        by_tag.setdefault(tag, []).append(position)
    srcs = list(frame["src"])
    for tag, positions in by_tag.items():
        names = [srcs[i] for i in positions]
        if tag == "pascal":
            resolved = _resolve_voc(names, voc_root)
        elif tag == "coco":
            resolved = _resolve_coco(names, coco_root, coco_splits)
        elif tag == "davis":
            resolved = _resolve_davis(names, davis_root, davis_resolution)
        else:
            resolved = [
                _row(n, tag, reason=f"unknown dataset {tag!r} (known: {', '.join(LIST_TAGS)})")
                for n in names
            ]
        rows += resolved
        order += positions
    table = pd.DataFrame(rows, columns=list(RESOLVED_COLUMNS))
    table.index = order
    table = table.sort_index().reset_index(drop=True)
    result = ResolvedList(
        table,
        {
            "pascal": None if voc_root is None else Path(voc_root),
            "coco": None if coco_root is None else Path(coco_root),
            "davis": None if davis_root is None else Path(davis_root),
        },
        source,
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
