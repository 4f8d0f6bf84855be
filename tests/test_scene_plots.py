import numpy as np

from difflens.data.scene import Scene
from difflens.viz.scenes import object_size_histogram, object_table, overlay, show_scenes


def test_object_table_counts_pixels_by_hand():
    masks = np.zeros((2, 10, 10), bool)
    masks[0, :5, :2] = True  # 10 pixels = 10 %
    masks[1, 9, 9] = True  # 1 pixel = 1 %
    scene = Scene(np.zeros((10, 10, 3), np.uint8), masks, ["cat", "dog"], [4, 9], "x")
    table = object_table([scene])
    assert table["area_fraction"].tolist() == [0.10, 0.01]
    assert table["instance_id"].tolist() == [4, 9]
    tinted = overlay(scene)
    assert (tinted[~masks.any(0)] == 0).all() and (tinted[masks[0]] > 0).any()
    object_size_histogram(table)
    show_scenes([scene, scene], columns=2)
