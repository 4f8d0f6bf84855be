"""CUB-200-2011 keypoint pairs from the official layout of ``CUB_200_2011.tgz``.

``<root>/images.txt`` (``<image_id> <path>``), ``<root>/images/<path>``,
``<root>/train_test_split.txt`` (``<image_id> <is_training_image>``: 1 train, 0 test),
``<root>/image_class_labels.txt`` (``<image_id> <class_id>``), ``<root>/classes.txt``
(``<class_id> <name>``, e.g. ``001.Black_footed_Albatross``),
``<root>/bounding_boxes.txt`` (``<image_id> <x> <y> <width> <height>``, pixels; read as
the box ``x, y, x + width, y + height``), ``<root>/parts/parts.txt`` (``<part_id>
<name>``, 15 parts, names with spaces such as ``left eye``) and
``<root>/parts/part_locs.txt`` (``<image_id> <part_id> <x> <y> <visible>``, one line per
image and part; an invisible part has ``visible`` 0). ``root`` is the ``CUB_200_2011``
folder or the folder above it. Coordinates are used as stored.

Pairs (the default is Hedlin et al.'s protocol, ``ubc-vision/LDM_correspondences:
eval/cub2011.py``): the images of the chosen split (``test`` by default) of the chosen
classes (``classes=3``: class ids 1-3, their ``num_classes``), and, class by class, every
pair of two of its images (``itertools.combinations`` in ``images.txt`` order; the first
image is the source). A pair holds the parts visible in both images, in part-id order
(``keypoint_ids`` are the part ids as strings, ``meta["keypoint_names"]`` their names).
Unlike that loader, a pair with no part visible in both is left out (counted in
``dataset.skipped`` as ``no common keypoints``) rather than scored on zero points. Their
threshold, ``max(width, height)`` of the target box, is the larger side of
``target_box``. ``classes=`` also takes class ids or names, ``max_pairs=`` keeps a seeded
sample.

The DIFT paper instead reports CUB as the mean over 14 subsets of 25 test images, the
subsets of the congealing papers (GANgealing, Neural Congealing), which are built from
files outside this archive (the ACSM cleaned test annotations and their crops); those
subsets are not reproduced here.

Bad input (each a named, counted entry of ``dataset.skipped``; the reading goes on): a
line of an index file that does not parse, a ``part_locs.txt`` line naming an unknown
image or part, and, pair by pair, a missing or undecodable image, an image without part
or box records, a keypoint outside its image.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.data.keypoints import KeypointPair
from difflens.data.pairs import PairDataset, build_pair, read_pair_image, seeded_sample

CUB_SPLITS: tuple[str, ...] = ("train", "test")
"""The splits of ``train_test_split.txt``."""
CUB_PARTS = 15
"""Parts annotated per image."""


class UnknownImageError(ValueError):
    """An index line naming an image id that ``images.txt`` does not list."""


@dataclass
class CUBIndex:
    """The index files of CUB-200-2011, by image id (strings as the files write them).

    Attributes:
        images: image id -> path below ``images/``, in ``images.txt`` order.
        is_training: image id -> 1 (train) or 0 (test).
        class_of: image id -> class id.
        class_names: class id -> class name.
        boxes: image id -> ``(x1, y1, x2, y2)`` pixels.
        part_names: part id -> part name.
        parts: image id -> ``{part id: (x, y, visible)}``.
    """

    images: dict[str, str] = field(default_factory=dict)
    is_training: dict[str, int] = field(default_factory=dict)
    class_of: dict[str, int] = field(default_factory=dict)
    class_names: dict[int, str] = field(default_factory=dict)
    boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    part_names: dict[str, str] = field(default_factory=dict)
    parts: dict[str, dict[str, tuple[float, float, int]]] = field(default_factory=dict)

    def visible(self, image_id: str) -> set[str]:
        """The parts visible in an image.

        Args:
            image_id: the image.

        Returns:
            Its part ids with ``visible`` 1 (empty when it has no part records).
        """
        return {p for p, (_, _, v) in self.parts.get(image_id, {}).items() if v}


def find_cub_root(root: str | Path) -> Path:
    """The ``CUB_200_2011`` folder: ``root`` itself or ``root/CUB_200_2011``.

    Args:
        root: the CUB_200_2011 folder or the folder above it.

    Returns:
        The first candidate holding ``images.txt`` and ``parts/part_locs.txt``.

    Raises:
        FileNotFoundError: no candidate does; the message says how to download it.
    """
    root = Path(root).expanduser()
    for candidate in (root, root / "CUB_200_2011"):
        if (candidate / "images.txt").is_file() and (
            candidate / "parts" / "part_locs.txt"
        ).is_file():
            return candidate
    raise FileNotFoundError(
        f"no CUB-200-2011 tree at {root}: expected images.txt and parts/part_locs.txt in it "
        "or in CUB_200_2011/ below it (python -m difflens.data download cub --root DIR)"
    )


def read_table(
    path: Path, n_fields: int, parse: Callable[[list[str]], None], skipped: SkipLog
) -> None:
    """Read a whitespace-separated index file line by line.

    Args:
        path: the file.
        n_fields: fields per line; the last one takes the rest of the line (names with
            spaces).
        parse: called with the fields of each line; a ``ValueError`` it raises (an
            :class:`UnknownImageError` is counted as ``unknown image``), or a line with
            fewer fields, records the line in ``skipped``.
        skipped: where bad lines are recorded (item ``<file>:<line>``).

    Raises:
        FileNotFoundError: the file does not exist.
    """
    if not path.is_file():
        raise FileNotFoundError(f"CUB-200-2011 index file {path} does not exist")
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=n_fields - 1)
        problem: ValueError | None = None
        if len(fields) != n_fields:
            problem = ValueError(f"{len(fields)} fields, expected {n_fields}")
        else:
            try:
                parse(fields)
            except ValueError as err:
                problem = err
        if problem is not None:
            kind = (
                "unknown image" if isinstance(problem, UnknownImageError) else "corrupt annotation"
            )
            skipped.skip(f"{path.name}:{number}", f"{kind}: line {number} of {path}: {problem}")


def read_cub_index(root: Path, skipped: SkipLog) -> CUBIndex:
    """Read the index files of a CUB-200-2011 folder.

    Args:
        root: the ``CUB_200_2011`` folder.
        skipped: where lines that do not parse, and ``part_locs.txt`` lines naming an
            unknown image or part, are recorded.

    Returns:
        The index.
    """
    index = CUBIndex()

    def image(value: str) -> str:
        if value not in index.images:
            raise UnknownImageError(f"image {value} is not in images.txt")
        return value

    def part(fields: list[str]) -> None:
        image_id, part_id = image(fields[0]), fields[1]
        if part_id not in index.part_names:
            raise ValueError(f"part {part_id} is not in parts/parts.txt")
        x, y, visible = float(fields[2]), float(fields[3]), int(fields[4])
        index.parts.setdefault(image_id, {})[part_id] = (x, y, visible)

    def box(fields: list[str]) -> None:
        x, y, w, h = (float(v) for v in fields[1:])
        index.boxes[image(fields[0])] = (x, y, x + w, y + h)

    def add_image(fields: list[str]) -> None:
        index.images[fields[0]] = fields[1]

    def add_split(fields: list[str]) -> None:
        index.is_training[image(fields[0])] = int(fields[1])

    def add_label(fields: list[str]) -> None:
        index.class_of[image(fields[0])] = int(fields[1])

    def add_class(fields: list[str]) -> None:
        index.class_names[int(fields[0])] = fields[1]

    def add_part_name(fields: list[str]) -> None:
        index.part_names[fields[0]] = fields[1]

    tables = (
        ("images.txt", 2, add_image),
        ("train_test_split.txt", 2, add_split),
        ("image_class_labels.txt", 2, add_label),
        ("classes.txt", 2, add_class),
        ("bounding_boxes.txt", 5, box),
        ("parts/parts.txt", 2, add_part_name),
        ("parts/part_locs.txt", 5, part),
    )
    for name, n_fields, parse in tables:
        read_table(root / name, n_fields, parse, skipped)
    return index


def _class_ids(classes: int | Iterable[int | str] | None, names: dict[int, str]) -> list[int]:
    if classes is None:
        return sorted(names)
    if isinstance(classes, int):
        return list(range(1, classes + 1))
    by_name = {name: number for number, name in names.items()}
    chosen = []
    for c in [classes] if isinstance(classes, str) else classes:
        number = by_name.get(str(c)) or (int(c) if str(c).isdigit() else None)
        if number not in names:
            raise ValueError(
                f"CUB-200-2011 has no class {c!r}; give ids 1..200 or classes.txt names"
            )
        chosen.append(number)
    return chosen


class CUBPairs(PairDataset):
    """Within-class CUB-200-2011 pairs, as :class:`KeypointPair` (module docstring).

    Args:
        root: the ``CUB_200_2011`` folder (or the folder above it).
        split: ``test`` (default) or ``train``.
        ids: pair ids ``"<source image id>-<target image id>"`` to read instead.
        classes: the number of first classes (default 3, Hedlin's), or class ids / names,
            or ``None`` for all 200.
        max_pairs: keep a seeded sample of at most this many pairs (all classes together).
        seed: the seed of that sample.
        skipped: a :class:`SkipLog` to record skips in (a new one by default).

    A ``root`` without a CUB tree raises ``FileNotFoundError``.

    Raises:
        ValueError: an unknown split or class.
    """

    name = "cub"

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        ids: Iterable[str] | None = None,
        classes: int | Iterable[int | str] | None = 3,
        max_pairs: int | None = None,
        seed: int = 0,
        skipped: SkipLog | None = None,
    ):
        super().__init__(skipped)
        if split not in CUB_SPLITS:
            raise ValueError(f"unknown CUB-200-2011 split {split!r}; choose one of {CUB_SPLITS}")
        self.root = find_cub_root(root)
        self.split = split
        self.index = read_cub_index(self.root, self.skipped)
        self.class_ids = _class_ids(classes, self.index.class_names)
        if ids is None:
            self._list_pairs()
        else:
            for pair_id in (str(i) for i in ids):
                source, _, target = pair_id.partition("-")
                if source not in self.index.images or target not in self.index.images:
                    self.skipped.skip(
                        pair_id, f"unknown image: {pair_id} names an image not in images.txt"
                    )
                    continue
                self.ids.append(pair_id)
                self.category_of[pair_id] = self._class_name(source)
        if max_pairs is not None:
            self.ids = seeded_sample(self.ids, max_pairs, seed)

    def _class_name(self, image_id: str) -> str:
        number = self.index.class_of.get(image_id, 0)
        return self.index.class_names.get(number, f"class {number}")

    def _list_pairs(self) -> None:
        training = int(self.split == "train")
        members: dict[int, list[str]] = {c: [] for c in self.class_ids}
        for image_id in self.index.images:
            number = self.index.class_of.get(image_id)
            if number in members and self.index.is_training.get(image_id) == training:
                members[number].append(image_id)
        for number in self.class_ids:
            for source, target in itertools.combinations(members[number], 2):
                pair_id = f"{source}-{target}"
                common = self.index.visible(source) & self.index.visible(target)
                if not common and source in self.index.parts and target in self.index.parts:
                    self.skipped.skip(
                        pair_id,
                        f"no common keypoints: images {source} and {target} share no visible part",
                    )
                    continue
                self.ids.append(pair_id)
                self.category_of[pair_id] = self.index.class_names[number]

    def load_pair(self, pair_id: str) -> KeypointPair:
        """Read one pair: both images, the parts visible in both, the boxes.

        Args:
            pair_id: ``"<source image id>-<target image id>"``.

        Returns:
            The pair; ``meta`` holds the split, class id, image ids and paths and
            ``keypoint_names``.

        Raises:
            DatasetError: ``missing file`` / ``corrupt image``, ``not annotated`` (an
                image without part or box records), ``no common keypoints``,
                ``keypoint outside image``.
        """
        source, _, target = pair_id.partition("-")
        where = f"pair {pair_id}"
        for image_id in (source, target):
            if image_id not in self.index.parts or image_id not in self.index.boxes:
                raise DatasetError(
                    "not annotated", f"{where}: image {image_id} has no part or box records"
                )
        common = sorted(self.index.visible(source) & self.index.visible(target), key=int)
        if not common:
            raise DatasetError("no common keypoints", f"{where}: no part visible in both images")
        paths = [self.root / "images" / self.index.images[i] for i in (source, target)]
        images = [read_pair_image(p, where) for p in paths]
        points = [[self.index.parts[i][p][:2] for p in common] for i in (source, target)]
        return build_pair(
            where,
            str(self.root / "parts" / "part_locs.txt"),
            pair_id=pair_id,
            category=self._class_name(source),
            source_image=images[0],
            target_image=images[1],
            source_points=points[0],
            target_points=points[1],
            keypoint_ids=common,
            source_box=self.index.boxes[source],
            target_box=self.index.boxes[target],
            source_name=self.index.images[source],
            target_name=self.index.images[target],
            meta={
                "split": self.split,
                "class_id": self.index.class_of.get(source),
                "source_id": source,
                "target_id": target,
                "source_path": str(paths[0]),
                "target_path": str(paths[1]),
                "keypoint_names": [self.index.part_names[p] for p in common],
            },
        )
