"""Rows, DDIM inversion and stacks against independent references: the extractor's own
passes, a ResNet's submodules, diffusers' DDIM sampler and a hand-derived timestep table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from difflens.data.toy import ToyPairs
from difflens.features.extractor import FeatureExtractor
from difflens.features.store import FeatureStore
from difflens.features.trajectory import (
    InversionConfig,
    Row,
    StackSpec,
    collect_stacks,
    ddim_invert,
    forward_rows,
    hyperfeatures_inversion,
    hyperfeatures_steps,
    inversion_plan,
    stack_nbytes,
    stack_timesteps,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small maps run fastest on one thread (and a shared machine's cores stay free)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy():
    from difflens.models.backbone import load_backbone

    return load_backbone("toy")


@pytest.fixture(scope="module")
def extractor(toy):
    return FeatureExtractor(toy, image_size=64)


@pytest.fixture(scope="module")
def images():
    pairs = ToyPairs(2, split="validation", size=64)
    return [pairs[0].source_image, pairs[0].target_image, pairs[1].source_image]


def test_rows_with_their_own_timestep_and_prompt_equal_separate_passes(extractor, images):
    latents = extractor.encode(images)
    rows = [Row(0, 50, "circle"), Row(1, 50, ""), Row(2, 0, ""), Row(0, 200, "square", draw=1)]
    layers = ["up1.res2.conv2", "up2"]
    maps = forward_rows(extractor, latents, rows, layers)
    for r, row in enumerate(rows):
        # the reference: the extractor's own pass for that image, timestep and prompt alone
        # (draw k under shared noise is the generator seed + k: noise_seed = seed + k, draw 0)
        ref = extractor.features_for_settings(
            latents[[row.image]],
            layers,
            [row.timestep],
            prompts=[row.prompt],
            noise_seed=extractor.seed + row.draw,
        )[0]
        for name in layers:
            torch.testing.assert_close(maps[name][r], ref[name][0], atol=1e-5, rtol=1e-5)


def test_residual_branch_hook_equals_the_resnets_own_submodules(extractor, images):
    name = "up1.res2"
    resnet = extractor.registry.module(name)
    assert resnet.time_embedding_norm == "default" and resnet.upsample is None
    seen = {}

    def pre_hook(module, args, kwargs):
        seen["x"] = args[0]
        seen["temb"] = args[1] if len(args) > 1 else kwargs["temb"]

    handle = resnet.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        latents = extractor.encode(images[:2])
        maps = forward_rows(
            extractor, latents, [Row(0, 100), Row(1, 300, "cross")], [f"{name}.conv2", name]
        )
    finally:
        handle.remove()
    x, temb = seen["x"], seen["temb"]
    with torch.no_grad():  # ResnetBlock2D's residual branch, step by step from its submodules
        h = resnet.conv1(resnet.nonlinearity(resnet.norm1(x)))
        h = h + resnet.time_emb_proj(resnet.nonlinearity(temb))[:, :, None, None]
        h = resnet.conv2(resnet.dropout(resnet.nonlinearity(resnet.norm2(h))))
        skip = x if resnet.conv_shortcut is None else resnet.conv_shortcut(x)
    torch.testing.assert_close(maps[f"{name}.conv2"], h, atol=1e-5, rtol=1e-5)
    # and the block's output is (shortcut + branch) / output_scale_factor
    torch.testing.assert_close(
        maps[name], (skip + h) / resnet.output_scale_factor, atol=1e-5, rtol=1e-5
    )
    info = extractor.registry.info(f"{name}.conv2")
    assert (info.kind, info.module_path) == ("residual", "up_blocks.1.resnets.2.conv2")


def test_hyperfeatures_timesteps_from_the_notes():
    # Diffusion Hyperfeatures: 50 steps, saved indices [49, 45, ..., 0]; index s is call 49 - s and the
    # U-Net sees -1 at call 0 and 20 (k - 1) at call k: -1, 60, 160, ..., 960
    from diffusers import DDPMScheduler

    from difflens.models.sd_configs import SD_SCHEDULER

    class Stub:  # only the scheduler config is read
        scheduler = DDPMScheduler(**SD_SCHEDULER)

    steps = hyperfeatures_steps()
    assert steps == (0, 4, 9, 14, 19, 24, 29, 34, 39, 44, 49)
    plan = inversion_plan(Stub, hyperfeatures_inversion())
    assert [plan.timesteps[k] for k in steps] == [
        -1,
        60,
        160,
        260,
        360,
        460,
        560,
        660,
        760,
        860,
        960,
    ]
    assert plan.grid[:3] == (0, 20, 40) and plan.alpha_in[0] == 1.0
    # SD's own config has steps_offset = 1: every timestep moves by one
    sd_config = dict(SD_SCHEDULER, steps_offset=1)
    Stub.scheduler = DDPMScheduler(**sd_config)
    own = inversion_plan(Stub, InversionConfig(num_steps=50))
    assert own.grid[:3] == (1, 21, 41) and own.timesteps[:3] == (0, 1, 21)
    abar = torch.cumprod(1 - Stub.scheduler.betas.double(), 0)
    assert own.alpha_out[1] == pytest.approx(float(abar[21]))


def test_an_inversion_step_is_the_exact_inverse_of_diffusers_ddim_step(toy):
    # for one fixed noise prediction, diffusers' DDIM step (eta = 0) from g_k back to g_{k-1}
    # undoes the inversion's move from level a_k = abar[g_{k-1}] to abar[g_k], up to the
    # float32 rounding of diffusers' alphas_cumprod
    from diffusers import DDIMScheduler

    from difflens.features.trajectory import _ddim_move

    plan = inversion_plan(toy, InversionConfig(num_steps=20))
    scheduler = DDIMScheduler.from_config(toy.scheduler.config, clip_sample=False)
    scheduler.set_timesteps(20)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 3, 8, 8, generator=g).double(), torch.randn(2, 3, 8, 8, generator=g)
    for k in (0, 1, 7, 19):
        moved = _ddim_move(x, eps.double(), plan.alpha_in[k], plan.alpha_out[k], "epsilon")
        back = scheduler.step(eps.double(), plan.grid[k], moved, eta=0.0).prev_sample
        torch.testing.assert_close(back, x, atol=1e-6, rtol=1e-6)  # float32 alphas_cumprod


def test_inversion_then_ddim_sampling_returns_the_latent(extractor, images):
    from diffusers import DDIMScheduler

    latents = extractor.encode(images[:2])
    config = InversionConfig(num_steps=20)
    result = ddim_invert(extractor, latents, config, run_all=True)
    assert result.calls == 20
    # sample back with diffusers' own DDIM step (eta = 0), the same grid; the toy config
    # clips x0 for sampling, which an exact inverse must not do
    scheduler = DDIMScheduler.from_config(extractor.backbone.scheduler.config, clip_sample=False)
    scheduler.set_timesteps(20)
    x = result.latents.clone()
    emb = extractor.prompts([""] * 2)
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = extractor.backbone.unet(x, t, encoder_hidden_states=emb).sample
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    error = (x - latents).abs()
    # stated tolerance on the toy model at 20 steps (pixels in [-1, 1]): mean 0.2, RMS 0.25.
    # Measured (toy fingerprint 687ca5a8f47c850a): mean 0.113, RMS 0.158 (50 steps: 0.066,
    # 0.104); an earlier toy model gave 0.158, 0.199. The approximation of DDIM
    # inversion (the noise predicted at the current level, not the next) is large for this
    # small pixel-space model, whose noise prediction changes fast at small timesteps.
    assert float(error.mean()) < 0.2
    assert float(error.pow(2).mean().sqrt()) < 0.25
    # far closer to its own image than the two images are to each other
    assert float(error.mean()) < 0.5 * float((latents[0] - latents[1]).abs().mean())


def test_features_captured_during_inversion_equal_a_separate_pass(extractor, images):
    latents = extractor.encode(images[:1])
    config = InversionConfig(num_steps=10)
    layer = "up2.res1.conv2"
    collected = ddim_invert(extractor, latents, config, layers=[layer], steps=[3])
    before = ddim_invert(extractor, latents, config, steps=[2], layers=[layer])  # stops after 2
    plan = inversion_plan(extractor.backbone, config)
    with torch.no_grad():
        seen = {}
        handle = extractor.registry.module(layer).register_forward_hook(
            lambda m, a, out: seen.setdefault("map", out)
        )
        try:
            extractor.backbone.unet(
                before.latents,
                torch.tensor([plan.timesteps[3]]),
                encoder_hidden_states=extractor.prompts([""]),
            )
        finally:
            handle.remove()
    assert collected.calls == 4 and collected.timesteps == {3: plan.timesteps[3]}
    torch.testing.assert_close(collected.features[3][layer], seen["map"], atol=1e-4, rtol=1e-4)


def test_stacks_are_stored_in_float16_and_equal_resized_separate_passes(
    extractor, images, tmp_path
):
    store = FeatureStore(tmp_path)
    spec = StackSpec(("up1.res1", "up3.res0.conv2"), mode="noise", timesteps=(0, 100), grid=16)
    stacks = collect_stacks(images[:2], extractor, spec, store=store)
    assert stacks[0].dtype == torch.float16 and stacks[0].shape == (2, 64 + 16, 16, 16)
    assert store.count("stack") == 2
    again = collect_stacks(images[:2], extractor, spec, store=store)
    assert store.stats["hits"] == 2 and torch.equal(again[1], stacks[1])
    for s, t in enumerate(spec.timesteps):
        ref = extractor.features(images[1:2], list(spec.layers), t)
        parts = [
            F.interpolate(ref[name], size=(16, 16), mode="bilinear", align_corners=False)
            for name in spec.layers
        ]
        expected = torch.cat(parts, 1)[0]
        torch.testing.assert_close(stacks[1][s].float(), expected, atol=2e-3, rtol=2e-3)
    assert stack_timesteps(spec, extractor.backbone) == [0, 100]
    assert stack_nbytes(spec, [64, 16]) == stacks[0].numel() * 2


def test_inversion_stack_timesteps_and_a_bad_step(extractor, images):
    spec = StackSpec(("up2.res0",), steps=(0, 2), inversion=InversionConfig(num_steps=5), grid=8)
    assert stack_timesteps(spec, extractor.backbone) == [0, 200]  # grid 0, 200, ... at 5 steps
    stack = collect_stacks(images[:1], extractor, spec)[0]
    assert stack.shape == (2, 32, 8, 8) and np.isfinite(stack.float().numpy()).all()
    with pytest.raises(ValueError, match="outside"):
        ddim_invert(extractor, extractor.encode(images[:1]), InversionConfig(5), steps=[5])


def test_hyperfeatures_quirk_feeds_timestep_minus_one_to_the_first_call(extractor, images):
    latents = extractor.encode(images[:1])
    layer = "up1.res0.conv2"
    quirk = ddim_invert(extractor, latents, hyperfeatures_inversion(5), layers=[layer], steps=[0])
    plain = ddim_invert(extractor, latents, InversionConfig(5), layers=[layer], steps=[0])
    assert quirk.timesteps == {0: -1} and plain.timesteps == {0: 0} and quirk.calls == 1
    with torch.no_grad():  # the same clean latent, the U-Net told timestep -1
        seen = {}
        handle = extractor.registry.module(layer).register_forward_hook(
            lambda m, a, out: seen.setdefault("map", out)
        )
        try:
            extractor.backbone.unet(
                latents, torch.tensor([-1]), encoder_hidden_states=extractor.prompts([""])
            )
        finally:
            handle.remove()
    torch.testing.assert_close(quirk.features[0][layer], seen["map"], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(quirk.features[0][layer], plain.features[0][layer])
