"""Sums and counts of distances per pair of source images: what the image-level bootstrap needs.

The bootstrap over source images (:mod:`difflens.analysis.bootstrap`) gives every drawn
image a multiplicity; a set mean of a draw is then a weighted mean of these sums, without
recomputing a distance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from difflens.analysis.sets import SETS, PairCodes
from difflens.features.prototypes import PrototypeTable


class SourcePairSums:
    """Sums and counts of distances per pair of source images, per set.

    For a set, ``S[s, t]`` is the sum of the distances of its pairs with one object from
    source image ``s`` and the other from ``t`` (each unordered pair stored once, in either
    orientation), and ``N[s, t]`` their number; the image-level bootstrap weighs them by how
    often ``s`` and ``t`` are drawn. Pairs within one source (every same-image pair, an
    object and its transformed copy) are kept as vectors. Pairs across sources go to an
    ``S x S`` array, allocated only for sets that have such pairs: float64 up to 4,096
    sources, float32 up to ``dense_limit`` (8,192: 270 MB per array), sparse above.

    Args:
        source_names: the source images, in the order of their codes.
        sets: the sets that will be added.
        dense_limit: the most sources for which the across-source arrays are dense.
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
        """Add pairs of one set.

        Args:
            name: the set.
            src_a: int ``(P,)`` source code of one object of each pair.
            src_b: int ``(P,)`` source code of the other.
            distance: float64 ``(P,)`` finite distances.
        """
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
        """The sums and counts of a set, within and across source images.

        Args:
            name: the set.

        Returns:
            ``(within sums, within counts, across sums, across counts)``: float64 ``(S,)``
            vectors (zeros for a set never added), then ``(S, S)`` arrays (dense or
            sparse, each pair once) or None when the set has no pair across sources.
        """
        zero = np.zeros(self.n)
        within = self._within.get(name, [zero, zero])
        across = self._across.get(name, [None, None])
        return within[0], within[1], across[0], across[1]

    def get(self, name: str) -> tuple[object, object]:
        """The sums and counts of a set as upper-triangular ``S x S`` arrays.

        Args:
            name: the set.

        Returns:
            ``(sums, counts)``: ``(S, S)`` arrays, dense or (above ``dense_limit``
            sources) sparse; the diagonal holds the within-source pairs.
        """
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
        """The per-source sums of a long form from :func:`~difflens.analysis.sets.distance_sets`.

        Args:
            long: the long form, with its row columns ``i`` and ``j``.
            prototypes: the prototype table it was built from.
            dense_limit: see the class.

        Returns:
            The sums of every set present in ``long``; non-finite distances left out.

        Raises:
            ValueError: ``long`` lacks the columns ``i`` and ``j``.
        """
        if not {"i", "j"} <= set(long.columns):
            raise ValueError("the long form needs the row columns i and j (from distance_sets)")
        codes = PairCodes.from_meta(prototypes.meta)
        names = [s for s in SETS if s in set(long["set"].astype(str))]
        sums = SourcePairSums(codes.source_names, names, dense_limit)
        set_col = long["set"].astype(str).to_numpy()
        i, j = long["i"].to_numpy(), long["j"].to_numpy()
        dist = long["distance"].to_numpy(np.float64)
        finite = np.isfinite(dist)
        for name in names:
            sel = (set_col == name) & finite
            sums.add(name, codes.source[i[sel]], codes.source[j[sel]], dist[sel])
        return sums
