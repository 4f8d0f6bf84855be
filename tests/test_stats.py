"""Statistics against scipy.stats, scikit-posthocs, statsmodels and hand computations."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import special
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from difflens.analysis.bootstrap import (
    bootstrap_over_images,
    bootstrap_set_means,
    draw_counts,
    resample_table,
    set_mean_statistic,
    weighted_set_means,
)
from difflens.analysis.comparisons import pairwise_tests
from difflens.analysis.dunn_index import (
    dunn_delta4_Delta2,
    dunn_delta4_Delta3,
    dunn_index,
    dunn_mean_sd,
    dunn_textbook,
    mean_abs_difference,
    min_gap,
)
from difflens.analysis.effects import cliffs_delta, rank_biserial
from difflens.analysis.permutation import permutation_test
from difflens.analysis.pvalues import format_p, holm, holm_log10, log10_chi2_sf
from difflens.analysis.rank_tests import dunn_posthoc, kruskal_sets, mann_whitney, shapiro_sets
from difflens.analysis.sets import PAPER_SETS, distance_sets
from difflens.analysis.source_sums import SourcePairSums
from difflens.analysis.summaries import claimed_orderings, ordering_holds, set_summary
from difflens.features.prototypes import PrototypeTable


def make_long(spec, seed=0):
    """Long form with normal distances: ``spec = {set: (mean, sd, n)}``."""
    rng = np.random.default_rng(seed)
    parts = [
        pd.DataFrame({"set": name, "distance": rng.normal(mu, sd, n)})
        for name, (mu, sd, n) in spec.items()
    ]
    return pd.concat(parts, ignore_index=True)


def table_from(rows, features) -> PrototypeTable:
    """rows: (object_key, image_id, source_image, instance, class)."""
    meta = pd.DataFrame(
        {
            "object_key": [r[0] for r in rows],
            "image_id": [r[1] for r in rows],
            "source_image": [r[2] for r in rows],
            "instance_id": [r[3] for r in rows],
            "instance_key": [f"{r[2]}#{r[3]}" for r in rows],
            "class_name": [r[4] for r in rows],
            "source": "original",
            "area_fraction": 0.1,
        }
    )
    return PrototypeTable(meta, np.asarray(features, dtype=np.float64).reshape(len(rows), -1))


def three_images() -> PrototypeTable:
    """Three images, scalar prototypes: every distance is |x - y| and every set known by hand.

    img1: p (person, 0), h (horse, 1); img2: h1 (horse, 3), h2 (horse, 5);
    img3: h3 (horse, 4), q (person, 10).
    """
    rows = [
        ("p", "img1", "img1", 1, "person"),
        ("h", "img1", "img1", 2, "horse"),
        ("h1", "img2", "img2", 1, "horse"),
        ("h2", "img2", "img2", 2, "horse"),
        ("h3", "img3", "img3", 1, "horse"),
        ("q", "img3", "img3", 2, "person"),
    ]
    return table_from(rows, [0, 1, 3, 5, 4, 10])


# ------------------------------------------------------------------ hand-computed sets


def test_three_image_sets_by_hand():
    long = distance_sets(three_images(), metric="euclidean")
    summary = set_summary(long)
    by_set = {s: sorted(np.round(g, 12)) for s, g in long.groupby("set", observed=True)["distance"]}
    assert by_set == {
        "scsi": [2],  # h1-h2
        "scdi": [1, 1, 2, 3, 4, 10],  # h-h1, h-h2, h-h3, h1-h3, h2-h3, p-q
        "dcsi": [1, 6],  # p-h, h3-q
        "dcdi": [3, 4, 5, 5, 7, 9],  # p-h1, p-h3, p-h2, h2-q, h1-q, h-q
    }
    means = summary.loc[["scsi", "scdi", "dcsi", "dcdi"], "mean"].tolist()
    assert means == pytest.approx([2, 3.5, 3.5, 5.5])
    assert ordering_holds(summary, ("scsi", "scdi", "dcdi"))


def test_weighted_set_means_by_hand():
    # img1 drawn twice, img2 never, img3 once
    table = three_images()
    sums = SourcePairSums.from_long(distance_sets(table, metric="euclidean"), table)
    means = weighted_set_means(sums, np.array([[2, 0, 1]])).iloc[0]
    assert np.isnan(means["scsi"])  # no drawn image has two objects of one class
    assert means["dcsi"] == pytest.approx((2 * 1 + 1 * 6) / 3)  # p-h in each copy, h3-q
    assert means["scdi"] == pytest.approx((2 * 3 + 2 * 10) / 4)  # h-h3, p-q, twice each
    assert means["dcdi"] == pytest.approx((2 * 4 + 2 * 9) / 4)  # p-h3, h-q, twice each
    # "same_image": the two copies of img1 are one image, p-h counted 2 x 2 times
    same = weighted_set_means(sums, np.array([[2, 0, 1]]), copies="same_image").iloc[0]
    assert same["dcsi"] == pytest.approx((4 * 1 + 1 * 6) / 5)
    assert same["scdi"] == pytest.approx(means["scdi"])
    # the same numbers from the sets rebuilt on the resampled table
    for mode, expected in [("exclude", means), ("same_image", same)]:
        resampled = resample_table(table, [2, 0, 1], copies=mode)
        rebuilt = set_summary(distance_sets(resampled, metric="euclidean"))
        assert "scsi" not in rebuilt.index
        for name in ("dcsi", "scdi", "dcdi"):
            assert rebuilt.loc[name, "mean"] == pytest.approx(expected[name])


@pytest.mark.parametrize("mode, n_pairs", [("exclude", 2), ("same_image", 4)])
def test_copies_of_one_image_are_never_a_different_image(mode, n_pairs):
    copies = resample_table(three_images(), [2, 0, 0], copies=mode)
    assert copies.meta["object_key"].tolist() == ["p", "h", "p~1", "h~1"]
    long = distance_sets(copies, metric="euclidean")
    pairs = {frozenset((a, b)) for a, b in zip(long["a"].astype(str), long["b"].astype(str))}
    assert frozenset(("p", "p~1")) not in pairs and frozenset(("h", "h~1")) not in pairs
    assert long["set"].astype(str).tolist() == ["dcsi"] * n_pairs


# ------------------------------------------------------------------ tests vs references


def test_kruskal_against_scipy_and_underflow():
    long = make_long({"scsi": (0, 1, 40), "scdi": (0.3, 1, 50), "dcsi": (0.5, 1, 30)})
    kw = kruskal_sets(long)
    ref = sps.kruskal(*[g.to_numpy() for _, g in long.groupby("set", sort=False)["distance"]])
    assert kw["H"] == pytest.approx(ref.statistic) and kw["p"] == pytest.approx(ref.pvalue)
    assert kw["log10_p"] == pytest.approx(math.log10(ref.pvalue))
    # far beyond the float range: scipy's p is 0, the log stays finite
    far = make_long({"scsi": (0, 1, 20000), "scdi": (10, 1, 20000)})
    kw = kruskal_sets(far)
    assert kw["p"] == 0.0
    a, x = 0.5, kw["H"] / 2  # chi2 with 1 df: Q(1/2, x), asymptotically
    approx = ((a - 1) * math.log(x) - x - math.lgamma(a) + math.log1p((a - 1) / x)) / math.log(10)
    assert kw["log10_p"] == pytest.approx(approx, rel=1e-6)
    assert log10_chi2_sf(30.0, 3) == pytest.approx(math.log10(sps.chi2.sf(30.0, 3)))


@pytest.mark.parametrize("rounded", [False, True])
def test_mann_whitney_against_scipy_and_brute_force(rounded):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=120), rng.normal(0.4, 1, 90)
    if rounded:  # many ties
        x, y = x.round(1), y.round(1)
    mw = mann_whitney(x, y)
    ref = sps.mannwhitneyu(x, y, method="asymptotic")
    assert mw["U"] == ref.statistic
    assert mw["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    greater = (x[:, None] > y[None]).sum() + 0.5 * (x[:, None] == y[None]).sum()
    assert mw["cles"] == pytest.approx(greater / (len(x) * len(y)))
    delta = (x[:, None] > y[None]).mean() - (x[:, None] < y[None]).mean()
    assert cliffs_delta(x, y) == pytest.approx(delta)
    assert rank_biserial(x, y) == pytest.approx(delta)


def test_mann_whitney_log_p_where_scipy_underflows():
    rng = np.random.default_rng(2)
    x, y = rng.normal(0, 1, 3000), rng.normal(8, 1, 3000)
    mw = mann_whitney(x, y)
    assert sps.mannwhitneyu(x, y, method="asymptotic").pvalue == 0.0
    u, n1, n2 = mw["U"], len(x), len(y)
    z = (max(u, n1 * n2 - u) - n1 * n2 / 2 - 0.5) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    expected = (math.log(2) + special.log_ndtr(-z)) / math.log(10)
    assert mw["log10_p"] == pytest.approx(expected, rel=1e-9)
    assert mw["log10_p"] < -300
    assert format_p(mw["p"], mw["log10_p"]).endswith(f"e{math.floor(expected)}")


def test_dunn_posthoc_and_holm_against_scikit_posthocs():
    long = make_long(
        {"scsi": (0, 1, 40), "scdi": (0.2, 1, 60), "dcsi": (0.6, 1, 50), "dcdi": (0.7, 1, 70)}
    )
    long["distance"] = long["distance"].round(1)  # ties
    dunn = dunn_posthoc(long)
    ref = sp.posthoc_dunn(long, val_col="distance", group_col="set")
    ref_holm = sp.posthoc_dunn(long, val_col="distance", group_col="set", p_adjust="holm")
    for r in dunn.itertuples():
        assert r.p == pytest.approx(ref.loc[r.a, r.b])
        assert 10**r.log10_p == pytest.approx(ref.loc[r.a, r.b], rel=1e-9)
    table = pairwise_tests(long)
    for r in table.itertuples():
        assert r.p_dunn_holm == pytest.approx(ref_holm.loc[r.a, r.b], rel=1e-9)
    mwu = [
        sps.mannwhitneyu(long.distance[long.set == a], long.distance[long.set == b]).pvalue
        for a, b in zip(table.a, table.b)
    ]
    np.testing.assert_allclose(table["p_mwu"], mwu, rtol=1e-9)
    np.testing.assert_allclose(table["p_mwu_holm"], multipletests(mwu, method="holm")[1], rtol=1e-9)


def test_holm_matches_statsmodels_and_survives_underflow():
    p = np.array([0.01, 0.04, 0.03, 0.2, 1e-5, 0.5])
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])
    log = holm_log10([-400.0, -350.0, -2.0])
    assert log.tolist() == pytest.approx([-400 + math.log10(3), -350 + math.log10(2), -2.0])


def test_pairwise_table_rows_and_signs():
    long = make_long(
        {"scsi": (0, 1, 50), "scdi": (0.5, 1, 60), "dcsi": (0.8, 1, 70), "dcdi": (1.0, 1, 80)}
    )
    table = pairwise_tests(long)
    assert list(zip(table.a, table.b)) == [
        ("scsi", "scdi"), ("scsi", "dcsi"), ("scsi", "dcdi"),
        ("scdi", "dcsi"), ("scdi", "dcdi"), ("dcsi", "dcdi"),
    ]  # fmt: skip
    first = table.iloc[0]
    a, b = long.distance[long.set == "scsi"], long.distance[long.set == "scdi"]
    assert first.mean_diff == pytest.approx(b.mean() - a.mean())
    assert first.cliffs_delta == pytest.approx(cliffs_delta(b, a))  # > 0: b farther
    assert first.z_dunn > 0 and first.cliffs_delta > 0


def test_shapiro_on_a_seeded_subsample():
    long = make_long({"scsi": (0, 1, 300), "dcdi": (0, 1, 8000)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy warns above 5,000 values
        result = shapiro_sets(long, seed=3)
    assert result.loc["dcdi", "n_used"] == 5000 and result.loc["dcdi", "n"] == 8000
    small = long.distance[long.set == "scsi"].to_numpy()
    assert result.loc["scsi", "W"] == pytest.approx(sps.shapiro(small).statistic)
    assert shapiro_sets(long, seed=3).equals(result)


# ------------------------------------------------------------------ Dunn indices


def test_dunn_variants_by_hand():
    a, b = np.array([0.0, 1.0, 2.0]), np.array([2.5, 4.0])
    assert min_gap(a, b) == 0.5
    assert dunn_textbook(a, b) == pytest.approx(0.5 / 2.0)
    assert dunn_mean_sd(a, b) == pytest.approx(2.25 / max(1.0, np.std(b, ddof=1)))
    # Delta_3: twice the mean distance to the centroid; Delta_2: mean pairwise distance
    assert dunn_delta4_Delta3(a, b) == pytest.approx(2.25 / max(2 * 2 / 3, 2 * 0.75))
    brute = np.abs(a[:, None] - a[None]).sum() / 6
    assert mean_abs_difference(a) == pytest.approx(brute)
    assert dunn_delta4_Delta2(a, b) == pytest.approx(2.25 / max(brute, 1.5))
    groups = {"x": a, "y": b, "z": np.array([10.0, 10.5])}
    assert dunn_index(groups) == pytest.approx(0.5 / 2.0)
    assert dunn_index(groups, "mean_sd") == pytest.approx(2.25 / np.std(b, ddof=1))


@pytest.mark.parametrize("d", [0.05, 0.3, 0.8])
def test_overlapping_sets_textbook_near_zero_mean_sd_near_cohens_d(d):
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 20000), rng.normal(d, 1, 20000)
    assert dunn_textbook(a, b) < 1e-3
    assert dunn_mean_sd(a, b) == pytest.approx(d, abs=0.03)
    # generalised Dunn indices scale with the same separation (Delta_3 = 2 sd sqrt(2/pi))
    assert dunn_delta4_Delta3(a, b) == pytest.approx(d / (2 * math.sqrt(2 / math.pi)), abs=0.03)
    assert dunn_delta4_Delta2(a, b) == pytest.approx(d / (2 / math.sqrt(math.pi)), abs=0.03)


# ------------------------------------------------------------------ p-value text


def test_format_p_never_writes_zero():
    assert format_p(0.02742) == "0.0274"
    assert format_p(3.1e-32) == "3.1e-32"
    assert format_p(0.0) == "< 1e-300"
    assert format_p(0.0, -412.36) == "4.4e-413"
    assert format_p(0.0, -412.36, latex=True) == "$4.4\\times10^{-413}$"
    assert format_p(float("nan")) == "n/a"
    assert format_p(9.96e-5) == "1.0e-4"


# ------------------------------------------------------------------ image-level inference


def many_images(n_images=300, seed=0, shift=0.0):
    """Each image: two objects of class A and one of class B, scalar prototypes N(mu, 1)."""
    rng = np.random.default_rng(seed)
    rows, feats = [], []
    for i in range(n_images):
        for k, (cls, mu) in enumerate([("A", 0.0), ("A", 0.0), ("B", shift)]):
            rows.append((f"i{i}:{k}", f"i{i}", f"i{i}", k, cls))
            feats.append(rng.normal(mu, 1.0))
    return table_from(rows, feats)


def test_bootstrap_interval_contains_the_known_mean():
    # scsi: |X - Y| for X, Y iid N(0, 1): mean 2 / sqrt(pi), sd sqrt(2 - 4 / pi), one per image
    table = many_images()
    long = distance_sets(table, "euclidean")
    result = bootstrap_set_means(long, table, n_boot=2000, seed=1)
    scsi = result.intervals().loc["scsi"]
    assert scsi["low"] < 2 / math.sqrt(math.pi) < scsi["high"]
    assert scsi["low"] < scsi["estimate"] < scsi["high"]
    se = math.sqrt(2 - 4 / math.pi) / math.sqrt(300)
    assert scsi["se"] == pytest.approx(se, rel=0.15)
    # counting k copies as one image weighs its pairs k^2: se too large by sqrt(11/4)
    same = bootstrap_set_means(long, table, n_boot=2000, seed=1, copies="same_image")
    ratio = same.intervals().loc["scsi", "se"] / scsi["se"]
    assert ratio == pytest.approx(math.sqrt(11 / 4), rel=0.15)


@pytest.mark.parametrize("mode", ["exclude", "same_image"])
def test_fast_bootstrap_equals_rebuilding_the_sets(mode):
    table = many_images(n_images=12, seed=2, shift=1.0)
    long = distance_sets(table, "euclidean")
    fast = bootstrap_set_means(long, table, n_boot=30, seed=5, copies=mode)
    slow = bootstrap_over_images(
        table, set_mean_statistic("euclidean"), n_boot=30, seed=5, progress=False, copies=mode
    )
    cols = list(fast.replicates.columns)
    np.testing.assert_allclose(fast.replicates[cols], slow.replicates[cols], rtol=1e-10)
    assert fast.estimate == pytest.approx(slow.estimate)


def test_draws_are_seeded_multinomial_counts():
    counts = draw_counts(7, 50, seed=3)
    assert counts.shape == (50, 7) and (counts.sum(1) == 7).all()
    assert np.array_equal(counts, draw_counts(7, 50, seed=3))
    assert not np.array_equal(counts, draw_counts(7, 50, seed=4))


def test_ordering_probabilities():
    assert list(claimed_orderings(PAPER_SETS)) == [
        "scsi < scdi < dcsi < dcdi", "scsi < scdi", "scsi < dcsi", "scsi < dcdi",
        "scdi < dcsi", "scdi < dcdi", "dcsi < dcdi",
    ]  # fmt: skip
    assert list(claimed_orderings(("sidi", "scsi", "dcsi"))) == [
        "scsi < dcsi", "sidi < scsi < dcsi", "sidi < scsi", "sidi < dcsi",
    ]  # fmt: skip
    table = many_images(n_images=60, seed=6, shift=5.0)  # A-B pairs far apart
    result = bootstrap_set_means(distance_sets(table, "euclidean"), table, n_boot=200, seed=0)
    order = result.orderings.set_index("ordering")
    assert order.loc["scsi < dcsi", "probability"] == 1.0
    assert order.loc["scdi < dcdi", "holds"]
    assert order.loc["scsi < dcsi", "n_valid"] == 200


def null_table(seed, n_objects=24):
    rng = np.random.default_rng(seed)
    rows = [
        (f"o{k}", f"img{k // 3}", f"img{k // 3}", k, "ABC"[rng.integers(3)])
        for k in range(n_objects)
    ]
    return table_from(rows, rng.normal(size=(n_objects, 5)))


def test_permutation_statistic_against_direct_computation():
    table = null_table(0)
    result = permutation_test(table, metric="euclidean", n_perm=9, progress=False)
    long = distance_sets(table, "euclidean", scdi_same_instance=False)
    same = long.distance[long.set.isin(["scsi", "scdi"])]
    different = long.distance[long.set.isin(["dcsi", "dcdi"])]
    assert result.observed == pytest.approx(cliffs_delta(different, same))
    assert (result.n_within, result.n_between) == (len(same), len(different))
    md = permutation_test(
        table, metric="euclidean", statistic="mean_difference", n_perm=9, progress=False
    )
    assert md.observed == pytest.approx(different.mean() - same.mean())


def test_permutation_p_value_is_uniform_under_the_null():
    p = np.array(
        [
            permutation_test(
                null_table(s), metric="euclidean", n_perm=99, seed=s, progress=False
            ).p_value
            for s in range(120)
        ]
    )
    assert 0.03 <= np.mean(p <= 0.1) <= 0.2
    assert 0.4 <= np.mean(p <= 0.5) <= 0.6
    assert sps.kstest(p, "uniform").pvalue > 1e-3


def test_permutation_detects_class_structure():
    rng = np.random.default_rng(8)
    rows = [(f"o{k}", f"img{k // 3}", f"img{k // 3}", k, "AB"[k % 2]) for k in range(30)]
    features = (
        np.array([[0.0, 0.0] if r[4] == "A" else [3.0, 3.0] for r in rows])
        + rng.normal(size=(30, 2)) * 0.3
    )
    result = permutation_test(
        table_from(rows, features), metric="euclidean", n_perm=199, progress=False
    )
    assert result.p_value == pytest.approx(1 / 200)
    assert result.observed > 0.9


def test_mann_whitney_edge_cases_like_scipy():
    for x, y in [([1.0, 2, 3, 4], [1.0, 2, 3, 4]), ([1.0, 1, 1], [1.0, 1, 1, 1])]:
        ref = sps.mannwhitneyu(x, y, method="asymptotic").pvalue
        assert mann_whitney(np.array(x), np.array(y))["p"] == pytest.approx(ref)
    assert np.isnan(mann_whitney(np.array([]), np.array([1.0]))["p"])


def test_bootstrap_with_sparse_source_sums():
    table = many_images(n_images=20, seed=9, shift=1.0)
    long = distance_sets(table, "euclidean")
    dense = bootstrap_set_means(SourcePairSums.from_long(long, table), n_boot=40, seed=2)
    sparse = bootstrap_set_means(
        SourcePairSums.from_long(long, table, dense_limit=2), n_boot=40, seed=2
    )
    np.testing.assert_allclose(sparse.replicates, dense.replicates, rtol=1e-12)
