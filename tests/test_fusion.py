"""Hand-set fusion against hand-built concatenations, scikit-learn's PCA, separate forward
passes and hand-computed bootstrap inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from difflens.correspondence.fusion import (
    FUSION_PRESETS,
    FusionEntry,
    FusionPreset,
    MapsRun,
    entry_maps,
    fuse_maps,
    fused_features,
    get_fusion,
    joint_pca,
    pair_fusion,
    paired_difference,
)
from difflens.correspondence.pck import PairKeypoints
from difflens.data.toy import ToyPairs
from difflens.features.extractor import FeatureExtractor


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small maps run fastest on one thread (and a shared machine's cores stay free)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_two_channel_pixel_by_hand():
    # (3, 4) has norm 5: (0.6, 0.8); weight 2 -> (1.2, 1.6); the second map (0, -2) -> (0, -1)
    a = torch.tensor([3.0, 4.0]).view(2, 1, 1)
    b = torch.tensor([0.0, -2.0]).view(2, 1, 1)
    out = fuse_maps([a, b], [2.0, 1.0])
    torch.testing.assert_close(out.flatten(), torch.tensor([1.2, 1.6, 0.0, -1.0]))


@pytest.mark.parametrize("resize", ["bilinear", "bicubic"])
def test_fusion_equals_a_hand_built_concatenation(resize):
    g = torch.Generator().manual_seed(0)
    maps = [
        torch.randn(2, 5, 4, 4, generator=g),
        torch.randn(2, 3, 8, 8, generator=g),
        torch.randn(2, 7, 16, 16, generator=g),
    ]
    weights = [0.5, 1.0, 2.0]
    out = fuse_maps(maps, weights, size=(12, 12), resize=resize)
    parts = []
    for m, w in zip(maps, weights):
        unit = m / m.pow(2).sum(1, keepdim=True).sqrt()  # per-pixel L2 normalisation by hand
        parts.append(w * F.interpolate(unit, size=(12, 12), mode=resize, align_corners=False))
    torch.testing.assert_close(out, torch.cat(parts, 1))
    assert fuse_maps(maps).shape == (2, 15, 16, 16)  # default grid: the largest map


def test_the_fused_cosine_weighs_each_entry_by_its_squared_weight():
    g = torch.Generator().manual_seed(1)
    a1, a2 = torch.randn(6, 1, 1, generator=g), torch.randn(6, 1, 1, generator=g)
    b1, b2 = torch.randn(3, 1, 1, generator=g), torch.randn(3, 1, 1, generator=g)
    w = (1.0, 3.0)
    x, y = fuse_maps([a1, b1], w).flatten(), fuse_maps([a2, b2], w).flatten()
    cos = F.cosine_similarity(x, y, dim=0)
    ca = F.cosine_similarity(a1.flatten(), a2.flatten(), dim=0)
    cb = F.cosine_similarity(b1.flatten(), b2.flatten(), dim=0)
    torch.testing.assert_close(cos, (1 * ca + 9 * cb) / 10)


def test_joint_pca_matches_scikit_learn_on_the_stacked_pixels():
    from sklearn.decomposition import PCA

    g = torch.Generator().manual_seed(2)
    src = torch.randn(12, 5, 6, generator=g)
    trg = torch.randn(12, 4, 4, generator=g) + 0.5
    a, b = joint_pca(src, trg, 4)
    pixels = torch.cat([src.reshape(12, -1), trg.reshape(12, -1)], 1).T.double().numpy()
    ref = PCA(n_components=4, svd_solver="full").fit_transform(pixels)
    ours = torch.cat([a.reshape(4, -1), b.reshape(4, -1)], 1).T.double().numpy()
    for k in range(4):  # components agree up to sign
        sign = np.sign(ours[:, k] @ ref[:, k])
        np.testing.assert_allclose(ours[:, k], sign * ref[:, k], atol=1e-5)
    assert a.shape == (4, 5, 6) and b.shape == (4, 4, 4)


def test_presets_name_their_choices():
    study = get_fusion("multilayer_study")
    assert [e.layer for e in study.entries] == ["up1", "up2"]
    assert len({e.timestep for e in study.entries}) == 2
    assert len({e.prompt for e in study.entries}) == 2
    assert study.resize == "bicubic" and "not printed" in study.note
    assert [e.layer for e in get_fusion("dift_single").entries] == ["up1"]
    assert len(get_fusion("all_decoder").entries) == 12
    with pytest.raises(KeyError, match="known"):
        get_fusion("nope")
    for preset in FUSION_PRESETS.values():
        assert preset.source and preset.note


@pytest.fixture(scope="module")
def extractor():
    from difflens.models.backbone import load_backbone

    return FeatureExtractor(load_backbone("toy"), image_size=64)


def test_the_shared_forward_equals_separate_passes(extractor):
    pair = ToyPairs(1, split="validation", size=64)[0]
    images = [pair.source_image, pair.target_image]
    entries = [
        FusionEntry("up1", 200, "{class}", weight=2.0),
        FusionEntry("up1.res2.conv2", 200, "{class}"),  # same row as the first
        FusionEntry("up2", 50, "", ensemble=2),
        FusionEntry("up3.res0", 0, ""),
    ]
    calls = []
    unet = extractor.backbone.unet
    handle = unet.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        maps = entry_maps(images, extractor, entries, categories=[pair.category] * 2)
    finally:
        handle.remove()
    # one U-Net batch; rows per image: (200, class), (50, draw 0), (50, draw 1), (0, "")
    assert calls == [2 * 4]
    for entry, got in zip(entries, maps):
        prompt = entry.prompt.replace("{class}", pair.category)
        ref = extractor.features(
            images, [entry.layer], entry.timestep, ensemble=entry.ensemble, prompts=[prompt] * 2
        )[entry.layer]
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    fused = fused_features(images, extractor, entries, categories=[pair.category] * 2, grid=32)
    torch.testing.assert_close(fused, fuse_maps(maps, [2.0, 1.0, 1.0, 1.0], 32))


def test_pair_fusion_with_per_entry_and_fused_pca():
    g = torch.Generator().manual_seed(3)
    src = [torch.randn(8, 4, 4, generator=g), torch.randn(6, 8, 8, generator=g)]
    trg = [torch.randn(8, 4, 4, generator=g), torch.randn(6, 8, 8, generator=g)]
    base = FusionPreset("p", "toy", 64, (FusionEntry("a"), FusionEntry("b")), grid=8)
    s, t = pair_fusion(src, trg, base.with_(pca_width=5, pca_mode="per_entry"))
    assert s.shape == (10, 8, 8) and t.shape == (10, 8, 8)
    ra, rb = joint_pca(src[0], trg[0], 5), joint_pca(src[1], trg[1], 5)
    torch.testing.assert_close(s, fuse_maps([ra[0], rb[0]], None, 8))
    s, t = pair_fusion(src, trg, base.with_(pca_width=3))
    ref = joint_pca(fuse_maps(src, None, 8), fuse_maps(trg, None, 8), 3)
    torch.testing.assert_close(s, ref[0])
    torch.testing.assert_close(t, ref[1])


def _run(name, correct_per_pair):
    records, ids = [], []
    for k, correct in enumerate(correct_per_pair):
        n = len(correct)
        gt = np.zeros((n, 2))
        pred = np.array([[0.0, 0.0] if c else [50.0, 0.0] for c in correct])
        records.append(
            PairKeypoints(pred=pred, gt=gt, trg_bbox=(0, 0, 100, 100), trg_size=(100, 100))
        )
        ids.append(f"p{k}")
    return MapsRun(name, None, records, ids)


def test_paired_difference_by_hand():
    # per-pair PCK: a = (1, 0.5, 1), b = (0.5, 0.5, 0): differences (0.5, 0, 1), mean 0.5
    a = _run("a", [[1, 1], [1, 0], [1, 1]])
    b = _run("b", [[1, 0], [0, 1], [0, 0]])
    out = paired_difference(a, b, n_boot=4000, seed=0)
    assert out["difference"] == pytest.approx(0.5)
    assert out["n_pairs"] == 3
    # every resample's mean lies in [0, 1]; all three equal values occur with prob 3 / 27
    assert 0 <= out["low"] <= out["difference"] <= out["high"] <= 1
    assert out["p_le_zero"] == pytest.approx(1 / 27, abs=0.015)
    assert math.isfinite(out["low"])
