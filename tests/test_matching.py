"""Exact keypoint matching against explicit upsampling, and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from difflens.correspondence import matching
from difflens.correspondence.matching import (
    cell_centres,
    cosine_map,
    match_keypoints,
    match_pairs,
    match_reference,
    source_positions,
)

# (C, hs, ws, Hs, Ws, ht, wt, Ht, Wt): non-square, odd ratios, a non-integer downscale, 1x1
CASES = [
    (1, 4, 5, 17, 23, 5, 3, 21, 13),
    (2, 6, 6, 50, 37, 7, 9, 29, 61),
    (7, 5, 8, 40, 40, 8, 5, 33, 19),
    (16, 9, 7, 9, 7, 6, 11, 6, 11),  # image size == map size
    (32, 12, 10, 31, 24, 10, 13, 7, 9),  # target image smaller than its map
    (64, 6, 9, 45, 71, 9, 6, 70, 44),
    (3, 1, 1, 5, 4, 1, 2, 3, 7),
]


def random_maps(case, seed):
    c, hs, ws, big_hs, big_ws, ht, wt, big_ht, big_wt = case
    g = torch.Generator().manual_seed(seed)
    fs = torch.randn(c, hs, ws, generator=g)
    ft = torch.randn(c, ht, wt, generator=g)
    inner = torch.stack(
        [
            torch.randint(0, big_ws, (12,), generator=g),
            torch.randint(0, big_hs, (12,), generator=g),
        ],
        1,
    )
    corners = torch.tensor(
        [[0, 0], [big_ws - 1, 0], [0, big_hs - 1], [big_ws - 1, big_hs - 1], [big_ws // 2, 0]]
    )
    return fs, ft, (big_hs, big_ws), (big_ht, big_wt), torch.cat([inner, corners])


def explicit_cosines(fs, ft, src_size, trg_size, kps, mode):
    """F.interpolate both maps (float64), normalise, cosine of every keypoint: (N, Ht, Wt)."""
    up_s = F.interpolate(fs[None].double(), size=src_size, mode=mode, align_corners=False)[0]
    up_t = F.interpolate(ft[None].double(), size=trg_size, mode=mode, align_corners=False)[0]
    q = F.normalize(up_s[:, kps[:, 1], kps[:, 0]].T, dim=1)  # (N, C)
    return torch.einsum("nc,chw->nhw", q, F.normalize(up_t, dim=0))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("case", CASES)
def test_cosine_map_equals_explicit_upsampling(case, mode):
    fs, ft, src_size, trg_size, kps = random_maps(case, 0)
    ref = explicit_cosines(fs, ft, src_size, trg_size, kps, mode)
    for k in (0, 5, len(kps) - 1):
        ours = cosine_map(fs, ft, src_size, trg_size, kps[k], upsample=mode)
        assert ours.shape == trg_size
        torch.testing.assert_close(ours, ref[k], rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [1, 2])
def test_exact_argmax_equals_explicit_argmax(case, mode, seed):
    """Same index as F.interpolate + normalise + cosine + first argmax, keypoint by keypoint."""
    fs, ft, src_size, trg_size, kps = random_maps(case, seed)
    ours = match_keypoints(fs, ft, src_size, trg_size, kps, upsample=mode)
    cos = explicit_cosines(fs, ft, src_size, trg_size, kps, mode).flatten(1)
    # first index within 1e-10 of the max: exact ties (repeated clamped border rows, C = 1)
    # are 1e-16 apart in float64, genuine differences far more than 1e-10
    first = (cos >= cos.max(dim=1, keepdim=True).values - 1e-10).to(torch.uint8).argmax(1)
    wt = trg_size[1]
    expected = torch.stack([first % wt, first // wt], 1).float()
    torch.testing.assert_close(ours.pred, expected, rtol=0, atol=0)
    torch.testing.assert_close(ours.score, cos.gather(1, first[:, None])[:, 0], rtol=0, atol=1e-12)
    ref = match_reference(fs, ft, src_size, trg_size, kps, upsample=mode, dtype=torch.float64)
    ref_tol = match_reference(
        fs, ft, src_size, trg_size, kps, upsample=mode, dtype=torch.float64, tie_tol=1e-10
    )
    torch.testing.assert_close(ref_tol.pred, expected, rtol=0, atol=0)
    # plain argmax (tie_tol=0) orders mathematically tied pixels by rounding noise; where it
    # picks another pixel, that pixel's cosine must equal the maximum to rounding
    picked = cos.gather(1, (ref.pred[:, 1] * wt + ref.pred[:, 0]).long()[:, None])[:, 0]
    torch.testing.assert_close(picked, ours.score, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_dift_float32_reference_agrees_up_to_near_ties(mode):
    """DIFT's own float32 computation: the same pixels, or pixels whose cosines tie to 1e-5."""
    n_diff = n_all = 0
    for seed in range(3):
        fs, ft, src_size, trg_size, kps = random_maps((48, 8, 10, 60, 75, 9, 8, 70, 64), seed)
        ours = match_keypoints(fs, ft, src_size, trg_size, kps, upsample=mode)
        dift = match_reference(fs, ft, src_size, trg_size, kps, upsample=mode)  # float32, argmax
        cos = explicit_cosines(fs, ft, src_size, trg_size, kps, mode).flatten(1)
        idx = (dift.pred[:, 1] * trg_size[1] + dift.pred[:, 0]).long()
        gap = ours.score - cos.gather(1, idx[:, None])[:, 0]
        assert (gap >= -1e-12).all() and (gap < 1e-5).all()
        n_diff += int((dift.pred != ours.pred).any(1).sum())
        n_all += len(kps)
    assert n_diff <= n_all // 10


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "none"])
def test_chunks_and_bands_do_not_change_the_result(mode):
    fs, ft, src_size, trg_size, kps = random_maps(CASES[2], 3)
    whole = match_keypoints(fs, ft, src_size, trg_size, kps, upsample=mode)
    for chunk in (1, 7, 50, 333):
        part = match_keypoints(fs, ft, src_size, trg_size, kps, upsample=mode, chunk=chunk)
        torch.testing.assert_close(part.pred, whole.pred, rtol=0, atol=0)
        torch.testing.assert_close(part.score, whole.score, rtol=0, atol=1e-12)


def test_wide_map_gram_path_is_the_same(monkeypatch):
    fs, ft, src_size, trg_size, kps = random_maps(CASES[5], 4)
    narrow = cosine_map(fs, ft, src_size, trg_size, kps[3], upsample="bicubic")
    monkeypatch.setattr(matching, "_BMM_MAX_W", 0)
    wide = cosine_map(fs, ft, src_size, trg_size, kps[3], upsample="bicubic")
    torch.testing.assert_close(wide, narrow, rtol=0, atol=1e-13)


def test_cancelling_neighbours_are_recomputed():
    """Opposite neighbouring cells: ||f|| -> 0 between them, where the Gram form cancels."""
    v = torch.tensor([0.6, -0.8, 0.0])
    ft = torch.stack([v, -v, v * 1.000001, -v * 3], 1)[:, None, :]  # (3, 1, 4)
    fs = torch.tensor([1.0, 0.2, 0.3])[:, None, None]
    trg_size = (3, 401)
    ours = cosine_map(fs, ft, (1, 1), trg_size, (0, 0))
    ref = explicit_cosines(fs, ft, (1, 1), trg_size, torch.tensor([[0, 0]]), "bilinear")[0]
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-9)
    assert ours.abs().max() <= 1 + 1e-12


def test_first_index_wins_ties_across_bands_and_groups():
    # constant map: every target pixel ties at cosine 1 -> the first pixel
    fs = torch.ones(4, 3, 3)
    ft = torch.full((4, 5, 6), 2.0)
    kps = torch.tensor([[0, 0], [8, 8], [4, 2]])
    for chunk in (1, 10, 1 << 22):
        res = match_keypoints(fs, ft, (9, 9), (20, 30), kps, chunk=chunk)
        assert res.pred.tolist() == [[0.0, 0.0]] * 3
    ref = match_reference(fs, ft, (9, 9), (20, 30), kps)
    assert ref.pred.tolist() == [[0.0, 0.0]] * 3
    # two identical cells; scale 1/3, so cell a is sampled exactly at pixel 3a + 1
    g = torch.Generator().manual_seed(0)
    ft = torch.randn(8, 5, 5, generator=g)
    ft[:, 1, 3] = ft[:, 4, 0] = torch.arange(8.0) - 3
    fs = ft[:, 4, 0][:, None, None].clone()
    for chunk in (1, 15, 1 << 22):
        res = match_keypoints(fs, ft, (1, 1), (15, 15), [[0, 0]], chunk=chunk)
        assert res.pred.tolist() == [[10.0, 4.0]]  # cell (1, 3), before cell (4, 0)
        torch.testing.assert_close(res.score, torch.ones(1, dtype=torch.float64))
    ref = match_reference(fs, ft, (1, 1), (15, 15), [[0, 0]], dtype=torch.float64, tie_tol=1e-10)
    assert ref.pred.tolist() == [[10.0, 4.0]]


def test_none_mode_by_hand():
    # source 2x2 cells on a 20x20 image (stride 10); keypoint (13, 4) lies in cell
    # row floor(4.5 * 2 / 20) = 0, col floor(13.5 * 2 / 20) = 1, whose vector is [1, 0]
    fs = torch.tensor([[[0.0, 1.0], [5.0, 5.0]], [[1.0, 0.0], [5.0, 5.0]]], dtype=torch.float64)
    # target 2x3 cells on a 10x30 image: cosines with [1, 0] are
    #   row 0: [0, 1/sqrt(2), -1],  row 1: [2/sqrt(4.01) = 0.99875, 0, 1]
    ft = torch.tensor(
        [[[0.0, 1.0, -1.0], [2.0, 0.0, 1.0]], [[1.0, 1.0, 0.0], [0.1, -1.0, 0.0]]],
        dtype=torch.float64,
    )
    res = match_keypoints(fs, ft, (20, 20), (10, 30), [[13, 4]], upsample="none")
    # best cell (1, 2), centre x = (2 + 0.5) * 30 / 3 - 0.5 = 24.5, y = (1 + 0.5) * 10 / 2 - 0.5 = 7
    assert res.pred.tolist() == [[24.5, 7.0]]
    assert res.query.tolist() == [[14.5, 4.5]]  # source cell (0, 1): x = 1.5 * 10 - 0.5
    torch.testing.assert_close(res.score, torch.ones(1, dtype=torch.float64))
    cmap = cosine_map(fs, ft, (20, 20), (10, 30), (13, 4), upsample="none")
    expected = torch.tensor(
        [[0, 1 / math.sqrt(2), -1], [2 / math.sqrt(4.01), 0, 1]], dtype=torch.float64
    )
    torch.testing.assert_close(cmap, expected, rtol=0, atol=1e-15)
    ref = match_reference(fs, ft, (20, 20), (10, 30), [[13, 4]], upsample="none")
    assert ref.pred.tolist() == [[24.5, 7.0]]


def test_source_cells_and_centres():
    rows, cols = source_positions(
        [[0, 0], [9, 9], [10, 10], [19, 19], [13, 4]], (20, 20), (2, 2), upsample="none"
    )
    assert rows.tolist() == [0, 0, 1, 1, 0]
    assert cols.tolist() == [0, 0, 1, 1, 1]
    # stride 16: pixel 15 is in cell 0, pixel 16 in cell 1 (GeoAware's int(y * h / H) agrees)
    rows, _ = source_positions([[0, 15], [0, 16]], (768, 768), (48, 48), upsample="none")
    assert rows.tolist() == [0, 1]
    xy = cell_centres(torch.tensor([0, 47]), torch.tensor([0, 1]), (768, 768), (48, 48))
    assert xy.tolist() == [[7.5, 7.5], [23.5, 759.5]]


def test_soft_argmax_by_hand():
    # one source cell [1, 0]; target cells (1 x 3) with cosines 1, 0.6, 0 on a 1 x 30 image
    fs = torch.tensor([1.0, 0.0])[:, None, None]
    ft = torch.tensor([[1.0, 0.6, 0.0], [0.0, 0.8, 1.0]])[:, None, :]
    res = match_keypoints(
        fs,
        ft,
        (1, 1),
        (1, 30),
        [[0, 0]],
        upsample="none",
        soft_argmax_window=1,
        soft_argmax_temperature=0.5,
    )
    # window around cell 0: cells 0 and 1 (cell -1 is outside), weights softmax([2, 1.2])
    p1 = math.exp(1.2) / (math.exp(2.0) + math.exp(1.2))
    x = (p1 + 0.5) * 30 / 3 - 0.5
    assert res.pred[0, 0].item() == pytest.approx(x, abs=1e-5)
    assert res.pred[0, 1].item() == pytest.approx(0.0, abs=1e-6)
    # r = 0 is the hard argmax
    hard = match_keypoints(fs, ft, (1, 1), (1, 30), [[0, 0]], upsample="none", soft_argmax_window=0)
    assert hard.pred.tolist() == [[4.5, 0.0]]


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "none"])
def test_soft_argmax_and_mutual_equal_the_reference(mode):
    fs, ft, src_size, trg_size, kps = random_maps(CASES[1], 5)
    options = dict(upsample=mode, soft_argmax_window=3, soft_argmax_temperature=0.05, mutual=True)
    ours = match_keypoints(fs, ft, src_size, trg_size, kps, **options)
    ref = match_reference(
        fs, ft, src_size, trg_size, kps, dtype=torch.float64, tie_tol=1e-10, **options
    )
    torch.testing.assert_close(ours.pred, ref.pred, rtol=0, atol=1e-4)
    torch.testing.assert_close(ours.back, ref.back, rtol=0, atol=0)
    torch.testing.assert_close(ours.query, ref.query, rtol=0, atol=0)
    assert torch.equal(ours.valid, ref.valid)
    assert ours.valid.any()  # the random case has both outcomes
    assert not ours.valid.all()


def test_mutual_by_hand():
    # source cells A = [1, 0], B = [0.8, 0.6]; target cells X = [0.6, 0.8], Y = [-1, 0]
    fs = torch.tensor([[1.0, 0.8], [0.0, 0.6]])[:, None, :]
    ft = torch.tensor([[0.6, -1.0], [0.8, 0.0]])[:, None, :]
    # A -> X (0.6 > -1), X -> B (0.96 > 0.6): not mutual; B -> X -> B: mutual
    res = match_keypoints(
        fs, ft, (10, 20), (10, 20), [[2, 5], [15, 5]], upsample="none", mutual=True
    )
    assert res.valid.tolist() == [False, True]
    assert res.back.tolist() == [[14.5, 4.5], [14.5, 4.5]]  # both come back to B's centre
    assert res.pred.tolist() == [[4.5, 4.5], [4.5, 4.5]]
    # a radius of one cell (10 px) accepts A's back-match too
    wide = match_keypoints(
        fs, ft, (10, 20), (10, 20), [[2, 5]], upsample="none", mutual=True, mutual_radius=10
    )
    assert wide.valid.tolist() == [True]


def test_keypoint_rounding():
    fs, ft = torch.randn(3, 4, 4), torch.randn(3, 4, 4)
    kps = [[2.5, 3.5], [1.4, 0.6]]
    rows, cols = source_positions(kps, (8, 8), (4, 4))
    assert cols.tolist() == [2, 1] and rows.tolist() == [4, 1]  # half to even
    rows, cols = source_positions(kps, (8, 8), (4, 4), keypoint_rounding="floor")
    assert cols.tolist() == [2, 1] and rows.tolist() == [3, 0]
    with pytest.raises(ValueError, match="integer"):
        match_keypoints(fs, ft, (8, 8), (8, 8), kps, keypoint_rounding="strict")
    with pytest.raises(ValueError, match="outside"):
        match_keypoints(fs, ft, (8, 8), (8, 8), [[8, 0]])
    with pytest.raises(ValueError, match="outside"):
        match_keypoints(fs, ft, (8, 8), (8, 8), [[-1, 0]])  # no wrap-around as in DIFT
    assert match_keypoints(fs, ft, (8, 8), (8, 8), [[7.4, 0]]).query.tolist() == [[7.0, 0.0]]


def test_bad_inputs():
    fs, ft = torch.randn(3, 4, 4), torch.randn(3, 4, 4)
    with pytest.raises(ValueError, match="channel"):
        match_keypoints(fs, torch.randn(2, 4, 4), (8, 8), (8, 8), [[0, 0]])
    with pytest.raises(ValueError, match="upsample"):
        match_keypoints(fs, ft, (8, 8), (8, 8), [[0, 0]], upsample="nearest")
    with pytest.raises(ValueError, match="compute dtype"):
        match_keypoints(fs, ft, (8, 8), (8, 8), [[0, 0]], compute_dtype=torch.float16)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        match_keypoints(fs, ft, (8, 0), (8, 8), [[0, 0]])
    with pytest.raises(ValueError, match="temperature"):
        match_keypoints(
            fs, ft, (8, 8), (8, 8), [[0, 0]], soft_argmax_window=2, soft_argmax_temperature=0
        )
    with pytest.raises(TypeError):
        match_keypoints(np.zeros((3, 4, 4)), ft, (8, 8), (8, 8), [[0, 0]])
    nan_map = fs.clone()
    nan_map[1, 2, 3] = float("nan")
    for fn in (match_keypoints, match_reference, cosine_map):
        with pytest.raises(ValueError, match="src_feat holds 1 non-finite"):
            fn(nan_map, ft, (8, 8), (8, 8), [[0, 0]] if fn is not cosine_map else (0, 0))
        with pytest.raises(ValueError, match="trg_feat is all zeros"):
            fn(
                fs,
                torch.zeros_like(ft),
                (8, 8),
                (8, 8),
                [[0, 0]] if fn is not cosine_map else (0, 0),
            )


@pytest.mark.parametrize("mode", ["bilinear", "none"])
def test_no_keypoints(mode):
    fs, ft = torch.randn(3, 4, 4), torch.randn(3, 5, 5)
    for fn in (match_keypoints, match_reference):
        res = fn(fs, ft, (8, 8), (9, 9), torch.zeros(0, 2), upsample=mode, mutual=True)
        assert res.pred.shape == (0, 2) and res.valid.shape == (0,) and res.back.shape == (0, 2)


def test_dtypes_layouts_and_batches():
    fs, ft, src_size, trg_size, kps = random_maps(CASES[2], 6)
    base = match_keypoints(fs, ft, src_size, trg_size, kps)
    half = match_keypoints(fs.half(), ft.half(), src_size, trg_size, kps)
    cast = match_keypoints(fs.half().float(), ft.half().float(), src_size, trg_size, kps)
    torch.testing.assert_close(half.pred, cast.pred, rtol=0, atol=0)
    four_d = match_keypoints(fs[None], ft[None], src_size, trg_size, kps.numpy())
    torch.testing.assert_close(four_d.pred, base.pred, rtol=0, atol=0)
    f32 = match_keypoints(fs, ft, src_size, trg_size, kps, compute_dtype=torch.float32)
    assert f32.score.dtype == torch.float32
    assert (f32.pred == base.pred).all(1).float().mean() >= 0.9
    batch = match_pairs(
        torch.stack([fs, fs]), [ft, ft[:, :4]], [src_size] * 2, [trg_size, (8, 9)], [kps, kps]
    )
    torch.testing.assert_close(batch[0].pred, base.pred, rtol=0, atol=0)
    back = match_keypoints(fs, ft[:, :4], src_size, (8, 9), kps)
    torch.testing.assert_close(batch[1].pred, back.pred, rtol=0, atol=0)
    with pytest.raises(ValueError, match="same length"):
        match_pairs([fs], [ft, ft], [src_size], [trg_size], [kps])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "none"])
def test_cuda_equals_cpu(mode):
    fs, ft, src_size, trg_size, kps = random_maps(CASES[5], 7)
    cpu = match_keypoints(fs, ft, src_size, trg_size, kps, upsample=mode, mutual=True)
    gpu = match_keypoints(fs.cuda(), ft.cuda(), src_size, trg_size, kps, upsample=mode, mutual=True)
    assert gpu.pred.device.type == "cuda"
    torch.testing.assert_close(gpu.pred.cpu(), cpu.pred, rtol=0, atol=0)
    torch.testing.assert_close(gpu.score.cpu(), cpu.score, rtol=0, atol=1e-12)
    assert torch.equal(gpu.valid.cpu(), cpu.valid)


def test_keypoints_of_another_shape_are_named():
    fs, ft = torch.randn(3, 4, 4), torch.randn(3, 4, 4)
    with pytest.raises(ValueError, match=r"\(N, 2\) x/y, got shape \(1, 3\)"):
        match_keypoints(fs, ft, (8, 8), (8, 8), [[1, 2, 3]])
