"""Prompt-embedding optimisation (Hedlin et al. 2023): presets and quirks, timesteps, crops,
the Gaussian target, gradients reaching only the embeddings, inference maps and PCK."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from difflens.correspondence.prompt_inference import (
    CORNERS,
    _centres,
    argmax_xy,
    combine_maps,
    evaluate_prompt_pairs,
    predict_pair,
)
from difflens.correspondence.prompt_optimisation import (
    PROMPT_PRESETS,
    QUIRKS,
    EmbeddingParameters,
    PromptModel,
    crop_box,
    crop_resize,
    ddim_timesteps,
    equivalent_timestep,
    gaussian_target,
    get_prompt_preset,
    optimise_embeddings,
    quirk_table,
)
from difflens.data.toy import ToyPairs


@pytest.fixture(scope="module")
def toy_backbone():
    from difflens.models.backbone import load_backbone

    return load_backbone("toy")


def quick(preset="toy", **changes):
    base = dict(steps=3, n_embeddings=2, inference_crops=5)
    return get_prompt_preset(preset).with_(**{**base, **changes})


# ----------------------------------------------------------------------------- presets


def test_hedlin_preset_holds_the_papers_settings():
    p = PROMPT_PRESETS["hedlin"]
    assert p.model == "CompVis/stable-diffusion-v1-4" and p.image_size == 512
    assert (p.timestep, p.inference_t) == (140, 40)
    assert p.layers == (5, 6, 7, 8) and p.token_index == 1 and p.heads == "upper_half"
    assert (p.n_embeddings, p.steps, p.inference_crops) == (5, 129, 20)
    assert p.lr == pytest.approx(0.0023756, abs=1e-7)
    assert p.sigma == pytest.approx(27.98, abs=0.005)
    assert p.crop_fraction == pytest.approx(0.9317, abs=5e-5) and p.crop_margin == 0.15
    assert (p.noise, p.pixel_softmax, p.exclude_full_resolution) == ("uniform", "per_layer", True)
    assert p.context == "full"


def test_every_quirk_has_a_faithful_and_a_clean_value():
    hedlin = PROMPT_PRESETS["hedlin"]
    clean = hedlin.clean()
    for name, (faithful, cleaned, _) in QUIRKS.items():
        assert getattr(hedlin, name) == faithful, name
        assert getattr(clean, name) == cleaned, name
    assert clean.inference_t == clean.timestep == 140
    assert get_prompt_preset("hedlin+clean") == clean
    only_noise = hedlin.clean("noise")
    assert only_noise.noise == "gaussian" and only_noise.heads == "upper_half"
    assert list(quirk_table("hedlin").faithful) == [str(v[0]) for v in QUIRKS.values()]
    with pytest.raises(KeyError):
        hedlin.clean("nonsense")
    with pytest.raises(ValueError):
        hedlin.with_(noise="pink")


def test_timesteps_are_those_of_hedlins_ddim_scheduler():
    from diffusers import DDIMScheduler

    s = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    s.set_timesteps(50)
    assert ddim_timesteps() == s.timesteps.tolist()
    assert ddim_timesteps()[-8] == 140 and ddim_timesteps()[-3] == 40


def test_toy_timesteps_carry_sds_noise_levels(toy_backbone):
    from diffusers import DDPMScheduler

    sd = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    toy = toy_backbone.scheduler.alphas_cumprod
    p = PROMPT_PRESETS["toy"]
    assert p.timestep == equivalent_timestep(140, sd.alphas_cumprod, toy)
    assert p.inference_t == equivalent_timestep(40, sd.alphas_cumprod, toy)
    assert abs(float(toy[p.timestep]) - float(sd.alphas_cumprod[140])) < 2e-3
    assert p.sigma == pytest.approx(27.97853316316864 / 8)


# ----------------------------------------------------------------------------- crops, targets


def test_crop_box_follows_hedlins_rule():
    g = torch.Generator().manual_seed(0)
    # 512 px, 93.17 %: side int(477.0) = 477, margin int(477 * 0.15) = 71
    assert crop_box((0, 0), 512, 0.9316549294381423, 0.15, g) == (0, 0, 477)
    assert crop_box((512, 512), 512, 0.9316549294381423, 0.15, g) == (35, 35, 477)
    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y = rng.uniform(0, 511, 2)
        x0, y0, side = crop_box((x, y), 512, 0.9316549294381423, 0.15, g)
        assert 0 <= x0 <= 512 - side and 0 <= y0 <= 512 - side
        # the point stays >= 71 px inside unless the image border forbids it
        assert x - x0 >= min(71, x) - 1 and x0 + side - x >= min(71, 512 - x) - 1
        assert y - y0 >= min(71, y) - 1 and y0 + side - y >= min(71, 512 - y) - 1


def test_crop_resize_takes_the_box_and_resizes_back():
    image = torch.zeros(1, 1, 8, 8)
    image[..., 4:, 4:] = 1.0  # bottom-right quadrant
    out = crop_resize(image, [(4, 4, 4), (0, 0, 4), (0, 0, 8)], 8)
    assert torch.allclose(out[0], torch.ones(1, 8, 8))
    assert torch.allclose(out[1], torch.zeros(1, 8, 8))
    assert torch.equal(out[2], image[0])


def test_gaussian_target_is_unnormalised_with_peak_one():
    g = gaussian_target(torch.tensor([[3.0, 5.0]]), 16, sigma=2.0)[0]
    assert g[5, 3] == 1.0  # row y = 5, column x = 3
    assert g[5, 5] == pytest.approx(math.exp(-0.5))  # 2 px = one sigma away in x
    assert g[8, 7] == pytest.approx(math.exp(-(16 + 9) / 8))


# ----------------------------------------------------------------------------- optimisation


def test_full_and_token_contexts(toy_backbone):
    g = torch.Generator().manual_seed(0)
    full = EmbeddingParameters(3, PromptModel(toy_backbone, quick()), g)
    assert full.context().shape == (3, 77, 64) and full.context() is full.parameter
    model = PromptModel(toy_backbone, quick(context="tokens", n_tokens=2, prompt="circle"))
    tokens = EmbeddingParameters(3, model, g)
    ctx = tokens.context()
    base = model.base_context()
    assert ctx.shape == (3, 77, 64) and tokens.parameter.shape == (3, 2, 64)
    assert torch.equal(ctx[:, 1:3], tokens.parameter)
    assert torch.equal(ctx[:, 0], base[:, 0].expand(3, -1))
    assert torch.equal(ctx[:, 3:], base[:, 3:].expand(3, -1, -1))


@pytest.mark.parametrize("context", ["full", "tokens"])
def test_gradients_reach_only_the_embeddings(toy_backbone, context):
    model = PromptModel(toy_backbone, quick(context=context))
    unet = toy_backbone.base_unet
    weights = {n: p.detach().clone() for n, p in unet.named_parameters()}
    pair = ToyPairs(n_pairs=1, size=64)[0]
    found = optimise_embeddings(model, pair.source_image, pair.source_points[:2], seed=1)
    assert found.contexts.shape == (2, 2, 77, 64) and found.losses.shape == (3, 2, 2)
    changed = (found.contexts - found.initial).abs().flatten(2).amax(-1)
    assert (changed > 0).all()  # every embedding moved
    if context == "tokens":  # only the learnt vector moved
        assert torch.equal(found.contexts[..., 2:, :], found.initial[..., 2:, :])
        assert torch.equal(found.contexts[..., 0, :], found.initial[..., 0, :])
    for name, p in unet.named_parameters():
        assert not p.requires_grad and p.grad is None, name
        assert torch.equal(p, weights[name]), name
    others = [toy_backbone.text_encoder, toy_backbone.vae]
    for module in filter(None, others):  # the text encoder (and a VAE) get nothing either
        assert all(p.grad is None for p in module.parameters())


def test_gradient_equals_a_finite_difference(tiny_backbone):
    """d loss / d context along a random direction, against a central difference (float64)."""
    preset = get_prompt_preset("hedlin").with_(image_size=64, heads="all")
    model = PromptModel(tiny_backbone, preset)
    unet = tiny_backbone.base_unet.double()
    try:
        g = torch.Generator().manual_seed(0)
        latents = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
        target = torch.rand(2, len(model.layers), 8, 8, generator=g, dtype=torch.float64)
        context = torch.randn(2, 77, 64, generator=g, dtype=torch.float64)
        direction = torch.randn(2, 77, 64, generator=g, dtype=torch.float64)

        def loss(ctx, grad):
            maps = model.maps(latents, 140, ctx, grad=grad, size=8).double()
            return ((maps - target) ** 2).mean()

        ctx = context.clone().requires_grad_(True)
        loss(ctx, True).backward()
        analytic = float((ctx.grad * direction).sum())
        h = 1e-4
        numeric = (loss(context + h * direction, False) - loss(context - h * direction, False)) / (
            2 * h
        )
        assert analytic == pytest.approx(float(numeric), rel=1e-5)
    finally:
        unet.float()


def test_optimisation_lowers_the_loss_and_keeps_memory_flat(toy_backbone):
    model = PromptModel(toy_backbone, quick(steps=12, n_embeddings=2))
    pair = ToyPairs(n_pairs=1, size=64, seed=3)[0]
    found = optimise_embeddings(
        model, pair.source_image, pair.source_points[:1], seed=0, track_memory=True
    )
    first, last = found.losses[:3].mean(), found.losses[-3:].mean()
    assert last < first
    assert len(found.memory) == 12 and all(m is None or m > 0 for m in found.memory)
    if found.memory[0] is not None:  # resident memory after step 2 vs the last step
        assert found.memory[-1] - found.memory[2] < 50 * 2**20


def test_a_frozen_check_refuses_trainable_weights(toy_backbone):
    from difflens.analysis.controls import random_weights_backbone

    copy = random_weights_backbone(toy_backbone, seed=0)
    copy.base_unet.requires_grad_(True)
    with pytest.raises(ValueError, match="freeze"):
        PromptModel(copy, quick())


# ----------------------------------------------------------------------------- inference


def test_argmax_and_crop_centres():
    maps = torch.zeros(2, 4, 5)
    maps[0, 3, 1] = 1.0
    maps[1, 0, 4] = 2.0
    maps[1, 2, 2] = 2.0  # a tie: the first in row-major order wins
    assert argmax_xy(maps).tolist() == [[1.0, 3.0], [4.0, 0.0]]
    sums = torch.zeros(1, 2, 6, 6)
    counts = torch.zeros(1, 1, 6, 6)
    for step, (x, y) in enumerate(CORNERS):
        assert _centres(step, sums, counts, 6) == [[6.0 * x, 6.0 * y]]
    sums[0, 0, 2, 4] = 3.0  # layer 0 peaks at x = 4, y = 2; uncovered pixels count 0
    counts[0, 0, 2, 4] = 1.0
    assert _centres(4, sums, counts, 6) == [[4.5, 2.5]]


def test_per_layer_softmax_changes_the_layer_balance():
    # layer 0: flat at 0.5 with a tiny bump at (x=0, y=0); layer 1: 0.9 at (x=1, y=1), 0 elsewhere.
    canvas = torch.zeros(1, 1, 2, 2, 2)
    canvas[0, 0, 0] = 0.5
    canvas[0, 0, 0, 0, 0] = 0.8
    canvas[0, 0, 1, 1, 1] = 0.9
    plain = combine_maps(canvas, "none")[0]  # means: (0,0) 0.4, (1,1) 0.7 -> (1, 1)
    assert argmax_xy(plain).tolist() == [1.0, 1.0]
    # softmax of layer 0: e^0.8 / (e^0.8 + 3 e^0.5) = 2.2255 / 7.1717 = 0.3103 at (0, 0), 0.2299
    # elsewhere; layer 1: e^0.9 / (e^0.9 + 3) = 2.4596 / 5.4596 = 0.4505 at (1, 1), 0.1832
    # elsewhere. Means: (0, 0) (0.3103 + 0.1832) / 2 = 0.2467; (1, 1) (0.2299 + 0.4505) / 2 = 0.3402
    soft = combine_maps(canvas, "per_layer")[0]
    assert soft[0, 0] == pytest.approx(0.2467, abs=1e-4)
    assert soft[1, 1] == pytest.approx(0.3402, abs=1e-4)
    with pytest.raises(ValueError):
        combine_maps(canvas, "both")


def test_predict_pair_and_pck_against_a_hand_count(toy_backbone):
    model = PromptModel(toy_backbone, quick())
    pairs = ToyPairs(n_pairs=2, size=128, seed=5)
    one = predict_pair(model, pairs[0], seed=0, keep_maps=True, keypoints_per_pass=2)
    n = len(pairs[0])
    assert one.pred.shape == (n, 2) and one.maps["target"].shape == (n, 64, 64)
    assert np.allclose(one.pred, one.pred_frame * 2)  # 128 px target, 64 px frame
    assert np.all(one.pred_frame % 1 == 0.5)  # argmax + 0.5
    run = evaluate_prompt_pairs(pairs, model, alphas=(0.1,), n_boot=50, progress=False)
    p = run.predictions
    side = np.array(
        [
            max(pr.target_box[2] - pr.target_box[0], pr.target_box[3] - pr.target_box[1])
            for pr in pairs
            for _ in range(len(pr))
        ]
    )
    per_pair = (p.error_px.to_numpy() <= 0.1 * side).astype(float)
    hand = p.assign(ok=per_pair).groupby("pair_id", sort=False).ok.mean().mean()
    value = run.pck(0.1, "target_bbox", "per_image")
    interval = run.summary(0.1, "target_bbox", "per_image")["all"]
    assert value == pytest.approx(hand) and interval["low"] <= value <= interval["high"]
    assert interval["pck"] == value and interval["n_points"] == len(p)
    assert run.counts == {"pairs_matched": 2, "pairs_skipped": 0}
    # the rows hold the feature-matching columns too: the source points, valid matches
    assert np.allclose(p[["src_x", "src_y"]], np.concatenate([pr.source_points for pr in pairs]))
    assert p.valid.all() and (p.score > 0).all()
    hits = run.source_hits()
    assert hits["n"] == len(p) and 0 <= hits["initial"] <= 1 and 0 <= hits["optimised"] <= 1


@pytest.mark.slow
def test_hedlin_preset_runs_on_the_sd15_architecture():
    """SD 1.5 architecture with random weights at 512 px: layers 5-8, 2 steps, 5 crops."""
    from difflens.models.sd_configs import build_sd_backbone

    backbone = build_sd_backbone("1.5")
    preset = get_prompt_preset("hedlin").with_(steps=2, n_embeddings=2, inference_crops=5)
    model = PromptModel(backbone, preset)
    assert model.layers == [
        "up1.attn0.cross",
        "up1.attn1.cross",
        "up1.attn2.cross",
        "up2.attn0.cross",
    ]
    pair = ToyPairs(n_pairs=1, size=512)[0]
    one = predict_pair(model, pair, seed=0, keypoints_per_pass=1, track_memory=True)
    assert one.pred.shape == (len(pair), 2) and np.all(one.pred_frame % 1 == 0.5)
    assert all(p.grad is None for p in backbone.base_unet.parameters())
