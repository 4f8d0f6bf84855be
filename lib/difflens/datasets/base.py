"""SceneDataset: a list of item ids read one at a time, skipping (and counting) bad items."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from difflens.datasets.readers import DatasetError
from difflens.report import SkipLog
from difflens.scene import Scene

logger = logging.getLogger("difflens")


class SceneDataset:
    """Base of the on-disk datasets.

    Subclasses set ``self.ids`` and implement :meth:`load_scene`, which raises
    :class:`DatasetError` for an item that cannot be read. Iteration yields the readable
    scenes in ``ids`` order; each unreadable item is logged with the file and the reason,
    counted in ``self.skipped`` and passed over; the run goes on and a summary is logged at
    the end (``dataset.skipped.summary()`` gives it again).
    """

    name: str = "dataset"

    def __init__(self, skipped: SkipLog | None = None, skip_empty: bool = True):
        self.skipped = SkipLog() if skipped is None else skipped
        self.skip_empty = skip_empty
        self.ids: list[str] = []

    def load_scene(self, image_id: str) -> Scene:  # pragma: no cover - abstract
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
            "%s: %d of %d items read; %d skipped (%s)",
            self.name,
            read,
            len(self.ids),
            len(self.skipped) - before,
            self.skipped.summary(),
        )

    def try_load(self, image_id: str) -> Scene | None:
        """The scene, or ``None`` after recording why it was skipped."""
        try:
            scene = self.load_scene(image_id)
        except DatasetError as err:
            self.skipped.skip(image_id, str(err))
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
