"""Statistics on data that cannot define them: NaN with a reason, or scipy's own value.

Identical distances, empty sets, single values and NaN inputs through every path: p-values,
rank tests, Holm, effect sizes, Dunn indices, the pairwise table, summaries, the
image-level bootstrap, orderings, the permutation test, the video offsets and the
notebooks' set analysis. References: scipy.stats, scikit-posthocs and statsmodels where
they define the case, hand reasoning (in the comments) where they do not.
"""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from difflens.analysis.bootstrap import (
    bootstrap_over_images,
    bootstrap_set_means,
    draw_counts,
    min_draws,
)
from difflens.analysis.comparisons import pairwise_tests
from difflens.analysis.dunn_index import (
    DUNN_VARIANTS,
    centroid_spread,
    diameter,
    dunn_delta4_Delta3,
    dunn_index,
    dunn_indices,
    dunn_mean_sd,
    dunn_textbook,
    mean_abs_difference,
    min_gap,
)
from difflens.analysis.effects import cliffs_delta, mean_difference, rank_biserial
from difflens.analysis.permutation import permutation_test
from difflens.analysis.pvalues import format_p, holm, holm_log10, log10_chi2_sf
from difflens.analysis.rank_tests import dunn_posthoc, kruskal_sets, mann_whitney, shapiro_sets
from difflens.analysis.set_analysis import analyse_sets, separation
from difflens.analysis.sets import distance_sets
from difflens.analysis.summaries import ordering_holds, set_summary
from difflens.analysis.undefined import UndefinedStatisticWarning, collect_reasons
from difflens.analysis.video import offset_summary
from difflens.features.prototypes import PrototypeTable
from difflens.viz.plots import record_numbers

NAN = float("nan")


def long_form(values_by_set):
    return pd.DataFrame(
        {
            "set": [s for s, v in values_by_set.items() for _ in v],
            "distance": [float(x) for v in values_by_set.values() for x in v],
        }
    )


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


def constant_table() -> PrototypeTable:
    """Three images, a cat and a dog each, every prototype the same constant vector."""
    rows = [
        (f"im{i}:{k}", f"im{i}", f"im{i}", k, ("cat", "dog")[k]) for i in range(3) for k in (0, 1)
    ]
    return table_from(rows, np.full((6, 8), 0.5))


# ------------------------------------------------------------------ the handed case


def test_kruskal_on_identical_distances_is_nan_as_scipy():
    long = long_form({"scsi": [1, 1], "scdi": [1, 1], "dcdi": [1]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = sps.kruskal([1.0, 1.0], [1.0, 1.0], [1.0])
    assert math.isnan(ref.statistic) and math.isnan(ref.pvalue)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning, no TypeError from mpmath
        kw = kruskal_sets(long)
    assert math.isnan(kw["H"]) and math.isnan(kw["p"]) and math.isnan(kw["log10_p"])
    assert kw["k"] == 3 and kw["n"] == 5
    assert "identical" in kw["reason"] and "scsi, scdi, dcdi" in kw["reason"]


def test_log10_chi2_sf_of_nan_is_nan():
    assert math.isnan(log10_chi2_sf(NAN, 2))
    assert math.isnan(log10_chi2_sf(3.0, NAN))
    assert math.isnan(log10_chi2_sf(3.0, 0))
    assert log10_chi2_sf(math.inf, 2) == -math.inf
    assert log10_chi2_sf(0.0, 2) == sps.chi2.logsf(0.0, 2) / math.log(10) == 0.0


def test_analyse_sets_on_constant_prototypes_gives_nan_with_reasons(tmp_path):
    # every distance_correlation distance is 1 (dCor of a constant vector is 0); no image
    # has two objects of one class, so scsi is empty
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedStatisticWarning)
        analysis = analyse_sets(constant_table(), metric="distance_correlation", n_boot=10)
    assert (analysis.long["distance"] == 1.0).all()
    assert math.isnan(analysis.kruskal["H"]) and analysis.kruskal["reason"]
    assert analysis.summary.loc["scsi", "n"] == 0
    assert math.isnan(analysis.summary.loc["scsi", "mean"])
    # Cliff's delta of two sets of one common value is 0: no pair larger, none smaller
    assert analysis.separation == 0.0
    numbers = analysis.numbers()
    reasons = numbers["reasons"]
    assert "identical" in reasons["kruskal"]
    assert "scsi" in reasons["summary.scsi"]
    assert "needs 40" in reasons["mean_ci95.dcsi"]  # 10 draws: too few for an interval
    assert numbers["orderings"]["scsi < scdi"]["holds"] is None
    path = record_numbers(numbers, tmp_path)

    def refuse(token):
        raise AssertionError(f"{token} written into the JSON")

    stored = json.loads(path.read_text(), parse_constant=refuse)
    assert stored["kruskal"] == {"H": None, "p": None, "log10_p": None}
    assert stored["means"]["scsi"] is None and stored["counts"]["scsi"] == 0
    assert stored["mean_ci95"]["dcsi"] == [None, None]
    assert stored["reasons"]["kruskal"] == reasons["kruskal"]


# ------------------------------------------------------------------ rank tests


def test_kruskal_with_fewer_than_two_sets_or_no_finite_distance():
    for long in (
        long_form({"scsi": [1, 2, 3]}),
        long_form({}),
        long_form({"scsi": [NAN, NAN], "scdi": [NAN]}),
    ):
        kw = kruskal_sets(long)
        assert math.isnan(kw["H"]) and math.isnan(kw["p"]) and kw["k"] <= 1
        assert "two sets" in kw["reason"]


def test_kruskal_single_values_and_an_empty_requested_set_like_scipy():
    kw = kruskal_sets(long_form({"scsi": [1], "scdi": [2]}))
    ref = sps.kruskal([1.0], [2.0])  # defined: H = 1, p = 0.317
    assert kw["H"] == pytest.approx(ref.statistic) and kw["p"] == pytest.approx(ref.pvalue)
    assert kw["reason"] == ""
    long = long_form({"scsi": [1, 2, 3], "scdi": [2, 5, 6]})
    kw = kruskal_sets(long, sets=["scsi", "scdi", "sidi"])
    assert kw["sets"] == ["scsi", "scdi"] and kw["k"] == 2
    assert kw["H"] == pytest.approx(sps.kruskal([1.0, 2, 3], [2.0, 5, 6]).statistic)


def test_mann_whitney_degenerate_samples_like_scipy():
    tied = mann_whitney(np.ones(3), np.ones(4), names=("scsi", "scdi"))
    ref = sps.mannwhitneyu(np.ones(3), np.ones(4), method="asymptotic")
    assert tied["U"] == ref.statistic and tied["p"] == ref.pvalue == 1.0
    assert tied["log10_p"] == 0.0 and math.isnan(tied["z"])
    assert tied["cliffs_delta"] == 2 * ref.statistic / 12 - 1 == 0.0
    assert "tied" in tied["reason"] and "scsi and scdi" in tied["reason"]
    single = mann_whitney(np.array([1.0]), np.array([2.0]))
    assert single["p"] == pytest.approx(sps.mannwhitneyu([1.0], [2.0], method="asymptotic").pvalue)
    assert single["reason"] == ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_empty = sps.mannwhitneyu([], [1.0, 2.0], method="asymptotic")
        ref_nan = sps.mannwhitneyu([1.0, NAN], [2.0, 3.0])
    empty = mann_whitney(np.array([]), np.array([1.0, 2.0]), names=("scsi", "scdi"))
    assert math.isnan(ref_empty.pvalue) and math.isnan(empty["p"]) and math.isnan(empty["U"])
    assert "scsi is empty" in empty["reason"]
    with_nan = mann_whitney(np.array([1.0, NAN]), np.array([2.0, 3.0]))
    assert math.isnan(ref_nan.pvalue) and math.isnan(with_nan["p"])
    assert "NaN" in with_nan["reason"]


def test_dunn_posthoc_on_tied_distances_is_nan_as_scikit_posthocs():
    long = long_form({"scsi": [1, 1], "scdi": [1, 1], "dcdi": [1]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = sp.posthoc_dunn(long, val_col="distance", group_col="set")
    dunn = dunn_posthoc(long)
    assert len(dunn) == 3
    for r in dunn.itertuples():
        assert math.isnan(ref.loc[r.a, r.b])
        assert math.isnan(r.z) and math.isnan(r.p) and math.isnan(r.log10_p)
        assert "tied" in r.reason
    assert dunn_posthoc(long_form({"scsi": [1, 2]})).empty


def test_dunn_posthoc_single_values_against_scikit_posthocs():
    long = long_form({"scsi": [1], "scdi": [2], "dcdi": [3]})
    ref = sp.posthoc_dunn(long, val_col="distance", group_col="set")
    for r in dunn_posthoc(long).itertuples():
        assert r.p == pytest.approx(ref.loc[r.a, r.b], rel=1e-12) and r.reason == ""


def test_shapiro_on_too_few_and_constant_values():
    result = shapiro_sets(long_form({"scsi": [1, 2], "scdi": [3, 3, 3, 3]}))
    assert math.isnan(result.loc["scsi", "W"]) and "needs 3" in result.loc["scsi", "reason"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sps.shapiro([3.0, 3, 3, 3])  # scipy: W = p = 1 on a range of zero
    assert result.loc["scdi", "W"] == ref.statistic and result.loc["scdi", "p"] == ref.pvalue


# ------------------------------------------------------------------ Holm with NaN


def test_holm_leaves_nan_p_values_out_of_the_family():
    p = np.array([0.01, NAN, 0.04, 0.03, NAN])
    finite = ~np.isnan(p)
    adjusted = holm(p)
    assert np.isnan(adjusted[~finite]).all()
    # statsmodels on the three finite p-values (R's p.adjust with NA does the same)
    np.testing.assert_allclose(adjusted[finite], multipletests(p[finite], method="holm")[1])
    logs = holm_log10(np.log10(p))
    np.testing.assert_allclose(10 ** logs[finite], multipletests(p[finite], method="holm")[1])
    assert np.isnan(holm_log10([NAN, NAN])).all()
    assert format_p(adjusted[1]) == "n/a"


# ------------------------------------------------------------------ effect sizes


def test_effect_sizes_on_empty_nan_and_identical_samples():
    x = np.array([1.0, 2.0])
    for fn in (cliffs_delta, rank_biserial, mean_difference):
        with pytest.warns(UndefinedStatisticWarning, match="scsi is empty"):
            assert math.isnan(fn(np.array([]), x, names=("scsi", "scdi")))
        with pytest.warns(UndefinedStatisticWarning, match="1 NaN"):
            assert math.isnan(fn(x, np.array([1.0, NAN])))
    # identical: scipy's U is n m / 2, so delta = 2 U / (n m) - 1 = 0; means differ by 0
    u = sps.mannwhitneyu(np.ones(3), np.ones(5)).statistic
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cliffs_delta(np.ones(3), np.ones(5)) == 2 * u / 15 - 1 == 0.0
        assert mean_difference(np.ones(3), np.ones(5)) == 0.0


# ------------------------------------------------------------------ Dunn indices


def test_dunn_indices_with_zero_spreads_are_nan_with_one_reason():
    a, b = np.array([1.0, 1.0]), np.array([2.0, 2.0])  # each set constant, means 1 apart
    with collect_reasons() as reasons:
        values = dunn_indices(a, b, names=("scsi", "dcdi"))
    assert all(math.isnan(v) for v in values.values()) and list(values) == list(DUNN_VARIANTS)
    assert len(reasons) == 1 and "zero spread" in reasons[0] and "scsi and dcdi" in reasons[0]
    for variant in DUNN_VARIANTS:
        with pytest.warns(UndefinedStatisticWarning, match="zero spread"):
            assert math.isnan(dunn_index({"a": a, "b": b}, variant))


def test_dunn_indices_on_empty_single_and_nan_sets():
    one, two = np.array([0.0]), np.array([1.0, 3.0])
    with pytest.warns(UndefinedStatisticWarning, match="b is empty"):
        assert math.isnan(dunn_textbook(one, np.array([])))
    # a standard deviation needs two values (numpy's ddof=1 sd of one value is NaN)
    with pytest.warns(UndefinedStatisticWarning, match=r"2 needed"):
        assert math.isnan(dunn_mean_sd(one, two))
    # Delta_3 of one value is 0; of [1, 3] 2 * mean |x - 2| = 2: |0 - 2| / 2 = 1
    assert dunn_delta4_Delta3(one, two) == pytest.approx(1.0)
    # textbook: gap |0 - 1| = 1 over the diameter of [1, 3], 2
    assert dunn_textbook(one, two) == pytest.approx(0.5)
    with pytest.warns(UndefinedStatisticWarning, match="NaN"):
        assert math.isnan(dunn_textbook(np.array([0.0, NAN]), two))
    with pytest.warns(UndefinedStatisticWarning, match="needs two sets"):
        assert math.isnan(dunn_index({"a": two}))
    with pytest.warns(UndefinedStatisticWarning, match="c is empty"):
        assert math.isnan(dunn_index({"a": one, "b": two, "c": []}))
    with pytest.raises(ValueError, match="unknown Dunn variant"):
        dunn_index({"a": one, "b": two}, "nearest")
    for fn in (min_gap, diameter, mean_abs_difference, centroid_spread):
        args = (np.array([]), two) if fn is min_gap else (np.array([]),)
        with pytest.warns(UndefinedStatisticWarning, match="empty"):
            assert math.isnan(fn(*args))
    with pytest.warns(UndefinedStatisticWarning, match="2 needed"):
        assert math.isnan(mean_abs_difference(one))
    assert diameter(one) == 0.0 and centroid_spread(one) == 0.0


# ------------------------------------------------------------------ the pairwise table


def test_pairwise_tests_on_tied_and_empty_sets():
    long = long_form({"scsi": [1, 1, 1], "scdi": [1, 1], "dcdi": [1, 1, 1]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reasons are collected, not leaked
        table = pairwise_tests(long, sets=["scsi", "scdi", "dcsi", "dcdi"])
    assert len(table) == 6
    tied = table.set_index(["a", "b"]).loc[("scsi", "scdi")]
    assert tied.p_mwu == 1.0 == sps.mannwhitneyu([1.0] * 3, [1.0] * 2, method="asymptotic").pvalue
    assert tied.p_mwu_holm == 1.0 and tied.cliffs_delta == 0.0 and tied.mean_diff == 0.0
    assert math.isnan(tied.p_dunn) and math.isnan(tied.p_dunn_holm)
    assert math.isnan(tied.dunn_mean_sd) and "zero spread" in tied.reason
    empty = table.set_index(["a", "b"]).loc[("scsi", "dcsi")]
    assert empty.n_b == 0 and math.isnan(empty.p_mwu) and math.isnan(empty.mean_b)
    assert empty.mean_a == 1.0 and "dcsi without a finite distance" in empty.reason
    # the empty comparisons stay out of Holm's family: 3 tied pairs, each p = 1
    assert table["p_mwu_holm"].dropna().tolist() == [1.0, 1.0, 1.0]


# ------------------------------------------------------------------ summaries, orderings


def test_set_summary_of_empty_and_single_sets():
    long = long_form({"scsi": [0.5], "scdi": [1.0, 2.0, NAN]})
    summary = set_summary(long, sets=["scsi", "scdi", "dcdi"])
    assert summary.index.tolist() == ["scsi", "scdi", "dcdi"]
    assert math.isnan(summary.loc["scsi", "std"]) and math.isnan(pd.Series([0.5]).std())
    assert "no standard deviation" in summary.loc["scsi", "reason"]
    assert summary.loc["scdi", "n"] == 2 and summary.loc["scdi", "mean"] == 1.5  # NaN left out
    assert summary.loc["dcdi", "n"] == 0 and math.isnan(summary.loc["dcdi", "mean"])
    assert "no finite distance" in summary.loc["dcdi", "reason"]
    with pytest.warns(UndefinedStatisticWarning, match="no mean for dcdi"):
        assert ordering_holds(summary, ("scsi", "scdi", "dcdi")) is False


# ------------------------------------------------------------------ bootstrap


def three_images() -> PrototypeTable:
    """img2 holds the only same-class pair of one image (scsi): h1, h2."""
    rows = [
        ("p", "img1", "img1", 1, "person"),
        ("h", "img1", "img1", 2, "horse"),
        ("h1", "img2", "img2", 1, "horse"),
        ("h2", "img2", "img2", 2, "horse"),
        ("h3", "img3", "img3", 1, "horse"),
        ("q", "img3", "img3", 2, "person"),
    ]
    return table_from(rows, [0, 1, 3, 5, 4, 10])


def test_bootstrap_draws_without_a_set_are_left_out_and_counted():
    table = three_images()
    long = distance_sets(table, "euclidean")
    result = bootstrap_set_means(long, table, n_boot=200, seed=3)
    # scsi is defined in a draw exactly when img2 (source code 1) is drawn
    drawn = draw_counts(3, 200, 3)[:, 1] > 0
    scsi = result.replicates["scsi"].to_numpy()
    assert np.array_equal(np.isfinite(scsi), drawn)
    intervals = result.intervals()
    assert intervals.loc["scsi", "n_valid"] == drawn.sum()
    assert f"undefined in {200 - drawn.sum()} of 200 draws" in intervals.loc["scsi", "reason"]
    assert np.isfinite(intervals.loc["scsi", ["low", "high"]].astype(float)).all()


def test_intervals_from_too_few_finite_draws_are_nan():
    assert min_draws(0.95) == 40 and min_draws(0.9) == 20  # 2 / (1 - level)
    table = three_images()
    result = bootstrap_set_means(distance_sets(table, "euclidean"), table, n_boot=30, seed=0)
    intervals = result.intervals()
    assert intervals[["low", "high"]].isna().all().all()
    assert intervals["se"].notna().all()
    assert all("needs 40" in r for r in intervals["reason"])


def test_orderings_with_an_empty_study_set():
    table = three_images()
    long = distance_sets(table, "euclidean", sets=("scdi", "dcsi", "dcdi"))
    result = bootstrap_set_means(
        long, table, n_boot=50, study_sets=("scsi", "scdi", "dcsi", "dcdi")
    )
    assert result.replicates["scsi"].isna().all()
    order = result.orderings.set_index("ordering")
    row = order.loc["scsi < scdi"]
    assert row["holds"] is None and math.isnan(row["probability"]) and row["n_valid"] == 0
    assert "no mean for scsi" in row["reason"]
    assert order.loc["scdi < dcdi", "holds"] in (True, False)
    with pytest.warns(UndefinedStatisticWarning, match="no draw defines"):
        prob, n_valid = result.probability(("scsi", "dcdi"))
    assert math.isnan(prob) and n_valid == 0
    assert result.intervals().loc["scsi", "reason"].endswith("in every draw")


def test_bootstrap_over_images_counts_undefined_draws():
    table = three_images()

    def statistic(t):
        return {"value": separation(t, "euclidean")}

    result = bootstrap_over_images(table, statistic, n_boot=60, seed=1, progress=False)
    # separation needs a same-class pair across source images: only horses in two drawn
    # images or persons in two give one; a draw of one source image repeated gives none
    values = result.replicates["value"].to_numpy()
    undefined = int(np.isnan(values).sum())
    assert undefined > 0 and sum(result.undefined.values()) == undefined
    assert all(reason.startswith("separation: no") for reason in result.undefined)
    assert result.intervals().loc["value", "n_valid"] == 60 - undefined


# ------------------------------------------------------------------ permutation test


def test_permutation_test_on_equal_distances_gives_p_one_as_scipy():
    table = constant_table()
    result = permutation_test(table, metric="distance_correlation", n_perm=19, progress=False)
    ref = sps.permutation_test(
        (np.ones(5), np.ones(6)),
        lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        n_resamples=99,
        alternative="greater",
        vectorized=True,
        random_state=0,
    )
    assert ref.pvalue == 1.0 == result.p_value
    assert result.observed == 0.0 and "equal" in result.reason


def test_permutation_test_with_one_class_or_no_finite_distance():
    rows = [(f"o{k}", f"img{k}", f"img{k}", k, "A") for k in range(4)]
    table = table_from(rows, np.arange(8.0).reshape(4, 2))
    one = permutation_test(table, metric="euclidean", n_perm=9, progress=False)
    assert math.isnan(one.observed) and math.isnan(one.p_value)
    assert "one class" in one.reason
    two = table_from([r[:4] + ("AB"[k % 2],) for k, r in enumerate(rows)], np.zeros((4, 2)))
    none = permutation_test(two, distances=np.full((4, 4), NAN), n_perm=9, progress=False)
    assert math.isnan(none.p_value) and "finite" in none.reason
    assert (none.n_within, none.n_between) == (0, 0)


# ------------------------------------------------------------------ separation, video


def test_separation_without_a_side_is_nan_with_the_reason():
    with pytest.warns(UndefinedStatisticWarning, match="two are needed"):
        assert math.isnan(separation(three_images().subset([0]), "euclidean"))
    rows = [(f"o{k}", f"img{k}", f"img{k}", k, "A") for k in range(3)]
    with pytest.warns(UndefinedStatisticWarning, match="no different-class pair"):
        assert math.isnan(separation(table_from(rows, [0.0, 1.0, 2.0]), "euclidean"))


def test_offset_summary_of_single_pairs_and_nan_distances():
    long = pd.DataFrame(
        {
            "sequence": "s",
            "offset": [1, 1, 2, 2, 3],
            "set": ["sidi", "scdi", "sidi", "sidi", "sidi"],
            "distance": [0.2, 0.5, 0.3, NAN, NAN],
            "a": "x",
            "b": "y",
        }
    )
    summary = offset_summary(long).set_index(["set", "offset"])
    single = summary.loc[("sidi", 1)]
    assert single["mean"] == 0.2 and math.isnan(single["std"]) and single["n"] == 1
    assert "no standard deviation" in single["reason"]
    with_nan = summary.loc[("sidi", 2)]
    assert with_nan["mean"] == 0.3 and with_nan["n"] == 1 and with_nan["n_nonfinite"] == 1
    none = summary.loc[("sidi", 3)]
    assert math.isnan(none["mean"]) and none["n"] == 0 and "no finite distance" in none["reason"]


def test_collect_reasons_gathers_undefined_statistics_and_passes_other_warnings_on():
    with pytest.warns(RuntimeWarning, match="something else"):
        with collect_reasons() as reasons:
            cliffs_delta(np.array([]), np.array([1.0]), names=("scsi", "scdi"))
            cliffs_delta(np.array([]), np.array([1.0]), names=("scsi", "scdi"))
            mean_difference(np.array([1.0]), np.array([]), names=("scsi", "dcdi"))
            warnings.warn("something else", RuntimeWarning, stacklevel=1)
    assert reasons == [
        "Cliff's delta: scsi is empty",
        "difference of means: dcdi is empty",
    ]
