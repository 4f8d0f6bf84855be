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

This module decides membership and builds the long form; three ways to get the sets, by
size (``N`` objects, ``N (N - 1) / 2`` pairs):

- :func:`distance_sets` -- the long form, one row per pair and set (about 30 bytes a
  row). Use it while the pairs fit in memory (up to some tens of millions; it refuses
  more than ``max_pairs``). Every number can be recomputed by hand from it.
- :func:`difflens.analysis.aggregates.set_aggregates` -- one streaming pass with bounded
  memory over the blocks of :func:`iter_set_blocks`: exact count, mean, standard
  deviation, minimum and maximum of every set, a fine histogram, per source-image sums
  (:mod:`difflens.analysis.source_sums`, for the image-level bootstrap) and a seeded
  subsample of pairs in long form. Use it for 20,000 objects and more.
- :func:`set_pair_counts` -- the size of every set, from the metadata alone.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from difflens.analysis.distances import (
    DegenerateVectorWarning,
    canonical_metric,
    degenerate_rows,
    pairwise,
)
from difflens.features.prototypes import PrototypeTable

logger = logging.getLogger("difflens")

SETS = ("scsi", "scdi", "sidi", "dcsi", "dcdi")
PAPER_SETS = ("scsi", "scdi", "dcsi", "dcdi")
#: The sets of the transform study (Fig. 8) in the order of Eq. 17.
TRANSFORM_SETS = ("sidi", "scsi", "dcsi")
#: The orderings of the set means the paper claims: Eq. 16 and, for transforms, Eq. 17.
ORDERINGS = {"eq16": ("scsi", "scdi", "dcsi", "dcdi"), "eq17": ("sidi", "scsi", "dcsi")}
LONG_COLUMNS = ("set", "distance", "a", "b", "image_a", "image_b", "i", "j")
#: Meta column of a bootstrap draw (:func:`difflens.analysis.bootstrap.resample_table`): pairs
#: between two copies of one source image enter no set.
COPY_COLUMN = "bootstrap_copy"
_REQUIRED = ("object_key", "image_id", "class_name", "instance_key")


def source_codes(meta: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Integer source-image code of every object and the source names (sorted).

    The source image is ``source_image`` (shared by an image's transformed copies and by
    the frames of one video), or ``image_id`` where that is missing.

    Args:
        meta: prototype metadata (``image_id``, optionally ``source_image``).

    Returns:
        ``(codes, names)``: int64 ``(N,)`` codes indexing ``names``, object ``(S,)``.

    Raises:
        ValueError: ``meta`` has no ``image_id`` column.
    """
    if "image_id" not in meta.columns:
        raise ValueError(f"prototype metadata lacks the image_id column; has {list(meta.columns)}")
    source = meta["source_image"] if "source_image" in meta.columns else meta["image_id"]
    source = source.where(source.notna(), meta["image_id"])
    codes, names = pd.factorize(source.astype(str), sort=True)
    return codes, np.asarray(names)


@dataclass(frozen=True)
class PairCodes:
    """Integer codes of the columns that decide set membership, one per object.

    Attributes:
        image: int32 ``(N,)`` code of ``image_id``.
        cls: int32 ``(N,)`` code of ``class_name``.
        instance: int32 ``(N,)`` code of ``instance_key``.
        source: int32 ``(N,)`` code of the source image (:func:`source_codes`).
        source_names: ``(S,)`` names of the source images.
        copy: copy index of a bootstrap draw (column ``COPY_COLUMN``) or None.
    """

    image: np.ndarray
    cls: np.ndarray
    instance: np.ndarray
    source: np.ndarray
    source_names: np.ndarray
    copy: np.ndarray | None = None

    @staticmethod
    def from_meta(meta: pd.DataFrame) -> PairCodes:
        """The codes of a prototype table's metadata.

        Args:
            meta: metadata with ``object_key``, ``image_id``, ``class_name`` and
                ``instance_key`` (``source_image`` and ``bootstrap_copy`` optional).

        Returns:
            The codes.

        Raises:
            ValueError: a required column is missing (the message lists those present).
        """
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
        """Membership of the pairs ``(i[n], j[n])`` in each set (Eqs. 11-15).

        Args:
            i: int ``(P,)`` row of one object of each pair.
            j: int ``(P,)`` row of the other (``i != j``).
            scdi_same_instance: put same-instance different-image pairs in ``scdi`` too
                (Eq. 12 as printed; see the module docstring).

        Returns:
            ``{set: bool (P,)}`` for every set of ``SETS``.
        """
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
    """Boolean membership of the pairs ``(i[n], j[n])`` (row indices of ``meta``) in each set.

    Args:
        meta: prototype metadata (see :meth:`PairCodes.from_meta`).
        i: int ``(P,)`` rows of one object of each pair.
        j: int ``(P,)`` rows of the other.
        scdi_same_instance: put same-instance different-image pairs in ``scdi`` too.

    Returns:
        ``{set: bool (P,)}`` for every set of ``SETS``.
    """
    return PairCodes.from_meta(meta).membership(np.asarray(i), np.asarray(j), scdi_same_instance)


def _pairs_within(*columns: pd.Series) -> int:
    """Number of unordered pairs of rows that agree on all ``columns``."""
    sizes = pd.DataFrame({f"c{k}": c.astype(str).values for k, c in enumerate(columns)})
    counts = sizes.value_counts().to_numpy(dtype=np.int64)
    return int((counts * (counts - 1) // 2).sum())


def set_pair_counts(
    meta: pd.DataFrame, sets: Sequence[str] = SETS, scdi_same_instance: bool = True
) -> dict[str, int]:
    """How many pairs each set holds, from the metadata alone (inclusion-exclusion).

    Args:
        meta: prototype metadata (``image_id``, ``class_name``, ``instance_key``).
        sets: the sets to count.
        scdi_same_instance: count same-instance different-image pairs in ``scdi`` too.

    Returns:
        ``{set: number of unordered pairs}`` in the order of ``sets``.

    Raises:
        ValueError: ``sets`` names an unknown set.
    """
    unknown = set(sets) - set(SETS)
    if unknown:
        raise ValueError(f"unknown sets {sorted(unknown)}; known: {SETS}")
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


def check_sets(sets: Sequence[str]) -> None:
    """Refuse set names the paper does not define.

    Args:
        sets: set names.

    Raises:
        ValueError: a name is not one of ``SETS``.
    """
    unknown = set(sets) - set(SETS)
    if unknown:
        raise ValueError(f"unknown sets {sorted(unknown)}; known: {SETS}")


@dataclass
class SetBlock:
    """The pairs of one block of rows: indices, distances and set membership.

    Attributes:
        i: int32 ``(P,)`` row of the first object of each pair.
        j: int32 ``(P,)`` row of the second (``j > i``).
        distance: float64 ``(P,)`` distances (NaN where undefined).
        member: ``{set: bool (P,)}``, False where the distance is not finite.
    """

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
) -> Iterator[SetBlock]:
    """Rows ``start:stop`` of the upper triangle of the distance matrix, block by block.

    Memory per block: ``block x N`` distances. Pairs whose distance is undefined (NaN: a
    zero or constant vector under cosine or correlation) are left out of every set.

    Args:
        prototypes: the prototype table.
        metric: a metric of :func:`difflens.analysis.distances.pairwise`.
        sets: the sets whose membership each block carries.
        scdi_same_instance: put same-instance different-image pairs in ``scdi`` too.
        block: rows per block.
        dtype: the dtype of the distance computation.
        degenerate: ``"nan"`` or ``"orthogonal"`` (see :mod:`difflens.analysis.distances`).
        progress: show a progress bar over the blocks.

    Yields:
        One :class:`SetBlock` per block of rows.
    """
    check_sets(sets)
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
        yield SetBlock(ii, jj, dist, {k: member[k] for k in sets})


def degenerate_report(prototypes: PrototypeTable, metric: str) -> tuple[list[str], int]:
    """The objects without a distance under ``metric`` and how many pairs they lose.

    Args:
        prototypes: the prototype table.
        metric: a metric name; only cosine (zero vectors) and correlation (constant
            vectors) have such objects.

    Returns:
        ``(object keys, number of pairs with at least one of them)``.
    """
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


def warn_degenerate(keys: list[str], pairs: int, metric: str, degenerate: str) -> None:
    """Log the objects of :func:`degenerate_report` and what happens to their pairs.

    Args:
        keys: their object keys.
        pairs: the number of pairs concerned.
        metric: the metric.
        degenerate: the policy, ``"nan"`` (pairs left out) or ``"orthogonal"`` (distance 1).
    """
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
    """Every pair's distance with its set, in long form (the paper's Eqs. 11-15).

    A pair that belongs to two sets (scdi and sidi) appears once per set. Distances are
    computed block by block; the result holds every pair, so more than ``max_pairs`` rows
    are refused (use :func:`difflens.analysis.aggregates.set_aggregates`). Pairs without a
    distance (zero or constant vectors, see :mod:`difflens.analysis.distances`) are left
    out, logged and counted in ``result.attrs["dropped_pairs"]`` and
    ``attrs["degenerate_objects"]``.

    Args:
        prototypes: the prototype table.
        metric: a metric of :func:`difflens.analysis.distances.pairwise`.
        sets: the sets to build.
        scdi_same_instance: put same-instance different-image pairs in ``scdi`` too.
        block: rows of the distance matrix per block.
        dtype: the dtype of the distance computation.
        degenerate: ``"nan"`` or ``"orthogonal"`` (see :mod:`difflens.analysis.distances`).
        max_pairs: the most rows the long form may hold; None for no limit.
        progress: show a progress bar over the blocks.

    Returns:
        One row per pair and set: ``set`` (categorical of ``SETS``), ``distance``
        (float64, the metric's units), ``a`` and ``b`` (the objects' ``object_key``),
        ``image_a``, ``image_b`` (categoricals) and ``i``, ``j`` (int32 rows in
        ``prototypes``, ``i < j``).

    Raises:
        ValueError: more than ``max_pairs`` rows would be built.
    """
    metric = canonical_metric(metric)
    check_sets(sets)
    meta = prototypes.meta
    if max_pairs is not None:
        total = sum(set_pair_counts(meta, sets, scdi_same_instance).values())
        if total > max_pairs:
            raise ValueError(
                f"the long form of {len(meta)} objects would hold {total:,} rows (more than "
                f"max_pairs={max_pairs:,}); use set_aggregates() for streamed summaries and a "
                "subsample, or pass a larger max_pairs"
            )
    keys, dropped = degenerate_report(prototypes, metric)
    warn_degenerate(keys, dropped, metric, degenerate)
    parts: dict[str, list] = {name: [] for name in sets}
    for blk in iter_set_blocks(
        prototypes, metric, sets, scdi_same_instance, block, dtype, degenerate, progress
    ):
        for name in sets:
            sel = blk.member[name]
            if sel.any():
                parts[name].append((blk.distance[sel], blk.i[sel], blk.j[sel]))
    out = long_frame(meta, parts, sets)
    out.attrs.update(
        metric=metric,
        dropped_pairs=int(dropped) if degenerate == "nan" else 0,
        degenerate_objects=keys,
    )
    return out


def long_frame(meta: pd.DataFrame, parts: dict[str, list], sets: Sequence[str]) -> pd.DataFrame:
    """Assemble the long form from ``{set: [(distance, i, j), ...]}``.

    Args:
        meta: the prototype metadata the rows ``i``, ``j`` index.
        parts: per set, chunks of (float64 distances, int rows i, int rows j).
        sets: the sets to take from ``parts``.

    Returns:
        The long form of :func:`distance_sets`, sets in the order of ``SETS``.
    """
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
