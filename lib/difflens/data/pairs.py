"""PairDataset: keypoint pairs read one at a time from an official layout, bad pairs counted.

The common base of the keypoint-pair datasets (:mod:`~difflens.data.spair` for SPair-71k,
:mod:`~difflens.data.pf` for PF-PASCAL and PF-WILLOW, :mod:`~difflens.data.cub` for
CUB-200-2011); each of those modules names the official files it reads. This module reads
no file itself: it holds the iteration (every pair that cannot be read becomes a named,
counted entry of ``dataset.skipped`` and the loop goes on), the checks every loader
applies (:func:`build_pair`), the per-category subsets (:func:`subset_per_category`) and
the keypoint-extent threshold bases of PF-WILLOW (:func:`keypoint_extent`).

Coordinates are x/y in ORIGINAL image pixels, as the datasets store them (see
:mod:`~difflens.data.keypoints`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.data.base import read_or_skip
from difflens.data.images import read_image
from difflens.data.keypoints import KeypointPair, check_pair

logger = logging.getLogger("difflens")

SUBSET_READINGS: tuple[str, ...] = ("seeded", "sd-dino")
"""How ``max_pairs_per_category`` draws its pairs (see :func:`subset_per_category`)."""


def build_pair(where: str, origin: str, **fields: Any) -> KeypointPair:
    """A checked :class:`KeypointPair`, its faults turned into named dataset errors.

    Args:
        where: names the pair in messages (``"pair 000001-...:aeroplane"``).
        origin: the annotation it was read from, added to messages (a file, a CSV line).
        **fields: the :class:`KeypointPair` fields.

    Returns:
        The pair, passed through :func:`~difflens.data.keypoints.check_pair` (equal point
        and id counts, points inside their images, boxes not inverted).

    Raises:
        DatasetError: ``corrupt annotation`` when the points or boxes are not numbers of
            the right shape (``(N, 2)`` points, 4 box values); the kinds of
            :func:`~difflens.data.keypoints.check_pair` (``bad pair``,
            ``keypoint outside image``) otherwise, with ``origin`` added to the message.
    """
    for key in ("source_points", "target_points"):
        array = _numbers(fields[key], f"{where}: {key} of {origin}")
        if array.size and (array.ndim != 2 or array.shape[1] != 2):
            raise DatasetError(
                "corrupt annotation",
                f"{where}: {key} of {origin} has shape {array.shape}, not (N, 2)",
            )
        fields[key] = array.reshape(-1, 2)
    for key in ("source_box", "target_box"):
        box = _numbers(fields[key], f"{where}: {key} of {origin}")
        if box.size != 4:
            raise DatasetError(
                "corrupt annotation",
                f"{where}: {key} of {origin} has {box.size} values, not x1 y1 x2 y2",
            )
    try:
        return check_pair(KeypointPair(**fields))
    except DatasetError as err:
        raise DatasetError(err.kind, f"{err.detail} (read from {origin})") from err


def read_pair_image(path: Path, where: str) -> np.ndarray:
    """An image of a pair, read with :func:`~difflens.data.images.read_image`.

    Args:
        path: the image file.
        where: names the pair in messages.

    Returns:
        ``(H, W, 3)`` uint8 RGB (grey and palette files converted).

    Raises:
        DatasetError: ``missing file``, ``corrupt image``: the reader's error with the
            pair named in front.
    """
    try:
        return read_image(path, colour="convert")
    except DatasetError as err:
        raise DatasetError(err.kind, f"{where}: {err.detail}") from err


def _numbers(value: object, where: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DatasetError("corrupt annotation", f"{where} is not numeric ({err})") from err


def points_box(points: np.ndarray) -> np.ndarray:
    """The box around some keypoints.

    Args:
        points: ``(N, 2)`` x/y, N >= 1.

    Returns:
        ``(4,)`` float32 ``min x, min y, max x, max y`` (no ``+ 1``).
    """
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.concatenate([xy.min(axis=0), xy.max(axis=0)]).astype(np.float32)


def keypoint_extent(points: np.ndarray, padded: bool = False) -> float:
    """PF-WILLOW's PCK threshold base: the larger side of the keypoints' extent.

    ``max(max x - min x, max y - min y)`` of the points. With ``padded=True`` the minimum
    also takes the ``-1`` that the loaders of ``juhongm999/dhpf`` and
    ``ubc-vision/LDM_correspondences`` (``eval/pfwillow.py``, ``thres='bbox'``) pad their
    keypoint tensors with, so it becomes ``max over x, y of (max - min(min, -1))``: for
    points with non-negative coordinates, the largest coordinate plus one. That padded
    value inflates the threshold (and PCK; ``juhongm999/dhpf`` issue 3); it is given only
    to reproduce those numbers.

    Args:
        points: ``(N, 2)`` x/y (the TARGET keypoints of a pair), N >= 1.
        padded: include the ``-1`` padding in the minimum.

    Returns:
        The extent in the points' pixels.

    Raises:
        ValueError: no points.
    """
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(xy):
        raise ValueError("the keypoint extent needs at least one keypoint")
    low = xy.min(axis=0)
    if padded:
        low = np.minimum(low, -1.0)
    return float((xy.max(axis=0) - low).max())


def subset_per_category(
    ids: Sequence[str],
    category_of: Mapping[str, str],
    max_pairs: int,
    seed: int = 0,
    subset: str = "seeded",
) -> list[str]:
    """At most ``max_pairs`` pairs of each category, drawn with a seed.

    - ``"seeded"``: ``np.random.default_rng(seed).choice(n, max_pairs, replace=False)``
      with a fresh generator for every category; the drawn pairs keep their listing
      order; a category with at most ``max_pairs`` pairs keeps them all.
    - ``"sd-dino"``: SD-DINO's draw (``Junyi42/sd-dino: pck_spair_pascal.py``,
      ``load_spair_data``): ``np.random.seed(seed)`` before every category, then
      ``np.random.choice(n, max_pairs)`` -- WITH replacement, so a pair can come twice
      (it is then listed twice, as SD-DINO evaluates it twice), in the drawn order, and a
      category with fewer pairs still yields ``max_pairs``. SD-DINO lists a category's
      pairs as the sorted file names of ``PairAnnotation/<split>/*:<category>.json`` and
      uses seed 42 and 20 pairs.

    Args:
        ids: the pairs, in listing order.
        category_of: the category of each pair.
        max_pairs: pairs kept per category (> 0).
        seed: the seed.
        subset: ``"seeded"`` or ``"sd-dino"``.

    Returns:
        The kept ids, category by category in order of first appearance.

    Raises:
        ValueError: an unknown ``subset`` or ``max_pairs < 1``.
    """
    if subset not in SUBSET_READINGS:
        raise ValueError(f"unknown subset {subset!r}; choose one of {SUBSET_READINGS}")
    if max_pairs < 1:
        raise ValueError(f"max_pairs_per_category must be at least 1, got {max_pairs}")
    groups: dict[str, list[str]] = {}
    for pair_id in ids:
        groups.setdefault(category_of[pair_id], []).append(pair_id)
    kept: list[str] = []
    for members in groups.values():
        if subset == "sd-dino":
            draw = np.random.RandomState(seed).choice(len(members), max_pairs)
            kept.extend(members[int(i)] for i in draw)
        elif len(members) <= max_pairs:
            kept.extend(members)
        else:
            draw = np.random.default_rng(seed).choice(len(members), max_pairs, replace=False)
            kept.extend(members[int(i)] for i in np.sort(draw))
    return kept


def seeded_sample(ids: Sequence[str], max_pairs: int, seed: int = 0) -> list[str]:
    """At most ``max_pairs`` of ``ids`` without replacement, in their order.

    Args:
        ids: the pairs.
        max_pairs: how many to keep (> 0).
        seed: seeds ``np.random.default_rng``.

    Returns:
        ``ids`` itself when it has at most ``max_pairs`` entries, else the drawn ones.

    Raises:
        ValueError: ``max_pairs < 1``.
    """
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be at least 1, got {max_pairs}")
    if len(ids) <= max_pairs:
        return list(ids)
    draw = np.random.default_rng(seed).choice(len(ids), max_pairs, replace=False)
    return [ids[int(i)] for i in np.sort(draw)]


def check_categories(wanted: Iterable[str], known: Iterable[str], dataset: str) -> list[str]:
    """The categories asked for, each checked to be a known one.

    Args:
        wanted: category names.
        known: the dataset's category names.
        dataset: names the dataset in the message.

    Returns:
        ``wanted`` as a list.

    Raises:
        ValueError: a name that is not known; the message lists the known names.
    """
    wanted = [str(c) for c in ([wanted] if isinstance(wanted, str) else wanted)]
    known = sorted(set(known))
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise ValueError(f"{dataset} has no categories {unknown}; known: {', '.join(known)}")
    return wanted


class PairDataset:
    """Base of the keypoint-pair datasets.

    Subclasses set ``self.ids`` (pair ids, in reading order) and ``self.category_of``
    (pair id -> category) and implement :meth:`load_pair`, which raises
    :class:`DatasetError` for a pair that cannot be read. Iteration yields the readable
    pairs in ``ids`` order; each unreadable pair is logged with the file and the reason,
    counted in ``self.skipped`` and passed over, and a summary is logged at the end.
    Faults found while listing the pairs (a malformed index line) are counted there too.

    Args:
        skipped: a :class:`SkipLog` to record skips in (a new one by default).
    """

    name: str = "pairs"

    def __init__(self, skipped: SkipLog | None = None):
        self.skipped = SkipLog() if skipped is None else skipped
        self.ids: list[str] = []
        self.category_of: dict[str, str] = {}

    def load_pair(self, pair_id: str) -> KeypointPair:  # pragma: no cover - abstract
        """Read one pair.

        Args:
            pair_id: an entry of ``self.ids``.

        Returns:
            The checked pair.

        Raises:
            NotImplementedError: always; subclasses read their own format.
        """
        raise NotImplementedError

    @property
    def categories(self) -> list[str]:
        """The categories of the listed pairs, in order of first appearance."""
        return list(dict.fromkeys(self.category_of[i] for i in self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> KeypointPair:
        """The pair at ``index``; raises :class:`DatasetError` where :meth:`__iter__` skips."""
        return self.load_pair(self.ids[index])

    def __iter__(self) -> Iterator[KeypointPair]:
        read = 0
        before = len(self.skipped)
        for pair_id in self.ids:
            pair = self.try_load(pair_id)
            if pair is not None:
                read += 1
                yield pair
        logger.info(
            "%s: %d of %d pairs read; %d skipped (%s)",
            self.name,
            read,
            len(self.ids),
            len(self.skipped) - before,
            self.skipped.summary(),
        )

    def try_load(self, pair_id: str) -> KeypointPair | None:
        """The pair, or ``None`` after recording in ``self.skipped`` why it was skipped.

        Args:
            pair_id: an entry of ``self.ids``.

        Returns:
            The pair, or ``None`` when it cannot be read.
        """
        return read_or_skip(self.load_pair, pair_id, self.skipped)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.ids)} pairs, skipped: {self.skipped.summary()})"
