"""Cross-attention recording through a diffusers attention processor: names, the output against
diffusers' default processors, the probabilities against a hand recomputation from the module's
own to_q / to_k, head and token selection, restoring, early stopping and gradients."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from difflens.features.attention import (
    AttentionRecorded,
    CrossAttentionRegistry,
    RecordingProcessor,
    record_cross_attention,
    run_recorded,
    select_heads,
)
from difflens.models.layers import UnknownLayerError


@pytest.fixture(scope="module")
def toy_backbone():
    from difflens.models.backbone import load_backbone

    return load_backbone("toy")


def _inputs(backbone, size, batch=2, seed=0):
    unet = backbone.base_unet
    g = torch.Generator().manual_seed(seed)
    side = size // backbone.latent_scale
    x = torch.randn(batch, unet.config.in_channels, side, side, generator=g)
    context = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    return x, torch.tensor([120] * batch), context


def _set_all(registry, processor_type):
    for name in registry.names:
        registry.module(name).set_processor(processor_type())


def test_names_modules_and_hedlin_list_follow_the_sd_layout(tiny_backbone):
    reg = CrossAttentionRegistry.of(tiny_backbone.unet, tiny_backbone.latent_scale)
    assert len(reg) == 16  # SD 1.x: 2 + 2 + 2 down, 1 mid, 3 + 3 + 3 up
    info = reg.info("up1.attn0.cross")
    assert info.module_path == "up_blocks.1.attentions.0.transformer_blocks.0.attn2"
    assert reg.module("up1.attn0.cross") is (
        tiny_backbone.unet.up_blocks[1].attentions[0].transformer_blocks[0].attn2
    )
    assert reg.feature_size("up1.attn0.cross", 512) == (16, 16)
    assert reg.feature_size("down0.attn1.cross", 512) == (64, 64)
    # Hedlin's list at 512 px on SD 1.4 (their AttentionStore keeps <= 32 ** 2 queries):
    # 0-3 down (32, 32, 16, 16), 4 mid (8), 5-7 up 16, 8-10 up 32
    flat = reg.flattened()
    sides = [reg.feature_size(name, 512)[0] for name in flat]
    assert sides == [32, 32, 16, 16, 8, 16, 16, 16, 32, 32, 32]
    assert reg.resolve([5, 6, 7, 8]) == [
        "up1.attn0.cross",
        "up1.attn1.cross",
        "up1.attn2.cross",
        "up2.attn0.cross",
    ]
    # counting the 64 x 64 maps too renumbers the list: index 5 is then down2.attn1
    assert reg.resolve([5], exclude_full_resolution=False) == ["down2.attn1.cross"]
    assert reg.table(512).loc["up2.attn0.cross", "hedlin_index"] == 8
    with pytest.raises(UnknownLayerError, match="Close matches"):
        reg.info("up1.attn0.crosss")
    with pytest.raises(UnknownLayerError, match="outside"):
        reg.resolve([11])


def test_head_selections():
    assert select_heads("upper_half", 8) == [4, 5, 6, 7]  # attn[h // 2:] at batch 1
    assert select_heads("all", 3) == [0, 1, 2]
    assert select_heads(None, 1) == [0]
    assert select_heads("upper_half", 1) == [0]
    assert select_heads([2, 0], 4) == [2, 0]
    with pytest.raises(ValueError):
        select_heads([4], 4)
    with pytest.raises(ValueError):
        select_heads("lower", 4)


@pytest.mark.parametrize("which", ["tiny", "toy"])
def test_output_equals_the_default_processors(which, tiny_backbone, toy_backbone):
    backbone, size = (tiny_backbone, 128) if which == "tiny" else (toy_backbone, 64)
    unet = backbone.base_unet
    reg = CrossAttentionRegistry.of(unet, backbone.latent_scale)
    x, t, context = _inputs(backbone, size)
    try:
        with torch.no_grad():
            _set_all(reg, AttnProcessor2_0)
            sdpa = unet(x, t, encoder_hidden_states=context).sample
            _set_all(reg, AttnProcessor)
            classic = unet(x, t, encoder_hidden_states=context).sample
            with record_cross_attention(reg, reg.names) as record:
                recorded = run_recorded(unet, x, t, context)
    finally:
        _set_all(reg, AttnProcessor2_0)
    assert len(record) == len(reg)
    assert torch.allclose(recorded, classic, rtol=0, atol=1e-6)
    # the two library defaults differ from each other by float32 rounding only
    assert (recorded - sdpa).abs().max() <= 1e-6 * max(1.0, float(sdpa.abs().max()))


@pytest.mark.parametrize("which", ["tiny", "toy"])
def test_each_module_output_equals_the_default_processor(which, tiny_backbone, toy_backbone):
    backbone = tiny_backbone if which == "tiny" else toy_backbone
    reg = CrossAttentionRegistry.of(backbone.base_unet, backbone.latent_scale)
    g = torch.Generator().manual_seed(1)
    for name in reg.names:
        attn = reg.module(name)
        hidden = torch.randn(3, 20, attn.to_q.in_features, generator=g)
        context = torch.randn(3, 77, attn.to_k.in_features, generator=g)
        with torch.no_grad():
            expected = AttnProcessor2_0()(attn, hidden, encoder_hidden_states=context)
            got = RecordingProcessor(name, lambda *_: None)(
                attn, hidden, encoder_hidden_states=context
            )
        assert torch.allclose(got, expected, rtol=0, atol=1e-6), name


def _hand_probabilities(attn, hidden, context):
    """softmax(Q K^T / sqrt(head_dim)) per head from the module's own to_q and to_k."""
    q, k = attn.to_q(hidden), attn.to_k(context)
    b, n, inner = q.shape
    heads = attn.heads
    d = inner // heads
    q = q.reshape(b, n, heads, d).permute(0, 2, 1, 3)
    k = k.reshape(b, k.shape[1], heads, d).permute(0, 2, 1, 3)
    return torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)  # (B, heads, N, T)


@pytest.mark.parametrize("which", ["tiny", "toy"])
def test_probabilities_equal_a_hand_recomputation(which, tiny_backbone, toy_backbone):
    backbone, size = (tiny_backbone, 128) if which == "tiny" else (toy_backbone, 64)
    unet = backbone.base_unet
    reg = CrossAttentionRegistry.of(unet, backbone.latent_scale)
    inputs, handles = {}, []

    def keep(name):
        def pre_hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            inputs[name] = (hidden.detach().clone(), kwargs["encoder_hidden_states"].clone())

        return pre_hook

    for name in reg.names:
        handles.append(reg.module(name).register_forward_pre_hook(keep(name), with_kwargs=True))
    x, t, context = _inputs(backbone, size)
    try:
        with torch.no_grad(), record_cross_attention(reg, reg.names) as record:
            run_recorded(unet, x, t, context)
    finally:
        for handle in handles:
            handle.remove()
    for name in reg.names:
        attn = reg.module(name)
        with torch.no_grad():
            hand = _hand_probabilities(attn, *inputs[name])
        got = record[name]  # (B, heads, T, h, w)
        h, w = got.shape[-2:]
        assert (h, w) == reg.feature_size(name, size)
        flat = got.flatten(-2).transpose(-1, -2)  # (B, heads, N, T)
        assert torch.allclose(flat, hand, rtol=0, atol=1e-6), name
        assert torch.allclose(got.sum(2), torch.ones(()), atol=1e-5), name  # rows sum to 1


def test_heads_and_tokens_are_slices_of_the_full_record(tiny_backbone):
    unet = tiny_backbone.base_unet
    reg = CrossAttentionRegistry.of(unet, 8)
    x, t, context = _inputs(tiny_backbone, 128)
    layers = ["up1.attn0.cross", "up2.attn0.cross"]
    with torch.no_grad():
        with record_cross_attention(reg, layers) as full:
            run_recorded(unet, x, t, context)
        with record_cross_attention(reg, layers, heads="upper_half", tokens=1) as part:
            run_recorded(unet, x, t, context)
    for name in layers:
        assert part[name].shape == (2, 4, 1, *full[name].shape[-2:])
        assert torch.equal(part[name], full[name][:, 4:, 1:2])
        assert part.heads[name] == [4, 5, 6, 7]


def test_processors_and_hooks_are_restored_also_on_error(tiny_backbone):
    reg = CrossAttentionRegistry.of(tiny_backbone.unet, 8)
    before = {name: reg.module(name).processor for name in reg.names}
    hooks = {name: dict(reg.parent_module(name)._forward_pre_hooks) for name in reg.names}
    with pytest.raises(RuntimeError, match="boom"):
        with record_cross_attention(reg, reg.names[:3]):
            assert isinstance(reg.module(reg.names[0]).processor, RecordingProcessor)
            assert reg.module(reg.names[5]).processor is before[reg.names[5]]  # untouched
            raise RuntimeError("boom")
    for name in reg.names:
        assert reg.module(name).processor is before[name]
        assert dict(reg.parent_module(name)._forward_pre_hooks) == hooks[name]


def test_early_stop_and_gradients_reach_the_context_only(tiny_backbone):
    unet = tiny_backbone.base_unet
    reg = CrossAttentionRegistry.of(unet, 8)
    x, t, context = _inputs(tiny_backbone, 128)
    context.requires_grad_(True)
    fired = []
    handle = unet.up_blocks[3].register_forward_hook(lambda *a: fired.append(1))
    try:
        with record_cross_attention(
            reg, ["up1.attn0.cross"], tokens=1, keep_graph=True, stop_early=True
        ) as record:
            assert run_recorded(unet, x, t, context) is None  # stopped after up1.attn0
        assert not fired
        record["up1.attn0.cross"].sum().backward()
    finally:
        handle.remove()
    assert context.grad is not None and context.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in unet.parameters())
    with torch.no_grad(), record_cross_attention(reg, ["up1.attn0.cross"]) as detached:
        run_recorded(unet, x, t, context)
    assert not detached["up1.attn0.cross"].requires_grad


def test_stop_signal_is_an_exception_of_its_own():
    assert issubclass(AttentionRecorded, Exception)
    assert not issubclass(AttentionRecorded, RuntimeError)
