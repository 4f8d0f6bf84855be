import numpy as np
import pytest

from difflens.data.keypoints import InstanceKeypoints
from difflens.data.scene import Scene
from difflens.data.transforms import (
    TRANSFORMS,
    apply,
    crop_pad,
    crop_resize,
    crop_shift,
    hflip,
    rotate,
    vflip,
)


def scene_with_boxes() -> Scene:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    masks = np.zeros((2, 40, 60), bool)
    masks[0, 10:30, 20:40] = True  # a 20 x 20 box, the largest object
    masks[1, 2:6, 50:58] = True
    return Scene(image, masks, ["cat", "dog"], [3, 7], "img", meta={"dataset": "t"})


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_matches_numpy(degrees):
    s = scene_with_boxes()
    r = rotate(s, degrees)
    k = degrees // 90
    assert np.array_equal(r.image, np.rot90(s.image, k))
    for a, b in zip(r.masks, s.masks):
        assert np.array_equal(a, np.rot90(b, k))
    assert r.instance_ids == s.instance_ids and r.source_image == s.source_image
    assert r.image_id == f"img@rot{degrees}" and r.instance_key(0) == s.instance_key(0)


@pytest.mark.parametrize("flip", [hflip, vflip])
def test_flip_twice_is_identity(flip):
    s = scene_with_boxes()
    twice = flip(flip(s))
    assert np.array_equal(twice.image, s.image) and np.array_equal(twice.masks, s.masks)
    once = flip(s)
    assert not np.array_equal(once.image, s.image)


def test_crop_pad_keeps_only_the_target_box():
    s = scene_with_boxes()
    c = crop_pad(s)
    assert c.instance_ids == [3]  # the small object lies outside the box and is dropped
    assert np.array_equal(c.masks[0], s.masks[0])  # in place
    assert np.array_equal(c.image[10:30, 20:40], s.image[10:30, 20:40])
    assert c.image[:10].max() == 0 and c.image[:, :20].max() == 0
    centred = crop_pad(s, placement="centre")
    assert centred.masks[0].sum() == 400 and centred.masks[0][10:30, 20:40].all()


def test_crop_resize_scales_the_target_to_the_frame():
    s = scene_with_boxes()
    c = crop_resize(s)
    assert c.image.shape == s.image.shape
    assert c.masks[0].all()  # the box filled by the object now fills the frame


@pytest.mark.parametrize("fraction", [0.2, 0.4, 0.6])
def test_crop_shift_visible_fraction(fraction):
    s = scene_with_boxes()
    for seed in range(5):
        c = crop_shift(s, fraction, seed=seed)
        visible = c.masks[c.instance_ids.index(3)].sum() / s.masks[0].sum()
        assert visible == pytest.approx(1 - fraction)
        both = crop_shift(s, fraction, axes="both", seed=seed)
        visible = both.masks[both.instance_ids.index(3)].sum() / s.masks[0].sum()
        assert visible == pytest.approx((1 - fraction) ** 2)
    assert crop_shift(s, 0.4, seed=1).meta["shift"] == crop_shift(s, 0.4, seed=1).meta["shift"]


def test_every_named_transform_keeps_identity():
    s = scene_with_boxes()
    for name in TRANSFORMS:
        t = apply(name, s)
        assert t.source == name and t.source_image == "img"
        assert set(t.instance_ids) <= set(s.instance_ids)
        for k, iid in enumerate(t.instance_ids):
            assert t.class_names[k] == s.class_names[s.instance_ids.index(iid)]
    with pytest.raises(ValueError, match="rot90"):
        apply("rot45", s)


# --------------------------------------------------------------------------- keypoints, boxes
#
# A 4 x 6 scene (H = 4, W = 6). Object A (id 3): rows 0-1, cols 0-2 (6 px, the largest);
# object B (id 7): row 3, cols 4-5. Keypoints are x/y with pixel centres at integers.
# A: p (0, 0), q (2, 1), r (4, 3) (over B, outside A's box), s (1, 0) already invisible.
# B: t (5, 3). Boxes x1, y1, x2, y2: A [0, 0, 2, 1], B [4, 3, 5, 3].


def scene_with_points() -> Scene:
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    masks = np.zeros((2, 4, 6), bool)
    masks[0, 0:2, 0:3] = True
    masks[1, 3, 4:6] = True
    a = InstanceKeypoints(
        ["p", "q", "r", "s"], [[0, 0], [2, 1], [4, 3], [1, 0]], [True, True, True, False]
    )
    b = InstanceKeypoints(["t"], [[5, 3]], [True])
    boxes = [[0, 0, 2, 1], [4, 3, 5, 3]]
    return Scene(image, masks, ["cat", "dog"], [3, 7], "pts", keypoints=[a, b], boxes=boxes)


# (x, y) of p, q, r, s and t, and the boxes of A and B, worked out by hand per transform
HAND = {
    # x -> 5 - x
    "hflip": ([[5, 0], [3, 1], [1, 3], [4, 0]], [[0, 3]], [[3, 0, 5, 1], [0, 3, 1, 3]]),
    # y -> 3 - y
    "vflip": ([[0, 3], [2, 2], [4, 0], [1, 3]], [[5, 0]], [[0, 2, 2, 3], [4, 0, 5, 0]]),
    # (x, y) -> (y, 5 - x); the output is 6 high and 4 wide
    "rot90": ([[0, 5], [1, 3], [3, 1], [0, 4]], [[3, 0]], [[0, 3, 1, 5], [3, 0, 3, 1]]),
    # (x, y) -> (5 - x, 3 - y)
    "rot180": ([[5, 3], [3, 2], [1, 0], [4, 3]], [[0, 0]], [[3, 2, 5, 3], [0, 0, 1, 0]]),
    # (x, y) -> (3 - y, x)
    "rot270": ([[3, 0], [2, 2], [0, 4], [3, 1]], [[0, 5]], [[2, 0, 3, 2], [0, 4, 0, 5]]),
}


@pytest.mark.parametrize("name", list(HAND))
def test_flips_and_rotations_move_points_and_boxes(name):
    s = scene_with_points()
    t = apply(name, s)
    xy_a, xy_b, boxes = HAND[name]
    assert t.keypoints[0].xy.tolist() == xy_a and t.keypoints[1].xy.tolist() == xy_b
    assert t.keypoints[0].visible.tolist() == [True, True, True, False]  # s stays hidden
    assert t.boxes.tolist() == boxes and t.boxes.dtype == np.float32
    # independent check: each point still sits on the pixel it sat on
    for before, after in zip(s.keypoints[0].xy.astype(int), t.keypoints[0].xy.astype(int)):
        assert np.array_equal(t.image[after[1], after[0]], s.image[before[1], before[0]])
    # and each box still bounds the object's moved mask (the masks fill their boxes here)
    for box, mask in zip(t.boxes.astype(int), t.masks):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert [cols[0], rows[0], cols[-1], rows[-1]] == box.tolist()


def test_crop_pad_in_place_hides_points_on_the_padding_and_drops_b():
    t = crop_pad(scene_with_points())
    # window: A's box, rows 0-1 x cols 0-2; B's mask is outside it: B, t and its box go
    assert t.instance_ids == [3] and len(t.keypoints) == 1 and t.boxes.tolist() == [[0, 0, 2, 1]]
    assert t.keypoints[0].xy.tolist() == [[0, 0], [2, 1], [4, 3], [1, 0]]  # not moved
    assert t.keypoints[0].visible.tolist() == [True, True, False, False]  # r on padding


def test_crop_pad_centre_shifts_points_by_the_paste_offset():
    t = crop_pad(scene_with_points(), placement="centre")
    # the 2 x 3 box lands at ((4 - 2) // 2, (6 - 3) // 2) = (1, 1): everything moves +1, +1
    assert t.keypoints[0].xy.tolist() == [[1, 1], [3, 2], [5, 4], [2, 1]]
    # r lands at y = 4, off the 4-row image
    assert t.keypoints[0].visible.tolist() == [True, True, False, False]
    assert t.boxes.tolist() == [[1, 1, 3, 2]]
    assert np.array_equal(t.image[2, 3], scene_with_points().image[1, 2])  # q's pixel


def test_crop_resize_scales_points_with_pil_pixel_centres():
    t = crop_resize(scene_with_points())
    # A's box is 3 wide and 2 high, resized to 6 x 4: scale 2 on both axes.
    # PIL: output centre u shows input (u + 0.5) / 2 - 0.5, so x' = 2 x + 0.5, y' = 2 y + 0.5
    assert t.keypoints[0].xy.tolist() == [[0.5, 0.5], [4.5, 2.5], [8.5, 6.5], [2.5, 0.5]]
    assert t.keypoints[0].visible.tolist() == [True, True, False, False]  # r left the crop
    assert t.boxes.tolist() == [[0.5, 0.5, 4.5, 2.5]]
    assert t.instance_ids == [3] and len(t.keypoints) == 1


# crop_shift 50 % with axes="both" moves A's box (rows 0-1, cols 0-2) by dy = +-1, dx = +-2
# (round(0.5 * 2) = 1, round(0.5 * 3) = 2); the kept window is the moved box clipped to
# the image; points keep their coordinates. By hand, per direction:
# visible flags of p, q, r, s and A's box clipped to the window
SHIFT = {
    (1, 2): ([False, True, False, False], [2, 1, 2, 1]),  # window rows 1-2, cols 2-4
    (1, -2): ([False, False, False, False], [0, 1, 0, 1]),  # rows 1-2, col 0
    (-1, 2): ([False, False, False, False], [2, 0, 2, 0]),  # row 0, cols 2-4
    (-1, -2): ([True, False, False, False], [0, 0, 0, 0]),  # row 0, col 0
}


def test_crop_shift_hides_points_outside_the_window():
    seen = set()
    for seed in range(12):
        t = crop_shift(scene_with_points(), 0.5, axes="both", seed=seed)
        shift = tuple(t.meta["shift"])
        visible, box = SHIFT[shift]
        seen.add(shift)
        assert t.keypoints[0].xy.tolist() == [[0, 0], [2, 1], [4, 3], [1, 0]]
        assert t.keypoints[0].visible.tolist() == visible
        assert t.boxes.tolist() == [box] and t.instance_ids == [3]
    assert len(seen) >= 3  # the seeds reach several directions


def test_scenes_without_points_or_boxes_stay_without():
    s = scene_with_boxes()
    for name in TRANSFORMS:
        t = apply(name, s)
        assert t.keypoints is None and t.boxes is None


def test_a_transformed_toy_scene_drops_the_parents_pixel_metadata():
    from difflens.data.scene import PIXEL_META_KEYS
    from difflens.data.toy import make_toy_scene

    scene = make_toy_scene(3, size=64)
    assert set(PIXEL_META_KEYS) <= set(scene.meta)
    flipped = hflip(scene)
    assert not set(PIXEL_META_KEYS) & set(flipped.meta)
    assert flipped.meta["transform"] == "hflip" and flipped.meta["parent"] == scene.image_id
    assert flipped.meta["split"] == scene.meta["split"]


def test_reading_a_toy_scene_twice_counts_its_skips_once():
    from difflens.data.toy import ToyWorld

    world = ToyWorld(n_images=40, size=32, seed=0)
    first = [world[i] for i in range(40)]
    counted = len(world.skipped)
    _ = [world[i] for i in range(40)]
    assert len(world.skipped) == counted
    expected = sum(len(s.meta["dropped"]) + len(s.meta["skipped"]) for s in first)
    assert counted == expected
