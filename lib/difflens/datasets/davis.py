"""DAVIS 2017 video object segmentation from the official layout; one scene per frame.

``<root>/JPEGImages/480p/<sequence>/00000.jpg``, ``<root>/Annotations/480p/<sequence>/00000.png``
(palette PNGs: 0 background, 1..N the sequence's objects, 255 void) and
``<root>/ImageSets/2017/{train,val}.txt``. An object keeps its id in every frame, so
``instance_key`` (``"dancing#2"``) names one person through the whole sequence: a frame's
``image_id`` is ``"dancing/00010"`` and its ``source_image`` is the sequence name.

DAVIS annotations carry no classes. They come from (1) a ``classes`` mapping given by the
user, then (2) the semantics file ``davis_semantics.json`` (``{sequence: {"1": class}}``,
the DAVIS 2017 semantics archive; found in ``root`` automatically). An object with no class
in either is skipped and counted. The semantics file was released with the DAVIS 2017
challenges; check that its object ids match the annotation folder you read
(``annotations="Annotations"`` by default).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from difflens.datasets.base import SceneDataset
from difflens.datasets.readers import DatasetError, read_id_list, read_label_png, read_rgb
from difflens.datasets.vocabulary import VOC_BACKGROUND, VOC_VOID
from difflens.report import SkipLog
from difflens.scene import Scene

logger = logging.getLogger("difflens")

DAVIS_SPLITS: tuple[str, ...] = ("train", "val", "trainval")
SEMANTICS_FILE = "davis_semantics.json"
PAPER_DAVIS_SEQUENCES: tuple[str, ...] = (
    "boxing-fisheye",
    "dancing",
    "disc-jockey",
    "india",
    "judo",
    "lindy-hop",
    "tuk-tuk",
    "walking",
)
"""The 8 sequences of the authors' list ("multiple instances of people")."""
PAPER_DAVIS_CLASSES: dict[str, str] = {sequence: "person" for sequence in PAPER_DAVIS_SEQUENCES}
"""The paper's reading of its sequences (every object a person), as a ``classes`` mapping.

Only used when asked for: ``load("davis", root, ids=PAPER_DAVIS_SEQUENCES,
classes=PAPER_DAVIS_CLASSES)``. The semantics file, where present, is the better source.
"""

ClassMapping = str | Mapping[str, str | Mapping[int | str, str]]


def find_davis_root(root: str | Path, resolution: str = "480p") -> Path:
    """The DAVIS folder: ``root`` or ``root/DAVIS``, whichever holds ``JPEGImages/<resolution>``."""
    root = Path(root).expanduser()
    for candidate in (root, root / "DAVIS"):
        if (candidate / "JPEGImages" / resolution).is_dir():
            return candidate
    raise FileNotFoundError(
        f"no DAVIS 2017 tree at {root}: expected JPEGImages/{resolution}/ in it or in DAVIS/ "
        "below it (python -m difflens.data download davis --root DIR fetches it)"
    )


def read_semantics(path: str | Path) -> dict[str, dict[int, str]]:
    """``davis_semantics.json`` -> ``{sequence: {object id: class}}``."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the DAVIS semantics file {path}: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object {{sequence: {{id: class}}}}")
    return {str(seq): {int(k): str(v) for k, v in objs.items()} for seq, objs in raw.items()}


def frame_id(sequence: str, frame: str | int) -> str:
    """``"dancing/00010"`` from ``("dancing", 10)`` or ``("dancing", "00010")``."""
    name = f"{int(frame):05d}" if isinstance(frame, int) else str(frame)
    return f"{sequence}/{name}"


class FrameSequence(Sequence):
    """The frames of one sequence in order, read when indexed (``len`` known at once)."""

    def __init__(self, dataset: DAVISDataset, sequence: str, frame_names: list[str]):
        self.dataset = dataset
        self.sequence = sequence
        self.frame_names = frame_names

    def __len__(self) -> int:
        return len(self.frame_names)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.dataset.load_scene(frame_id(self.sequence, self.frame_names[index]))

    def __repr__(self) -> str:
        return f"FrameSequence({self.sequence!r}, {len(self)} frames)"


class DAVISDataset(SceneDataset):
    """DAVIS 2017 frames as scenes.

    Args:
        root: the DAVIS folder (or a folder holding ``DAVIS/``).
        split: ``train``, ``val`` or ``trainval``; default: every sequence listed in
            ``ImageSets/2017`` (or found on disk), or only ``ids``.
        ids: sequence names (``"dancing"``: all its frames) and/or frame ids
            (``"dancing/00010"``).
        resolution: ``480p`` (default) or ``Full-Resolution``.
        semantics: path to (or the content of) ``davis_semantics.json``; ``None`` looks for
            it in ``root``; ``False`` ignores it.
        classes: a class for every object (``"person"``), or ``{sequence: class}``, or
            ``{sequence: {object id: class}}``; it overrides the semantics file where both
            name an object. The paper's sequences show people: ``classes="person"`` is
            that reading, to be asked for explicitly.
        annotations: the annotation folder (``Annotations`` or ``Annotations_unsupervised``).
        skipped, skip_empty: as for the other datasets (a frame without objects is skipped
            when iterating; :meth:`frames` returns every frame).
    """

    name = "davis"

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        ids: Iterable[str] | None = None,
        resolution: str = "480p",
        semantics: str | Path | Mapping | bool | None = None,
        classes: ClassMapping | None = None,
        annotations: str = "Annotations",
        skipped: SkipLog | None = None,
        skip_empty: bool = True,
    ):
        super().__init__(skipped, skip_empty)
        self.root = find_davis_root(root, resolution)
        self.resolution = resolution
        self.annotations = annotations
        if split is not None and split not in DAVIS_SPLITS:
            raise ValueError(f"unknown DAVIS split {split!r}; choose one of {DAVIS_SPLITS}")
        self.split = split
        self.semantics = self._semantics(semantics)
        self.classes = classes
        if self.semantics is None and classes is None:
            raise ValueError(
                f"DAVIS objects need classes: no {SEMANTICS_FILE} in {self.root} and no "
                "`classes` given. Pass semantics=PATH (the DAVIS 2017 semantics file), or "
                "classes='person' (every object a person, the paper's reading for its 8 "
                "sequences), or classes={sequence: class} / {sequence: {id: class}}."
            )
        self.split_of = self._read_splits()
        self._frames: dict[str, list[str]] = {}
        self.ids = self._select_ids(ids)

    # ---------------------------------------------------------------- set-up
    def _semantics(self, semantics) -> dict[str, dict[int, str]] | None:
        if semantics is False:
            return None
        if semantics is None:
            path = self.root / SEMANTICS_FILE
            return read_semantics(path) if path.is_file() else None
        if isinstance(semantics, Mapping):
            return {
                str(seq): {int(k): str(v) for k, v in objs.items()}
                for seq, objs in semantics.items()
            }
        return read_semantics(semantics)

    def _read_splits(self) -> dict[str, str]:
        split_of: dict[str, str] = {}
        for split in ("train", "val"):
            path = self.root / "ImageSets" / "2017" / f"{split}.txt"
            if path.is_file():
                for seq in read_id_list(path):
                    split_of.setdefault(seq, split)
        return split_of

    def _split_members(self, split: str) -> list[str]:
        names = ("train", "val") if split == "trainval" else (split,)
        out: list[str] = []
        for name in names:
            out += read_id_list(self.root / "ImageSets" / "2017" / f"{name}.txt")
        return out

    def _select_ids(self, ids: Iterable[str] | None) -> list[str]:
        if ids is None:
            if self.split is not None:
                sequences = self._split_members(self.split)
            elif self.split_of:
                sequences = list(self.split_of)
            else:
                sequences = sorted(p.name for p in self.image_dir().iterdir() if p.is_dir())
            wanted = list(sequences)
        else:
            wanted = [str(i).strip().strip("/") for i in ids]
            if self.split is not None:
                members = set(self._split_members(self.split))
                for item in wanted:
                    if item.split("/")[0] not in members:
                        self.skipped.skip(
                            item, f"not in split: {item.split('/')[0]} is not in {self.split}"
                        )
                wanted = [i for i in wanted if i.split("/")[0] in members]
        out: list[str] = []
        for item in wanted:
            if "/" in item:
                out.append(item)
                continue
            try:
                out += [frame_id(item, name) for name in self.frame_names(item)]
            except DatasetError as err:
                self.skipped.skip(item, str(err))
        return out

    # ---------------------------------------------------------------- access
    def image_dir(self, sequence: str | None = None) -> Path:
        base = self.root / "JPEGImages" / self.resolution
        return base if sequence is None else base / sequence

    def annotation_dir(self, sequence: str) -> Path:
        return self.root / self.annotations / self.resolution / sequence

    @property
    def sequences(self) -> list[str]:
        """The sequences of ``ids``, in order."""
        return list(dict.fromkeys(i.split("/")[0] for i in self.ids))

    def frame_names(self, sequence: str) -> list[str]:
        """Frame file stems of ``sequence`` (``00000``, ``00001``, ...), sorted."""
        if sequence not in self._frames:
            folder = self.image_dir(sequence)
            if not folder.is_dir():
                raise DatasetError("missing file", f"sequence folder {folder} does not exist")
            self._frames[sequence] = sorted(p.stem for p in folder.glob("*.jpg"))
        return self._frames[sequence]

    def frames(self, sequence: str) -> FrameSequence:
        """Every frame of ``sequence`` in order, read lazily (``frames[10]`` is frame 10)."""
        return FrameSequence(self, sequence, self.frame_names(sequence))

    def class_of(self, sequence: str, object_id: int) -> str | None:
        """The class of object ``object_id`` of ``sequence`` (``None`` if unknown)."""
        user = self.classes
        if isinstance(user, str):
            return user
        if isinstance(user, Mapping) and sequence in user:
            entry = user[sequence]
            if isinstance(entry, str):
                return entry
            for key in (object_id, str(object_id)):
                if key in entry:
                    return str(entry[key])
        if self.semantics is not None and sequence in self.semantics:
            return self.semantics[sequence].get(object_id)
        return None

    def load_scene(self, image_id: str) -> Scene:
        sequence, _, name = str(image_id).partition("/")
        image_path = self.image_dir(sequence) / f"{name}.jpg"
        ann_path = self.annotation_dir(sequence) / f"{name}.png"
        if not image_path.is_file():
            raise DatasetError("missing file", f"frame {image_path} does not exist")
        if not ann_path.is_file():
            raise DatasetError("not annotated", f"{ann_path} does not exist")
        image = read_rgb(image_path)
        labels = read_label_png(ann_path)
        if labels.shape != image.shape[:2]:
            raise DatasetError(
                "size mismatch",
                f"{ann_path} is {labels.shape[1]}x{labels.shape[0]} but {image_path} is "
                f"{image.shape[1]}x{image.shape[0]} (width x height)",
            )
        masks, names, ids = [], [], []
        for value in np.unique(labels):
            value = int(value)
            if value in (VOC_BACKGROUND, VOC_VOID):
                continue
            name_of = self.class_of(sequence, value)
            if name_of is None:
                self.skipped.skip(
                    f"{image_id}#{value}",
                    f"unknown class: object {value} of {ann_path} has no class in the "
                    "semantics file or the `classes` mapping",
                )
                continue
            masks.append(labels == value)
            names.append(name_of)
            ids.append(value)
        h, w = labels.shape
        return Scene(
            image=image,
            masks=np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool),
            class_names=names,
            instance_ids=ids,
            image_id=f"{sequence}/{name}",
            source_image=sequence,
            meta={
                "dataset": "davis",
                "split": self.split_of.get(sequence),
                "sequence": sequence,
                "frame": int(name) if name.isdigit() else name,
                "file": f"{sequence}/{name}.jpg",
                "image_path": str(image_path),
                "annotation": str(ann_path),
            },
        )
