import numpy as np
import pytest

from difflens.scene import Scene
from difflens.transforms import (
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
