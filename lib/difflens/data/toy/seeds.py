"""Held-out discipline for the toy world: disjoint seed ranges per split, in one place.

Every toy item (scene, keypoint pair, video) is addressed by a ``split`` and a seed
``offset`` within it; its absolute seed is ``start(split) + offset``:

=============  ====================  ==========================================================
split          absolute seeds        used for
=============  ====================  ==========================================================
``test``       0 .. 499,999          notebooks and held-out evaluation (the default everywhere)
``validation`` 500,000 .. 999,999    choosing layers and timesteps, tracking a training loss
``train``      1,000,000 .. 2**31-1  training the toy model
=============  ====================  ==========================================================

Scenes, pairs and videos draw from separate random streams of the same absolute seed (see
the ``*_STREAM`` constants), so scene 7 and video 7 of a split are unrelated. A seed outside
its split's range is refused (:func:`absolute_seed`), so no call can reach another split's
items by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEST_SEED_START = 0
"""First absolute seed of the ``test`` split (held out: notebooks, evaluation)."""
VALIDATION_SEED_START = 500_000
"""First absolute seed of the ``validation`` split (choosing layers and timesteps)."""
TRAIN_SEED_START = 1_000_000
"""First absolute seed of the ``train`` split (training scenes ``TRAIN_SEED_START + k``)."""
TRAIN_SEED_END = 2**31
"""One past the last absolute seed of the ``train`` split."""

SCENE_STREAM = 11
"""Random stream of still scenes (``default_rng([seed, SCENE_STREAM])``)."""
PAIR_STREAM = 23
"""Random stream of keypoint pairs."""
VIDEO_STREAM = 37
"""Random stream of videos."""


@dataclass(frozen=True)
class SeedRange:
    """A half-open range of absolute seeds ``[start, stop)``.

    Attributes:
        start: first absolute seed.
        stop: one past the last absolute seed.
    """

    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def __contains__(self, seed: object) -> bool:
        return isinstance(seed, int) and self.start <= seed < self.stop


SPLITS: dict[str, SeedRange] = {
    "test": SeedRange(TEST_SEED_START, VALIDATION_SEED_START),
    "validation": SeedRange(VALIDATION_SEED_START, TRAIN_SEED_START),
    "train": SeedRange(TRAIN_SEED_START, TRAIN_SEED_END),
}
"""The seed range of each split; the ranges are disjoint and ordered."""


def split_range(split: str) -> SeedRange:
    """The absolute seed range of ``split``.

    Args:
        split: ``"test"``, ``"validation"`` or ``"train"``.

    Returns:
        Its :class:`SeedRange`.

    Raises:
        ValueError: ``split`` is not one of the three names.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown toy split {split!r}; known: {', '.join(SPLITS)}")
    return SPLITS[split]


def absolute_seed(split: str, offset: int, count: int = 1) -> int:
    """The absolute seed of item ``offset`` of ``split``, checking ``count`` items fit.

    Args:
        split: ``"test"``, ``"validation"`` or ``"train"``.
        offset: the item's seed offset within the split (``0 <= offset``).
        count: how many consecutive items from ``offset`` on the caller will use; all of
            them must lie inside the split.

    Returns:
        ``start(split) + offset``.

    Raises:
        ValueError: unknown split, a non-integer offset, or offsets ``offset ..
            offset + count - 1`` that leave the split's range.
    """
    seeds = split_range(split)
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
        raise ValueError(f"a toy seed offset must be an integer, got {offset!r}")
    offset, count = int(offset), int(count)
    if offset < 0 or count < 0 or offset + count > len(seeds):
        raise ValueError(
            f"toy seed offsets {offset} .. {offset + max(count, 1) - 1} leave the {split!r} split "
            f"(offsets 0 .. {len(seeds) - 1}, absolute seeds {seeds.start:,} .. "
            f"{seeds.stop - 1:,}); pick an offset within the split, never another split's seed"
        )
    return seeds.start + offset


def locate_seed(seed: int) -> tuple[str, int]:
    """The split holding an absolute seed and the seed's offset in it.

    Args:
        seed: an absolute seed (e.g. ``TRAIN_SEED_START + k``).

    Returns:
        ``(split, offset)`` with ``absolute_seed(split, offset) == seed``.

    Raises:
        ValueError: the seed lies in no split (negative or past the train range).
    """
    seed = int(seed)
    for name, seeds in SPLITS.items():
        if seed in seeds:
            return name, seed - seeds.start
    raise ValueError(f"absolute toy seed {seed} lies in no split ({_describe()})")


def _describe() -> str:
    return ", ".join(f"{name}: {r.start:,} .. {r.stop - 1:,}" for name, r in SPLITS.items())
