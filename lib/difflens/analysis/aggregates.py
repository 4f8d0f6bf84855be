"""Streamed summaries of the distance sets, for studies too large for the long form.

One pass over the blocks of :func:`difflens.analysis.sets.iter_set_blocks` with bounded
memory gives every set's exact count, mean, standard deviation, minimum and maximum, a
fine histogram (medians, quantiles), the per source-image sums of the image-level
bootstrap and a seeded long-form subsample of pairs (box plots, rank tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from difflens.analysis.distances import canonical_metric
from difflens.analysis.sets import (
    SETS,
    PairCodes,
    check_sets,
    degenerate_report,
    iter_set_blocks,
    long_frame,
    set_pair_counts,
    warn_degenerate,
)
from difflens.analysis.source_sums import SourcePairSums
from difflens.features.prototypes import PrototypeTable


def _pair_uniforms(i: np.ndarray, j: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per pair from a hash of ``(seed, i, j)`` (splitmix64)."""
    with np.errstate(over="ignore"):
        z = (i.astype(np.uint64) << np.uint64(32)) ^ j.astype(np.uint64)
        z = z + np.uint64((0x9E3779B97F4A7C15 * (seed + 1)) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


@dataclass
class SetAggregates:
    """Streamed summaries of the distance sets (see :func:`set_aggregates`).

    Attributes:
        metric: the metric's canonical name.
        sets: the sets summarised.
        n: ``{set: number of finite pairs}``.
        mean: ``{set: exact mean}`` (0 for an empty set; :meth:`summary` gives NaN).
        m2: ``{set: sum of squared deviations from the mean}``.
        minimum: ``{set: smallest distance}`` (inf for an empty set).
        maximum: ``{set: largest distance}`` (-inf for an empty set).
        edges: float64 ``(bins + 1,)`` histogram edges, the metric's units.
        histograms: ``{set: int64 (bins,) counts}``.
        sample: seeded long-form subsample (the columns of
            :func:`~difflens.analysis.sets.distance_sets`).
        sample_rate: ``{set: probability that a pair is in the sample}``.
        sources: per source-image sums for the bootstrap, or None.
        source_names: ``(S,)`` source-image names.
        dropped_pairs: pairs left out for want of a distance.
        degenerate_objects: object keys of the zero or constant prototypes.
    """

    metric: str
    sets: tuple[str, ...]
    n: dict[str, int]
    mean: dict[str, float]
    m2: dict[str, float]
    minimum: dict[str, float]
    maximum: dict[str, float]
    edges: np.ndarray
    histograms: dict[str, np.ndarray]
    sample: pd.DataFrame
    sample_rate: dict[str, float]
    sources: SourcePairSums | None
    source_names: np.ndarray
    dropped_pairs: int = 0
    degenerate_objects: list[str] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """Count, mean, sd, min, max (exact) and median (from the histogram) of each set.

        Returns:
            Index ``set``; columns ``n`` (int), ``mean``, ``std`` (``ddof=1``), ``median``,
            ``min``, ``max`` (float64, the metric's units; NaN for an empty set, ``std``
            NaN for a set of one pair) and ``reason`` (why a number is NaN, else ``""``).
        """
        rows = {}
        for name in self.sets:
            n = self.n[name]
            reason = ""
            if n == 0:
                reason = f"{name} has no finite distance: mean, sd and median undefined"
            elif n == 1:
                reason = f"{name} has one distance: no standard deviation"
            rows[name] = {
                "n": n,
                "mean": self.mean[name] if n else np.nan,
                "std": math.sqrt(self.m2[name] / (n - 1)) if n > 1 else np.nan,
                "median": self.quantile(name, 0.5),
                "min": self.minimum[name] if n else np.nan,
                "max": self.maximum[name] if n else np.nan,
                "reason": reason,
            }
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("set")

    def quantile(self, name: str, q: float) -> float:
        """A quantile of a set from its histogram.

        As numpy's default (linear between order statistics), each order statistic placed
        linearly within its histogram bin: the error is at most one bin width.

        Args:
            name: the set.
            q: the probability, in ``[0, 1]``.

        Returns:
            The quantile (the metric's units); NaN for an empty set.
        """
        hist = self.histograms[name]
        total = int(hist.sum())
        if total == 0:
            return float("nan")
        position = q * (total - 1)
        low, frac = int(math.floor(position)), position - math.floor(position)
        value = self._order_statistic(name, low)
        if frac > 0 and low + 1 < total:
            value += frac * (self._order_statistic(name, low + 1) - value)
        return float(np.clip(value, self.minimum[name], self.maximum[name]))

    def _order_statistic(self, name: str, k: int) -> float:
        hist = self.histograms[name]
        cum = np.cumsum(hist)
        b = int(np.searchsorted(cum, k, side="right"))
        before = cum[b] - hist[b]
        inside = (k - before + 0.5) / hist[b]
        return float(self.edges[b] + inside * (self.edges[b + 1] - self.edges[b]))


def _histogram_upper(prototypes: PrototypeTable, metric: str) -> float:
    """An upper bound of every distance of ``metric`` (the histogram's range)."""
    if metric in ("cosine", "correlation"):
        return 2.0
    if metric == "distance_correlation":
        return 1.0
    x = prototypes.features.astype(np.float64)
    if len(x) == 0:
        return 1.0
    centred = x - x.mean(0)
    if metric == "euclidean":
        return float(2 * np.sqrt((centred**2).sum(1)).max()) or 1.0
    return float(2 * np.abs(centred).sum(1).max()) or 1.0


def set_aggregates(
    prototypes: PrototypeTable,
    metric: str = "cosine",
    sets: Sequence[str] = SETS,
    scdi_same_instance: bool = True,
    block: int = 512,
    dtype: torch.dtype = torch.float64,
    degenerate: str = "nan",
    bins: int = 4096,
    sample_per_set: int = 200_000,
    seed: int = 0,
    by_source: bool = True,
    progress: bool = True,
) -> SetAggregates:
    """The distance sets (Eqs. 11-15) summarised in one pass with bounded memory.

    Exact per set: count, mean, standard deviation (Chan's streaming update), min and max.
    A histogram with ``bins`` equal bins over ``[0, upper bound]`` gives medians and
    quantiles to within one bin. ``sample`` is a long-form subsample in which every pair
    of a set is kept with the same probability, about ``sample_per_set`` pairs per set,
    chosen by a hash of ``(seed, i, j)`` (so it does not depend on ``block``). Memory:
    about 100 bytes x ``block`` x N for a block (N = 20,000, ``block=512``: about 1 GB),
    plus the ``S x S`` arrays of the source sums.

    Args:
        prototypes: the prototype table.
        metric: a metric of :func:`difflens.analysis.distances.pairwise`.
        sets: the sets to summarise.
        scdi_same_instance: put same-instance different-image pairs in ``scdi`` too.
        block: rows of the distance matrix per block.
        dtype: the dtype of the distance computation.
        degenerate: ``"nan"`` or ``"orthogonal"`` (see :mod:`difflens.analysis.distances`).
        bins: histogram bins.
        sample_per_set: about how many pairs of each set the sample keeps.
        seed: seed of the sample's hash.
        by_source: keep the per source-image sums that
            :func:`difflens.analysis.bootstrap.bootstrap_set_means` needs
            (:class:`~difflens.analysis.source_sums.SourcePairSums`).
        progress: show a progress bar over the blocks.

    Returns:
        The :class:`SetAggregates`.
    """
    metric = canonical_metric(metric)
    check_sets(sets)
    meta = prototypes.meta
    codes = PairCodes.from_meta(meta)
    counts = set_pair_counts(meta, sets, scdi_same_instance)
    keys, dropped = degenerate_report(prototypes, metric)
    warn_degenerate(keys, dropped, metric, degenerate)
    agg = SetAggregates(
        metric=metric,
        sets=tuple(sets),
        n=dict.fromkeys(sets, 0),
        mean=dict.fromkeys(sets, 0.0),
        m2=dict.fromkeys(sets, 0.0),
        minimum=dict.fromkeys(sets, np.inf),
        maximum=dict.fromkeys(sets, -np.inf),
        edges=np.linspace(0.0, _histogram_upper(prototypes, metric), bins + 1),
        histograms={s: np.zeros(bins, np.int64) for s in sets},
        sample=pd.DataFrame(),
        sample_rate={s: min(1.0, sample_per_set / counts[s]) if counts[s] else 1.0 for s in sets},
        sources=SourcePairSums(codes.source_names, sets) if by_source else None,
        source_names=codes.source_names,
        dropped_pairs=int(dropped) if degenerate == "nan" else 0,
        degenerate_objects=keys,
    )
    parts: dict[str, list] = {s: [] for s in sets}
    for blk in iter_set_blocks(
        prototypes, metric, sets, scdi_same_instance, block, dtype, degenerate, progress
    ):
        u = _pair_uniforms(blk.i, blk.j, seed)
        for name in sets:
            sel = blk.member[name]
            if sel.any():
                _add_pairs(agg, name, blk.distance[sel], blk.i[sel], blk.j[sel], codes)
                keep = u[sel] < agg.sample_rate[name]
                if keep.any():
                    parts[name].append(
                        (blk.distance[sel][keep], blk.i[sel][keep], blk.j[sel][keep])
                    )
    agg.sample = long_frame(meta, parts, sets)
    agg.sample.attrs.update(metric=metric, sample_rate=agg.sample_rate, seed=seed)
    return agg


def _add_pairs(
    agg: SetAggregates, name: str, d: np.ndarray, i: np.ndarray, j: np.ndarray, codes: PairCodes
) -> None:
    """Fold the finite distances ``d`` of pairs ``(i, j)`` of one set into ``agg``.

    Count, mean and sum of squared deviations by Chan et al.'s pairwise update; minimum,
    maximum, histogram and the per-source sums.
    """
    k, n = len(d), agg.n[name]
    block_mean = float(d.mean())
    block_m2 = float(((d - block_mean) ** 2).sum())
    delta = block_mean - agg.mean[name]
    total = n + k
    agg.mean[name] += delta * k / total
    agg.m2[name] += block_m2 + delta * delta * n * k / total
    agg.n[name] = total
    agg.minimum[name] = min(agg.minimum[name], float(d.min()))
    agg.maximum[name] = max(agg.maximum[name], float(d.max()))
    bins = len(agg.edges) - 1
    index = np.clip(np.searchsorted(agg.edges, d, side="right") - 1, 0, bins - 1)
    agg.histograms[name] += np.bincount(index, minlength=bins)
    if agg.sources is not None:
        agg.sources.add(name, codes.source[i], codes.source[j], d)
