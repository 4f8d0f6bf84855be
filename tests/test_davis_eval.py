"""DAVIS 2017 J&F re-implementation: hand-counted cases (counts in the comments, not computed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from difflens.correspondence.davis_eval import (
    GLOBAL_COLUMNS,
    PER_SEQUENCE_COLUMNS,
    Statistics,
    bound_pixels,
    boundary_map,
    boundary_precision_recall,
    db_statistics,
    evaluate,
    evaluate_sequence,
    f_measure,
    j_measure,
    read_results,
    write_csvs,
    write_results,
)


def grid(*rows: str) -> np.ndarray:
    """A mask or label map drawn as text: '.' is 0, '#' is 1, a digit is that label."""
    table = {".": 0, "#": 1}
    return np.array([[table[c] if c in table else int(c) for c in r] for r in rows])


# The 2x2 square of the 6x6 examples (rows 2-3, cols 2-3).
SQUARE = grid(
    "......",
    "......",
    "..##..",
    "..##..",
    "......",
    "......",
)
# The same square two columns to the right (rows 2-3, cols 4-5): it touches the last column.
SQUARE_RIGHT = grid(
    "......",
    "......",
    "....##",
    "....##",
    "......",
    "......",
)
EMPTY = np.zeros((6, 6), dtype=int)


# --- J -------------------------------------------------------------------------------------------


def test_j_hand_counted():
    pred = grid(
        "##..",
        "#...",
        "....",
        "....",
    )
    gt = grid(
        "##..",
        "....",
        ".#..",
        ".#..",
    )
    # pred: (0,0) (0,1) (1,0) = 3 px; gt: (0,0) (0,1) (2,1) (3,1) = 4 px.
    # intersection (0,0) (0,1) = 2; union 3 + 4 - 2 = 5 -> J = 2/5.
    assert j_measure(pred, gt) == pytest.approx(0.4)
    assert isinstance(j_measure(pred, gt), float)


def test_j_empty_conventions_and_frames():
    full = np.ones((4, 4), dtype=bool)
    empty = np.zeros((4, 4), dtype=bool)
    # Frame 0: both empty -> union 0 -> J = 1.  Frame 1: only the prediction empty -> 0/16 = 0.
    # Frame 2: only the ground truth empty -> 0/16 = 0.  Frame 3: both full -> 16/16 = 1.
    pred = np.stack([empty, empty, full, full])
    gt = np.stack([empty, full, empty, full])
    j = j_measure(pred, gt)
    assert j.shape == (4,) and j.dtype == np.float64
    np.testing.assert_array_equal(j, [1.0, 0.0, 0.0, 1.0])


def test_j_rejects_bad_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        j_measure(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(T, H, W\)"):
        j_measure(np.zeros(4), np.zeros(4))


# --- boundary map (_seg2bmap rule) -----------------------------------------------------------------


def test_boundary_map_interior_square():
    # A pixel is boundary if it differs from its right, lower or lower-right neighbour:
    # row 1: (1,1) lower-right (2,2)=1; (1,2) lower (2,2)=1; (1,3) lower (2,3)=1.
    # row 2: (2,1) right (2,2)=1; (2,2) all three neighbours are 1 -> not; (2,3) right (2,4)=0.
    # row 3: (3,1) right (3,2)=1; (3,2) lower (4,2)=0; (3,3) right/lower 0.
    # Everything else has equal neighbours -> 8 pixels, a ring shifted up-left.
    expected = grid(
        "......",
        ".###..",
        ".#.#..",
        ".###..",
        "......",
        "......",
    ).astype(bool)
    np.testing.assert_array_equal(boundary_map(SQUARE), expected)
    assert boundary_map(SQUARE).sum() == 8


def test_boundary_map_last_row_and_column():
    seg = grid(
        ".....#",
        ".....#",
        ".....#",
        "......",
        "......",
        "...###",
    )
    # Interior (rows 0-4, cols 0-4), right / lower / lower-right:
    #   (0,4) (1,4) (2,4): right neighbour (r,5) = 1.  (3,4): (3,5) (4,4) (4,5) all 0 -> not.
    #   (4,2): lower-right (5,3)=1; (4,3): lower (5,3)=1; (4,4): lower (5,4)=1.
    # Last column (x=5), lower neighbour only: (2,5)=1 vs (3,5)=0 -> B; (4,5)=0 vs (5,5)=1 -> B;
    #   (0,5) (1,5) equal their lower neighbours -> not (the image border is no boundary).
    # Last row (y=5), right neighbour only: (5,2)=0 vs (5,3)=1 -> B; (5,3) (5,4) -> not.
    # Bottom-right (5,5): never.  -> 9 pixels.
    expected = grid(
        "....#.",
        "....#.",
        "....##",
        "......",
        "..####",
        "..#...",
    ).astype(bool)
    np.testing.assert_array_equal(boundary_map(seg), expected)


def test_boundary_map_full_frame_is_empty_and_frames_are_independent():
    full = np.ones((6, 6), dtype=bool)
    # A full frame differs from none of its neighbours and the border is never compared.
    stack = boundary_map(np.stack([full, SQUARE]))
    assert stack.shape == (2, 6, 6)
    assert stack[0].sum() == 0
    assert stack[1].sum() == 8


# --- F ---------------------------------------------------------------------------------------------


def test_bound_pixels():
    # 854x480: sqrt(480^2 + 854^2) = sqrt(959716) = 979.65..; x 0.008 = 7.84 -> ceil 8.
    assert bound_pixels((480, 854)) == 8
    # 6x6: diagonal sqrt(72) = 8.485..; x 0.1 = 0.85 -> 1; x 0.2 = 1.70 -> 2.
    assert bound_pixels((6, 6), 0.1) == 1
    assert bound_pixels((6, 6), 0.2) == 2
    # x 0.05 = 0.42 -> ceil 1 (not rounded to 0).
    assert bound_pixels((6, 6), 0.05) == 1
    # >= 1 is a number of pixels, used as is.
    assert bound_pixels((480, 854), 3) == 3
    with pytest.raises(ValueError, match="whole number"):
        bound_pixels((6, 6), 2.5)
    with pytest.raises(ValueError, match=">= 0"):
        bound_pixels((6, 6), -0.1)


def test_f_hand_counted_6x6():
    # B_P (SQUARE, see above) = (1,1) (1,2) (1,3) (2,1) (2,3) (3,1) (3,2) (3,3): 8 px.
    # B_G (SQUARE_RIGHT): (1,3) lower-right (2,4)=1; (1,4) lower (2,4)=1; (2,3) right (2,4)=1;
    #   (3,3) right (3,4)=1; (3,4) lower (4,4)=0; last column: (1,5)=0 vs (2,5)=1 -> B,
    #   (2,5)=1 vs (3,5)=1 -> not, (3,5)=1 vs (4,5)=0 -> B.  -> 7 px:
    #   (1,3) (1,4) (1,5) (2,3) (3,3) (3,4) (3,5).
    # r = 1 (disk(1) = the pixel and its 4 neighbours):
    #   precision: (1,1) no; (1,2) has (1,3); (1,3) itself; (2,1) no; (2,3) itself; (3,1) no;
    #   (3,2) has (3,3); (3,3) itself -> 5/8.
    #   recall: (1,3) itself; (1,4) has (1,3); (1,5) no; (2,3) itself; (3,3) itself;
    #   (3,4) has (3,3); (3,5) no -> 5/7.
    #   F = 2 (5/8)(5/7) / (5/8 + 5/7) = (50/56) / (75/56) = 2/3.
    precision, recall = boundary_precision_recall(SQUARE, SQUARE_RIGHT, bound_th=1)
    assert precision == pytest.approx(5 / 8)
    assert recall == pytest.approx(5 / 7)
    assert f_measure(SQUARE, SQUARE_RIGHT, bound_th=1) == pytest.approx(2 / 3)
    # r = 2 (disk(2) adds offsets (0,+-2) (+-2,0) (+-1,+-1)): the unmatched (1,1) (2,1) (3,1)
    # are 2 columns from (1,3) (2,3) (3,3), and (1,5) (3,5) 2 columns from (1,3) (3,3) -> F = 1.
    assert f_measure(SQUARE, SQUARE_RIGHT, bound_th=2) == pytest.approx(1.0)
    # Fractions of the 6x6 diagonal: 0.1 -> r = 1, 0.2 -> r = 2, 0.05 -> r = 1 (test_bound_pixels).
    assert f_measure(SQUARE, SQUARE_RIGHT, bound_th=0.1) == pytest.approx(2 / 3)
    assert f_measure(SQUARE, SQUARE_RIGHT, bound_th=0.2) == pytest.approx(1.0)
    assert f_measure(SQUARE, SQUARE_RIGHT, bound_th=0.05) == pytest.approx(2 / 3)
    # Symmetric in F, swapped in precision / recall.
    assert boundary_precision_recall(SQUARE_RIGHT, SQUARE, bound_th=1) == pytest.approx(
        (5 / 7, 5 / 8)
    )


def test_f_diagonal_is_outside_disk_1():
    # One-pixel masks: (2,2) has boundary (1,1) (1,2) (2,1) (2,2) -- (1,1) by its lower-right,
    # (1,2) by its lower, (2,1) by its right, (2,2) itself by its right/lower.  (3,3) likewise
    # (2,2) (2,3) (3,2) (3,3).  Shared pixel: (2,2).  Matching within r = 1 (no diagonals):
    # pred (1,1): nearest gt (2,2) is diagonal -> no; (1,2): (2,2) below -> yes; (2,1) -> yes;
    # (2,2) -> yes.  P = 3/4, and by symmetry R = 3/4 -> F = 3/4.
    a = np.zeros((6, 6), dtype=bool)
    b = np.zeros((6, 6), dtype=bool)
    a[2, 2] = True
    b[3, 3] = True
    assert boundary_precision_recall(a, b, bound_th=1) == pytest.approx((0.75, 0.75))
    assert f_measure(a, b, bound_th=1) == pytest.approx(0.75)


def test_f_empty_conventions():
    full = np.ones((6, 6), dtype=bool)
    # both boundaries empty -> P = R = 1 -> F = 1
    assert boundary_precision_recall(EMPTY, EMPTY, bound_th=1) == (1.0, 1.0)
    assert f_measure(EMPTY, EMPTY, bound_th=1) == 1.0
    # only the prediction empty -> P = 1, R = 0 -> F = 0
    assert boundary_precision_recall(EMPTY, SQUARE, bound_th=1) == (1.0, 0.0)
    assert f_measure(EMPTY, SQUARE, bound_th=1) == 0.0
    # only the ground truth empty -> P = 0, R = 1 -> F = 0
    assert boundary_precision_recall(SQUARE, EMPTY, bound_th=1) == (0.0, 1.0)
    assert f_measure(SQUARE, EMPTY, bound_th=1) == 0.0
    # A full frame has an empty BOUNDARY: full vs full -> F = 1; full vs square -> P=1, R=0.
    assert f_measure(full, full, bound_th=1) == 1.0
    assert boundary_precision_recall(full, SQUARE, bound_th=1) == (1.0, 0.0)
    # Vectorised over frames: same values, one per frame.
    f = f_measure(np.stack([EMPTY, EMPTY, SQUARE]), np.stack([EMPTY, SQUARE, EMPTY]), bound_th=1)
    assert f.shape == (3,)
    np.testing.assert_array_equal(f, [1.0, 0.0, 0.0])


def test_f_matches_skimage_disk_dilation():
    # Independent reference for the tolerance step: dilate each boundary with
    # skimage.morphology.disk(r) (the toolkit's kernel) using scipy's binary dilation.
    disk = pytest.importorskip("skimage.morphology").disk
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for trial in range(30):
        h, w = rng.integers(5, 60, size=2)
        pred = ndimage.binary_opening(rng.random((h, w)) < 0.5)
        gt = ndimage.binary_closing(rng.random((h, w)) < 0.4)
        for bound_th in (0.008, 0.1, 1, 3):
            r = bound_pixels((h, w), bound_th)
            bp, bg = boundary_map(pred), boundary_map(gt)
            if bp.sum() == 0 or bg.sum() == 0:
                continue
            footprint = disk(r).astype(bool)
            precision = (bp & ndimage.binary_dilation(bg, footprint)).sum() / bp.sum()
            recall = (bg & ndimage.binary_dilation(bp, footprint)).sum() / bg.sum()
            got = boundary_precision_recall(pred, gt, bound_th)
            assert got == pytest.approx((precision, recall), abs=1e-12), (trial, bound_th)


# --- statistics -------------------------------------------------------------------------------------


def test_db_statistics_nine_values():
    v = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    # Mean = 5.4 / 9 = 0.6.  Recall: 1, .9, .8, .7, .6 are > 0.5 (0.5 is not) -> 5/9.
    # ids = round(linspace(1, 9, 5)) - 1 = [1,3,5,7,9] - 1 = [0,2,4,6,8];
    # bin 0 = v[0:3] = (1, .9, .8) mean .9; bin 3 = v[6:9] = (.4, .3, .2) mean .3 -> Decay .6.
    stats = db_statistics(v)
    assert isinstance(stats, Statistics)
    assert stats == pytest.approx((0.6, 5 / 9, 0.6))


def test_db_statistics_nan_and_long_sequence():
    # NaN: Mean ignores it (0.5); Recall counts it as a miss (NaN > 0.5 is False) -> 1/3.
    # N = 3: ids = round([1, 1.5, 2, 2.5, 3] + 1e-10) - 1 = [0, 1, 1, 2, 2];
    # bin 0 = v[0:2] = (nan, 1) -> 1; bin 3 = v[2:3] = (0,) -> 0; Decay 1.
    assert db_statistics([np.nan, 1.0, 0.0]) == pytest.approx((0.5, 1 / 3, 1.0))
    # N = 300 (the toolkit's uint8 edges wrap here): linspace(1, 300, 5) =
    # [1, 75.75, 150.5, 225.25, 300] -> round -> [1, 76, 151, 225, 300] -> ids [0, 75, 150, 224, 299].
    # bin 0 = v[0:76] (all 1), bin 3 = v[224:300] (all 0) -> Decay 1; Mean = Recall = 76/300.
    v = np.zeros(300)
    v[:76] = 1.0
    assert db_statistics(v) == pytest.approx((76 / 300, 76 / 300, 1.0))
    with pytest.raises(ValueError, match="non-empty"):
        db_statistics([])


# --- one sequence -----------------------------------------------------------------------------------


def test_evaluate_sequence_nine_frames_decay_bins():
    # 9 frames; frames 0 and 8 are not scored, so 7 values.  GT: object 1 = SQUARE in every
    # frame.  Prediction per scored frame: exact (J = F = 1) or empty (J = F = 0):
    #   frame:  1  2  3  4  5  6  7
    #   value:  1  1  0  1  0  0  1
    # N = 7: linspace(1, 7, 5) = [1, 2.5, 4, 5.5, 7]; + 1e-10 rounds halves up -> [1, 3, 4, 6, 7]
    # -> ids [0, 2, 3, 5, 6]; bins v[0:3] = (1,1,0), v[2:4] = (0,1), v[3:6] = (1,0,0), v[5:7] = (0,1).
    # Decay = 2/3 - 1/2 = 1/6 (round-half-even would give ids [0,1,3,5,6] and Decay 1 - 1/2).
    # Mean = 4/7, Recall = 4/7.
    gt = np.stack([SQUARE] * 9)
    pred = np.zeros_like(gt)
    for t, value in zip(range(1, 8), [1, 1, 0, 1, 0, 0, 1]):
        if value:
            pred[t] = SQUARE
    pred[0] = 5  # frames 0 and 8 are neither read nor scored, even with an unknown label
    pred[8] = 5
    scores = evaluate_sequence(pred, gt, sequence="nine", bound_th=1)
    assert scores.j.shape == (1, 7) and scores.f.shape == (1, 7)
    np.testing.assert_array_equal(scores.j[0], [1, 1, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(scores.f[0], [1, 1, 0, 1, 0, 0, 1])
    table = scores.statistics()
    assert list(table["Sequence"]) == ["nine_1"]
    row = table.iloc[0]
    assert row["J-Mean"] == pytest.approx(4 / 7)
    assert row["J-Recall"] == pytest.approx(4 / 7)
    assert row["J-Decay"] == pytest.approx(1 / 6)
    assert row["F-Decay"] == pytest.approx(1 / 6)


def test_evaluate_sequence_objects_void_and_padding():
    # GT first frame: objects 1 and 2, plus void (255) which is not an object.
    first = np.array([[1, 1, 2, 255]])
    # Label 3 appears after the first frame: not an object of the sequence, never scored.
    mid = np.array([[1, 255, 2, 3]])
    gt = np.stack([first, mid, mid])
    # The prediction covers the void pixel (0,1) with object 1 and never predicts object 2.
    pred = np.stack([first % 255, [[1, 1, 0, 0]], [[0, 0, 0, 0]]])
    scores = evaluate_sequence(pred, gt, sequence="void", bound_th=1)
    # 2 objects (the max of the first frame with void set to 0), 1 scored frame (frame 1).
    assert scores.j.shape == (2, 1)
    # Object 1: pred (0,0) (0,1), GT (0,0) (void is background, not ignored) -> J = 1/2.
    # Object 2: missing from the prediction (zero-padded) -> J = 0/1 = 0.
    np.testing.assert_array_equal(scores.j[:, 0], [0.5, 0.0])
    assert scores.object_names == ["void_1", "void_2"]


def test_evaluate_sequence_too_many_objects_names_sequence():
    gt = np.stack([SQUARE] * 3)
    pred = np.stack([SQUARE, SQUARE * 2, SQUARE])  # label 2 in frame 1, the GT has 1 object
    with pytest.raises(ValueError, match=r"'bear'.*label 2.*frame index 1"):
        evaluate_sequence(pred, gt, sequence="bear")
    # A prediction holding the void label counts 255 objects.
    pred = np.stack([SQUARE, SQUARE * 255, SQUARE])
    with pytest.raises(ValueError, match="label 255"):
        evaluate_sequence(pred, gt, sequence="bear")


def test_evaluate_sequence_rejects_short_and_mismatched():
    with pytest.raises(ValueError, match="at least 3"):
        evaluate_sequence(np.stack([SQUARE] * 2), np.stack([SQUARE] * 2), sequence="s")
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate_sequence(np.stack([SQUARE] * 3), np.stack([SQUARE] * 4), sequence="s")
    with pytest.raises(ValueError, match="integers"):
        evaluate_sequence(np.stack([SQUARE] * 3) * 0.5, np.stack([SQUARE] * 3), sequence="s")


# --- many sequences, weighting, CSV ---------------------------------------------------------------


def _two_sequences() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """'a': 1 object, predicted exactly.  'b': 3 objects: object 1 predicted one column to the
    left, object 2 two columns to the right, object 3 not predicted.  3 frames each (1 scored
    frame), 8x10 frames."""
    gt_a = np.zeros((8, 10), dtype=np.uint8)
    gt_a[2:4, 2:4] = 1
    gt_b = np.zeros((8, 10), dtype=np.uint8)
    gt_b[2:4, 3:5] = 1
    gt_b[5:7, 2:4] = 2
    gt_b[5:7, 6:8] = 3
    pred_b = np.zeros((8, 10), dtype=np.uint8)
    pred_b[2:4, 2:4] = 1
    pred_b[5:7, 4:6] = 2
    results = {"a": np.stack([gt_a] * 3), "b": np.stack([pred_b] * 3)}
    ground_truth = {"a": np.stack([gt_a] * 3), "b": np.stack([gt_b] * 3)}
    return results, ground_truth


def test_evaluate_object_weighted_vs_sequence_weighted():
    results, ground_truth = _two_sequences()
    result = evaluate(results, ground_truth, bound_th=1)
    # Per object (J, F):
    #   a_1: exact -> (1, 1).
    #   b_1: 2x2 squares one column apart: intersection 2, union 6 -> J = 1/3; boundaries
    #        (rings at cols 1-3 and 2-4, rows 1-3) are all within 1 px of each other -> F = 1.
    #   b_2: GT rows 5-6 cols 2-3, prediction cols 4-5: no overlap -> J = 0.  Boundary rings
    #        (rows 4-6) at cols 1-3 (GT) and cols 3-5 (prediction); within r = 1 of the GT ring:
    #        (4,3) (5,3) (6,3) themselves, (4,4) (6,4) next to (4,3) (6,3); not (4,5) (5,5) (6,5)
    #        -> P = 5/8, and by symmetry R = 5/8 -> F = 5/8.
    #   b_3: empty prediction -> (0, 0).
    assert list(result.per_object["Sequence"]) == ["a_1", "b_1", "b_2", "b_3"]
    np.testing.assert_allclose(result.per_object["J-Mean"], [1, 1 / 3, 0, 0])
    np.testing.assert_allclose(result.per_object["F-Mean"], [1, 1, 5 / 8, 0])
    g = result.global_metrics
    assert list(g.index) == list(GLOBAL_COLUMNS)
    # Object-weighted: J = (1 + 1/3 + 0 + 0)/4 = 1/3; F = (1 + 1 + 5/8 + 0)/4 = 21/32;
    # J&F = (1/3 + 21/32)/2 = (32/96 + 63/96)/2 = 95/192.
    # Recall: J > .5 for a_1 only -> 1/4; F > .5 for a_1, b_1, b_2 -> 3/4.
    # One scored frame: every bin is that frame -> Decay 0.
    assert g["J-Mean"] == pytest.approx(1 / 3)
    assert g["F-Mean"] == pytest.approx(21 / 32)
    assert g["J&F-Mean"] == pytest.approx(95 / 192)
    assert g["J-Recall"] == pytest.approx(1 / 4)
    assert g["F-Recall"] == pytest.approx(3 / 4)
    assert g["J-Decay"] == 0.0 and g["F-Decay"] == 0.0
    # Sequence-weighted (not the toolkit's): 'b' averages its objects first:
    # J_b = (1/3 + 0 + 0)/3 = 1/9, F_b = (1 + 5/8 + 0)/3 = 13/24; then over the two sequences
    # J = (1 + 1/9)/2 = 5/9, F = (1 + 13/24)/2 = 37/48, J&F = (80/144 + 111/144)/2 = 191/288.
    s = result.sequence_weighted()
    assert s["J-Mean"] == pytest.approx(5 / 9)
    assert s["F-Mean"] == pytest.approx(37 / 48)
    assert s["J&F-Mean"] == pytest.approx(191 / 288)


def test_write_csvs_columns_and_format(tmp_path):
    results, ground_truth = _two_sequences()
    result = evaluate(results, ground_truth, bound_th=1)
    global_path, per_sequence_path = write_csvs(tmp_path, result)
    assert global_path.name == "global_results-val.csv"
    assert per_sequence_path.name == "per-sequence_results-val.csv"
    # Values from test_evaluate_object_weighted_vs_sequence_weighted, %.3f: 95/192 = 0.49479..,
    # 21/32 = 0.65625 exactly (a binary tie: printf-style formatting rounds it to even, 0.656).
    assert global_path.read_text() == (
        "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"
        "0.495,0.333,0.250,0.000,0.656,0.750,0.000\n"
    )
    assert per_sequence_path.read_text() == (
        "Sequence,J-Mean,F-Mean\na_1,1.000,1.000\nb_1,0.333,1.000\nb_2,0.000,0.625\nb_3,0.000,0.000\n"
    )
    assert list(pd.read_csv(per_sequence_path).columns) == list(PER_SEQUENCE_COLUMNS)
    train_global, _ = write_csvs(tmp_path, result, set_name="train")
    assert train_global.name == "global_results-train.csv"


# --- PNG layout -------------------------------------------------------------------------------------


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, size=(3, 5, 7)).astype(np.uint8)
    labels[1, 0, 0] = 4
    palette = np.array(
        [[0, 0, 0], [200, 10, 10], [10, 200, 10], [10, 10, 200], [250, 250, 0]], dtype=np.uint8
    )
    names = ["00000", "00001", "00002"]
    folder = write_results(tmp_path, "dogs", names, labels, palette)
    assert folder == tmp_path / "dogs"
    assert sorted(p.name for p in folder.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    with Image.open(folder / "00001.png") as image:
        assert image.mode == "P"  # an indexed PNG, as the toolkit reads them
    back = read_results(tmp_path, "dogs")
    assert back.frame_names == names
    np.testing.assert_array_equal(back.label_maps, labels)
    np.testing.assert_array_equal(back.palette, palette)


def test_write_results_rejects_labels_without_colour(tmp_path):
    # Pillow writes a 5-colour palette as a 3-bit PNG: label 9 would silently come back as 1.
    palette = np.zeros((5, 3), dtype=np.uint8)
    labels = np.full((1, 2, 2), 9, dtype=np.uint8)
    with pytest.raises(ValueError, match="no palette entry"):
        write_results(tmp_path, "s", ["00000"], labels, palette)
    with pytest.raises(ValueError, match="0..255|fit"):
        write_results(tmp_path, "s", ["00000"], labels.astype(int) + 300, np.zeros((256, 3)))
    with pytest.raises(ValueError, match="2 frame names for 1"):
        write_results(tmp_path, "s", ["a", "b"], labels, np.zeros((256, 3), dtype=np.uint8))


def test_write_results_default_palette(tmp_path):
    # The default palette is difflens.data.vocabulary.voc_palette(256), imported on use.
    labels = np.array([[[0, 1, 2], [3, 4, 255]]], dtype=np.uint8)
    write_results(tmp_path, "s", ["00000"], labels)
    palette = read_results(tmp_path, "s").palette
    assert palette.shape == (256, 3)
    # PASCAL VOC colour map by its bit rule: index bits (b2 b1 b0) fill the top bits of (B, G, R):
    # 1 -> (128,0,0), 2 -> (0,128,0), 3 -> (128,128,0), 4 -> (0,0,128);
    # 255 = 0b11111111: R, G get bits 7,6,5 -> 224; B gets bits 7,6 -> 192.
    np.testing.assert_array_equal(
        palette[[0, 1, 2, 3, 4, 255]],
        [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [224, 224, 192]],
    )


def test_evaluate_from_folders_and_missing_frames(tmp_path):
    results, ground_truth = _two_sequences()
    gt_root, res_root = tmp_path / "Annotations", tmp_path / "results"
    palette = np.zeros((256, 3), dtype=np.uint8)
    names = ["00000", "00001", "00002"]
    for seq in ("a", "b"):
        write_results(gt_root, seq, names, ground_truth[seq], palette)
        # Only the scored frame is written: the first and the last are never read.
        write_results(res_root, seq, names[1:2], results[seq][1:2], palette)
    from_folders = evaluate(res_root, gt_root, bound_th=1)
    from_arrays = evaluate(results, ground_truth, bound_th=1)
    pd.testing.assert_series_equal(from_folders.global_metrics, from_arrays.global_metrics)
    # A missing scored frame: an error naming the sequence and the frame ...
    (res_root / "a" / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"'a'.*'00001'"):
        evaluate(res_root, gt_root, bound_th=1)
    # ... or, on request, an empty prediction: a_1 then scores J = F = 0 (GT present), so the
    # object-weighted J-Mean is (0 + 1/3 + 0 + 0)/4 = 1/12 and F-Mean (0 + 1 + 5/8 + 0)/4 = 13/32.
    empty = evaluate(res_root, gt_root, bound_th=1, missing="empty")
    assert empty.global_metrics["J-Mean"] == pytest.approx(1 / 12)
    assert empty.global_metrics["F-Mean"] == pytest.approx(13 / 32)
    # A missing sequence folder is always an error.
    write_results(gt_root, "c", names, ground_truth["a"], palette)
    with pytest.raises(FileNotFoundError, match="'c': no results folder"):
        evaluate(res_root, gt_root, sequences=["a", "c"], missing="empty")
