"""The full Stable Diffusion 1.5 and 2.x U-Net architectures (random weights, built from their
configs): the registry's shapes, checked by real forwards, and early stopping at 512 px.

Slow (a 3.4 GB model per version, ~10 s per forward on 2 CPU cores): ``make test-slow``.
"""

import gc

import pytest
import torch

from difflens.features.hooks import capture, run_unet
from difflens.models.layers import PAPER_LAYER, LayerRegistry
from difflens.models.sd_configs import SD2_UNET, SD15_UNET, build_sd_unet

pytestmark = pytest.mark.slow

# one layer of each kind and stage, the paper's layer and its query among them
PROBES = [
    "down0.attn1",
    "down0.downsample",
    "down1.attn0",
    "down2.res0",
    "down2.attn0.query",
    "down2.attn0",
    "down2.attn1",
    "down3.res1",
    "mid.attn0",
    "mid",
    "up0.upsample",
    "up1.attn0",
    "up2.attn2",
    "up3.attn2",
]


@pytest.fixture(scope="module", params=["1.5", "2"])
def sd_unet(request):
    unet = build_sd_unet(request.param, seed=0)
    yield request.param, unet
    del unet
    gc.collect()


def _latent_and_context(unet, image_size=512):
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, 4, image_size // 8, image_size // 8, generator=generator)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=generator)
    return latent, context


def test_registry_resolutions_and_channels_at_512(sd_unet):
    version, unet = sd_unet
    config = SD15_UNET if version == "1.5" else SD2_UNET
    table = LayerRegistry(unet).table(512)
    blocks = table[table["kind"] == "block"]
    assert blocks.loc[["down0", "down1", "down2", "down3"], "resolution"].tolist() == [32, 16, 8, 8]
    resnets = table[(table["kind"] == "resnet") & (table["stage"] == "encoder")]
    by_block = resnets.groupby(resnets.index.str[:5])
    assert by_block["resolution"].first().tolist() == [64, 32, 16, 8]
    assert by_block["channels"].first().tolist() == list(config["block_out_channels"])
    assert by_block["channels"].first().tolist() == [320, 640, 1280, 1280]
    assert table.loc[PAPER_LAYER, "shape"] == "1280 x 16 x 16"
    assert table.loc[PAPER_LAYER, "group"] == "encoder 16"
    assert table.loc["down2.attn0.query", "shape"] == "1280 x 16 x 16"
    assert table.loc["mid", "shape"] == "1280 x 8 x 8"
    assert table.loc["up3.attn2", "shape"] == "320 x 64 x 64"


def test_a_real_forward_gives_the_registered_shapes(sd_unet):
    _, unet = sd_unet
    registry = LayerRegistry(unet)
    latent, context = _latent_and_context(unet)
    t = torch.tensor([0])
    with torch.no_grad(), capture(registry, PROBES, stop_early=False) as captured:
        run_unet(unet, latent, t, context)
    for name in PROBES:
        h, w = registry.feature_size(name, 512)
        assert tuple(captured[name].shape) == (1, registry.info(name).channels, h, w), name
    assert tuple(captured[PAPER_LAYER].shape) == (1, 1280, 16, 16)


def test_early_stop_at_the_paper_layer_equals_the_full_pass(sd_unet):
    _, unet = sd_unet
    registry = LayerRegistry(unet)
    latent, context = _latent_and_context(unet)
    t = torch.tensor([0])
    layers = ["down0.attn1", "down2.attn0.query", PAPER_LAYER]
    reached = []
    probe = unet.mid_block.register_forward_hook(lambda *a: reached.append(1))
    try:
        with torch.no_grad():
            with capture(registry, layers, stop_early=True) as early:
                run_unet(unet, latent, t, context)
                early = dict(early)
            with capture(registry, layers, stop_early=False) as full:
                run_unet(unet, latent, t, context)
                full = dict(full)
    finally:
        probe.remove()
    assert len(reached) == 1  # only the full pass reached the mid block
    for name in layers:
        assert torch.equal(early[name], full[name]), name
