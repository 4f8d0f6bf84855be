"""Distance sets of the paper (Eqs. 11-15), each unordered pair once.

For two different objects ``I`` (image ``i``, class ``c``) and ``J`` (image ``j``, class ``k``):

========  ==================================  =========================================
set       condition                           meaning
========  ==================================  =========================================
``scsi``  ``i == j and c == k``               same class, same image
``scdi``  ``i != j and c == k``               same class, different image
``sidi``  ``I == J (same instance), i != j``  same instance, different image
``dcsi``  ``i == j and c != k``               different class, same image
``dcdi``  ``i != j and c != k``               different class, different image
========  ==================================  =========================================

"Same image" compares ``image_id`` (a transformed copy or another video frame is a
different image); "same instance" compares ``instance_key``. Eq. 12 puts a same-instance
pair such as (c, e) in the paper's Fig. 2 in ``scdi`` as well as in ``sidi``; that is the
default here (``scdi_same_instance=True``). Pass ``False`` to keep such pairs in ``sidi``
only, the reading in which ``scdi`` compares *different* objects of one class.

Which sets a study compares is the caller's choice of rows: the transform study (Fig. 8)
builds the sets on the originals plus one transform, the video study on a reference frame
plus the frame at one offset (``table.subset(...)``).

Three ways to get the sets, by size (``N`` objects, ``N (N - 1) / 2`` pairs):

- :func:`distance_sets` -- the long form, one row per pair and set (about 30 bytes a
  row). Use it while the pairs fit in memory (up to some tens of millions; it refuses
  more than ``max_pairs``). Every number can be recomputed by hand from it.
- :func:`set_aggregates` -- one streaming pass with bounded memory (a block of rows of
  the distance matrix at a time): exact count, mean, standard deviation, minimum and
  maximum of every set, a fine histogram (medians and box plots), per source-image sums
  (the image-level bootstrap) and a seeded subsample of pairs in long form (box plots,
  rank tests). Use it for 20,000 objects and more.
- :func:`set_pair_counts` -- the size of every set, from the metadata alone.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from difflens.distances import DegenerateVectorWarning, canonical_metric, pairwise
from difflens.prototypes import PrototypeTable

logger = logging.getLogger("difflens")

SETS = ("scsi", "scdi", "sidi", "dcsi", "dcdi")
PAPER_SETS = ("scsi", "scdi", "dcsi", "dcdi")
#: The sets of the transform study (Fig. 8) in the order of Eq. 17.
TRANSFORM_SETS = ("sidi", "scsi", "dcsi")
#: The orderings of the set means the paper claims: Eq. 16 and, for transforms, Eq. 17.
ORDERINGS = {"eq16": ("scsi", "scdi", "dcsi", "dcdi"), "eq17": ("sidi", "scsi", "dcsi")}
LONG_COLUMNS = ("set", "distance", "a", "b", "image_a", "image_b", "i", "j")
#: Meta column of a bootstrap draw (``difflens.stats.resample_table``): pairs between two
#: copies of one source image enter no set.
COPY_COLUMN = "bootstrap_copy"
_REQUIRED = ("object_key", "image_id", "class_name", "instance_key")


def source_codes(meta: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Integer source-image code of every object and the source names (sorted).

    The source image is ``source_image`` (shared by an image's transformed copies and by
    the frames of one video), or ``image_id`` where that is missing.
    """
    if "image_id" not in meta.columns:
        raise ValueError(f"prototype metadata lacks the image_id column; has {list(meta.columns)}")
    source = meta["source_image"] if "source_image" in meta.columns else meta["image_id"]
    source = source.where(source.notna(), meta["image_id"])
    codes, names = pd.factorize(source.astype(str), sort=True)
    return codes, np.asarray(names)


@dataclass(frozen=True)
class PairCodes:
    """Integer codes of the columns that decide set membership, one per object."""

    image: np.ndarray
    cls: np.ndarray
    instance: np.ndarray
    source: np.ndarray
    source_names: np.ndarray
    copy: np.ndarray | None = None

    @staticmethod
    def from_meta(meta: pd.DataFrame) -> PairCodes:
        missing = [c for c in _REQUIRED if c not in meta.columns]
        if missing:
            raise ValueError(
                f"prototype metadata lacks columns {missing}; has {list(meta.columns)}"
            )
        source, names = source_codes(meta)
        return PairCodes(
            image=pd.factorize(meta["image_id"].astype(str))[0].astype(np.int32),
            cls=pd.factorize(meta["class_name"].astype(str))[0].astype(np.int32),
            instance=pd.factorize(meta["instance_key"].astype(str))[0].astype(np.int32),
            source=source.astype(np.int32),
            source_names=names,
            copy=meta[COPY_COLUMN].to_numpy() if COPY_COLUMN in meta.columns else None,
        )

    def membership(
        self, i: np.ndarray, j: np.ndarray, scdi_same_instance: bool = True
    ) -> dict[str, np.ndarray]:
        same_image = self.image[i] == self.image[j]
        same_class = self.cls[i] == self.cls[j]
        same_instance = self.instance[i] == self.instance[j]
        scdi = ~same_image & same_class
        if not scdi_same_instance:
            scdi &= ~same_instance
        member = {
            "scsi": same_image & same_class & ~same_instance,
            "scdi": scdi,
            "sidi": ~same_image & same_instance,
            "dcsi": same_image & ~same_class,
            "dcdi": ~same_image & ~same_class,
        }
        if self.copy is not None:
            # two copies of one source image in a bootstrap draw: such a pair is in no set
            across = (self.source[i] == self.source[j]) & (self.copy[i] != self.copy[j])
            member = {k: v & ~across for k, v in member.items()}
        return member


def pair_membership(
    meta: pd.DataFrame, i: np.ndarray, j: np.ndarray, scdi_same_instance: bool = True
) -> dict[str, np.ndarray]:
    """Boolean membership of the pairs ``(i[n], j[n])`` (row indices of ``meta``) in each set."""
    return PairCodes.from_meta(meta).membership(np.asarray(i), np.asarray(j), scdi_same_instance)


def _pairs_within(*columns: pd.Series) -> int:
    """Number of unordered pairs of rows that agree on all ``columns``."""
    sizes = pd.DataFrame({f"c{k}": c.astype(str).values for k, c in enumerate(columns)})
    counts = sizes.value_counts().to_numpy(dtype=np.int64)
    return int((counts * (counts - 1) // 2).sum())


def set_pair_counts(
    meta: pd.DataFrame, sets: Sequence[str] = SETS, scdi_same_instance: bool = True
) -> dict[str, int]:
    """How many pairs each set holds, from the metadata alone (inclusion-exclusion)."""
    _check_sets(sets)
    n = len(meta)
    img, cls, inst = meta["image_id"], meta["class_name"], meta["instance_key"]
    total = n * (n - 1) // 2
    n_i, n_c, n_s = _pairs_within(img), _pairs_within(cls), _pairs_within(inst)
    n_ic, n_is = _pairs_within(img, cls), _pairs_within(img, inst)
    n_cs, n_ics = _pairs_within(cls, inst), _pairs_within(img, cls, inst)
    scdi = n_c - n_ic
    if not scdi_same_instance:
        scdi -= n_cs - n_ics
    counts = {
        "scsi": n_ic - n_ics,
        "scdi": scdi,
        "sidi": n_s - n_is,
        "dcsi": n_i - n_ic,
        "dcdi": total - n_i - n_c + n_ic,
    }
    return {name: counts[name] for name in sets}


def _check_sets(sets: Sequence[str]) -> None:
    unknown = set(sets) - set(SETS)
    if unknown:
        raise ValueError(f"unknown sets {sorted(unknown)}; known: {SETS}")


@dataclass
class _Block:
    """The pairs of one block of rows: indices, distances and set membership."""

    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray
    member: dict[str, np.ndarray]


def iter_set_blocks(
    prototypes: PrototypeTable,
    metric: str = "cosine",
    sets: Sequence[str] = SETS,
    scdi_same_instance: bool = True,
    block: int = 1024,
    dtype: torch.dtype = torch.float64,
    degenerate: str = "nan",
    progress: bool = False,
) -> Iterator[_Block]:
    """Rows ``start:stop`` of the upper triangle of the distance matrix, block by block.

    Memory per block: ``block x N`` distances. Pairs whose distance is undefined (NaN: a
    zero or constant vector under cosine or correlation) are left out of every set.
    """
    _check_sets(sets)
    codes = PairCodes.from_meta(prototypes.meta)
    n = len(prototypes)
    starts = range(0, n, block)
    if progress and n > block:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"{metric} distance sets", unit="block")
    for start in starts:
        stop = min(n, start + block)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateVectorWarning)
            d = pairwise(
                prototypes.features[start:stop],
                prototypes.features[start:],
                metric=metric,
                dtype=dtype,
                degenerate=degenerate,
            )
        ii, jj = np.triu_indices(stop - start, k=1, m=n - start)
        dist = d[ii, jj].astype(np.float64, copy=False)
        ii = (ii + start).astype(np.int32)
        jj = (jj + start).astype(np.int32)
        member = codes.membership(ii, jj, scdi_same_instance)
        finite = np.isfinite(dist)
        if not finite.all():
            member = {k: v & finite for k, v in member.items()}
        yield _Block(ii, jj, dist, {k: member[k] for k in sets})


def _degenerate_report(prototypes: PrototypeTable, metric: str) -> tuple[list[str], int]:
    from difflens.distances import degenerate_rows

    metric = canonical_metric(metric)
    if metric not in ("cosine", "correlation"):
        return [], 0
    bad = degenerate_rows(prototypes.features, metric)
    n, k = len(prototypes), int(bad.sum())
    if not k:
        return [], 0
    pairs = k * (n - k) + k * (k - 1) // 2
    keys = prototypes.meta["object_key"].astype(str).to_numpy()[bad].tolist()
    return keys, pairs


def _warn_degenerate(keys: list[str], pairs: int, metric: str, degenerate: str) -> None:
    if not keys:
        return
    what = "zero" if metric == "cosine" else "constant"
    if degenerate == "nan":
        logger.warning(
            "%d objects have %s prototypes (no %s distance); their %d pairs are left out of "
            "every set: %s",
            len(keys),
            what,
            metric,
            pairs,
            ", ".join(keys[:10]) + (" ..." if len(keys) > 10 else ""),
        )
    else:
        logger.warning(
            "%d objects have %s prototypes; their %d pairs get %s distance 1 (orthogonal)",
            len(keys),
            what,
            pairs,
            metric,
        )


def distance_sets(
    prototypes: PrototypeTable,
    metric: str = "cosine",
    sets: Sequence[str] = SETS,
    scdi_same_instance: bool = True,
    block: int = 1024,
    dtype: torch.dtype = torch.float64,
    degenerate: str = "nan",
    max_pairs: int | None = 50_000_000,
    progress: bool = True,
) -> pd.DataFrame:
    """Every pair's distance with its set, in long form.

    Columns: ``set``, ``distance``, ``a`` and ``b`` (the two objects' ``object_key``),
    ``image_a``, ``image_b`` (categoricals) and ``i``, ``j`` (their rows in
    ``prototypes``, ``i < j``). A pair that belongs to two sets (scdi and sidi) appears once
    per set. Distances are computed block by block; the result holds every pair, so more
    than ``max_pairs`` rows are refused (use :func:`set_aggregates`). Pairs without a
    distance (zero or constant vectors, see :mod:`difflens.distances`) are left out, logged
    and counted in ``result.attrs["dropped_pairs"]`` and ``attrs["degenerate_objects"]``.
    """
    metric = canonical_metric(metric)
    _check_sets(sets)
    meta = prototypes.meta
    if max_pairs is not None:
        total = sum(set_pair_counts(meta, sets, scdi_same_instance).values())
        if total > max_pairs:
            raise ValueError(
                f"the long form of {len(meta)} objects would hold {total:,} rows (more than "
                f"max_pairs={max_pairs:,}); use set_aggregates() for streamed summaries and a "
                "subsample, or pass a larger max_pairs"
            )
    keys, dropped = _degenerate_report(prototypes, metric)
    _warn_degenerate(keys, dropped, metric, degenerate)
    parts: dict[str, list] = {name: [] for name in sets}
    for blk in iter_set_blocks(
        prototypes, metric, sets, scdi_same_instance, block, dtype, degenerate, progress
    ):
        for name in sets:
            sel = blk.member[name]
            if sel.any():
                parts[name].append((blk.distance[sel], blk.i[sel], blk.j[sel]))
    out = _long_frame(meta, parts, sets)
    out.attrs.update(
        metric=metric,
        dropped_pairs=int(dropped) if degenerate == "nan" else 0,
        degenerate_objects=keys,
    )
    return out


def _long_frame(meta: pd.DataFrame, parts: dict[str, list], sets: Sequence[str]) -> pd.DataFrame:
    """Assemble the long form from ``{set: [(distance, i, j), ...]}``."""
    names, dist, ii, jj = [], [], [], []
    for code, name in enumerate(SETS):
        for d, i, j in parts.get(name, []) if name in sets else []:
            names.append(np.full(len(d), code, np.int8))
            dist.append(d)
            ii.append(i)
            jj.append(j)
    cat = lambda a: np.concatenate(a) if a else np.zeros(0, np.int32)  # noqa: E731
    codes, i, j = cat(names).astype(np.int8), cat(ii).astype(np.int32), cat(jj).astype(np.int32)
    keys, key_names = pd.factorize(meta["object_key"].astype(str))
    images, image_names = pd.factorize(meta["image_id"].astype(str))
    return pd.DataFrame(
        {
            "set": pd.Categorical.from_codes(codes, categories=list(SETS)),
            "distance": cat(dist).astype(np.float64),
            "a": pd.Categorical.from_codes(keys[i], categories=key_names),
            "b": pd.Categorical.from_codes(keys[j], categories=key_names),
            "image_a": pd.Categorical.from_codes(images[i], categories=image_names),
            "image_b": pd.Categorical.from_codes(images[j], categories=image_names),
            "i": i,
            "j": j,
        }
    )


# ------------------------------------------------------------------ streamed aggregates


class SourcePairSums:
    """Sums and counts of distances per pair of source images, per set.

    For a set, ``S[s, t]`` is the sum of the distances of its pairs with one object from
    source image ``s`` and the other from ``t`` (each unordered pair stored once, in either
    orientation), and ``N[s, t]`` their number; the image-level bootstrap weighs them by how
    often ``s`` and ``t`` are drawn. Pairs within one source (every same-image pair, an
    object and its transformed copy) are kept as vectors. Pairs across sources go to an
    ``S x S`` array, allocated only for sets that have such pairs: float64 up to 4,096
    sources, float32 up to ``dense_limit`` (8,192: 270 MB per array), sparse above.
    """

    def __init__(self, source_names: Sequence[str], sets: Sequence[str], dense_limit: int = 8192):
        self.source_names = np.asarray(source_names)
        self.n = len(self.source_names)
        self.sets = tuple(sets)
        self.dense = self.n <= dense_limit
        self.dtype = np.float64 if self.n <= 4096 else np.float32
        self._within: dict[str, list[np.ndarray]] = {}
        self._across: dict[str, list] = {}

    def add(self, name: str, src_a: np.ndarray, src_b: np.ndarray, distance: np.ndarray) -> None:
        """Add pairs (source of one object, source of the other, distance)."""
        n = self.n
        same = src_a == src_b
        if same.any():
            s = np.bincount(src_a[same], weights=distance[same], minlength=n)
            c = np.bincount(src_a[same], minlength=n).astype(np.float64)
            if name in self._within:
                self._within[name][0] += s
                self._within[name][1] += c
            else:
                self._within[name] = [s, c]
        if same.all():
            return
        a, b, d = src_a[~same], src_b[~same], distance[~same]
        # the rows of a block come from few source images: count on (those sources) x (all)
        rows = np.flatnonzero(np.bincount(a, minlength=n))
        lookup = np.zeros(n, np.int64)
        lookup[rows] = np.arange(len(rows))
        key = lookup[a] * n + b
        size = len(rows) * n
        part_s = np.bincount(key, weights=d, minlength=size).reshape(len(rows), n)
        part_c = np.bincount(key, minlength=size).reshape(len(rows), n)
        if name not in self._across:
            if self.dense:
                self._across[name] = [np.zeros((n, n), self.dtype), np.zeros((n, n), self.dtype)]
            else:
                self._across[name] = [sparse.csr_matrix((n, n)), sparse.csr_matrix((n, n))]
        acc = self._across[name]
        if self.dense:
            acc[0][rows] += part_s
            acc[1][rows] += part_c
            return
        r, c = np.nonzero(part_c)
        shape = (n, n)
        acc[0] = acc[0] + sparse.csr_matrix((part_s[r, c], (rows[r], c)), shape=shape)
        acc[1] = acc[1] + sparse.csr_matrix((part_c[r, c].astype(float), (rows[r], c)), shape=shape)

    def parts(self, name: str) -> tuple[np.ndarray, np.ndarray, object, object]:
        """``(within sums, within counts, across sums, across counts)``; the last two are
        None when the set has no pair across source images."""
        zero = np.zeros(self.n)
        within = self._within.get(name, [zero, zero])
        across = self._across.get(name, [None, None])
        return within[0], within[1], across[0], across[1]

    def get(self, name: str) -> tuple[object, object]:
        """(sums, counts) of a set as upper-triangular ``S x S`` arrays (sparse if large)."""
        ws, wc, xs, xc = self.parts(name)
        if self.dense:
            sums, counts = np.diag(ws), np.diag(wc)
            if xs is not None:
                sums = sums + np.triu(xs + xs.T, 1)
                counts = counts + np.triu(xc + xc.T, 1)
            return sums, counts
        sums, counts = sparse.diags(ws, format="csr"), sparse.diags(wc, format="csr")
        if xs is not None:
            sums = sums + sparse.triu(xs + xs.T, 1)
            counts = counts + sparse.triu(xc + xc.T, 1)
        return sums, counts

    @staticmethod
    def from_long(
        long: pd.DataFrame, prototypes: PrototypeTable, dense_limit: int = 8192
    ) -> SourcePairSums:
        """The per-source sums of a long form from :func:`distance_sets` (needs ``i``, ``j``)."""
        if not {"i", "j"} <= set(long.columns):
            raise ValueError("the long form needs the row columns i and j (from distance_sets)")
        codes = PairCodes.from_meta(prototypes.meta)
        names = [s for s in SETS if s in set(long["set"].astype(str))]
        sums = SourcePairSums(codes.source_names, names, dense_limit)
        set_col = long["set"].astype(str).to_numpy()
        i, j = long["i"].to_numpy(), long["j"].to_numpy()
        dist = long["distance"].to_numpy(np.float64)
        for name in names:
            sel = set_col == name
            sums.add(name, codes.source[i[sel]], codes.source[j[sel]], dist[sel])
        return sums


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
    """Streamed summaries of the distance sets (see :func:`set_aggregates`)."""

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
        """Count, mean, sd, min, max (exact) and median (from the histogram) of each set."""
        rows = {}
        for name in self.sets:
            n = self.n[name]
            rows[name] = {
                "n": n,
                "mean": self.mean[name] if n else np.nan,
                "std": math.sqrt(self.m2[name] / (n - 1)) if n > 1 else np.nan,
                "median": self.quantile(name, 0.5),
                "min": self.minimum[name] if n else np.nan,
                "max": self.maximum[name] if n else np.nan,
            }
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("set")

    def quantile(self, name: str, q: float) -> float:
        """Quantile as numpy's default (linear between order statistics), each order
        statistic placed linearly within its histogram bin: error at most one bin width."""
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
    """The distance sets summarised in one pass with bounded memory.

    Exact per set: count, mean, standard deviation (Chan's streaming update), min and max.
    A histogram with ``bins`` equal bins over ``[0, upper bound]`` gives medians and
    quantiles to within one bin. ``sample`` is a long-form subsample (the columns of
    :func:`distance_sets`) in which every pair of a set is kept with the same probability,
    about ``sample_per_set`` pairs per set, chosen by a hash of ``(seed, i, j)`` (so it does
    not depend on ``block``). With ``by_source`` the per source-image sums needed by
    :func:`difflens.stats.bootstrap_set_means` are kept too (see :class:`SourcePairSums`).
    Memory: about 100 bytes x ``block`` x N for a block (N = 20,000, ``block=512``: about
    1 GB), plus the ``S x S`` arrays.
    """
    metric = canonical_metric(metric)
    _check_sets(sets)
    meta = prototypes.meta
    codes = PairCodes.from_meta(meta)
    counts = set_pair_counts(meta, sets, scdi_same_instance)
    rate = {s: min(1.0, sample_per_set / counts[s]) if counts[s] else 1.0 for s in sets}
    edges = np.linspace(0.0, _histogram_upper(prototypes, metric), bins + 1)
    keys, dropped = _degenerate_report(prototypes, metric)
    _warn_degenerate(keys, dropped, metric, degenerate)
    n = dict.fromkeys(sets, 0)
    mean = dict.fromkeys(sets, 0.0)
    m2 = dict.fromkeys(sets, 0.0)
    lo = dict.fromkeys(sets, np.inf)
    hi = dict.fromkeys(sets, -np.inf)
    hist = {s: np.zeros(bins, np.int64) for s in sets}
    sources = SourcePairSums(codes.source_names, sets) if by_source else None
    parts: dict[str, list] = {s: [] for s in sets}
    for blk in iter_set_blocks(
        prototypes, metric, sets, scdi_same_instance, block, dtype, degenerate, progress
    ):
        u = _pair_uniforms(blk.i, blk.j, seed)
        for name in sets:
            sel = blk.member[name]
            if not sel.any():
                continue
            d = blk.distance[sel]
            k = len(d)
            bm = float(d.mean())
            bm2 = float(((d - bm) ** 2).sum())
            delta = bm - mean[name]
            total = n[name] + k
            mean[name] += delta * k / total
            m2[name] += bm2 + delta * delta * n[name] * k / total
            n[name] = total
            lo[name] = min(lo[name], float(d.min()))
            hi[name] = max(hi[name], float(d.max()))
            index = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, bins - 1)
            hist[name] += np.bincount(index, minlength=bins)
            if sources is not None:
                sources.add(name, codes.source[blk.i[sel]], codes.source[blk.j[sel]], d)
            keep = u[sel] < rate[name]
            if keep.any():
                parts[name].append((d[keep], blk.i[sel][keep], blk.j[sel][keep]))
    sample = _long_frame(meta, parts, sets)
    sample.attrs.update(metric=metric, sample_rate=rate, seed=seed)
    return SetAggregates(
        metric=metric,
        sets=tuple(sets),
        n=n,
        mean=mean,
        m2=m2,
        minimum=lo,
        maximum=hi,
        edges=edges,
        histograms=hist,
        sample=sample,
        sample_rate=rate,
        sources=sources,
        source_names=codes.source_names,
        dropped_pairs=int(dropped) if degenerate == "nan" else 0,
        degenerate_objects=keys,
    )
