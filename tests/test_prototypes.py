import numpy as np
import torch

from difflens.data.scene import Scene
from difflens.features.prototypes import masked_means, resize_masks, scene_prototypes


def test_masked_mean_by_hand():
    # 2 channels on a 2x2 map; the object covers the top row
    fmap = torch.tensor([[[1.0, 3.0], [5.0, 7.0]], [[2.0, 4.0], [6.0, 8.0]]])
    weights = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    protos, valid = masked_means(fmap, weights)
    assert valid.tolist() == [True]
    np.testing.assert_allclose(protos.numpy(), [[2.0, 3.0]])


def test_area_weights_are_coverage_fractions():
    mask = np.zeros((1, 4, 4), bool)
    mask[0, :2, :1] = True  # covers half of the top-left 2x2 cell
    w = resize_masks(mask, (2, 2), "area")
    np.testing.assert_allclose(w.numpy()[0], [[0.5, 0.0], [0.0, 0.0]])


def test_scene_prototypes_resize_then_average_and_skip_vanishing():
    image = np.zeros((8, 8, 3), np.uint8)
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4, :4] = True  # top-left quadrant -> exactly cell (0, 0) of a 2x2 map
    masks[1, 7, 7] = True  # one pixel: vanishes at 2x2 under nearest resizing
    scene = Scene(image, masks, ["cat", "dog"], [1, 2], "img")
    fmap = torch.arange(8, dtype=torch.float32).reshape(2, 2, 2)
    table = scene_prototypes(fmap, scene, mask_mode="nearest")
    assert len(table) == 1 and len(table.skipped) == 1
    assert "img:2" in table.skipped.records[0][0] and "vanishes" in table.skipped.records[0][1]
    np.testing.assert_allclose(table.features, [[0.0, 4.0]])  # hand: fmap[:, 0, 0]
    area = scene_prototypes(fmap, scene, mask_mode="area")
    assert len(area) == 2  # the one-pixel object keeps a prototype under area weights
    np.testing.assert_allclose(area.features[1], fmap[:, 1, 1].numpy())
