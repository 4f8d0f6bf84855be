"""Toy keypoint pairs: geometric ground truth, semantic correspondence, flags, redraws."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import ProjectiveTransform, warp

from difflens.data.keypoints import check_pair
from difflens.data.toy import TOY_CLASSES, ToyPairs, geometric_pair, semantic_pair
from difflens.data.toy.shapes import TEMPLATES


@pytest.fixture(scope="module")
def geometric():
    return list(ToyPairs(n_pairs=16, kind="geometric", size=96))


@pytest.fixture(scope="module")
def semantic():
    return list(ToyPairs(n_pairs=24, kind="semantic", size=96))


def _side(pair, side):
    scene = pair.meta[f"{side}_scene"]
    k = scene.instance_ids.index(pair.meta[f"{side}_instance"])
    return scene, k


def test_geometric_targets_are_the_homography_of_the_sources(geometric):
    for pair in geometric:
        h = pair.meta["homography"]
        reference = ProjectiveTransform(matrix=h)(pair.source_points.astype(np.float64))
        np.testing.assert_allclose(pair.target_points, reference, atol=1e-3)
        t = pair.meta["transform"]
        assert np.allclose(h, t.homography(96)) and -30 <= t.angle <= 30


def test_geometric_target_image_is_the_warped_source(geometric):
    # inside the pair's object, away from its edges, the target is the source seen through h
    for pair in geometric[:6]:
        h = ProjectiveTransform(matrix=pair.meta["homography"])
        warped = warp(pair.source_image, h.inverse, preserve_range=True, order=1)
        scene, k = _side(pair, "target")
        mask = scene.masks[k]
        core = (
            mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        )
        inner = np.zeros_like(mask)
        inner[1:-1, 1:-1] = core
        if inner.sum() < 20:
            continue
        diff = np.abs(warped[inner].astype(float) - pair.target_image[inner].astype(float))
        assert np.median(diff) < 12


def test_semantic_pairs_share_category_and_keypoints_visible_in_both(semantic):
    for pair in semantic:
        check_pair(pair)
        assert len(pair) >= 3
        names = TEMPLATES[pair.category].keypoint_names
        positions = [names.index(k) for k in pair.keypoint_ids]
        assert positions == sorted(positions)  # the template's order
        for side, points, box in (
            ("source", pair.source_points, pair.source_box),
            ("target", pair.target_points, pair.target_box),
        ):
            scene, k = _side(pair, side)
            assert scene.class_names[k] == pair.category
            kp = scene.keypoints[k]
            index = [kp.names.index(n) for n in pair.keypoint_ids]
            assert kp.visible[index].all()
            np.testing.assert_allclose(points, kp.xy[index])
            rows, cols = np.nonzero(scene.masks[k])
            assert box.tolist() == [cols.min(), rows.min(), cols.max(), rows.max()]
        source_obj = _object(pair, "source")
        target_obj = _object(pair, "target")
        assert source_obj.texture != target_obj.texture
        assert not np.array_equal(pair.source_image, pair.target_image)


def _object(pair, side):
    layout = pair.meta[f"{side}_scene"].meta["layout"]
    iid = pair.meta[f"{side}_instance"]
    return next(o for o in layout.objects if o.instance_id == iid)


def test_flags_follow_the_documented_thresholds(semantic, geometric):
    for pair in semantic:
        a, b = pair.meta["rotation"]
        d = abs(a - b)
        assert pair.flags["viewpoint_variation"] == (0 if d < 15 else 1 if d < 40 else 2)
        ratio = np.sqrt(max(pair.meta["area"]) / min(pair.meta["area"]))
        assert pair.flags["scale_variation"] == (0 if ratio < 1.25 else 1 if ratio < 1.6 else 2)
    for pair in semantic + geometric:
        assert pair.flags["mirror"] == 0
        src, k = _side(pair, "source")
        trg, j = _side(pair, "target")
        occluded = (
            src.meta["visible_fraction"][src.instance_ids[k]] < 1,
            trg.meta["visible_fraction"][trg.instance_ids[j]] < 1,
        )
        assert pair.flags["occlusion"] == occluded[0] + 2 * occluded[1]
        truncated = (
            src.meta["truncated"][src.instance_ids[k]],
            trg.meta["truncated"][trg.instance_ids[j]],
        )
        assert pair.flags["truncation"] == truncated[0] + 2 * truncated[1]
    for pair in geometric:
        angle = abs(pair.meta["transform"].angle)
        assert pair.flags["viewpoint_variation"] == (0 if angle < 15 else 1 if angle < 40 else 2)


def test_dataset_is_deterministic_balanced_and_indexable():
    pairs = ToyPairs(n_pairs=len(TOY_CLASSES), kind="semantic", size=48, seed=3)
    assert len(pairs) == len(TOY_CLASSES)
    first = list(pairs)
    assert sorted(p.category for p in first) == sorted(TOY_CLASSES)
    again = pairs[2]
    assert again.pair_id == first[2].pair_id == "toypair_semantic_000005"
    assert np.array_equal(again.source_image, first[2].source_image)
    assert np.array_equal(again.target_points, first[2].target_points)
    other = semantic_pair(5, size=48, split="validation")
    assert other.pair_id == "toypair_semantic_validation_000005"
    assert not np.array_equal(other.source_image, again.source_image)
    with pytest.raises(IndexError):
        pairs[len(TOY_CLASSES)]


def test_redraws_are_counted_and_the_fallback_never_raises():
    pairs = ToyPairs(n_pairs=24, kind="semantic", size=48)
    redraws = sum(len(p.meta["redraws"]) for p in pairs)
    assert redraws > 0 and len(pairs.skipped) == redraws
    assert set(pairs.skipped.counts()) <= {"too few keypoints", "hidden object", "empty mask"}
    for make in (semantic_pair, geometric_pair):
        pair = make(4, size=48, max_attempts=0)
        assert pair.meta["fallback"] and len(pair) >= 3
        check_pair(pair)
        demanding = make(6, size=48, min_keypoints=9, max_attempts=2)
        assert demanding.meta["fallback"] and len(demanding.meta["redraws"]) == 2


def test_seeds_outside_the_split_are_refused():
    with pytest.raises(ValueError, match="leave the 'test' split"):
        ToyPairs(n_pairs=20, seed=499_990)
    with pytest.raises(ValueError, match="unknown toy pair kind"):
        ToyPairs(kind="mirror")


def test_check_pair_names_boxes_without_extent_or_finite_corners(semantic):
    from dataclasses import replace

    from difflens.core.errors import DatasetError

    pair = semantic[0]
    for box, message in (
        (np.array([5.0, 5.0, 5.0, 5.0]), "has no extent"),
        (np.array([5.0, np.nan, 9.0, 9.0]), "is inverted"),
        (np.array([9.0, 5.0, 5.0, 9.0]), "is inverted"),
    ):
        with pytest.raises(DatasetError, match=message):
            check_pair(replace(pair, target_box=box))
    check_pair(replace(pair, target_box=np.array([5.0, 5.0, 5.0, 9.0])))  # a line: side 4
