"""The paper's subset rules and seeded samples of the images that pass them.

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
seed, the rules and the candidate pool (:mod:`difflens.data.lists` reads such lists back).

A candidate that cannot be read, whatever the fault, is a counted skip of the selection;
the draw goes on with the next candidate.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from difflens.core.skips import SkipLog
from difflens.data.base import SceneDataset, read_or_skip
from difflens.data.lists import write_list
from difflens.data.names import LIST_TAGS
from difflens.data.scene import Scene
from difflens.data.vocabulary import VOC_CLASSES, voc_class_of_coco

logger = logging.getLogger("difflens")


CLASS_RULES: tuple[str, ...] = ("any_voc", "all_voc")
"""The two readings of the paper's COCO class restriction (see the module docstring)."""


@dataclass(frozen=True)
class SelectionRules:
    """The subset rules: an object over ``min_area_fraction`` and the COCO class rule.

    Attributes:
        min_area_fraction: an image qualifies when a counted object covers strictly more
            than this fraction of the image area (the paper: 1 %, i.e. 0.01).
        class_rule: ``"any_voc"`` or ``"all_voc"`` (see :data:`CLASS_RULES`).
        counted_classes: the classes whose objects the area rule counts; ``None`` counts
            every object.

    Raises:
        ValueError: ``class_rule`` is unknown or ``min_area_fraction`` is outside [0, 1).
    """

    min_area_fraction: float = 0.01
    class_rule: str = "any_voc"
    counted_classes: tuple[str, ...] | None = VOC_CLASSES

    def __post_init__(self) -> None:
        if self.class_rule not in CLASS_RULES:
            raise ValueError(f"class_rule must be one of {CLASS_RULES}, got {self.class_rule!r}")
        if not 0 <= self.min_area_fraction < 1:
            raise ValueError(f"min_area_fraction must be in [0, 1), got {self.min_area_fraction}")

    def to_dict(self) -> dict:
        """The rules as plain values, for the YAML record beside a list.

        Returns:
            ``{"min_area_fraction": float, "class_rule": str, "counted_classes": list | None}``.
        """
        out = asdict(self)
        out["counted_classes"] = (
            None if self.counted_classes is None else list(self.counted_classes)
        )
        return out


def size_rule_failure(scene: Scene, rules: SelectionRules) -> str | None:
    """Why a scene fails the 1 % rule, if it does.

    Args:
        scene: the scene as its loader yields it.
        rules: the rules (``min_area_fraction``, ``counted_classes``).

    Returns:
        ``None`` when some counted object covers more than the minimum fraction, else the
        reason (``"no object over 1% of the image"``, ``"no object of a counted class"``).
    """
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
    """Why an image's COCO classes fail the class rule, if they do.

    Args:
        coco_names: the COCO class name of each (non-crowd) annotation of the image.
        rules: the rules (``class_rule``).

    Returns:
        ``None`` when the classes pass, else the reason.
    """
    in_voc = [voc_class_of_coco(name) is not None for name in coco_names]
    if not any(in_voc):
        return "no object in a VOC class"
    if rules.class_rule == "all_voc" and not all(in_voc):
        return "an object outside the VOC classes"
    return None


@dataclass
class Selection:
    """A seeded sample of qualifying images and how it was drawn.

    Attributes:
        dataset: the image-list tag (``pascal`` or ``coco``).
        src: the selected images' file names, as the list's ``src`` column.
        image_ids: their dataset ids.
        splits: their splits (``None`` where unknown).
        seed: the seed of the permutation.
        n_requested: how many images were asked for.
        rules: the rules applied.
        n_candidates: how many ids the dataset offered.
        candidates_sha256: :func:`ids_digest` of the candidate ids.
        examined: how many candidates were examined before ``n`` qualified.
        rejected: count of rejected candidates per reason.
        skipped: the candidates that could not be read, with reasons.
    """

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
        """Whether as many images qualified as were requested."""
        return len(self.src) == self.n_requested

    def to_frame(self) -> pd.DataFrame:
        """The list in the authors' format.

        Returns:
            Columns ``src``, ``dataset``; one row per selected image, in selection order.
        """
        return pd.DataFrame({"src": self.src, "dataset": [self.dataset] * len(self.src)})

    def record(self) -> dict:
        """What the YAML file beside the list holds.

        Returns:
            Plain values: dataset, counts, seed, sampling, rules, candidate pool, rejections,
            skips, splits, the difflens version and the creation time (UTC).
        """
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
        """Write the CSV list and ``<same name>.yaml`` beside it.

        Args:
            path: the CSV file to write (folders are created).

        Returns:
            ``(csv path, yaml path)``.
        """
        return write_list(path, zip(self.src, [self.dataset] * len(self.src)), self.record())


def ids_digest(ids: Iterable[str]) -> str:
    """A name for a candidate pool in the record.

    Args:
        ids: the candidate ids, in order.

    Returns:
        SHA-256 hex digest of the newline-joined ids.
    """
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def examine(dataset: SceneDataset, image_id: str, rules: SelectionRules) -> Scene | str:
    """Read one candidate and apply the rules.

    Args:
        dataset: a VOC or COCO loader (``load_scene``; ``image_categories`` for COCO).
        image_id: the candidate.
        rules: the rules.

    Returns:
        The scene when it qualifies, else the reason a rule rejects it. A candidate that
        cannot be read raises :class:`~difflens.core.errors.DatasetError` (``select`` counts
        it as a skip).
    """
    if hasattr(dataset, "image_categories"):
        reason = class_rule_failure(dataset.image_categories(image_id), rules)
        if reason:
            return reason
    scene = dataset.load_scene(image_id)
    return size_rule_failure(scene, rules) or scene


def select(
    dataset: SceneDataset,
    n: int,
    seed: int = 0,
    rules: SelectionRules | None = None,
    progress: bool = True,
) -> Selection:
    """A seeded sample of ``n`` images of a dataset passing the paper's rules (Sec. 3.1).

    The candidates (``dataset.ids``, in the dataset's order) are permuted with
    ``numpy.random.default_rng(seed)`` and examined in that order until ``n`` qualify.
    Unreadable images (whatever the fault) are skipped and counted; an image failing a rule
    is counted per reason in ``rejected``. Fewer than ``n`` qualifying images give an
    incomplete selection (``selection.complete`` is false) and a warning.

    Args:
        dataset: a VOC or COCO loader (anything with ``ids``, ``name`` and ``load_scene``).
        n: how many images to select.
        seed: the permutation's seed.
        rules: the rules (default :class:`SelectionRules`).
        progress: show a progress bar.

    Returns:
        The :class:`Selection`.

    Raises:
        TypeError: ``dataset`` has no ``ids`` (e.g. the toy world, which is already drawn by
            seed and needs no selection).
    """
    rules = rules or SelectionRules()
    if not hasattr(dataset, "ids"):
        raise TypeError(
            f"select() samples a dataset on disk by its ids; {type(dataset).__name__} has none "
            "(toy scenes are already drawn by seed: use them as they are)"
        )
    ids = list(dataset.ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    tag = LIST_TAGS.get(getattr(dataset, "name", ""), getattr(dataset, "name", "unknown"))
    picked: list[Scene] = []
    rejected: Counter = Counter()
    skipped = SkipLog()
    examined = 0
    with tqdm(total=n, desc=f"select {tag}", unit="img", disable=not progress) as bar:
        for index in order:
            if len(picked) >= n:
                break
            examined += 1
            outcome = read_or_skip(
                lambda item: examine(dataset, item, rules), ids[int(index)], skipped
            )
            if isinstance(outcome, str):
                rejected[outcome] += 1
            elif outcome is not None:
                picked.append(outcome)
                bar.update(1)
    selection = Selection(
        dataset=tag,
        src=[str(s.meta.get("file", s.image_id)) for s in picked],
        image_ids=[s.image_id for s in picked],
        splits=[s.meta.get("split") for s in picked],
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
            len(picked),
            n,
            len(ids),
        )
    return selection
