"""PCK readings, averagings and bootstrap intervals, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from difflens.correspondence.pck import (
    PAPER_READINGS,
    READINGS,
    PairKeypoints,
    bootstrap_interval,
    correct_keypoints,
    evaluate_pck,
    pair_correct,
    paper_readings,
    pck,
    threshold_base,
    to_reading_frame,
)


def test_target_bbox_reading_and_strictness():
    # box [10, 20, 110, 70]: sides 100 x 50 -> base 100 (no +1); alpha 0.1 -> 10 px
    assert threshold_base("target_bbox", trg_bbox=[10, 20, 110, 70]) == 100.0
    gt = np.array([[50, 50], [50, 50], [50, 50], [50, 50]])
    pred = np.array([[50, 50], [60, 50], [50, 60.5], [53, 54]])  # distances 0, 10, 10.5, 5
    assert correct_keypoints(pred, gt, 100, 0.1).tolist() == [True, True, False, True]
    assert correct_keypoints(pred, gt, 100, 0.1, strict=True).tolist() == [True, False, False, True]
    assert pck(pred, gt, 100, 0.1) == 0.75
    assert pck(pred, gt, 100, 0.1, strict=True) == 0.5
    pair = PairKeypoints(pred=pred, gt=gt, trg_bbox=(10, 20, 110, 70))
    ok = pair_correct(pair, "target_bbox", alphas=(0.05, 0.1))
    assert ok.tolist() == [[True, False, False, True], [True, True, False, True]]  # 5 px, 10 px


def test_target_image_reading():
    # image 375 x 500 -> base 500; alpha 0.05 -> 25 px
    assert threshold_base("target_image", trg_size=(375, 500)) == 500.0
    pair = PairKeypoints(
        pred=[[0, 0], [25, 0], [15, 20.1]], gt=[[0, 0], [0, 0], [0, 0]], trg_size=(375, 500)
    )
    # distances 0, 25, sqrt(225 + 404.01) = 25.08
    assert pair_correct(pair, "target_image", alphas=(0.05,)).tolist() == [[True, True, False]]


def test_source_bbox_512_reading():
    # source image H 256 x W 1024, box [0, 0, 512, 64]: in the 512 frame its width is
    # 512 * 512 / 1024 = 256 and its height 64 * 512 / 256 = 128 -> base 256; alpha 0.1 -> 25.6
    base = threshold_base("source_bbox_512", src_size=(256, 1024), src_bbox=[0, 0, 512, 64])
    assert base == 256.0
    # target image H 1024 x W 256: x scales by 512 / 256 = 2, y by 512 / 1024 = 0.5
    gt = [[100, 500]] * 4
    pred = [[105, 500], [100, 600], [112, 540], [109, 520]]
    # in the 512 frame: (dx, dy) = (10, 0), (0, 50), (24, 20) -> 31.2, (18, 10) -> 20.6
    frame = to_reading_frame("source_bbox_512", pred, trg_size=(1024, 256))
    assert frame.tolist() == [[210, 250], [200, 300], [224, 270], [218, 260]]
    pair = PairKeypoints(
        pred=pred, gt=gt, trg_size=(1024, 256), src_size=(256, 1024), src_bbox=(0, 0, 512, 64)
    )
    assert pair_correct(pair, "source_bbox_512", alphas=(0.1,)).tolist() == [
        [True, False, False, True]
    ]
    # target-image reading, original pixels: base 1024 -> 102.4 px; distances 5, 100, 41.8, 21.9
    assert pair_correct(pair, "target_image", alphas=(0.1,)).tolist() == [[True, True, True, True]]


def test_keypoint_extent_and_the_padding_pitfall():
    kps = np.array([[10, 10], [50, 30], [30, 90]])
    # extent: max(50 - 10, 90 - 10) = 80
    assert threshold_base("keypoint_extent", trg_kps=kps) == 80.0
    # Hedlin's loader pads with -1 before min: max(50 + 1, 90 + 1) = 91
    assert threshold_base("keypoint_extent_padded", trg_kps=kps) == 91.0
    pred = kps + np.array([[8.5, 0], [0, 0], [0, 0]])
    pair = PairKeypoints(pred=pred, gt=kps)  # extent from gt
    # 8.5 > 0.1 * 80 = 8 but <= 0.1 * 91 = 9.1
    assert pair_correct(pair, "keypoint_extent", alphas=(0.1,))[0, 0] == np.False_
    assert pair_correct(pair, "keypoint_extent_padded", alphas=(0.1,))[0, 0] == np.True_


def three_pairs():
    # pair 1: 2/2 correct (cat), pair 2: 1/4 (cat), pair 3: 0/1 (dog); base 100, alpha 0.1
    box = (0, 0, 100, 100)
    return [
        PairKeypoints(pred=[[0, 0], [1, 1]], gt=[[0, 0], [0, 0]], category="cat", trg_bbox=box),
        PairKeypoints(
            pred=[[0, 0], [50, 0], [0, 50], [30, 30]],
            gt=[[0, 0]] * 4,
            category="cat",
            trg_bbox=box,
        ),
        PairKeypoints(pred=[[20, 0]], gt=[[0, 0]], category="dog", trg_bbox=box),
        PairKeypoints(pred=np.zeros((0, 2)), gt=np.zeros((0, 2)), category="dog", trg_bbox=box),
    ]


def test_per_image_and_per_point_overall_and_per_category():
    df = evaluate_pck(three_pairs(), alphas=(0.1,), n_boot=0)
    got = {(r.averaging, r.category): r.pck for r in df.itertuples()}
    assert got[("per_image", "all")] == pytest.approx((1 + 0.25 + 0) / 3)  # 0.41667
    assert got[("per_point", "all")] == pytest.approx(3 / 7)  # 0.42857
    assert got[("per_image", "cat")] == pytest.approx((1 + 0.25) / 2)
    assert got[("per_point", "cat")] == pytest.approx(3 / 6)
    assert got[("per_image", "dog")] == 0.0 and got[("per_point", "dog")] == 0.0
    counts = {r.category: (r.n_pairs, r.n_points) for r in df.itertuples()}
    assert counts == {"all": (3, 7), "cat": (2, 6), "dog": (1, 1)}  # the empty pair is left out
    assert list(df.columns) == [
        "reading",
        "alpha",
        "averaging",
        "category",
        "pck",
        "low",
        "high",
        "n_pairs",
        "n_points",
    ]
    assert df[["low", "high"]].isna().all().all()
    # alpha 0.45 -> 45 px: pair 1 2/2; pair 2 (0, 50, 50, 42.4 px) 2/4; pair 3 (20 px) 1/1
    df = evaluate_pck(three_pairs(), alphas=(0.45,), averagings=("per_point",), by_category=False)
    assert df.pck.tolist() == [pytest.approx(5 / 7)]


def test_strict_comparison_in_the_evaluation():
    pairs = [PairKeypoints(pred=[[10, 0]], gt=[[0, 0]], category="a", trg_bbox=(0, 0, 100, 10))]
    assert evaluate_pck(pairs, alphas=(0.1,), n_boot=0).pck.tolist() == [1.0, 1.0, 1.0, 1.0]
    strict = evaluate_pck(pairs, alphas=(0.1,), n_boot=0, strict=True)
    assert strict.pck.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert strict.attrs["strict"] is True


def random_pairs(n, seed, n_groups=None):
    rng = np.random.default_rng(seed)
    pairs = []
    for k in range(n):
        m = int(rng.integers(1, 9))
        gt = rng.uniform(0, 100, (m, 2))
        pred = gt + rng.normal(0, 8, (m, 2))
        pairs.append(
            PairKeypoints(
                pred=pred,
                gt=gt,
                category=f"c{k % 3}",
                trg_bbox=(0, 0, 100, 80),
                group=None if n_groups is None else k % n_groups,
            )
        )
    return pairs


def test_bootstrap_over_pairs_equals_scipy():
    pairs = random_pairs(60, 0)
    df = evaluate_pck(pairs, alphas=(0.1,), n_boot=400, seed=7, by_category=False)
    ok = np.array([pair_correct(p, "target_bbox", (0.1,))[0].sum() for p in pairs])
    n = np.array([len(p.gt) for p in pairs])
    ref_img = scipy.stats.bootstrap(
        (ok / n,),
        np.mean,
        n_resamples=400,
        method="percentile",
        rng=np.random.default_rng(7),
    ).confidence_interval
    ref_pt = scipy.stats.bootstrap(
        (ok, n),
        lambda c, m, axis=-1: c.sum(axis=axis) / m.sum(axis=axis),
        paired=True,
        n_resamples=400,
        method="percentile",
        rng=np.random.default_rng(7),
    ).confidence_interval
    row = df.set_index("averaging")
    assert row.loc["per_image", "low"] == pytest.approx(ref_img.low, rel=1e-12)
    assert row.loc["per_image", "high"] == pytest.approx(ref_img.high, rel=1e-12)
    assert row.loc["per_point", "low"] == pytest.approx(ref_pt.low, rel=1e-12)
    assert row.loc["per_point", "high"] == pytest.approx(ref_pt.high, rel=1e-12)
    assert row.loc["per_image", "low"] < row.loc["per_image", "pck"] < row.loc["per_image", "high"]
    lo, hi = bootstrap_interval(ok, n, averaging="per_point", n_boot=400, seed=7)
    assert (lo, hi) == (row.loc["per_point", "low"], row.loc["per_point", "high"])


def test_bootstrap_over_groups_equals_scipy_on_group_indices():
    pairs = random_pairs(45, 1, n_groups=9)
    df = evaluate_pck(
        pairs, alphas=(0.1,), n_boot=300, seed=3, by_category=False, bootstrap_unit="group"
    )
    ok = np.array([pair_correct(p, "target_bbox", (0.1,))[0].sum() for p in pairs])
    n = np.array([len(p.gt) for p in pairs])
    group = np.array([p.group for p in pairs])

    def pooled(idx, axis=-1):  # idx: resampled group ids (..., 9); pool all their pairs
        counts = (idx[..., None] == np.arange(9)).sum(axis=-2)  # (..., 9)
        per_group_ok = np.bincount(group, weights=ok, minlength=9)
        per_group_n = np.bincount(group, weights=n, minlength=9)
        return (counts @ per_group_ok) / (counts @ per_group_n)

    ref = scipy.stats.bootstrap(
        (np.arange(9),), pooled, n_resamples=300, method="percentile", rng=np.random.default_rng(3)
    ).confidence_interval
    row = df.set_index("averaging").loc["per_point"]
    assert row.low == pytest.approx(ref.low, rel=1e-12)
    assert row.high == pytest.approx(ref.high, rel=1e-12)
    assert df.attrs["bootstrap_unit"] == "group"


def test_bootstrap_degenerate_cases():
    # one group holding every pair: every resample is the whole set -> the interval is a point
    lo, hi = bootstrap_interval([1, 0, 2], [2, 1, 4], groups=["a", "a", "a"], n_boot=50)
    assert lo == hi == pytest.approx((0.5 + 0 + 0.5) / 3)
    lo, hi = bootstrap_interval(
        [1, 0, 2], [2, 1, 4], averaging="per_point", groups=["a"] * 3, n_boot=50
    )
    assert lo == hi == pytest.approx(3 / 7)
    # all pairs perfect: every resample is 1
    assert bootstrap_interval([3, 1], [3, 1], n_boot=20) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_interval([], [], n_boot=20)))
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_interval([0], [0])


def test_non_finite_predictions_are_incorrect():
    assert correct_keypoints([[np.nan, 0], [0, 0]], [[0, 0], [0, 0]], 10).tolist() == [False, True]


def test_errors():
    with pytest.raises(ValueError, match="reading"):
        threshold_base("bbox", trg_bbox=[0, 0, 1, 1])
    with pytest.raises(ValueError, match="trg_bbox"):
        threshold_base("target_bbox")
    with pytest.raises(ValueError, match="x2 >= x1"):
        threshold_base("target_bbox", trg_bbox=[5, 0, 1, 1])
    with pytest.raises(ValueError, match="reserved"):
        evaluate_pck([PairKeypoints(pred=[[0, 0]], gt=[[0, 0]], category="all")], n_boot=0)
    with pytest.raises(ValueError, match="group"):
        evaluate_pck(random_pairs(3, 0), bootstrap_unit="group")
    with pytest.raises(ValueError, match="shapes"):
        pck([[0, 0]], [[0, 0], [1, 1]], 10)


def test_mappings_are_accepted():
    pairs = [{"pred": [[0, 0]], "gt": [[3, 4]], "category": "x", "trg_size": (10, 40)}]
    df = evaluate_pck(pairs, readings=("target_image",), alphas=(0.1, 0.15), n_boot=0)
    # base 40: 5 px > 4 px at alpha 0.1, <= 6 px at alpha 0.15
    assert df[df.category == "all"].set_index(["alpha", "averaging"]).pck.to_dict() == {
        (0.1, "per_image"): 0.0,
        (0.1, "per_point"): 0.0,
        (0.15, "per_image"): 1.0,
        (0.15, "per_point"): 1.0,
    }


def test_paper_table():
    table = paper_readings()
    assert len(table) == len(PAPER_READINGS)
    assert set(table.reading) <= set(READINGS)
    dift = table[table.paper.str.startswith("DIFT")].iloc[0]
    assert (dift.reading, dift.comparison, dift.averaging) == ("target_bbox", "<=", "per_image")
    hedlin = table[(table.paper == "Hedlin et al. 2023") & table.dataset.str.contains("SPair")]
    assert hedlin.reading.tolist() == ["source_bbox_512"]
    assert set(table[table.comparison == "<"].paper) == {
        "SD-DINO (Zhang et al. 2023)",
        "GeoAware-SC (Zhang et al. 2024)",
    }
