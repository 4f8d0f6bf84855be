"""DAVIS 2017 video object segmentation from the official layout; one scene per frame.

``<root>/JPEGImages/480p/<sequence>/00000.jpg``, ``<root>/Annotations/480p/<sequence>/00000.png``
(palette PNGs: 0 background, 1..N the sequence's objects, 255 void) and
``<root>/ImageSets/2017/{train,val}.txt``. An object keeps its id in every frame, so
``instance_key`` (``"dancing#2"``) names one person through the whole sequence: a frame's
``image_id`` is ``"dancing/00010"`` and its ``source_image`` is the sequence name.

DAVIS annotations carry no classes. Scenes take them from (1) a ``classes`` mapping given
by the user, then (2) the semantics file ``davis_semantics.json`` (``{sequence: {"1":
class}}``, the DAVIS 2017 semantics archive; found in ``root`` automatically). An object
with no class in either is skipped and counted. The semantics file was released with the
DAVIS 2017 challenges; check that its object ids match the annotation folder you read
(``annotations="Annotations"`` by default).

Label propagation needs no class: :meth:`DAVISDataset.video` reads a sequence's frames and
label maps (the annotation PNGs' values, their palette) whatever the class sources, so a
dataset opened with neither (``classes=None`` and no semantics file) reads videos; only
reading scenes from it raises ``ValueError``, with the ways to give classes.

Frame numbers come from the file names (``00010.jpg`` is frame 10, and so is ``10.jpg``):
frames are ordered by number, and a gap in the numbering (a partial download, a
subsampled copy) stays a gap, logged when the sequence is listed, so that frame offsets
(:func:`difflens.data.video.frames_at_offsets`) are never shifted by it.

Bad input, item by item (each a named, counted entry of ``dataset.skipped``; the other
frames are still read): a missing or undecodable frame or annotation PNG, or a PNG whose
size differs from the frame's, skips the frame; an object without a class skips that
object; a file whose name is not a frame number in a numbered folder, or two files with
one number (``7.jpg`` and ``007.jpg``), are left out of the frame list.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.data.base import SceneDataset, build_scene
from difflens.data.images import read_image
from difflens.data.readers import read_id_list, read_label_png
from difflens.data.scene import Scene
from difflens.data.vocabulary import VOC_BACKGROUND, VOC_VOID

logger = logging.getLogger("difflens")

DAVIS_SPLITS: tuple[str, ...] = ("train", "val", "trainval")
"""The splits of ``ImageSets/2017`` (``trainval`` is both lists)."""
SEMANTICS_FILE = "davis_semantics.json"
"""The name of the DAVIS 2017 semantics file, looked for in the DAVIS folder."""
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
"""A class for every object, per sequence, or per sequence and object id."""


def find_davis_root(root: str | Path, resolution: str = "480p") -> Path:
    """The DAVIS folder: ``root`` or ``root/DAVIS``, whichever holds ``JPEGImages/<resolution>``.

    Args:
        root: a DAVIS folder or the folder above it.
        resolution: ``480p`` or ``Full-Resolution``.

    Returns:
        The folder holding ``JPEGImages/<resolution>``.

    Raises:
        FileNotFoundError: neither candidate does; the message says how to download DAVIS.
    """
    root = Path(root).expanduser()
    for candidate in (root, root / "DAVIS"):
        if (candidate / "JPEGImages" / resolution).is_dir():
            return candidate
    raise FileNotFoundError(
        f"no DAVIS 2017 tree at {root}: expected JPEGImages/{resolution}/ in it or in DAVIS/ "
        "below it (python -m difflens.data download davis --root DIR fetches it)"
    )


def read_semantics(path: str | Path) -> dict[str, dict[int, str]]:
    """Read a DAVIS 2017 semantics file.

    Args:
        path: ``davis_semantics.json``: ``{sequence: {"1": class, "2": class}}``.

    Returns:
        ``{sequence: {object id: class}}``.

    Raises:
        ValueError: the file cannot be read, is not JSON of that shape, or an object id is
            not an integer; the message names the file.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the DAVIS semantics file {path}: {err}") from err
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ValueError(f"{path}: expected a JSON object {{sequence: {{id: class}}}}")
    try:
        return {str(seq): {int(k): str(v) for k, v in objs.items()} for seq, objs in raw.items()}
    except ValueError as err:
        raise ValueError(f"{path}: an object id is not an integer ({err})") from err


def frame_id(sequence: str, frame: str | int) -> str:
    """The image id of one frame.

    Args:
        sequence: the sequence name, e.g. ``"dancing"``.
        frame: the frame number (formatted with 5 digits, as DAVIS names its files) or the
            file stem as it is on disk.

    Returns:
        ``"dancing/00010"`` from ``("dancing", 10)`` or ``("dancing", "00010")``.
    """
    name = f"{int(frame):05d}" if isinstance(frame, int) else str(frame)
    return f"{sequence}/{name}"


def is_frame_number(stem: str) -> bool:
    """Whether a file stem is a frame number (ASCII digits only, as ``00010`` or ``10``).

    Args:
        stem: a file name without its extension.

    Returns:
        True when ``int(stem)`` is its frame number.
    """
    return stem.isascii() and stem.isdigit()


def number_frames(stems: Sequence[str], where: str) -> tuple[list[str], list[int] | None, dict]:
    """Order frame file stems by the frame number their names carry.

    DAVIS names frames ``00000.jpg``, ``00001.jpg``, ...; copies may drop the zero padding
    (``7.jpg``), so numbers are read as integers and sorted as such. A stem that is not a
    number in a numbered folder, and every stem of a number that occurs twice (``7.jpg`` and
    ``007.jpg``), cannot be placed and are left out. A folder with no numbered stem keeps
    its names in sorted order, without numbers.

    Args:
        stems: the file stems found.
        where: the folder, for messages.

    Returns:
        ``(names, numbers, left_out)``: the kept stems in frame order, their frame numbers
        (``None`` when the names carry none) and ``{stem: reason}`` for each stem left out.
    """
    numbered = [s for s in stems if is_frame_number(s)]
    if not numbered:
        return sorted(stems), None, {}
    left_out = {
        s: f"unnumbered frame: {s} in {where} is not a frame number"
        for s in stems
        if not is_frame_number(s)
    }
    counts = Counter(int(s) for s in numbered)
    for stem in numbered:
        if counts[int(stem)] > 1:
            twins = sorted(t for t in numbered if int(t) == int(stem))
            left_out[stem] = (
                f"repeated frame number: {', '.join(twins)} in {where} are all frame {int(stem)}"
            )
    kept = sorted((int(s), s) for s in numbered if s not in left_out)
    return [s for _, s in kept], [n for n, _ in kept], left_out


def missing_numbers(numbers: Sequence[int]) -> list[int]:
    """The frame numbers absent between the first and the last.

    Args:
        numbers: frame numbers in increasing order.

    Returns:
        The gaps, in increasing order (empty for a complete sequence).
    """
    if not numbers:
        return []
    present = set(numbers)
    return [n for n in range(numbers[0], numbers[-1] + 1) if n not in present]


class _SequenceFrames(Sequence):
    """A sequence's frames in folder order, each read by :meth:`_frame` when indexed."""

    def __init__(
        self,
        dataset: DAVISDataset,
        sequence: str,
        frame_names: list[str],
        frame_numbers: list[int] | None = None,
    ):
        self.dataset = dataset
        self.sequence = sequence
        self.frame_names = frame_names
        self.frame_numbers = frame_numbers

    def __len__(self) -> int:
        return len(self.frame_names)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._frame(index)

    def _frame(self, index: int):
        raise NotImplementedError


class FrameSequence(_SequenceFrames):
    """The frames of one sequence in order, read when indexed (``len`` known at once).

    Indexing is by position in the folder's frame order; ``frame_numbers[i]`` is the frame
    number of position ``i`` (from the file name), which differs from ``i`` after a gap in
    the numbering. :func:`difflens.data.video.frames_at_offsets` reads those numbers.

    Args:
        dataset: the dataset that reads the frames.
        sequence: the sequence name.
        frame_names: the frames' file stems, in frame order.
        frame_numbers: their frame numbers, or ``None`` when the names carry none.
    """

    def _frame(self, index: int):
        return self.dataset.load_scene(frame_id(self.sequence, self.frame_names[index]))

    def __repr__(self) -> str:
        return f"FrameSequence({self.sequence!r}, {len(self)} frames)"


def read_palette(path: str | Path) -> np.ndarray | None:
    """The colour palette of an indexed PNG.

    Args:
        path: the PNG.

    Returns:
        ``(N, 3)`` uint8 RGB colours (label ``k`` drawn as row ``k``), or ``None`` when the
        PNG is not indexed.

    Raises:
        DatasetError: ``corrupt image`` when the file cannot be read.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            raw = image.getpalette() if image.mode == "P" else None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetError("corrupt image", f"{path}: {err}") from err
    return None if raw is None else np.asarray(raw, dtype=np.uint8).reshape(-1, 3)


class DavisVideo(_SequenceFrames):
    """The frames of one sequence with their label maps; no classes involved.

    Indexing gives the frames' ``(H, W, 3)`` uint8 RGB images in frame order, each read when
    indexed (a sequence is never held in memory by this object); :meth:`labels` gives a
    frame's annotation as it is on disk (0 background, 1..N the objects, 255 void).

    Args:
        dataset: the dataset that locates the files.
        sequence: the sequence name.
        frame_names: the frames' file stems, in frame order.
        frame_numbers: their frame numbers (``None`` when the names carry none).

    Attributes:
        sequence: the sequence name.
        frame_names: file stems in frame order (``"00000"``, ...), as result PNGs are named.
        frame_numbers: frame numbers from the file names, or ``None``.
    """

    def _frame(self, index: int):
        path = self.dataset.image_dir(self.sequence) / f"{self.frame_names[index]}.jpg"
        if not path.is_file():
            raise DatasetError("missing file", f"frame {path} does not exist")
        return read_image(path, colour="convert")

    def annotation_path(self, index: int) -> Path:
        """The annotation PNG of frame ``index``.

        Args:
            index: position in frame order.

        Returns:
            ``<root>/<annotations>/<resolution>/<sequence>/<frame>.png`` (it may not exist).
        """
        return self.dataset.annotation_dir(self.sequence) / f"{self.frame_names[index]}.png"

    def labels(self, index: int) -> np.ndarray:
        """The label values of frame ``index``'s annotation.

        Args:
            index: position in frame order.

        Returns:
            ``(H, W)`` uint8 labels as stored (255 void is kept).

        Raises:
            DatasetError: the annotation is missing (``not annotated``) or corrupt.
        """
        path = self.annotation_path(index)
        if not path.is_file():
            raise DatasetError("not annotated", f"{path} does not exist")
        return read_label_png(path)

    def label_maps(self) -> np.ndarray:
        """The label maps of every frame.

        Returns:
            ``(T, H, W)`` uint8 labels, in frame order.

        Raises:
            DatasetError: an annotation is missing or corrupt, or two differ in size.
        """
        maps = [self.labels(i) for i in range(len(self))]
        for index, labels in enumerate(maps):
            if labels.shape != maps[0].shape:
                raise DatasetError(
                    "size mismatch",
                    f"{self.annotation_path(index)} is {labels.shape}, "
                    f"{self.annotation_path(0)} is {maps[0].shape}",
                )
        return np.stack(maps) if maps else np.zeros((0, 0, 0), np.uint8)

    @property
    def palette(self) -> np.ndarray | None:
        """The first annotation's ``(N, 3)`` uint8 palette (None when it is not indexed)."""
        return read_palette(self.annotation_path(0))

    def __repr__(self) -> str:
        return f"DavisVideo({self.sequence!r}, {len(self)} frames)"


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
        skipped: a :class:`SkipLog` to record skips in (a new one by default).
        skip_empty: skip (and count) frames without objects when iterating
            (:meth:`frames` returns every frame).

    A ``root`` without a DAVIS tree raises ``FileNotFoundError``, an unreadable semantics
    file ``ValueError``. Without any class source (``classes=None`` and no semantics file)
    the dataset reads videos (:meth:`video`: frames and label maps) but no scenes.

    Raises:
        ValueError: ``split`` is unknown.
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
        self.classes = classes
        self.semantics = self._semantics(semantics)
        self.split_of = self._read_splits()
        self._frames: dict[str, tuple[list[str], list[int] | None]] = {}
        self.ids = self._select_ids(ids)

    # ---------------------------------------------------------------- set-up
    def _semantics(self, semantics) -> dict[str, dict[int, str]] | None:
        if semantics is False:
            return None
        if semantics is None:  # the file beside the data, when it is needed and readable
            path = self.root / SEMANTICS_FILE
            if isinstance(self.classes, str) or not path.is_file():
                return None  # one class for every object: the file is never consulted
            try:
                return read_semantics(path)
            except ValueError as err:
                warnings.warn(f"{err}; going on without it (objects need classes=)", stacklevel=3)
                return None
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

    @property
    def has_classes(self) -> bool:
        """Whether objects can be given classes (a semantics file or ``classes``)."""
        return self.semantics is not None or self.classes is not None

    def _no_classes(self) -> str:
        """Why scenes cannot be read without classes, and how to give them."""
        return (
            f"DAVIS objects need classes to be read as scenes: no {SEMANTICS_FILE} in "
            f"{self.root} and no `classes` given. Pass semantics=PATH (the DAVIS 2017 "
            "semantics file), or classes='person' (every object a person, the paper's "
            "reading for its 8 sequences), or classes={sequence: class} / {sequence: "
            "{id: class}}. Frames and label maps without classes: dataset.video(sequence)."
        )

    def __iter__(self) -> Iterator[Scene]:
        if not self.has_classes:
            raise ValueError(self._no_classes())
        yield from super().__iter__()

    # ---------------------------------------------------------------- access
    def image_dir(self, sequence: str | None = None) -> Path:
        """The JPEG folder of a sequence, or of all sequences.

        Args:
            sequence: a sequence name; ``None`` for the folder holding every sequence.

        Returns:
            ``<root>/JPEGImages/<resolution>[/<sequence>]``.
        """
        base = self.root / "JPEGImages" / self.resolution
        return base if sequence is None else base / sequence

    def annotation_dir(self, sequence: str) -> Path:
        """The annotation PNG folder of a sequence.

        Args:
            sequence: a sequence name.

        Returns:
            ``<root>/<annotations>/<resolution>/<sequence>``.
        """
        return self.root / self.annotations / self.resolution / sequence

    @property
    def sequences(self) -> list[str]:
        """The sequences of ``ids``, in order."""
        return list(dict.fromkeys(i.split("/")[0] for i in self.ids))

    def _listing(self, sequence: str) -> tuple[list[str], list[int] | None]:
        """Frame stems and numbers of a sequence, listed once; left-out files recorded."""
        if sequence not in self._frames:
            folder = self.image_dir(sequence)
            if not folder.is_dir():
                raise DatasetError("missing file", f"sequence folder {folder} does not exist")
            stems = [p.stem for p in folder.glob("*.jpg")]
            names, numbers, left_out = number_frames(stems, str(folder))
            for stem, reason in sorted(left_out.items()):
                self.skipped.skip(frame_id(sequence, stem), reason)
            gaps = missing_numbers(numbers or [])
            if gaps:
                logger.warning(
                    "%s: %d frame number(s) missing from %s: %s; offsets follow the numbers",
                    sequence,
                    len(gaps),
                    folder,
                    gaps[:20],
                )
            self._frames[sequence] = (names, numbers)
        return self._frames[sequence]

    def frame_names(self, sequence: str) -> list[str]:
        """Frame file stems of a sequence, in frame-number order.

        Args:
            sequence: a sequence name.

        Returns:
            The stems (``00000``, ``00001``, ...) ordered by the number they carry
            (``2`` before ``10`` when names are not zero-padded); see :func:`number_frames`
            for the files left out. A missing sequence folder raises :class:`DatasetError`
            (``missing file``).
        """
        return self._listing(sequence)[0]

    def frame_numbers(self, sequence: str) -> list[int] | None:
        """The frame number of each entry of :meth:`frame_names`, from the file names.

        Args:
            sequence: a sequence name.

        Returns:
            Increasing frame numbers (with gaps where files are missing), or ``None`` when
            the file names are not numbers. A missing sequence folder raises
            :class:`DatasetError` (``missing file``).
        """
        return self._listing(sequence)[1]

    def frames(self, sequence: str) -> FrameSequence:
        """Every frame of a sequence in order, read lazily.

        Args:
            sequence: a sequence name.

        Returns:
            A :class:`FrameSequence`: ``frames[i]`` is the ``i``-th frame on disk, and
            ``frames.frame_numbers[i]`` its frame number (they differ after a gap). A
            missing sequence folder raises :class:`DatasetError` (``missing file``).
        """
        names, numbers = self._listing(sequence)
        return FrameSequence(self, sequence, names, numbers)

    def video(self, sequence: str) -> DavisVideo:
        """The frames and label maps of a sequence, without classes (for label propagation).

        Args:
            sequence: a sequence name.

        Returns:
            A :class:`DavisVideo`: ``video[i]`` is the ``i``-th frame's image, read when
            indexed; ``video.labels(i)`` its annotation's label values. A missing sequence
            folder raises :class:`DatasetError` (``missing file``).
        """
        names, numbers = self._listing(sequence)
        return DavisVideo(self, sequence, names, numbers)

    def class_of(self, sequence: str, object_id: int) -> str | None:
        """The class of one object of a sequence.

        The ``classes`` mapping given to the dataset comes first, then the semantics file.

        Args:
            sequence: a sequence name.
            object_id: the object's label value in the annotation PNGs (1..N).

        Returns:
            The class name, or ``None`` when neither source names it.
        """
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
        """Read one frame and its object masks.

        Args:
            image_id: ``"<sequence>/<frame stem>"``, e.g. ``"dancing/00010"``.

        Returns:
            The scene: ``source_image`` is the sequence, ``meta["frame"]`` the frame number
            from the file name (the stem itself when it is not a number); objects without
            a class are left out and recorded.

        Raises:
            DatasetError: the frame or its annotation PNG is missing or corrupt, or their
                sizes differ.
            ValueError: the dataset has no class source (see :meth:`video` for frames and
                label maps without classes).
        """
        if not self.has_classes:
            raise ValueError(self._no_classes())
        sequence, _, name = str(image_id).partition("/")
        image_path = self.image_dir(sequence) / f"{name}.jpg"
        ann_path = self.annotation_dir(sequence) / f"{name}.png"
        if not image_path.is_file():
            raise DatasetError("missing file", f"frame {image_path} does not exist")
        if not ann_path.is_file():
            raise DatasetError("not annotated", f"{ann_path} does not exist")
        image = read_image(image_path, colour="convert")
        labels = read_label_png(ann_path)
        if labels.shape != image.shape[:2]:
            raise DatasetError(
                "size mismatch",
                f"{ann_path} is {labels.shape[1]}x{labels.shape[0]} but {image_path} is "
                f"{image.shape[1]}x{image.shape[0]} (width x height)",
            )
        masks, names, ids = [], [], []
        for value in (int(v) for v in np.unique(labels)):
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
        return build_scene(
            f"{image_id} ({ann_path})",
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
                "frame": int(name) if is_frame_number(name) else name,
                "file": f"{sequence}/{name}.jpg",
                "image_path": str(image_path),
                "annotation": str(ann_path),
            },
        )
