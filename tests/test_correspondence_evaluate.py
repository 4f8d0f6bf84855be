"""The evaluation glue against a hand-run of the same steps, bad pairs named and counted, the
pixel-threshold reading, and the layer x timestep search against single evaluations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from difflens.correspondence.evaluate import evaluate_pairs, layer_timestep_search, open_pairs
from difflens.correspondence.pck import evaluate_pck, threshold_base
from difflens.data.keypoints import KeypointPair
from difflens.data.toy import ToyPairs
from difflens.features.extractor import FeatureExtractor


@pytest.fixture(scope="module")
def extractor(tiny_backbone):
    return FeatureExtractor(tiny_backbone, image_size=64, prompt="a photo of a {class}")


@pytest.fixture(scope="module")
def pairs():
    return list(ToyPairs(4, kind="semantic", split="validation", size=96))


def _hand_predictions(extractor, pair, layer, timestep):
    """Features by a direct extractor call, explicit bilinear upsampling, cosine, argmax."""
    prompt = f"a photo of a {pair.category}"
    maps = [
        extractor.features([im], [layer], timestep, prompts=[prompt])[layer][0]
        for im in (pair.source_image, pair.target_image)
    ]
    up = [
        F.interpolate(m[None], size=size, mode="bilinear", align_corners=False)[0]
        for m, size in zip(maps, (pair.source_size, pair.target_size))
    ]
    trg = F.normalize(up[1].reshape(up[1].shape[0], -1), dim=0)  # (C, H W)
    preds = []
    for x, y in np.round(pair.source_points).astype(int):
        q = F.normalize(up[0][:, y, x], dim=0)
        i = int(torch.argmax(q @ trg))
        preds.append((i % pair.target_size[1], i // pair.target_size[1]))
    return np.array(preds, dtype=np.float64)


def test_evaluation_equals_a_hand_run(extractor, pairs):
    run = evaluate_pairs(
        pairs, extractor, layer="up1", timestep=50, alphas=(0.1,), n_boot=0, progress=False
    )
    assert run.counts["pairs_matched"] == len(pairs) and not run.skipped.records
    hits = total = 0
    per_pair = []
    for k, pair in enumerate(pairs):
        hand = _hand_predictions(extractor, pair, "up1", 50)
        ours = run.predictions[run.predictions.pair_id == pair.pair_id]
        np.testing.assert_array_equal(ours[["pred_x", "pred_y"]].to_numpy(), hand)
        np.testing.assert_array_equal(run.pairs[k].pred, hand)
        # PCK by hand: distance <= 0.1 * longer side of the target box
        x1, y1, x2, y2 = pair.target_box
        dist = np.sqrt(((hand - pair.target_points) ** 2).sum(1))
        ok = dist <= 0.1 * max(x2 - x1, y2 - y1)
        hits, total = hits + ok.sum(), total + len(ok)
        per_pair.append(ok.mean())
        np.testing.assert_allclose(ours.error_px.to_numpy(), dist, rtol=1e-6)
    assert run.pck(0.1, averaging="per_point") == pytest.approx(hits / total)
    assert run.pck(0.1, averaging="per_image") == pytest.approx(np.mean(per_pair))
    assert run.info["layer"] == "up1" and run.info["timestep"] == 50
    assert run.summary(0.1)["all"]["pck"] == pytest.approx(np.mean(per_pair))


def test_chunks_and_memory_reuse_do_not_change_the_result(extractor, pairs):
    # the same pair twice: its images are reused from memory the second time
    twice = [pairs[0], pairs[1], pairs[0]]
    a = evaluate_pairs(twice, extractor, layer="up2", n_boot=0, chunk_pairs=1, progress=False)
    b = evaluate_pairs(twice, extractor, layer="up2", n_boot=0, chunk_pairs=3, progress=False)
    np.testing.assert_array_equal(
        a.predictions[["pred_x", "pred_y"]].to_numpy(),
        b.predictions[["pred_x", "pred_y"]].to_numpy(),
    )
    assert a.counts["images_in_memory"] == 2  # pair 0's two images, third chunk
    assert a.counts["images_done"] == 4


def _with(pair: KeypointPair, **changes) -> KeypointPair:
    fields = {**pair.__dict__, **changes}
    return KeypointPair(**fields)


def test_bad_pairs_are_named_and_counted(extractor, pairs):
    outside = _with(pairs[0], pair_id="outside", source_points=pairs[0].source_points + 500)
    grey = _with(pairs[1], pair_id="grey", target_image=pairs[1].target_image[..., 0])
    uneven = _with(pairs[2], pair_id="uneven", keypoint_ids=pairs[2].keypoint_ids[:-1])
    run = evaluate_pairs(
        [outside, pairs[3], grey, uneven], extractor, layer="up1", n_boot=0, progress=False
    )
    assert run.counts["pairs_matched"] == 1 and run.counts["pairs_skipped"] == 3
    reasons = dict(run.skipped.records)
    assert reasons["pair outside"].startswith("keypoint outside image")
    assert reasons["pair grey"].startswith("bad pair")  # not (H, W, 3) uint8
    assert reasons["pair uneven"].startswith("bad pair")
    assert list(run.predictions.pair_id.unique()) == [pairs[3].pair_id]
    assert run.table.n_pairs.iloc[0] == 1


def test_failed_features_are_named(extractor, pairs):
    # a NaN image cannot come from uint8: make the features fail through a non-finite map
    class Broken(FeatureExtractor):
        def features_for_settings(self, latents, *args, **kwargs):
            out = super().features_for_settings(latents, *args, **kwargs)
            for maps in out:
                for layer in maps:
                    maps[layer][0] = float("nan")
            return out

    broken = Broken(extractor.backbone, image_size=64)
    run = evaluate_pairs(pairs[:1], broken, layer="up1", n_boot=0, progress=False)
    assert run.counts["pairs_skipped"] == 1
    ((item, reason),) = run.skipped.records
    assert reason.startswith("failed: features of the source image")


def test_pixel_threshold_reading():
    assert threshold_base("pixels") == 1.0
    pairs = [{"pred": [[0, 0], [2, 0], [0, 4.5]], "gt": [[0, 0], [0, 0], [0, 0]], "category": "a"}]
    table = evaluate_pck(pairs, readings=("pixels",), alphas=(1, 3, 5), n_boot=0)
    got = table[(table.averaging == "per_point") & (table.category == "all")].set_index("alpha").pck
    # distances 0, 2, 4.5: within 1 px one of three, within 3 px two, within 5 px all
    assert got[1.0] == pytest.approx(1 / 3) and got[3.0] == pytest.approx(2 / 3)
    assert got[5.0] == pytest.approx(1.0)


def test_search_equals_single_evaluations(extractor, pairs):
    search = layer_timestep_search(pairs, extractor, ["up1", "up2.res1"], (0, 200), progress=False)
    assert list(zip(search.layer, search.timestep)) == [
        ("up1", 0),
        ("up1", 200),
        ("up2.res1", 0),
        ("up2.res1", 200),
    ]
    for row in search.itertuples():
        single = evaluate_pairs(
            pairs, extractor, layer=row.layer, timestep=row.timestep, n_boot=0, progress=False
        )
        assert row.pck == pytest.approx(single.pck(0.1))
        assert row.n_points == sum(len(p) for p in pairs)


def test_a_layer_is_needed(extractor, pairs):
    with pytest.raises(ValueError, match="layer"):
        evaluate_pairs(pairs, extractor, progress=False)


def test_open_pairs_by_name():
    toy = open_pairs("toypairs", 3, split="validation", size=64)
    assert len(toy) == 3 and next(iter(toy)).meta["split"] == "validation"
    geometric = open_pairs("toypairs-geometric", 2)
    assert "homography" in next(iter(geometric)).meta
    assert len(open_pairs("warped-photos", size=64)) == 32
    with pytest.raises(ValueError):
        open_pairs("no-such-dataset", root=".")
