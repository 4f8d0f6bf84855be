"""Statistics over distance sets: tests, Dunn indices, effect sizes and image-level inference.

Pair-level tests (Kruskal-Wallis, Mann-Whitney U, Dunn's post-hoc test) treat every pair
as an independent observation. They are not: each object sits in ``N - 1`` pairs and the
objects of one image share its context, so with millions of pairs every p-value underflows
to 0 and says nothing about whether a new set of images would show the same ordering.
They are given because the paper reports them, with their logarithms (``log10_p``) where
the float range ends, and shown with :func:`format_p` (never as 0).

The numbers to read are image-level: :func:`bootstrap_set_means` resamples source images
(with all their objects and transformed copies), rebuilds the sets and gives percentile
intervals of every set mean and the probability of every ordering the paper claims;
:func:`bootstrap_over_images` does the same for any statistic; :func:`permutation_test`
shuffles class labels between objects. Effect sizes (Cliff's delta, the difference of
means) say how far apart two sets are, whatever their size.

Dunn index: the paper's Eq. 10 is the textbook ratio (smallest gap between two sets over
the largest diameter within one). Between two overlapping sets of distances it is about 0,
yet the paper's Table 1 prints 0.05-0.8, so the paper's numbers come from another formula,
which is not published. The variants here, each under its own name (see
:data:`DUNN_VARIANTS`), reproduce that range; ``mean_sd`` (``|mean A - mean B| / max(sd A,
sd B)``, a Cohen's d with the larger spread) is the default of the tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import sparse
from scipy import stats as sps

from difflens.prototypes import PrototypeTable
from difflens.sets import (
    COPY_COLUMN,
    ORDERINGS,
    SETS,
    SetAggregates,
    SourcePairSums,
    source_codes,
)

LN10 = math.log(10.0)
#: The smallest p-value printed as a number without its logarithm.
P_FLOOR = 1e-300


# ------------------------------------------------------------------------ p-values


def format_p(p: float, log10_p: float | None = None, digits: int = 2, latex: bool = False) -> str:
    """A p-value for a table: ``0.0274``, ``3.1e-32``, ``2.3e-412`` (from ``log10_p``).

    Below ``1e-300`` the value is written from ``log10_p`` when given, else as
    ``"< 1e-300"``; it is never written as 0. ``latex=True`` writes ``3.1\\times10^{-32}``.
    """
    if p is None or (isinstance(p, float) and math.isnan(p)):
        if log10_p is None or not np.isfinite(log10_p):
            return "n/a"
        p = 0.0
    p = float(p)
    if p >= 1e-3:
        text = f"{p:.{digits + 2}f}"
        return f"${text}$" if latex else text
    if p >= P_FLOOR:
        log10_p = math.log10(p)
    elif log10_p is None or not np.isfinite(log10_p):
        return r"$< 10^{-300}$" if latex else "< 1e-300"
    exponent = math.floor(log10_p)
    mantissa = 10 ** (log10_p - exponent)
    if round(mantissa, digits - 1) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    if latex:
        return f"${mantissa:.{digits - 1}f}\\times10^{{{exponent}}}$"
    return f"{mantissa:.{digits - 1}f}e{exponent}"


def _log10_p_normal(z: np.ndarray) -> np.ndarray:
    """log10 of the two-sided normal p-value ``2 sf(|z|)``, capped at 0."""
    z = np.abs(np.asarray(z, dtype=np.float64))
    return np.minimum((math.log(2.0) + sps.norm.logsf(z)) / LN10, 0.0)


def log10_chi2_sf(x: float, df: float) -> float:
    """log10 of the chi-square survival function, also where it underflows (via mpmath)."""
    value = float(sps.chi2.logsf(x, df))
    if np.isfinite(value) and value > -700:
        return value / LN10
    import mpmath

    q = mpmath.gammainc(df / 2.0, x / 2.0, mpmath.inf, regularized=True)
    return float(mpmath.log10(q))


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (as ``statsmodels.multipletests(method="holm")``)."""
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return p
    return 10 ** holm_log10(np.log10(np.clip(p, 0, 1)))


def holm_log10(log10_p: Sequence[float]) -> np.ndarray:
    """Holm's adjustment applied to ``log10`` p-values, so that underflowed ones survive."""
    lp = np.asarray(log10_p, dtype=np.float64)
    m = lp.size
    if m == 0:
        return lp
    order = np.argsort(lp, kind="stable")
    scaled = lp[order] + np.log10(m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(scaled), 0.0)
    out = np.empty(m)
    out[order] = adjusted
    return out


# ------------------------------------------------------------------------ summaries


def _groups(long: pd.DataFrame, sets: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The finite distances of each set present in ``long``, in the order of ``SETS``."""
    names = long["set"].astype(str).to_numpy()
    values = long["distance"].to_numpy(np.float64)
    wanted = [s for s in (sets or SETS) if s in set(names)]
    out = {}
    for name in wanted:
        v = values[names == name]
        out[name] = v[np.isfinite(v)]
    return {k: v for k, v in out.items() if len(v)}


def set_summary(long: pd.DataFrame | SetAggregates) -> pd.DataFrame:
    """Count, mean, standard deviation and median of the distances in each set."""
    if isinstance(long, SetAggregates):
        return long.summary()[["n", "mean", "std", "median"]]
    grouped = long.groupby("set", observed=True)["distance"]
    table = grouped.agg(n="size", mean="mean", std="std", median="median")
    order = [s for s in SETS if s in table.index]
    return table.loc[order]


def ordering_holds(summary: pd.DataFrame, order=ORDERINGS["eq16"]) -> bool:
    """True if the set means increase along ``order`` (the paper's Eq. 16 by default)."""
    means = [summary.loc[name, "mean"] for name in order if name in summary.index]
    return bool(np.all(np.diff(means) > 0))


def claimed_orderings(sets: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The orderings the paper claims among ``sets``: Eq. 16 / 17 chains and their pairs.

    Keys read like ``"scsi < scdi < dcsi < dcdi"`` (a chain) or ``"scsi < dcsi"``.
    """
    present = set(sets)
    out: dict[str, tuple[str, ...]] = {}
    for chain in ORDERINGS.values():
        kept = tuple(s for s in chain if s in present)
        if len(kept) > 2:
            out[" < ".join(kept)] = kept
        for a, b in combinations(kept, 2):
            out[f"{a} < {b}"] = (a, b)
    return out


# ------------------------------------------------------------------------ tests


def kruskal_sets(long: pd.DataFrame, sets: Sequence[str] | None = None) -> dict:
    """Kruskal-Wallis H test across the sets present in ``long`` (scipy), with ``log10_p``."""
    groups = list(_groups(long, sets).values())
    if len(groups) < 2:
        return {"H": float("nan"), "p": float("nan"), "log10_p": float("nan"), "k": len(groups)}
    result = sps.kruskal(*groups)
    h, k = float(result.statistic), len(groups)
    return {
        "H": h,
        "p": float(result.pvalue),
        "log10_p": log10_chi2_sf(h, k - 1),
        "k": k,
        "n": int(sum(len(g) for g in groups)),
    }


def _tie_sum(sorted_values: np.ndarray) -> float:
    """``sum(t^3 - t)`` over the groups of tied values of a sorted array."""
    if len(sorted_values) < 2:
        return 0.0
    change = np.flatnonzero(np.diff(sorted_values) != 0)
    bounds = np.concatenate([[0], change + 1, [len(sorted_values)]])
    t = np.diff(bounds).astype(np.float64)
    return float((t**3 - t).sum())


def mann_whitney(x: np.ndarray, y: np.ndarray) -> dict:
    """Two-sided Mann-Whitney U test (normal approximation with tie and continuity
    corrections, as ``scipy.stats.mannwhitneyu(method="asymptotic")``) and its effect sizes.

    ``U`` counts the pairs with ``x > y`` (ties 1/2); ``cles = U / (n m)`` is the
    probability that a value of ``x`` exceeds one of ``y``; ``cliffs_delta = 2 cles - 1``
    (equal to the rank-biserial correlation). Never builds an ``n x m`` array.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        nan = float("nan")
        return {"U": nan, "z": nan, "p": nan, "log10_p": nan, "cles": nan, "cliffs_delta": nan}
    pooled = np.concatenate([x, y])
    ranks = sps.rankdata(pooled)
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    n = n1 + n2
    ties = _tie_sum(np.sort(pooled))
    sigma2 = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    u = max(u1, n1 * n2 - u1)
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(sigma2) if sigma2 > 0 else 0.0
    # two-sided as scipy: 2 sf(z) with z from the larger U, capped at 1
    log10_p = min((math.log(2.0) + float(sps.norm.logsf(z))) / LN10, 0.0)
    cles = u1 / (n1 * n2)
    return {
        "U": u1,
        "z": float(z),
        "p": float(10**log10_p),
        "log10_p": log10_p,
        "cles": cles,
        "cliffs_delta": 2 * cles - 1,
    }


def cliffs_delta(x: np.ndarray, y: np.ndarray) -> float:
    """Cliff's delta ``P(x > y) - P(x < y)`` from the Mann-Whitney U (no ``n x m`` array)."""
    return mann_whitney(x, y)["cliffs_delta"]


def rank_biserial(x: np.ndarray, y: np.ndarray) -> float:
    """The rank-biserial correlation ``2 U / (n m) - 1``; the same number as Cliff's delta."""
    return cliffs_delta(x, y)


def mean_difference(x: np.ndarray, y: np.ndarray) -> float:
    """``mean(x) - mean(y)``."""
    return float(np.mean(x) - np.mean(y))


def dunn_posthoc(long: pd.DataFrame, sets: Sequence[str] | None = None) -> pd.DataFrame:
    """Dunn's test for every pair of sets: ``z`` (own), ``p`` (scikit-posthocs), ``log10_p``.

    ``z > 0`` when set ``b`` ranks higher than set ``a``.

    Ranks are pooled over all the sets given (tie-corrected, as scikit-posthocs). ``p``
    is unadjusted; :func:`pairwise_tests` applies Holm's correction over its family.
    """
    groups = _groups(long, sets)
    names = list(groups)
    pooled = np.concatenate(list(groups.values())) if groups else np.zeros(0)
    n = len(pooled)
    ranks = sps.rankdata(pooled)
    ties = _tie_sum(np.sort(pooled))
    mean_rank, start = {}, 0
    for name, g in groups.items():
        mean_rank[name] = ranks[start : start + len(g)].mean()
        start += len(g)
    frame = pd.DataFrame(
        {"set": np.repeat(names, [len(g) for g in groups.values()]), "distance": pooled}
    )
    p_matrix = (
        sp.posthoc_dunn(frame, val_col="distance", group_col="set") if len(names) > 1 else None
    )
    rows = []
    for a, b in combinations(names, 2):
        var = (n * (n + 1) / 12.0 - ties / (12.0 * (n - 1))) * (
            1 / len(groups[a]) + 1 / len(groups[b])
        )
        z = (mean_rank[b] - mean_rank[a]) / math.sqrt(var)
        rows.append(
            {
                "a": a,
                "b": b,
                "z": z,
                "p": float(p_matrix.loc[a, b]),
                "log10_p": float(_log10_p_normal(z)),
            }
        )
    return pd.DataFrame(rows, columns=["a", "b", "z", "p", "log10_p"])


def shapiro_sets(
    long: pd.DataFrame, max_n: int = 5000, seed: int = 0, sets: Sequence[str] | None = None
) -> pd.DataFrame:
    """Shapiro-Wilk per set on a seeded subsample of at most ``max_n`` values.

    scipy's p-value is not accurate above 5,000 values, and with millions of pairs any
    departure from normality is "significant"; the rank-based tests used here do not need
    normality anyway. Reported because the paper chose Kruskal-Wallis after this test.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for name, values in _groups(long, sets).items():
        sample = values if len(values) <= max_n else rng.choice(values, max_n, replace=False)
        if len(sample) < 3:
            rows.append({"set": name, "n": len(values), "n_used": len(sample), "W": np.nan})
            continue
        result = sps.shapiro(sample)
        rows.append(
            {
                "set": name,
                "n": len(values),
                "n_used": len(sample),
                "W": float(result.statistic),
                "p": float(result.pvalue),
            }
        )
    return pd.DataFrame(rows).set_index("set") if rows else pd.DataFrame()


# ------------------------------------------------------------------------ Dunn indices


def _sorted(values) -> np.ndarray:
    v = np.sort(np.asarray(values, dtype=np.float64))
    return v[np.isfinite(v)]


def min_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest ``|a_i - b_j|`` in O((n + m) log m), without an ``n x m`` array."""
    a, b = np.asarray(a, np.float64), _sorted(b)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    k = np.searchsorted(b, a)
    right = np.abs(b[np.minimum(k, len(b) - 1)] - a)
    left = np.abs(a - b[np.maximum(k - 1, 0)])
    return float(np.minimum(left, right).min())


def diameter(a: np.ndarray) -> float:
    """Largest distance between two values of ``a`` (``max - min``), Dunn's Delta_1."""
    a = np.asarray(a, np.float64)
    return float(a.max() - a.min()) if len(a) else float("nan")


def mean_abs_difference(a: np.ndarray) -> float:
    """Mean ``|a_i - a_j|`` over ordered pairs ``i != j`` (Dunn's Delta_2), in O(n log n)."""
    s = _sorted(a)
    n = len(s)
    if n < 2:
        return float("nan")
    weights = 2 * np.arange(n) - n + 1
    return float(2 * (weights * s).sum() / (n * (n - 1)))


def centroid_spread(a: np.ndarray) -> float:
    """Twice the mean distance to the centroid, ``2/n sum |a_i - mean|`` (Dunn's Delta_3)."""
    a = np.asarray(a, np.float64)
    return float(2 * np.abs(a - a.mean()).mean()) if len(a) else float("nan")


def _ratio(num: float, den: float) -> float:
    if not np.isfinite(num) or not np.isfinite(den):
        return float("nan")
    if den == 0:
        return float("inf") if num > 0 else float("nan")
    return float(num / den)


def dunn_textbook(a: np.ndarray, b: np.ndarray) -> float:
    """Eq. 10 for two sets: ``min |a_i - b_j| / max(diam A, diam B)`` (about 0 if they overlap)."""
    return _ratio(min_gap(a, b), max(diameter(a), diameter(b)))


def dunn_mean_sd(a: np.ndarray, b: np.ndarray) -> float:
    """``|mean A - mean B| / max(sd A, sd B)``: reproduces the paper's magnitudes (default)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return _ratio(abs(a.mean() - b.mean()), max(a.std(ddof=1), b.std(ddof=1)))


def dunn_delta4_Delta3(a: np.ndarray, b: np.ndarray) -> float:  # noqa: N802
    """Generalised Dunn (Bezdek & Pal): centroid distance over the larger ``Delta_3``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return _ratio(abs(a.mean() - b.mean()), max(centroid_spread(a), centroid_spread(b)))


def dunn_delta4_Delta2(a: np.ndarray, b: np.ndarray) -> float:  # noqa: N802
    """Generalised Dunn (Bezdek & Pal): centroid distance over the larger ``Delta_2``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    num = abs(a.mean() - b.mean())
    return _ratio(num, max(mean_abs_difference(a), mean_abs_difference(b)))


#: Dunn index variants by name; ``mean_sd`` is the tables' default.
DUNN_VARIANTS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "textbook": dunn_textbook,
    "mean_sd": dunn_mean_sd,
    "delta4_Delta3": dunn_delta4_Delta3,
    "delta4_Delta2": dunn_delta4_Delta2,
}
DUNN_DEFAULT = "mean_sd"


def dunn_indices(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Every Dunn index variant between two sets of distances."""
    return {name: fn(a, b) for name, fn in DUNN_VARIANTS.items()}


def dunn_index(groups: Mapping[str, np.ndarray], variant: str = "textbook") -> float:
    """Dunn index of several sets: the smallest separation between two of them over the
    largest spread within one (Eq. 10 for ``"textbook"``; the variant's own separation and
    spread otherwise)."""
    groups = {k: np.asarray(v, np.float64) for k, v in groups.items() if len(v)}
    if len(groups) < 2:
        return float("nan")
    if variant == "textbook":
        sep = min(min_gap(a, b) for a, b in combinations(groups.values(), 2))
        return _ratio(sep, max(diameter(g) for g in groups.values()))
    spread = {
        "mean_sd": lambda g: g.std(ddof=1),
        "delta4_Delta3": centroid_spread,
        "delta4_Delta2": mean_abs_difference,
    }
    if variant not in spread:
        raise ValueError(f"unknown Dunn variant {variant!r}; known: {list(DUNN_VARIANTS)}")
    sep = min(abs(a.mean() - b.mean()) for a, b in combinations(groups.values(), 2))
    return _ratio(sep, max(spread[variant](g) for g in groups.values()))


# ------------------------------------------------------------------------ pairwise table


def pairwise_tests(
    long: pd.DataFrame,
    pairs: Sequence[tuple[str, str]] | None = None,
    sets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every pair of sets compared: sizes, means, Mann-Whitney U, Dunn's test (both with
    Holm's correction over the pairs compared), Cliff's delta and the Dunn index variants.

    ``pairs`` defaults to every pair of the sets present, in the order of ``SETS`` (the
    rows of the paper's Table 1 for its four sets). p-values come with ``log10_p``
    columns that stay finite where the p-value underflows.
    """
    groups = _groups(long, sets)
    if pairs is None:
        pairs = list(combinations(groups, 2))
    pairs = [(a, b) for a, b in pairs if a in groups and b in groups]
    dunn = dunn_posthoc(long, sets)
    dunn_by_pair = {(r.a, r.b): r for r in dunn.itertuples()}
    rows = []
    for a, b in pairs:
        x, y = groups[a], groups[b]
        mw = mann_whitney(x, y)
        d = dunn_by_pair.get((a, b)) or dunn_by_pair.get((b, a))
        row = {
            "a": a,
            "b": b,
            "n_a": len(x),
            "n_b": len(y),
            "mean_a": float(x.mean()),
            "mean_b": float(y.mean()),
            "mean_diff": mean_difference(y, x),
            "U": mw["U"],
            "p_mwu": mw["p"],
            "log10_p_mwu": mw["log10_p"],
            "z_dunn": float(-d.z if (a, b) not in dunn_by_pair else d.z),
            "p_dunn": float(d.p),
            "log10_p_dunn": float(d.log10_p),
            "cliffs_delta": -mw["cliffs_delta"],
            "cles": 1.0 - mw["cles"],
        }
        row.update({f"dunn_{k}": v for k, v in dunn_indices(x, y).items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table.insert(table.columns.get_loc("log10_p_mwu") + 1, "log10_p_mwu_holm", 0.0)
        table["log10_p_mwu_holm"] = holm_log10(table["log10_p_mwu"])
        table.insert(table.columns.get_loc("log10_p_mwu") + 1, "p_mwu_holm", 0.0)
        table["p_mwu_holm"] = 10 ** table["log10_p_mwu_holm"]
        table["log10_p_dunn_holm"] = holm_log10(table["log10_p_dunn"])
        table["p_dunn_holm"] = 10 ** table["log10_p_dunn_holm"]
    return table


# ------------------------------------------------------------------------ bootstrap


def draw_counts(n_sources: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n_sources)`` multiplicities of source images drawn with replacement."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_sources, size=(n_boot, n_sources))
    offsets = (np.arange(n_boot) * n_sources)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_boot * n_sources).reshape(
        n_boot, n_sources
    )


#: How a bootstrap draw treats a source image drawn ``k > 1`` times (see resample_table).
COPY_MODES = ("exclude", "same_image")


def resample_table(
    table: PrototypeTable, counts: np.ndarray, copies: str = "exclude"
) -> PrototypeTable:
    """The table with every source image repeated ``counts[s]`` times (a bootstrap draw).

    Copies keep ``image_id``, ``source_image`` and ``instance_key``, so a pair between two
    copies of one object never enters a set, and no pair between copies of one image is
    ever a different-image pair (that would bias the different-image sets). ``copies``:

    - ``"exclude"`` (default): each copy is an image of its own draw; a pair between two
      copies of one source enters no set (column ``bootstrap_copy``, honoured by
      :mod:`difflens.sets`). Each copy adds its own pairs once, as an independently drawn
      image would: the standard cluster bootstrap, whose standard errors are calibrated.
    - ``"same_image"``: all ``k`` copies form one image, so its within-image pairs count
      ``k^2`` times (column ``copy_index`` only). Conservative: with Poisson(1)-like
      multiplicities the standard error of a within-image set mean is about 1.7x too large.

    Copies get ``object_key`` ``"<key>~<k>"`` (``k >= 1``).
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


@dataclass
class BootstrapResult:
    """Replicates of statistics over resampled source images."""

    estimate: dict[str, float]
    replicates: pd.DataFrame
    level: float
    n_sources: int
    seed: int
    orderings: pd.DataFrame = field(default_factory=pd.DataFrame)

    def intervals(self) -> pd.DataFrame:
        """Per statistic: estimate, bootstrap mean and se, percentile interval, n_valid."""
        lo_q, hi_q = 100 * (1 - self.level) / 2, 100 * (1 + self.level) / 2
        rows = {}
        for name in self.replicates.columns:
            r = self.replicates[name].to_numpy(np.float64)
            r = r[np.isfinite(r)]
            ok = len(r) > 0
            rows[name] = {
                "estimate": self.estimate.get(name, np.nan),
                "boot_mean": r.mean() if ok else np.nan,
                "se": r.std(ddof=1) if len(r) > 1 else np.nan,
                "low": np.percentile(r, lo_q) if ok else np.nan,
                "high": np.percentile(r, hi_q) if ok else np.nan,
                "n_valid": len(r),
            }
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("statistic")

    def probability(self, chain: Sequence[str]) -> tuple[float, int]:
        """P[stat chain[0] < chain[1] < ...] over the replicates where all are finite."""
        values = self.replicates[list(chain)].to_numpy(np.float64)
        valid = np.isfinite(values).all(1)
        if not valid.any():
            return float("nan"), 0
        holds = np.all(np.diff(values[valid], axis=1) > 0, axis=1)
        return float(holds.mean()), int(valid.sum())


def _ordering_table(result: BootstrapResult, sets: Sequence[str]) -> pd.DataFrame:
    rows = []
    for label, chain in claimed_orderings(sets).items():
        prob, n_valid = result.probability(chain)
        est = [result.estimate.get(s, np.nan) for s in chain]
        rows.append(
            {
                "ordering": label,
                "holds": bool(np.all(np.diff(est) > 0)),
                "probability": prob,
                "n_valid": n_valid,
            }
        )
    return pd.DataFrame(rows, columns=["ordering", "holds", "probability", "n_valid"])


def bootstrap_over_images(
    table: PrototypeTable,
    statistic: Callable[[PrototypeTable], Mapping[str, float]],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    progress: bool = True,
    copies: str = "exclude",
) -> BootstrapResult:
    """Percentile bootstrap of ``statistic`` over source images.

    Every replicate draws as many source images as the table has, with replacement, and
    calls ``statistic`` on :func:`resample_table` of the draw (all objects and copies of a
    drawn image come along; see there for how repeated images are treated). ``statistic``
    returns ``{name: value}`` (or one number, reported as ``"value"``). A replicate whose
    statistic raises ``ValueError`` / ``ZeroDivisionError`` or is not finite counts as
    missing (``n_valid`` in ``intervals()``).
    """
    _, names = source_codes(table.meta)

    def as_dict(values) -> dict[str, float]:
        if isinstance(values, Mapping):
            return {str(k): float(v) for k, v in values.items()}
        return {"value": float(values)}

    estimate = as_dict(statistic(table))
    counts = draw_counts(len(names), n_boot, seed)
    it = range(n_boot)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="bootstrap over images", unit="replicate")
    records = []
    for b in it:
        try:
            records.append(as_dict(statistic(resample_table(table, counts[b], copies))))
        except (ValueError, ZeroDivisionError, FloatingPointError):
            records.append({})
    replicates = pd.DataFrame.from_records(records, columns=list(estimate)).astype(float)
    return BootstrapResult(estimate, replicates, level, len(names), seed)


def set_mean_statistic(metric: str = "correlation", **options) -> Callable:
    """A statistic for :func:`bootstrap_over_images`: the mean of every distance set."""
    from difflens.sets import distance_sets

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
) -> BootstrapResult:
    """Image-level bootstrap of every set mean, without recomputing a distance.

    ``sets`` is a long form from :func:`~difflens.sets.distance_sets` (then ``table`` is the
    prototype table it came from), or the output of :func:`~difflens.sets.set_aggregates`.
    A replicate's set mean is a weighted mean of the per source-pair sums ``S`` and counts
    ``N`` (:func:`weighted_set_means`) -- exactly the mean of the sets rebuilt from the
    resampled table (:func:`resample_table`, whose ``copies`` modes it follows). Same
    ``seed`` -> the same draws as :func:`bootstrap_over_images`. ``result.orderings`` gives, for every ordering
    the paper claims (Eq. 16, Eq. 17 and their pairs), whether it holds in the data and
    its probability over the replicates.
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
    replicates = pd.concat(parts, ignore_index=True)
    result = BootstrapResult(estimate, replicates, level, sums.n, seed)
    result.orderings = _ordering_table(result, list(replicates.columns))
    return result


def weighted_set_means(
    sums: SourcePairSums, counts: np.ndarray, copies: str = "exclude"
) -> pd.DataFrame:
    """Set means when source image ``s`` is drawn ``counts[b, s]`` times (one row per ``b``).

    A pair of sources ``s != t`` weighs ``c_s c_t``; pairs within one source weigh ``c_s``
    (``copies="exclude"``: each copy adds its own pairs) or ``c_s^2`` (``"same_image"``);
    see :func:`resample_table`. NaN where a set has no pair (e.g. no drawn image with two
    objects of one class).
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
    """``sum_st w_s w_t m_st`` for every row ``w`` (``m`` holds each pair of different
    sources once, dense or sparse)."""
    if sparse.issparse(m):
        return np.einsum("bs,bs->b", np.asarray((m.T @ w.T).T), w)
    return np.einsum("bs,bs->b", (w.astype(m.dtype) @ m).astype(np.float64), w)


# ------------------------------------------------------------------------ permutation


@dataclass
class PermutationResult:
    """Outcome of :func:`permutation_test`."""

    statistic: str
    observed: float
    p_value: float
    n_perm: int
    null: np.ndarray
    n_within: int
    n_between: int


def _class_per_instance(meta: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    inst, inst_names = pd.factorize(meta["instance_key"].astype(str))
    cls = meta["class_name"].astype(str).to_numpy()
    per_instance = pd.Series(cls).groupby(inst).unique()
    mixed = [inst_names[k] for k, v in per_instance.items() if len(v) > 1]
    if mixed:
        raise ValueError(f"instances with more than one class: {mixed[:5]}")
    labels, _ = pd.factorize(pd.Series([v[0] for v in per_instance.sort_index()]))
    return inst, labels


def permutation_test(
    table: PrototypeTable,
    metric: str = "correlation",
    statistic: str = "cliffs_delta",
    n_perm: int = 999,
    seed: int = 0,
    distances: np.ndarray | None = None,
    batch: int = 64,
    max_objects: int = 10_000,
    progress: bool = True,
) -> PermutationResult:
    """Permutation test of class structure: class labels shuffled between objects.

    The statistic compares the distances between objects of different classes with those
    between objects of the same class (pairs of one instance, e.g. an object and its
    transformed copy, left out): ``"cliffs_delta"`` (P[between > within] - P[between <
    within], which equals ANOSIM's R on these pairs) or ``"mean_difference"`` (mean
    between - mean within).
    Labels move with instances (copies of an object keep one label). The one-sided
    p-value is ``(1 + #{null >= observed}) / (1 + n_perm)``, uniform under the null.
    Needs the ``N x N`` distance matrix (``distances`` or computed), so ``N <= max_objects``.
    """
    from difflens.distances import pairwise

    if statistic not in ("cliffs_delta", "mean_difference"):
        raise ValueError("statistic must be 'cliffs_delta' or 'mean_difference'")
    n = len(table)
    if n > max_objects:
        raise ValueError(
            f"{n} objects exceed max_objects={max_objects} (an N x N matrix is needed); "
            "subsample images first"
        )
    inst, labels = _class_per_instance(table.meta)
    if distances is None:
        distances = pairwise(table.features, metric=metric)
    d = np.asarray(distances, dtype=np.float64)
    if d.shape != (n, n):
        raise ValueError(f"distances must be {n} x {n}, got {d.shape}")
    iu = np.triu_indices(n, 1)
    valid = (inst[iu[0]] != inst[iu[1]]) & np.isfinite(d[iu])
    values = d[iu][valid]
    if statistic == "cliffs_delta":
        values = sps.rankdata(values)
    m = np.zeros((n, n))
    z = np.zeros((n, n))
    m[iu[0][valid], iu[1][valid]] = values
    z[iu[0][valid], iu[1][valid]] = 1.0
    m += m.T
    z += z.T
    total_sum, total_n = float(values.sum()), float(valid.sum())
    k = int(labels.max()) + 1 if len(labels) else 0

    def stats_for(label_sets: np.ndarray) -> np.ndarray:
        # label_sets: (P, n_instances) -> statistic per permutation
        p = len(label_sets)
        onehot = np.zeros((n, p * k))
        cols = (np.arange(p)[:, None] * k + label_sets[:, inst]).T  # n x P
        np.put_along_axis(onehot, cols, 1.0, axis=1)
        within_sum = ((m @ onehot) * onehot).sum(0).reshape(p, k).sum(1) / 2
        within_n = ((z @ onehot) * onehot).sum(0).reshape(p, k).sum(1) / 2
        between_sum, between_n = total_sum - within_sum, total_n - within_n
        with np.errstate(invalid="ignore", divide="ignore"):
            if statistic == "mean_difference":
                return between_sum / between_n - within_sum / within_n
            u = between_sum - between_n * (between_n + 1) / 2
            return 2 * u / (between_n * within_n) - 1

    observed = float(stats_for(labels[None])[0])
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(labels) for _ in range(n_perm)]) if n_perm else labels[:0]
    starts = range(0, n_perm, batch)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="permutations", unit="batch")
    null = np.concatenate([stats_for(perms[s : s + batch]) for s in starts]) if n_perm else []
    null = np.asarray(null, np.float64)
    if np.isfinite(observed):
        p_value = (1 + int(np.sum(null >= observed - 1e-12 * abs(observed)))) / (1 + n_perm)
    else:  # one class only, or no pair on one side: nothing to compare
        p_value = float("nan")
    same = labels[inst][iu[0][valid]] == labels[inst][iu[1][valid]]
    return PermutationResult(
        statistic=statistic,
        observed=observed,
        p_value=float(p_value),
        n_perm=n_perm,
        null=null,
        n_within=int(same.sum()),
        n_between=int((~same).sum()),
    )
