"""Resolution groups: the paper's "layers at 64 / 32 / 16" read from the layer registry."""

import pytest

from difflens.models.layers import LayerRegistry, resolution_group, resolution_layers


def test_resolution_groups_on_the_tiny_model(tiny_backbone):
    registry = LayerRegistry(tiny_backbone.unet, tiny_backbone.latent_scale)
    # the tiny model mirrors SD 1.x: at 512 px the encoder's 16x16 stage is down2
    assert resolution_layers(registry, 16, 512, stage="encoder") == ["down2.attn0", "down2.attn1"]
    assert resolution_layers(registry, 16, 512, stage="decoder") == [
        "up1.attn0",
        "up1.attn1",
        "up1.attn2",
    ]
    spec = resolution_group(registry, "64+16", 512)
    assert spec.split("+")[:2] == ["down0.attn0", "down0.attn1"] and "up1.attn2" in spec
    # 8x8 has no attention: the ResNets stand in
    assert resolution_layers(registry, 8, 512, stage="encoder") == ["down3.res0", "down3.res1"]
    with pytest.raises(ValueError, match="3x3"):
        resolution_layers(registry, 3, 512)
