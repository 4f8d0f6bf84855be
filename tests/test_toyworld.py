import numpy as np

from difflens.datasets import TOY_CLASSES, ToyWorld, make_toy_scene


def test_deterministic_from_seed():
    a, b = make_toy_scene(7), make_toy_scene(7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert a.class_names == b.class_names
    assert not np.array_equal(make_toy_scene(8).image, a.image)


def test_masks_are_disjoint_visible_and_named():
    for scene in ToyWorld(n_images=20, size=64):
        assert scene.masks.sum(0).max() <= 1
        assert all(m.any() for m in scene.masks)
        assert set(scene.class_names) <= set(TOY_CLASSES)
        assert len(set(scene.instance_ids)) == scene.n_objects


def test_colour_does_not_predict_class():
    # the mean colour of an object should carry (almost) no information about its class
    colours, classes = [], []
    for scene in ToyWorld(n_images=150, size=64):
        for mask, name in zip(scene.masks, scene.class_names):
            colours.append(scene.image[mask].mean(0))
            classes.append(name)
    colours, classes = np.array(colours), np.array(classes)
    class_means = np.array([colours[classes == c].mean(0) for c in TOY_CLASSES])
    spread_between = class_means.std(0).mean()
    spread_within = colours.std(0).mean()
    assert spread_between < 0.15 * spread_within
