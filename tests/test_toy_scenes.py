"""Toy world still scenes: geometry by hand, occlusion, boxes, dense targets, seeds, skips."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as MplPath
from scipy.spatial import cKDTree

from difflens.data.toy import (
    SPLITS,
    TOY_CLASSES,
    ToyConfig,
    ToyWorld,
    absolute_seed,
    dense_targets,
    locate_seed,
    make_toy_example,
    make_toy_scene,
)
from difflens.data.toy.raster import fill_polygon, points_in_polygons
from difflens.data.toy.render import ToyBackground, ToyLayout, ToyObject, render_scene
from difflens.data.toy.shapes import PART_NAMES, TEMPLATES, class_id, part_ids, part_palette

PLAIN = ToyBackground((0, 0, 0), (0, 0, 0), 0.0, (), 0.0, 0)
SIZE = 81  # centre fraction 0.5 lands on pixel 40; scale 20 px per canonical unit


def obj(name, cx=0.5, cy=0.5, px_per_unit=20.0, angle=0.0, aspect=1.0, iid=1, colour=(200, 0, 0)):
    """An object whose canonical unit is ``px_per_unit`` pixels at SIZE (by its area)."""
    s = px_per_unit / SIZE
    return ToyObject(
        class_name=name,
        cx=cx,
        cy=cy,
        area=s * s * TEMPLATES[name].area,
        aspect=aspect,
        angle=angle,
        colour=colour,
        colour2=colour,
        texture="solid",
        texture_period=0.5,
        texture_angle=0.0,
        texture_seed=0,
        instance_id=iid,
    )


def test_a_house_at_rotation_zero_lands_on_hand_computed_pixels():
    scene = render_scene(ToyLayout((obj("house"),), PLAIN), SIZE, "hand")
    kp = scene.keypoints[0]
    # pixel = 40 + 20 * canonical coordinate
    expected = {
        "apex": (40, 24),
        "left eave": (24, 41),
        "right eave": (56, 41),
        "left base": (24, 60),
        "right base": (56, 60),
        "chimney top": (48.5, 24),
    }
    assert kp.names == list(expected)
    np.testing.assert_allclose(kp.xy, np.array(list(expected.values())), atol=1e-4)
    assert kp.visible.all()
    mask = scene.masks[0]
    inside = [(25, 40), (59, 25), (59, 55), (42, 25), (42, 55), (25, 48)]  # (row, col)
    outside = [(23, 40), (61, 24), (59, 23), (59, 57), (39, 24), (23, 48), (30, 53)]
    assert all(mask[r, c] for r, c in inside)
    assert not any(mask[r, c] for r, c in outside)
    # pixel centres on the left and top edges count, on the right and bottom edges not
    np.testing.assert_array_equal(scene.boxes[0], [24, 24, 55, 59])


def test_rotation_turns_clockwise_on_screen_and_aspect_stretches_x():
    turned = render_scene(ToyLayout((obj("house", angle=90.0),), PLAIN), SIZE, "turned")
    apex = turned.keypoints[0].xy[0]
    np.testing.assert_allclose(apex, [40 + 16, 40], atol=1e-4)  # apex (0, -0.8) now points right
    wide = render_scene(ToyLayout((obj("house", aspect=4.0),), PLAIN), SIZE, "wide")
    left_base = wide.keypoints[0].xy[3]
    np.testing.assert_allclose(left_base, [40 - 0.8 * 40, 40 + 1.0 * 10], atol=1e-4)


def test_occlusion_hides_keypoints_under_the_front_object():
    # an ell in front; its foot (canonical y 0.4..1, x -0.75..0.85) covers pixels x 25..57,
    # y 22..34 when its centre is at pixel (40, 14): over the house's apex and chimney
    house = obj("house", iid=1)
    ell = obj("ell", cy=14.5 / SIZE, iid=2, colour=(0, 200, 0))
    scene = render_scene(ToyLayout((house, ell), PLAIN), SIZE, "occluded")
    back, front = scene.keypoints
    assert dict(zip(back.names, back.visible)) == {
        "apex": False,
        "left eave": True,
        "right eave": True,
        "left base": True,
        "right base": True,
        "chimney top": False,
    }
    # the ell's own stem top (y = 14 - 20 = -6) lies outside the image
    assert not front.visible[front.names.index("top left")]
    assert front.visible[front.names.index("toe top")]
    assert not (scene.masks[0] & scene.masks[1]).any()
    assert scene.masks[1][24, 40] and not scene.masks[0][24, 40]
    assert scene.meta["visible_fraction"][1] < 1.0 and scene.meta["visible_fraction"][2] == 1.0
    assert scene.meta["truncated"] == {1: False, 2: True}


def test_rasteriser_agrees_with_matplotlib_away_from_edges():
    rng = np.random.default_rng(0)
    for _ in range(30):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radii = rng.uniform(5, 25, 9)
        xy = np.stack([30 + radii * np.cos(angles), 28 + radii * np.sin(angles)], axis=1)
        row0, col0, part = fill_polygon(xy, 60, 60)
        mask = np.zeros((60, 60), bool)
        mask[row0 : row0 + part.shape[0], col0 : col0 + part.shape[1]] = part
        yy, xx = np.mgrid[0:60, 0:60]
        centres = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(float)
        reference = MplPath(xy).contains_points(centres).reshape(60, 60)
        # pixels within 1e-3 px of an edge may go either way
        far = ~(
            MplPath(xy).contains_points(centres, radius=2e-3).reshape(60, 60)
            ^ MplPath(xy).contains_points(centres, radius=-2e-3).reshape(60, 60)
        )
        assert np.array_equal(mask[far], reference[far])
        assert np.array_equal(points_in_polygons(centres, [xy]).reshape(60, 60)[far], mask[far])


def test_boxes_are_the_visible_mask_extents():
    for scene in ToyWorld(n_images=30, size=96, seed=100):
        assert scene.boxes.shape == (scene.n_objects, 4)
        for mask, box in zip(scene.masks, scene.boxes):
            rows, cols = np.nonzero(mask)
            assert box.tolist() == [cols.min(), rows.min(), cols.max(), rows.max()]


def test_part_map_is_the_nearest_keypoint_inside_each_mask():
    for seed in range(12):
        for size in (48, 100):
            scene, targets = make_toy_example(seed, size=size, split="validation")
            assert targets.class_map.shape == targets.part_map.shape == (size, size)
            union = scene.masks.any(axis=0)
            assert np.array_equal(targets.class_map > 0, union)
            assert np.array_equal(targets.part_map > 0, union)
            for mask, name, kp in zip(scene.masks, scene.class_names, scene.keypoints):
                assert (targets.class_map[mask] == TOY_CLASSES.index(name) + 1).all()
                rows, cols = np.nonzero(mask)
                pixels = np.stack([cols, rows], axis=1).astype(float)
                d, nearest = cKDTree(kp.xy.astype(np.float64)).query(pixels, k=2)
                clear = d[:, 1] - d[:, 0] > 1e-3  # leave out exact ties
                expected = part_ids(name)[nearest[clear, 0]]
                assert np.array_equal(targets.part_map[rows, cols][clear], expected)


def test_dense_targets_of_a_layout_match_its_scene_at_another_size():
    scene = make_toy_scene(5, size=128)
    targets = dense_targets(scene.meta["layout"], 64)
    small = make_toy_scene(5, size=64)
    assert np.array_equal(targets.class_map > 0, small.masks.any(axis=0))


def test_part_ids_names_and_palette_are_consistent():
    assert len(TOY_CLASSES) >= 6
    assert len(PART_NAMES) == sum(len(t.keypoint_names) for t in TEMPLATES.values())
    for name, t in TEMPLATES.items():
        assert 3 <= len(t.keypoint_names) <= 8
        ids = part_ids(name)
        assert [PART_NAMES[i - 1] for i in ids] == [f"{name}/{k}" for k in t.keypoint_names]
        assert class_id(name) == TOY_CLASSES.index(name) + 1
    assert part_palette().shape == (len(PART_NAMES) + 1, 3)
    with pytest.raises(ValueError, match="unknown toy class"):
        class_id("circle")


def test_same_layout_at_two_sizes_is_the_same_scene():
    a, b = make_toy_scene(9, size=64), make_toy_scene(9, size=128)
    assert a.class_names == b.class_names and a.instance_ids == b.instance_ids
    for ka, kb in zip(a.keypoints, b.keypoints):
        np.testing.assert_allclose((ka.xy + 0.5) * 2 - 0.5, kb.xy, atol=1e-3)


def test_deterministic_from_seed_and_split():
    a, b = make_toy_scene(7, size=64), make_toy_scene(7, size=64)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert a.class_names == b.class_names and a.image_id == "toy_000007"
    assert not np.array_equal(make_toy_scene(8, size=64).image, a.image)
    other = make_toy_scene(7, size=64, split="validation")
    assert other.image_id == "toy_validation_000007" and not np.array_equal(other.image, a.image)
    assert other.meta["seed"] == 500_007 and a.meta["seed"] == 7


def test_scenes_are_well_formed():
    counts = []
    for scene in ToyWorld(n_images=40, size=64):
        assert scene.masks.sum(0).max() <= 1
        assert all(m.any() for m in scene.masks)
        assert set(scene.class_names) <= set(TOY_CLASSES)
        assert len(set(scene.instance_ids)) == scene.n_objects
        assert len(scene.keypoints) == scene.n_objects
        for iid in scene.instance_ids:
            assert 0.3 <= scene.meta["visible_fraction"][iid] <= 1.0
        counts.append(scene.n_objects)
    assert 1 <= min(counts) and max(counts) <= 4


def test_visible_keypoints_touch_their_mask():
    # a keypoint lies on the outline; at a sharp tip the last covered pixel centre can be
    # up to ~2 px short of the vertex
    distances = []
    for scene in ToyWorld(n_images=40, size=128, seed=200):
        for mask, kp in zip(scene.masks, scene.keypoints):
            rows, cols = np.nonzero(mask)
            for x, y in kp.xy[kp.visible]:
                distances.append(np.hypot(cols - x, rows - y).min())
    distances = np.array(distances)
    assert len(distances) > 100
    assert distances.max() <= 2.5 and np.mean(distances <= 1.5) > 0.9


def test_colour_texture_and_size_do_not_predict_class():
    colours, areas, classes = [], [], []
    for scene in ToyWorld(n_images=200, size=48, split="validation"):
        for obj in scene.meta["layout"].objects:
            colours.append(obj.colour)
            areas.append(obj.area)
            classes.append(obj.class_name)
    colours, areas, classes = np.array(colours, float), np.log(areas), np.array(classes)
    class_means = np.array([colours[classes == c].mean(0) for c in TOY_CLASSES])
    assert class_means.std(0).mean() < 0.2 * colours.std(0).mean()
    area_means = np.array([areas[classes == c].mean() for c in TOY_CLASSES])
    assert area_means.std() < 0.2 * areas.std()


def test_split_ranges_are_disjoint_and_checked():
    ranges = sorted(SPLITS.values(), key=lambda r: r.start)
    assert ranges[0].start == 0
    for a, b in zip(ranges, ranges[1:]):
        assert a.stop <= b.start
    assert SPLITS["validation"].start == 500_000 and SPLITS["train"].start == 1_000_000
    assert absolute_seed("train", 3) == 1_000_003
    assert locate_seed(1_000_003) == ("train", 3) and locate_seed(900_000) == (
        "validation",
        400_000,
    )
    with pytest.raises(ValueError, match="leave the 'test' split"):
        make_toy_scene(500_000)
    with pytest.raises(ValueError, match="leave the 'test' split"):
        ToyWorld(n_images=2, seed=499_999)
    with pytest.raises(ValueError, match="unknown toy split"):
        ToyWorld(split="val")
    with pytest.raises(ValueError, match="lies in no split"):
        locate_seed(-1)
    from difflens.models import toy

    assert toy.TRAIN_SEED_START == SPLITS["train"].start
    assert toy.VALIDATION_SEED_START == SPLITS["validation"].start


def test_hidden_objects_and_empty_masks_are_counted_not_raised():
    crowded = ToyWorld(n_images=20, size=64, config=ToyConfig(n_objects=(8, 8)))
    scenes = list(crowded)
    dropped = sum(len(s.meta["dropped"]) for s in scenes)
    assert dropped > 0 and crowded.skipped.counts()["hidden object"] == dropped
    assert all(8 - len(s.meta["dropped"]) == s.n_objects + len(s.meta["skipped"]) for s in scenes)
    tiny = ToyWorld(n_images=30, size=6)
    list(tiny)  # at 6 px some objects cover no pixel centre: skipped, not raised
    assert tiny.skipped.counts()["empty mask"] > 0
