"""The vertical slice: scenes -> features -> prototypes -> sets -> figure, with bad input."""

import numpy as np
import pytest
import torch

from difflens.analysis.sets import distance_sets
from difflens.data.scene import Scene
from difflens.data.toy import ToyWorld
from difflens.features.batch import prototype_table
from difflens.features.extractor import FeatureExtractor
from difflens.features.prototypes import masked_means, resize_masks
from difflens.viz.plots import boxplot_sets


def test_prototypes_equal_masked_mean_of_an_unhooked_forward(tiny_backbone, tiny_extractor):
    scene = ToyWorld(n_images=1, size=128)[0]
    table = prototype_table([scene], tiny_extractor, "down1.attn0", progress=False)
    # independent reference: run the U-Net blocks by hand without any hook
    unet = tiny_backbone.unet
    latents = tiny_extractor.encode([scene.image])
    emb = tiny_extractor.text_embedding()
    with torch.no_grad():
        t = torch.zeros(1, dtype=torch.long)
        temb = unet.time_embedding(unet.time_proj(t).to(latents.dtype))
        h = unet.conv_in(latents)
        h, _ = unet.down_blocks[0](h, temb, encoder_hidden_states=emb)
        block = unet.down_blocks[1]
        h = block.resnets[0](h, temb)
        h = block.attentions[0](h, encoder_hidden_states=emb, return_dict=False)[0]
    weights = resize_masks(scene.masks, tuple(h.shape[-2:]))
    expected, valid = masked_means(h[0], weights)
    np.testing.assert_allclose(table.features, expected[valid].numpy(), rtol=1e-5, atol=1e-5)


def test_bad_input_is_counted_not_fatal(tiny_extractor):
    size = 128
    image = np.full((size, size, 3), 128, np.uint8)
    big = np.zeros((size, size), bool)
    big[10:90, 10:90] = True
    tiny = np.zeros((size, size), bool)
    tiny[120, 120] = True  # vanishes at the 8x8 map of down2
    two = Scene(image, np.stack([big, tiny]), ["circle", "square"], [1, 2], "two")
    one = Scene(image, big[None], ["circle"], [1], "one")
    empty = Scene(image, np.zeros((0, size, size), bool), [], [], "empty")
    table = prototype_table([two, one, empty], tiny_extractor, "down2.attn0", progress=False)
    assert len(table) == 2
    assert len(table.skipped) == 2
    reasons = " ".join(r for _, r in table.skipped.records)
    assert "vanishes" in reasons and "no objects" in reasons
    assert table.info["single_object_images"] == 2
    long = distance_sets(table, metric="cosine")
    assert np.isfinite(long["distance"]).all()
    boxplot_sets(long)


def test_unknown_layer_lists_close_matches(tiny_extractor):
    with pytest.raises(KeyError, match="down2.attn0"):
        tiny_extractor.features([np.zeros((64, 64, 3), np.uint8)], ["down2.atn0"])


def test_image_size_must_fit_the_model(tiny_backbone):
    with pytest.raises(ValueError, match="multiple of 8"):
        FeatureExtractor(tiny_backbone, image_size=100)
