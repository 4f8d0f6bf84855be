"""Frames of a video at given offsets from a reference frame (the paper's Sec. 6.5, Fig. 9).

Offsets follow the frame numbers, never the position in a list: ``frame+3`` is the frame
numbered ``reference + 3``. The numbers come from the sequence itself
(:attr:`difflens.data.davis.FrameSequence.frame_numbers`, read from the file names) or from
each scene's ``meta["frame"]`` (DAVIS and the toy videos set it). Where a number is absent
(a gap in the numbering, a frame past the end, a frame that cannot be read) that offset is
left out and reported: in the returned list's ``missing``, in a logged warning naming the
sequence, and in ``skipped`` when one is given. Only scenes that carry no frame number at
all are counted by position, with a warning saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from numbers import Integral

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.data.scene import Scene

logger = logging.getLogger("difflens")

PAPER_OFFSETS: tuple[int, ...] = (1, 2, 3, 4, 5, 10, 20, 30, 40)
"""The frame offsets of the paper's video study (Fig. 9)."""


def offset_tag(offset: int) -> str:
    """The ``Scene.source`` tag of a frame at an offset from the reference.

    Args:
        offset: frames after the reference frame (0 for the reference itself).

    Returns:
        ``"frame+<offset>"``.
    """
    return f"frame+{offset}"


def _offset_of(source: str) -> int:
    """The offset in a ``frame+<k>`` tag."""
    return int(source.split("+", 1)[1])


def frame_number(scene: Scene) -> int | None:
    """The frame number a scene carries in ``meta["frame"]``.

    Args:
        scene: a video frame.

    Returns:
        The number, or ``None`` when ``meta["frame"]`` is absent or not an integer.
    """
    value = scene.meta.get("frame")
    if isinstance(value, Integral) and not isinstance(value, bool):
        return int(value)
    return None


class OffsetFrames(list):
    """The frames picked at each offset (a list of scenes), with what could not be picked.

    Args:
        scenes: the picked scenes, the reference frame first.
        sequence: the sequence name.
        reference: the reference frame's number (its position when the frames carry no
            numbers).
        missing: ``{offset: reason}`` for each requested offset left out.
        by_position: whether offsets were counted by list position (no frame numbers).

    Attributes:
        sequence: as given.
        reference: as given.
        missing: as given.
        by_position: as given.
    """

    def __init__(
        self,
        scenes: Iterable[Scene],
        sequence: str,
        reference: int,
        missing: dict[int, str],
        by_position: bool,
    ):
        super().__init__(scenes)
        self.sequence = sequence
        self.reference = reference
        self.missing = missing
        self.by_position = by_position


def _sequence_name(frames: Sequence[Scene]) -> str:
    name = getattr(frames, "sequence", None)
    if name is None and len(frames) and not hasattr(frames, "frame_numbers"):
        first = frames[0]
        name = first.meta.get("sequence", first.source_image)
    return str(name if name is not None else "<sequence>")


def _numbers(frames: Sequence[Scene], sequence: str) -> dict[int, int] | None:
    """Frame number -> position in ``frames``; ``None`` when no frame carries a number."""
    listed = getattr(frames, "frame_numbers", None)
    if hasattr(frames, "frame_numbers"):
        numbers = list(listed) if listed is not None else None
    else:
        numbers = [frame_number(scene) for scene in frames]
        unnumbered = [i for i, n in enumerate(numbers) if n is None]
        if len(unnumbered) == len(numbers):
            numbers = None
        elif unnumbered:
            logger.warning(
                "%s: %d frame(s) carry no meta['frame'] (positions %s); they are left out",
                sequence,
                len(unnumbered),
                unnumbered[:10],
            )
    if numbers is None:
        return None
    positions: dict[int, int] = {}
    for position, number in enumerate(numbers):
        if number is not None:
            positions.setdefault(number, position)
    return positions


def _why_missing(target: int, positions: dict[int, int], by_position: bool) -> str:
    unit = "position" if by_position else "frame"
    if not positions:
        return "the sequence has no frames"
    first, last = min(positions), max(positions)
    if target > last:
        return f"{unit} {target} is past the last {unit} ({last})"
    if target < first:
        return f"{unit} {target} is before the first {unit} ({first})"
    return f"frame {target} is missing from the numbering (a gap between {first} and {last})"


def frames_at_offsets(
    frames: Sequence[Scene],
    offsets: Iterable[int] = PAPER_OFFSETS,
    reference: int | None = None,
    skipped: SkipLog | None = None,
) -> OffsetFrames:
    """The reference frame and the frames ``offsets`` after it, tagged in ``Scene.source``.

    Args:
        frames: the frames of one sequence in order: a DAVIS
            :class:`~difflens.data.davis.FrameSequence` (numbers from its file names,
            frames read only when picked) or a list of scenes with ``meta["frame"]``.
        offsets: frame offsets after the reference (the paper's by default); 0, the
            reference itself, is always included.
        reference: the reference frame's number; ``None`` for the first frame.
        skipped: where to record each offset left out, as ``missing offset`` under
            ``"<sequence>/frame+<k>"`` (besides the warning and ``missing``).

    Returns:
        The picked scenes in offset order (``source`` ``"frame+<k>"``, ``meta["offset"]``
        ``k`` and ``meta["reference_frame"]``), as an :class:`OffsetFrames` whose
        ``missing`` maps each offset left out to the reason.
    """
    sequence = _sequence_name(frames)
    positions = _numbers(frames, sequence)
    by_position = positions is None
    if by_position:
        logger.warning(
            "%s: the frames carry no frame numbers (meta['frame']); offsets are counted by "
            "list position, which is wrong wherever a frame is missing",
            sequence,
        )
        positions = {i: i for i in range(len(frames))}
    if reference is None:
        reference = min(positions) if positions else 0
    picked, missing = [], {}
    for offset in [0, *sorted(set(offsets) - {0})]:
        target = reference + offset
        if target not in positions:
            missing[offset] = _why_missing(target, positions, by_position)
            continue
        try:
            scene = frames[positions[target]]
        except DatasetError as err:
            missing[offset] = f"frame {target} cannot be read ({err})"
            continue
        meta = {**scene.meta, "offset": offset, "reference_frame": reference}
        picked.append(replace(scene, source=offset_tag(offset), meta=meta))
    _report(sequence, missing, skipped)
    return OffsetFrames(picked, sequence, reference, missing, by_position)


def _report(sequence: str, missing: dict[int, str], skipped: SkipLog | None) -> None:
    """Warn about (and record) the offsets left out."""
    if not missing:
        return
    logger.warning(
        "%s: %d offset(s) left out: %s",
        sequence,
        len(missing),
        "; ".join(f"{offset_tag(k)}: {why}" for k, why in missing.items()),
    )
    if skipped is not None:
        for offset, why in missing.items():
            skipped.skip(f"{sequence}/{offset_tag(offset)}", f"missing offset: {why}")
