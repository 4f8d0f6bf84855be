"""One prototype table analysed the way the notebooks present it, and the separation measure.

:func:`analyse_sets` gives everything a figure panel and a table column need about one
table: the long-form distance sets, their summary, Kruskal-Wallis, pairwise tests, the
image-level bootstrap of the set means with the orderings' probabilities, and
:func:`separation`, the one-number summary of class separation used by the layer sweep,
the timestep trend and the controls.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from difflens.analysis.bootstrap import BootstrapResult, bootstrap_set_means
from difflens.analysis.comparisons import pairwise_tests
from difflens.analysis.distances import pairwise
from difflens.analysis.effects import cliffs_delta
from difflens.analysis.rank_tests import kruskal_sets
from difflens.analysis.sets import distance_sets, source_codes
from difflens.analysis.summaries import set_summary
from difflens.analysis.undefined import collect_reasons, join_reasons, undefined
from difflens.features.prototypes import PrototypeTable

logger = logging.getLogger("difflens")


@dataclass
class SetAnalysis:
    """Everything one figure panel and one table column need about one prototype table.

    Attributes:
        long: the long-form distance sets (:func:`~difflens.analysis.sets.distance_sets`).
        summary: :func:`~difflens.analysis.summaries.set_summary` of every requested set.
        kruskal: :func:`~difflens.analysis.rank_tests.kruskal_sets`.
        tests: :func:`~difflens.analysis.comparisons.pairwise_tests`.
        bootstrap: the image-level bootstrap of the set means, with its orderings.
        separation: :func:`separation` by source image (NaN when undefined).
        separation_reason: why ``separation`` is NaN, else ``""``.
    """

    long: pd.DataFrame
    summary: pd.DataFrame
    kruskal: dict
    tests: pd.DataFrame
    bootstrap: BootstrapResult
    separation: float
    separation_reason: str = ""

    def reasons(self) -> dict[str, str]:
        """Why each undefined number of :meth:`numbers` is NaN (or conventional).

        Returns:
            ``{where: reason}`` for the non-empty reasons only; ``where`` reads like
            ``"kruskal"``, ``"summary.scsi"``, ``"mean_ci95.scsi"``,
            ``"orderings.scsi < dcsi"``, ``"tests.scsi vs scdi"`` or ``"separation"``.
        """
        out = {"kruskal": str(self.kruskal.get("reason", ""))}
        out.update({f"summary.{s}": r for s, r in self.summary["reason"].items()})
        intervals = self.bootstrap.intervals()
        out.update({f"mean_ci95.{s}": r for s, r in intervals["reason"].items()})
        for r in self.bootstrap.orderings.itertuples():
            out[f"orderings.{r.ordering}"] = r.reason
        for r in self.tests.itertuples():
            out[f"tests.{r.a} vs {r.b}"] = r.reason
        out["separation"] = self.separation_reason
        return {k: v for k, v in out.items() if v}

    def numbers(self) -> dict:
        """The key numbers, JSON-ready (see :func:`difflens.viz.plots.record_numbers`).

        Returns:
            ``means``, ``counts``, ``kruskal`` (``H``, ``p``, ``log10_p``), ``mean_ci95``
            (``[low, high]`` per set), ``orderings`` (``holds``: bool, or None when a mean
            is undefined; ``probability``), ``separation_cliffs_delta`` and ``reasons``
            (:meth:`reasons`). Undefined numbers are NaN, written as ``null`` in JSON.
        """
        intervals = self.bootstrap.intervals()
        orderings = {
            str(r.ordering): {
                "holds": None if r.holds is None else bool(r.holds),
                "probability": float(r.probability),
            }
            for r in self.bootstrap.orderings.itertuples()
        }
        return {
            "means": self.summary["mean"].to_dict(),
            "counts": self.summary["n"].astype(int).to_dict(),
            "kruskal": {k: self.kruskal[k] for k in ("H", "p", "log10_p") if k in self.kruskal},
            "mean_ci95": {s: [float(r["low"]), float(r["high"])] for s, r in intervals.iterrows()},
            "orderings": orderings,
            "separation_cliffs_delta": self.separation,
            "reasons": self.reasons(),
        }


SEPARATION_GROUPS = ("source_image", "image_id")
"""Groupings :func:`separation` accepts (see its ``group`` argument)."""
_GROUP_WORDS = {"source_image": "source images", "image_id": "images"}


def separation(
    table: PrototypeTable,
    metric: str = "correlation",
    *,
    group: str = "source_image",
    distances: np.ndarray | None = None,
) -> float:
    """Cliff's delta of different-class over same-class distances between groups.

    Over every pair of objects from different groups: P(d_different-class >
    d_same-class) - P(<), 1 when every different-class pair is farther apart than every
    same-class pair, 0 without separation. Pairs whose distance is undefined (NaN) are
    left out.

    Args:
        table: prototypes with ``class_name``, ``image_id`` and ``source_image``.
        metric: a metric of :func:`difflens.analysis.distances.pairwise`.
        group: which pairs count as "different image". ``"source_image"`` (default): pairs
            from different source pictures only, so an image's transformed copies and the
            frames of one video count as one image (they share background and content).
            ``"image_id"``: the paper's image identity, so copies and frames are different
            images; then the number equals Cliff's delta of the ``dcdi`` over the ``scdi``
            set of :func:`difflens.analysis.sets.distance_sets`.
        distances: the ``(N, N)`` distance matrix of the table if already computed.

    Returns:
        The delta in [-1, 1] (0 when all distances are equal); NaN, with an
        :class:`~difflens.analysis.undefined.UndefinedStatisticWarning` saying which, with
        fewer than two objects or no finite pair on one side.

    Raises:
        ValueError: ``group`` is not one of :data:`SEPARATION_GROUPS`.
    """
    if group not in SEPARATION_GROUPS:
        raise ValueError(f"group must be one of {SEPARATION_GROUPS}, got {group!r}")
    if len(table) < 2:
        return undefined(f"separation: {len(table)} object(s), two are needed")
    if distances is None:
        distances = pairwise(table.features, metric=metric)
    if group == "source_image":
        groups = source_codes(table.meta)[0]
    else:
        groups = pd.factorize(table.meta["image_id"].astype(str))[0]
    classes = pd.factorize(table.meta["class_name"])[0]
    i, j = np.triu_indices(len(table), k=1)
    keep = groups[i] != groups[j]
    i, j = i[keep], j[keep]
    d = np.asarray(distances, dtype=np.float64)[i, j]
    finite = np.isfinite(d)
    same = classes[i] == classes[j]
    between, within = d[~same & finite], d[same & finite]
    for values, side in ((between, "different-class"), (within, "same-class")):
        if not len(values):
            return undefined(
                f"separation: no {side} pair of objects from different {_GROUP_WORDS[group]} "
                "with a finite distance"
            )
    return cliffs_delta(between, within, names=("different-class", "same-class"))


def analyse_sets(
    table: PrototypeTable,
    metric: str = "correlation",
    sets: Sequence[str] = ("scsi", "scdi", "dcsi", "dcdi"),
    n_boot: int = 1000,
    seed: int = 0,
    **options,
) -> SetAnalysis:
    """Distance sets of ``table`` with everything the paper reports about them.

    Their summary, Kruskal-Wallis, pairwise tests (Mann-Whitney, Dunn, Cliff's delta,
    Dunn indices), the image-level bootstrap of the set means and orderings, and the
    class separation (:func:`separation`, by source image). Numbers the data cannot
    define (an empty set, all distances equal) are NaN with their reasons
    (:meth:`SetAnalysis.reasons`), logged once as a warning.

    Args:
        table: the prototypes.
        metric: the distance (the paper's figures: ``"correlation"``, 1 - Pearson).
        sets: the sets to build; each gets its rows even when empty.
        n_boot: bootstrap draws over source images.
        seed: seed of the bootstrap.
        **options: passed to :func:`difflens.analysis.sets.distance_sets`.

    Returns:
        The :class:`SetAnalysis`.
    """
    long = distance_sets(table, metric=metric, sets=sets, progress=False, **options)
    with collect_reasons() as reasons:
        value = separation(table, metric)
    analysis = SetAnalysis(
        long=long,
        summary=set_summary(long, sets),
        kruskal=kruskal_sets(long, sets),
        tests=pairwise_tests(long, sets=sets),
        bootstrap=bootstrap_set_means(long, table, n_boot=n_boot, seed=seed, study_sets=sets),
        separation=value,
        separation_reason=join_reasons(*reasons),
    )
    undefined_numbers = analysis.reasons()
    if undefined_numbers:
        logger.warning(
            "%s distance sets: %d numbers undefined or conventional: %s",
            metric,
            len(undefined_numbers),
            "; ".join(f"{k}: {v}" for k, v in list(undefined_numbers.items())[:5]),
        )
    return analysis
