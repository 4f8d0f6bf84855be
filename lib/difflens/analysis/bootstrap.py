"""Image-level bootstrap: intervals of set means and of any statistic, over source images.

The pair-level tests treat millions of dependent pairs as independent. Here source
images are resampled with replacement (with all their objects, transformed copies and
video frames), the sets rebuilt and the statistic recomputed: percentile intervals of
every set mean and the probability of every ordering the paper claims (Eqs. 16, 17),
numbers that say whether a new set of images would show the same thing.
:func:`bootstrap_set_means` does it for the set means without recomputing a distance
(weighted per source-pair sums, :mod:`difflens.analysis.source_sums`);
:func:`bootstrap_over_images` for any statistic of a prototype table.

Undefined numbers follow :mod:`difflens.analysis.undefined`. A draw in which a set has no
pair (no drawn image with two objects of one class, say) has a NaN mean for that set and
is left out of its interval, counted in ``n_valid``. An interval needs at least
``ceil(2 / (1 - level))`` finite draws (40 at 95 %: one draw beyond each percentile), else
``low`` and ``high`` are NaN; the ``reason`` column of :meth:`BootstrapResult.intervals`
and of ``orderings`` says so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from difflens.analysis.aggregates import SetAggregates
from difflens.analysis.sets import COPY_COLUMN, SETS, distance_sets, source_codes
from difflens.analysis.source_sums import SourcePairSums
from difflens.analysis.summaries import claimed_orderings, set_summary
from difflens.analysis.undefined import NAN, collect_reasons, join_reasons, undefined
from difflens.features.prototypes import PrototypeTable

#: How a bootstrap draw treats a source image drawn ``k > 1`` times (see resample_table).
COPY_MODES = ("exclude", "same_image")
INTERVAL_COLUMNS = ("estimate", "boot_mean", "se", "low", "high", "n_valid", "reason")


def draw_counts(n_sources: int, n_boot: int, seed: int) -> np.ndarray:
    """Multiplicities of source images drawn with replacement, one row per bootstrap draw.

    Args:
        n_sources: the number of source images ``S`` (each draw takes ``S``).
        n_boot: the number of draws ``B``.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        int64 ``(B, S)`` counts; every row sums to ``S``.
    """
    if n_sources == 0:
        return np.zeros((n_boot, 0), np.int64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_sources, size=(n_boot, n_sources))
    offsets = (np.arange(n_boot) * n_sources)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_boot * n_sources).reshape(
        n_boot, n_sources
    )


def resample_table(
    table: PrototypeTable, counts: np.ndarray, copies: str = "exclude"
) -> PrototypeTable:
    """The table with every source image repeated ``counts[s]`` times (a bootstrap draw).

    Copies keep ``image_id``, ``source_image`` and ``instance_key``, so a pair between two
    copies of one object never enters a set, and no pair between copies of one image is
    ever a different-image pair (that would bias the different-image sets). ``copies``:

    - ``"exclude"`` (default): each copy is an image of its own draw; a pair between two
      copies of one source enters no set (column ``bootstrap_copy``, honoured by
      :mod:`difflens.analysis.sets`). Each copy adds its own pairs once, as an
      independently drawn image would: the standard cluster bootstrap, whose standard
      errors are calibrated.
    - ``"same_image"``: all ``k`` copies form one image, so its within-image pairs count
      ``k^2`` times (column ``copy_index`` only). Conservative: with Poisson(1)-like
      multiplicities the standard error of a within-image set mean is about 1.7x too large.

    Args:
        table: the prototype table.
        counts: int ``(S,)`` multiplicity of each source image (codes of
            :func:`~difflens.analysis.sets.source_codes`).
        copies: ``"exclude"`` or ``"same_image"``.

    Returns:
        The resampled table; copies get ``object_key`` ``"<key>~<k>"`` (``k >= 1``).

    Raises:
        ValueError: ``copies`` is not one of :data:`COPY_MODES`.
    """
    if copies not in COPY_MODES:
        raise ValueError(f"copies must be one of {COPY_MODES}, got {copies!r}")
    codes, _ = source_codes(table.meta)
    counts = np.asarray(counts)
    rows, copy_index = [], []
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(counts) + 1))
    for s in np.flatnonzero(counts):
        members = order[bounds[s] : bounds[s + 1]]
        for k in range(int(counts[s])):
            rows.append(members)
            copy_index.append(np.full(len(members), k))
    index = np.concatenate(rows) if rows else np.zeros(0, int)
    copy = np.concatenate(copy_index) if copy_index else np.zeros(0, int)
    meta = table.meta.iloc[index].reset_index(drop=True)
    keys = meta["object_key"].astype(str)
    meta["object_key"] = np.where(copy > 0, keys + "~" + copy.astype(str), keys)
    meta[COPY_COLUMN if copies == "exclude" else "copy_index"] = copy
    return PrototypeTable(meta, table.features[index], table.skipped, dict(table.info))


def min_draws(level: float) -> int:
    """The fewest finite draws a percentile interval at ``level`` is given from.

    Args:
        level: the interval's coverage, in ``(0, 1)``.

    Returns:
        ``ceil(2 / (1 - level))``: at least one draw beyond each percentile (40 at 0.95).
    """
    return math.ceil(round(2.0 / (1.0 - level), 9))


def _interval_row(name: str, estimate: float, r: np.ndarray, n_boot: int, level: float) -> dict:
    """Bootstrap mean, se, percentile interval and reason of one statistic's replicates."""
    finite = r[np.isfinite(r)]
    n, needed = len(finite), min_draws(level)
    row = {"estimate": estimate, "boot_mean": finite.mean() if n else NAN}
    row.update(se=finite.std(ddof=1) if n > 1 else NAN, low=NAN, high=NAN, n_valid=n)
    reasons = []
    if not np.isfinite(estimate):
        reasons.append(f"{name} is undefined on the full data")
    if n == 0:
        reasons.append(f"{name} is undefined in every draw")
    elif n < n_boot:
        reasons.append(f"{name} is undefined in {n_boot - n} of {n_boot} draws, left out")
    if n >= needed:
        row["low"] = np.percentile(finite, 100 * (1 - level) / 2)
        row["high"] = np.percentile(finite, 100 * (1 + level) / 2)
    elif n:
        reasons.append(f"{n} finite draws; a {level:.0%} percentile interval needs {needed}")
    row["reason"] = join_reasons(*reasons)
    return row


@dataclass
class BootstrapResult:
    """Replicates of statistics over resampled source images.

    Attributes:
        estimate: ``{statistic: value on the full data}``.
        replicates: float64 ``(B, statistics)``, one row per draw (NaN where undefined).
        level: the coverage of :meth:`intervals`.
        n_sources: the number of source images resampled.
        seed: the seed of the draws.
        orderings: for :func:`bootstrap_set_means`, the ordering table (see there).
        undefined: ``{reason: number of draws}`` of draws whose statistic failed or was
            undefined (:func:`bootstrap_over_images`).
    """

    estimate: dict[str, float]
    replicates: pd.DataFrame
    level: float
    n_sources: int
    seed: int
    orderings: pd.DataFrame = field(default_factory=pd.DataFrame)
    undefined: Counter = field(default_factory=Counter)

    def intervals(self) -> pd.DataFrame:
        """Per statistic: estimate, bootstrap mean and standard error, percentile interval.

        Returns:
            Index ``statistic``; columns ``estimate``, ``boot_mean``, ``se`` (``ddof=1``),
            ``low``, ``high`` (float64, the statistic's units), ``n_valid`` (finite draws)
            and ``reason``. ``low`` / ``high`` are NaN with fewer than :func:`min_draws`
            finite draws, ``se`` with fewer than two.
        """
        rows = {
            name: _interval_row(
                name,
                float(self.estimate.get(name, NAN)),
                self.replicates[name].to_numpy(np.float64),
                len(self.replicates),
                self.level,
            )
            for name in self.replicates.columns
        }
        table = pd.DataFrame.from_dict(rows, orient="index", columns=list(INTERVAL_COLUMNS))
        return table.rename_axis("statistic")

    def probability(self, chain: Sequence[str]) -> tuple[float, int]:
        """P[stat chain[0] < chain[1] < ...] over the draws where all are finite.

        Args:
            chain: statistics (set names) in the claimed increasing order.

        Returns:
            ``(probability, n_valid)``: the share of valid draws in which the chain holds
            strictly, and their number; NaN (with an
            :class:`~difflens.analysis.undefined.UndefinedStatisticWarning`) and 0 when no
            draw has every statistic of the chain.
        """
        missing = [s for s in chain if s not in self.replicates.columns]
        if missing:
            return undefined(f"P[{' < '.join(chain)}]: no draws of {', '.join(missing)}"), 0
        values = self.replicates[list(chain)].to_numpy(np.float64)
        valid = np.isfinite(values).all(1)
        if not valid.any():
            return undefined(f"P[{' < '.join(chain)}]: no draw defines every set"), 0
        holds = np.all(np.diff(values[valid], axis=1) > 0, axis=1)
        return float(holds.mean()), int(valid.sum())


def ordering_table(result: BootstrapResult, sets: Sequence[str]) -> pd.DataFrame:
    """Whether each ordering the paper claims holds, and its probability over the draws.

    Args:
        result: bootstrap replicates of set means.
        sets: the sets of the study (see :func:`~difflens.analysis.summaries.claimed_orderings`).

    Returns:
        One row per ordering: ``ordering`` (its label), ``holds`` (on the full data; None
        when a set's mean is NaN), ``probability`` (:meth:`BootstrapResult.probability`),
        ``n_valid`` and ``reason``.
    """
    rows = []
    n_boot = len(result.replicates)
    for label, chain in claimed_orderings(sets).items():
        with collect_reasons() as reasons:
            prob, n_valid = result.probability(chain)
        est = np.array([result.estimate.get(s, NAN) for s in chain], dtype=np.float64)
        holds = bool(np.all(np.diff(est) > 0)) if np.isfinite(est).all() else None
        if holds is None:
            reasons.append(f"no mean for {', '.join(np.asarray(chain)[~np.isfinite(est)])}")
        if 0 < n_valid < n_boot:
            reasons.append(f"{n_boot - n_valid} of {n_boot} draws lack a set of the chain")
        rows.append((label, holds, prob, n_valid, join_reasons(*reasons)))
    columns = ["ordering", "holds", "probability", "n_valid", "reason"]
    return pd.DataFrame(rows, columns=columns)


def _as_dict(values: Mapping[str, float] | float) -> dict[str, float]:
    if isinstance(values, Mapping):
        return {str(k): float(v) for k, v in values.items()}
    return {"value": float(values)}


def bootstrap_over_images(
    table: PrototypeTable,
    statistic: Callable[[PrototypeTable], Mapping[str, float] | float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    progress: bool = True,
    copies: str = "exclude",
) -> BootstrapResult:
    """Percentile bootstrap of ``statistic`` over source images (a cluster bootstrap).

    Every draw takes as many source images as the table has, with replacement, and calls
    ``statistic`` on :func:`resample_table` of the draw (all objects and copies of a drawn
    image come along; see there for how repeated images are treated). A draw whose
    statistic raises ``ValueError`` / ``ZeroDivisionError`` / ``FloatingPointError``, or
    is undefined (NaN), counts as missing: ``n_valid`` in ``intervals()``, its reasons
    counted in ``result.undefined``.

    Args:
        table: the prototype table.
        statistic: ``table -> {name: value}`` (or one number, reported as ``"value"``).
        n_boot: the number of draws.
        seed: seed of the draws (same seed, same draws as :func:`bootstrap_set_means`).
        level: the coverage of the intervals.
        progress: show a progress bar.
        copies: ``"exclude"`` or ``"same_image"`` (see :func:`resample_table`).

    Returns:
        The :class:`BootstrapResult`.
    """
    _, names = source_codes(table.meta)
    estimate = _as_dict(statistic(table))
    counts = draw_counts(len(names), n_boot, seed)
    draws = range(n_boot)
    if progress:
        from tqdm.auto import tqdm

        draws = tqdm(draws, desc="bootstrap over images", unit="replicate")
    records, failures = [], Counter()
    for b in draws:
        with collect_reasons() as reasons:
            try:
                records.append(_as_dict(statistic(resample_table(table, counts[b], copies))))
            except (ValueError, ZeroDivisionError, FloatingPointError) as error:
                records.append({})
                reasons.append(f"{type(error).__name__}: {error}")
        failures.update(reasons)
    replicates = pd.DataFrame.from_records(records, columns=list(estimate)).astype(float)
    return BootstrapResult(estimate, replicates, level, len(names), seed, undefined=failures)


def set_mean_statistic(
    metric: str = "correlation", **options
) -> Callable[[PrototypeTable], dict[str, float]]:
    """A statistic for :func:`bootstrap_over_images`: the mean of every distance set.

    Args:
        metric: the distance.
        **options: passed to :func:`difflens.analysis.sets.distance_sets`.

    Returns:
        ``table -> {set: mean}`` for the sets with a finite distance.
    """

    def statistic(table: PrototypeTable) -> dict[str, float]:
        long = distance_sets(table, metric=metric, progress=False, **options)
        return set_summary(long)["mean"].to_dict()

    return statistic


def bootstrap_set_means(
    sets: pd.DataFrame | SetAggregates | SourcePairSums,
    table: PrototypeTable | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    batch: int = 256,
    copies: str = "exclude",
    study_sets: Sequence[str] | None = None,
) -> BootstrapResult:
    """Image-level bootstrap of every set mean, without recomputing a distance.

    A draw's set mean is a weighted mean of the per source-pair sums ``S`` and counts
    ``N`` (:func:`weighted_set_means`): exactly the mean of the sets rebuilt from the
    resampled table (:func:`resample_table`, whose ``copies`` modes it follows). Same
    ``seed``, same draws as :func:`bootstrap_over_images`.

    Args:
        sets: a long form from :func:`~difflens.analysis.sets.distance_sets` (then
            ``table`` is the prototype table it came from), the output of
            :func:`~difflens.analysis.aggregates.set_aggregates`, or the source sums.
        table: the prototype table of a long form.
        n_boot: the number of draws.
        seed: seed of the draws.
        level: the coverage of the intervals.
        batch: draws computed at once.
        copies: ``"exclude"`` or ``"same_image"`` (see :func:`resample_table`).
        study_sets: the sets of the study; those without a pair get NaN columns, so that
            their intervals and orderings say why. Default: the sets with a pair.

    Returns:
        The :class:`BootstrapResult`; ``result.orderings`` gives, for every ordering the
        paper claims (Eq. 16, Eq. 17 and their pairs), whether it holds in the data and its
        probability over the draws (:func:`ordering_table`).

    Raises:
        ValueError: aggregates built without per-source sums, or a long form without
            its table.
    """
    if isinstance(sets, SetAggregates):
        if sets.sources is None:
            raise ValueError("these aggregates were built with by_source=False")
        sums = sets.sources
    elif isinstance(sets, SourcePairSums):
        sums = sets
    else:
        if table is None:
            raise ValueError("a long form needs the prototype table it was built from")
        sums = SourcePairSums.from_long(sets, table)
    counts = draw_counts(sums.n, n_boot, seed)
    estimate = weighted_set_means(sums, np.ones((1, sums.n))).iloc[0].to_dict()
    parts = [
        weighted_set_means(sums, counts[start : start + batch], copies)
        for start in range(0, n_boot, batch)
    ]
    replicates = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if study_sets is not None:
        columns = [s for s in SETS if s in set(study_sets) | set(replicates.columns)]
        replicates = replicates.reindex(columns=columns)
        estimate = {s: estimate.get(s, NAN) for s in columns}
    result = BootstrapResult(estimate, replicates, level, sums.n, seed)
    result.orderings = ordering_table(result, list(replicates.columns))
    return result


def weighted_set_means(
    sums: SourcePairSums, counts: np.ndarray, copies: str = "exclude"
) -> pd.DataFrame:
    """Set means when source image ``s`` is drawn ``counts[b, s]`` times.

    A pair of sources ``s != t`` weighs ``c_s c_t``; pairs within one source weigh ``c_s``
    (``copies="exclude"``: each copy adds its own pairs) or ``c_s^2`` (``"same_image"``);
    see :func:`resample_table`.

    Args:
        sums: the per source-pair sums and counts.
        counts: ``(B, S)`` (or ``(S,)``) multiplicities.
        copies: ``"exclude"`` or ``"same_image"``.

    Returns:
        float64 ``(B, sets)``, one column per set with at least one pair; NaN where a draw
        leaves a set without a pair (e.g. no drawn image with two objects of one class).

    Raises:
        ValueError: ``copies`` is not one of :data:`COPY_MODES`.
    """
    if copies not in COPY_MODES:
        raise ValueError(f"copies must be one of {COPY_MODES}, got {copies!r}")
    w = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    within_weight = w if copies == "exclude" else w * w
    columns = {}
    for name in SETS:
        if name not in sums.sets:
            continue
        ws, wc, xs, xc = sums.parts(name)
        if wc.sum() == 0 and (xc is None or xc.sum() == 0):
            continue
        num, den = within_weight @ ws, within_weight @ wc
        if xs is not None:
            num = num + _cross(xs, w)
            den = den + _cross(xc, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[name] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return pd.DataFrame(columns, columns=list(columns), index=pd.RangeIndex(len(w)))


def _cross(m, w: np.ndarray) -> np.ndarray:
    """``sum_st w_s w_t m_st`` for every row ``w`` (``m`` holds each pair of sources once)."""
    if sparse.issparse(m):
        return np.einsum("bs,bs->b", np.asarray((m.T @ w.T).T), w)
    return np.einsum("bs,bs->b", (w.astype(m.dtype) @ m).astype(np.float64), w)
