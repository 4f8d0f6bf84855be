"""The layer registry against the model it describes: shapes and order from real forwards."""

import pytest
import torch

from difflens.models.layers import PAPER_LAYER, LayerRegistry, UnknownLayerError


def _forward_record(unet, registry, latent_hw, cross_dim):
    """Run the U-Net once with plain hooks on every registered module; return the order in
    which they fired and the (C, h, w) of each output (queries reshaped by hand)."""
    fired, shapes = [], {}
    modules = {info.module_path: info.name for info in registry}
    handles = []
    for path, name in modules.items():
        module = dict(unet.named_modules())[path]

        def hook(mod, args, out, name=name):
            tensor = out[0] if isinstance(out, tuple) else out
            fired.append(name)
            if tensor.dim() == 3:  # (B, h*w, C): the query
                shapes[name] = (tensor.shape[2], tensor.shape[1])
            else:
                shapes[name] = tuple(tensor.shape[1:])

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            unet(
                torch.zeros(1, 4, *latent_hw),
                torch.tensor([10]),
                encoder_hidden_states=torch.zeros(1, 3, cross_dim),
            )
    finally:
        for handle in handles:
            handle.remove()
    return fired, shapes


def _check_against_forward(unet, image_hw):
    registry = LayerRegistry(unet, latent_scale=8)
    latent_hw = (image_hw[0] // 8, image_hw[1] // 8)
    fired, shapes = _forward_record(unet, registry, latent_hw, unet.config.cross_attention_dim)
    # every module fires exactly once, in the registry's order
    assert fired == registry.names
    for info in registry:
        h, w = registry.feature_size(info.name, image_hw)
        if info.kind == "query":
            assert shapes[info.name] == (info.channels, h * w), info.name
        else:
            assert shapes[info.name] == (info.channels, h, w), info.name
    return registry


def test_registry_matches_a_real_forward_of_the_tiny_model(tiny_backbone):
    registry = _check_against_forward(tiny_backbone.unet, (128, 128))
    _check_against_forward(tiny_backbone.unet, (128, 192))  # non-square too
    kinds = {info.kind for info in registry}
    assert kinds == {
        "resnet",
        "residual",
        "attention",
        "query",
        "downsampler",
        "upsampler",
        "block",
    }


def test_registry_on_an_sd2_style_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(  # SD 2.x traits: linear projections, per-block head dims
        sample_size=8,
        block_out_channels=(32, 64, 64, 64),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        layers_per_block=2,
        cross_attention_dim=48,
        attention_head_dim=(2, 4, 4, 4),
        use_linear_projection=True,
        norm_num_groups=16,
    ).eval()
    registry = _check_against_forward(unet, (64, 64))
    assert registry.info("down2.attn0.query").channels == 64


def test_paper_vocabulary_on_the_sd_block_structure(tiny_backbone):
    registry = LayerRegistry(tiny_backbone.unet)
    # hand-derived for SD's structure at 512 px: latent 64, stages 64 / 32 / 16 / 8
    assert registry.by_resolution(64, 512, "encoder") == [
        "down0.res0",
        "down0.attn0",
        "down0.res1",
        "down0.attn1",
    ]
    assert registry.by_resolution(16, 512, "encoder") == [
        "down2.res0",
        "down2.attn0",
        "down2.res1",
        "down2.attn1",
    ]
    assert registry.by_resolution(16, 512, "decoder")[0] == "up1.res0"
    assert PAPER_LAYER == "down2.attn0"
    info = registry.info(PAPER_LAYER)
    assert (info.stage, info.kind, info.module_path) == (
        "encoder",
        "attention",
        "down_blocks.2.attentions.0",
    )
    table = registry.table(512)
    assert table.loc[PAPER_LAYER, "group"] == "encoder 16"
    assert table.loc["down2.attn0.query", "module"].endswith("transformer_blocks.0.attn2.to_q")
    assert set(registry.table(512, kinds=("query",))["kind"]) == {"query"}


def test_unknown_layers_are_listed_with_close_matches(tiny_backbone):
    registry = LayerRegistry(tiny_backbone.unet)
    with pytest.raises(UnknownLayerError, match="Close matches: down2.attn0"):
        registry.info("down2.atn0")
    with pytest.raises(KeyError) as error:
        registry.check(["down2.attn0", "dwn1.res0", "up9"])
    message = str(error.value)
    assert "'dwn1.res0'" in message and "'up9'" in message and "down1.res0" in message
