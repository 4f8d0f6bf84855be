"""FLOP counts of prompt optimisation: the meta-device count equals a count on real weights,
the per-keypoint total is the hand sum of its passes, and the GPU estimate is FLOPs / rate."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from difflens.correspondence.prompt_cost import (
    GpuAssumption,
    architecture_flops,
    gpu_seconds,
    keypoint_flops,
    pass_flops,
    vae_encode_flops,
)
from difflens.correspondence.prompt_optimisation import get_prompt_preset
from difflens.features.attention import CrossAttentionRegistry, RecordingProcessor

LAYERS = ["up1.attn0.cross", "up2.attn0.cross"]


def _classic(module):
    for m in module.modules():
        if hasattr(m, "set_processor") and hasattr(m, "to_q"):
            m.set_processor(AttnProcessor())


def _default(module):
    for m in module.modules():
        if hasattr(m, "set_processor") and hasattr(m, "to_q"):
            m.set_processor(AttnProcessor2_0())


def test_meta_count_equals_the_count_on_real_weights(tiny_backbone):
    meta = pass_flops(tiny_backbone.unet, 64, layers=LAYERS)
    meta_vae = vae_encode_flops(tiny_backbone.vae, 64)
    # on a CPU, SDPA's kernel counts 0 FLOPs: count with the classic processors there
    _classic(tiny_backbone.unet)
    _classic(tiny_backbone.vae)
    try:
        real = pass_flops(tiny_backbone.unet, 64, layers=LAYERS, device="cpu")
        real_vae = vae_encode_flops(tiny_backbone.vae, 64, device="cpu")
    finally:
        _default(tiny_backbone.unet)
        _default(tiny_backbone.vae)
    assert meta == real and meta_vae == real_vae
    assert all(p.grad is None for p in tiny_backbone.unet.parameters())


def test_recording_processor_flops_equal_the_hand_count(tiny_backbone):
    """One cross-attention module: its projections and both attention products are counted."""
    from torch.utils.flop_counter import FlopCounterMode

    reg = CrossAttentionRegistry.of(tiny_backbone.unet, 8)
    attn = reg.module("up1.attn0.cross")
    b, n, t = 2, 20, 77
    c, d = attn.to_q.in_features, attn.to_k.in_features
    inner, out = attn.to_q.out_features, attn.to_out[0].out_features
    hidden, context = torch.randn(b, n, c), torch.randn(b, t, d)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        RecordingProcessor("x", lambda *_: None)(attn, hidden, encoder_hidden_states=context)
    # 2 FLOPs per multiply-add: q, k, v, Q K^T, P V, out
    hand = 2 * b * (n * c * inner + 2 * t * d * inner + 2 * n * t * inner + n * inner * out)
    assert counter.get_total_flops() == hand


def test_stopping_early_saves_forward_flops_only(tiny_backbone):
    stopped = pass_flops(tiny_backbone.unet, 64, layers=LAYERS)
    full = pass_flops(tiny_backbone.unet, 64, layers=LAYERS, stop_early=False)
    assert stopped["forward"] < full["forward"]
    assert stopped["backward"] == full["backward"]  # only what the maps depend on


def test_per_keypoint_total_is_the_sum_of_its_passes(tiny_backbone):
    preset = get_prompt_preset("hedlin").with_(image_size=64, steps=3, n_embeddings=2)
    preset = preset.with_(inference_crops=4)
    opt = {"forward": 10, "backward": 7}
    out = keypoint_flops(preset, opt, inference_forward=10, vae=5)
    # 2 embeddings x 3 steps x (10 + 7 + 5) + 2 x 4 crops x (10 + 5)
    assert out["optimisation"] == 132 and out["inference"] == 120 and out["total"] == 252
    counted = architecture_flops(tiny_backbone.unet, tiny_backbone.vae, preset)
    assert counted["per_keypoint"] == 2 * 3 * (
        counted["forward_stopped"] + counted["backward"] + counted["vae_encode"]
    ) + 2 * 4 * (counted["forward_stopped"] + counted["vae_encode"])
    assert counted["per_keypoint_full_forward"] > counted["per_keypoint"]


def test_gpu_seconds_is_flops_over_the_assumed_rate():
    assert gpu_seconds(3e12, GpuAssumption("x", 2.0, "")) == pytest.approx(1.5)


@pytest.mark.slow
def test_sd15_count_on_random_weights_equals_the_meta_count():
    """Once, at batch 1: SD 1.5 architecture with random weights, 512 px (several GB)."""
    from difflens.models.sd_configs import build_sd_unet

    unet = build_sd_unet("1.5")
    layers = ["up1.attn0.cross", "up1.attn1.cross", "up1.attn2.cross", "up2.attn0.cross"]
    meta = pass_flops(unet, 512, layers=layers)
    _classic(unet)
    real = pass_flops(unet, 512, layers=layers, device="cpu")
    assert real == meta
