"""SceneDataset: a list of item ids read one at a time, skipping (and counting) bad items.

Whatever is wrong inside one item (a missing or corrupt file, an annotation that does not
decode, masks that do not fit the image, repeated instance ids) becomes a named, counted
skip of that item or of that object: ``for scene in dataset`` never stops at a bad item.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.data.scene import Scene

logger = logging.getLogger("difflens")

T = TypeVar("T")


def build_scene(where: str, **fields: Any) -> Scene:
    """A :class:`Scene`, with its consistency errors turned into a named dataset error.

    Args:
        where: the item and file the fields come from, used in the message.
        **fields: the :class:`Scene` fields (``image``, ``masks``, ``class_names``, ...).

    Returns:
        The scene.

    Raises:
        DatasetError: ``inconsistent scene`` when :class:`Scene` rejects the fields (masks
            that do not fit the image, repeated instance ids, ...), naming ``where``.
    """
    try:
        return Scene(**fields)
    except ValueError as err:
        raise DatasetError("inconsistent scene", f"{where}: {err}") from err


def read_or_skip(load: Callable[[str], T], item: str, skipped: SkipLog) -> T | None:
    """``load(item)``, or ``None`` after recording in ``skipped`` why it failed.

    A :class:`DatasetError` is recorded under its kind. Any other exception (a malformed
    record the loader did not foresee) is recorded as ``unexpected error`` with its type
    and message and logged with its traceback at debug level, so that one bad item never
    ends a loop; ``MemoryError`` and interrupts still stop it.

    Args:
        load: reads one item (a loader's ``load_scene`` or ``load_pair``, or any check of
            one item).
        item: the item's id.
        skipped: where to record a failure.

    Returns:
        What ``load`` returned, or ``None`` when it failed.

    Raises:
        MemoryError: passed on, never counted as a skip.
    """
    try:
        return load(item)
    except DatasetError as err:
        skipped.skip(item, str(err))
    except MemoryError:
        raise
    except Exception as err:  # any fault of one item is that item's skip
        logger.debug("unexpected error reading %s", item, exc_info=True)
        skipped.skip(item, f"unexpected error: {type(err).__name__}: {err}")
    return None


class SceneDataset:
    """Base of the on-disk datasets.

    Subclasses set ``self.ids`` and implement :meth:`load_scene`, which raises
    :class:`DatasetError` for an item that cannot be read. Iteration yields the readable
    scenes in ``ids`` order; each unreadable item is logged with the file and the reason,
    counted in ``self.skipped`` and passed over; the run goes on and a summary is logged at
    the end (``dataset.skipped.summary()`` gives it again). Items kept after a repair
    (e.g. COCO annotations re-keyed because their ids repeat) are counted in
    ``self.repaired``.

    Args:
        skipped: a :class:`SkipLog` to record skips in (a new one by default).
        skip_empty: skip (and count) scenes left without objects when iterating.
    """

    name: str = "dataset"

    def __init__(self, skipped: SkipLog | None = None, skip_empty: bool = True):
        self.skipped = SkipLog() if skipped is None else skipped
        self.repaired = SkipLog(action="repaired")
        self.skip_empty = skip_empty
        self.ids: list[str] = []

    def load_scene(self, image_id: str) -> Scene:  # pragma: no cover - abstract
        """Read one item.

        Args:
            image_id: an entry of ``self.ids``.

        Returns:
            The item's scene (possibly without objects).

        Raises:
            NotImplementedError: always; subclasses read their own format.
        """
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Scene:
        """The scene at ``index``; raises :class:`DatasetError` where :meth:`__iter__` skips."""
        return self.load_scene(self.ids[index])

    def __iter__(self) -> Iterator[Scene]:
        read = 0
        before = len(self.skipped)
        for image_id in self.ids:
            scene = self.try_load(image_id)
            if scene is not None:
                read += 1
                yield scene
        logger.info(
            "%s: %d of %d items read, %d skipped in this pass; in all: %s; %s",
            self.name,
            read,
            len(self.ids),
            len(self.skipped) - before,
            self.skipped.summary(),
            self.repaired.summary(),
        )

    def try_load(self, image_id: str) -> Scene | None:
        """The scene, or ``None`` after recording in ``self.skipped`` why it was skipped.

        Args:
            image_id: an entry of ``self.ids``.

        Returns:
            The scene; ``None`` when it cannot be read or (with ``skip_empty``) has no
            usable object.
        """
        scene = read_or_skip(self.load_scene, image_id, self.skipped)
        if scene is None:
            return None
        if self.skip_empty and scene.n_objects == 0:
            where = scene.meta.get("image_path", image_id)
            notes = [
                f"{scene.meta[key]} {key.replace('_', ' ')}"
                for key in ("non_voc_dropped", "crowd_excluded")
                if scene.meta.get(key)
            ]
            extra = f" ({', '.join(notes)})" if notes else ""
            self.skipped.skip(image_id, f"no objects: {where} has no usable object{extra}")
            return None
        return scene

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.ids)} items, skipped: {self.skipped.summary()})"
