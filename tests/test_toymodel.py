"""The trained toy models: committed files, loading through from_pretrained, the pixel-space
(no VAE) extraction path, the training batch and targets, and the training loop with its
resume."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from difflens.models.toy import (
    MAX_WEIGHTS_MB,
    TOY_MODELS,
    TRAIN_SEED_START,
    VALIDATION_SEED_START,
    toy_model_path,
)
from difflens.models.toy_training import (
    PRESETS,
    ToyTrainConfig,
    build_unet,
    caption,
    render_batch,
    scene_classes,
    train,
)

TRAINING_BUDGET_MINUTES = 180  # every model and trial together, on a shared 2-core CPU


@pytest.fixture(scope="module")
def toy_backbone():
    from difflens.models.backbone import load_backbone

    return load_backbone("toy")


@pytest.mark.parametrize("model", sorted(TOY_MODELS))
def test_committed_weights_are_safetensors_under_the_size_limit(model):
    folder = toy_model_path(model)
    weights = list(folder.rglob("*.safetensors"))
    assert {w.parent.name for w in weights} == {"unet", "text_encoder"}
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    total = sum(w.stat().st_size for w in weights)
    assert total <= MAX_WEIGHTS_MB * 1e6
    for name in ("MODEL_CARD.md", "loss_curve.png", "training_log.json"):
        assert (folder / name).is_file(), name


@pytest.mark.parametrize("model", sorted(TOY_MODELS))
def test_the_exported_unet_is_a_plain_unet_of_the_recipe(model):
    from safetensors.torch import load_file

    folder = toy_model_path(model)
    config = ToyTrainConfig.from_dict(
        json.loads((folder / "training_log.json").read_text())["config"]
    )
    saved = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    fresh = build_unet(config).state_dict()
    assert set(saved) == set(fresh)  # no head weights travel with the U-Net
    assert all(saved[k].shape == fresh[k].shape for k in fresh)
    assert config.has_heads == (model == "toy")


def test_load_backbone_toy_uses_the_same_from_pretrained_path(toy_backbone):
    from diffusers import UNet2DConditionModel

    assert toy_backbone.source == str(toy_model_path())
    assert toy_backbone.vae is None
    assert toy_backbone.latent_scale == 1 and toy_backbone.scaling_factor == 1.0
    reference = UNet2DConditionModel.from_pretrained(toy_model_path(), subfolder="unet")
    ours = toy_backbone.unet.state_dict()
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=0)
    # a folder path loads the same model as the "toy" alias
    from difflens.models.backbone import load_backbone

    by_folder = load_backbone(str(toy_model_path()), with_text=False)
    assert by_folder.fingerprint() != toy_backbone.fingerprint()  # model id is hashed too
    torch.testing.assert_close(by_folder.unet.conv_in.weight, toy_backbone.unet.conv_in.weight)
    denoiser = load_backbone("toy-denoiser", with_text=False)
    assert denoiser.source == str(toy_model_path("toy-denoiser"))
    assert not torch.equal(denoiser.unet.conv_in.weight, toy_backbone.unet.conv_in.weight)


def test_model_cards_match_the_training_logs():
    minutes = 0.0
    for model in TOY_MODELS:
        folder = toy_model_path(model)
        log = json.loads((folder / "training_log.json").read_text())
        config = ToyTrainConfig.from_dict(log["config"])
        card = (folder / "MODEL_CARD.md").read_text()
        assert len(log["loss"]) == config.steps
        final = float(np.mean(log["loss"][-50:]))
        assert f"{final:.4f}" in card
        assert f"{config.steps:,} steps" in card
        assert f"{log['wall_seconds'] / 60:.1f} min" in card
        last = TRAIN_SEED_START + config.first_scene + config.steps * config.batch_size - 1
        assert f"{last:,}" in card
        assert ("positive control" in card.splitlines()[0]) == config.has_heads
        stages = log.get("stages", [])
        assert [s["preset"] for s in stages] == (
            ["control-stage1", "control-stage2", "control-stage3"] if model == "toy" else []
        )
        # the denoising loss went down from about 1 (the noise's variance) at the start
        assert final < 0.1 and all(s["final_loss"] < 0.1 for s in stages)
        if not stages:
            assert final < 0.1 * float(np.mean(log["loss"][:50]))
        minutes += (log["wall_seconds"] + sum(s["wall_seconds"] for s in stages)) / 60
    assert minutes <= TRAINING_BUDGET_MINUTES
    # training seeds never reach the validation or the test (held-out) seeds
    assert TRAIN_SEED_START > VALIDATION_SEED_START + 10_000


def test_the_denoiser_is_the_first_control_stage_without_heads():
    stage1, denoiser = asdict(PRESETS["control-stage1"]), asdict(PRESETS["denoiser"])
    differ = {k for k in stage1 if stage1[k] != denoiser[k]}
    assert differ == {"class_heads", "part_heads", "aux_weight", "uncond_prob"}
    assert PRESETS["control-stage1"].has_heads and not PRESETS["denoiser"].has_heads
    # the positive control's stages follow one another, each on scenes after the last's
    chain, end = ["control-stage1", "control-stage2", "control-stage3", "control"], 0
    for earlier, later in zip(chain, chain[1:]):
        assert PRESETS[later].init_from == earlier and PRESETS[later].has_heads
        end = PRESETS[earlier].first_scene + PRESETS[earlier].steps * PRESETS[earlier].batch_size
        assert PRESETS[later].first_scene >= end


def test_caption_lists_present_shapes_in_a_fixed_order():
    assert caption(["key", "arrow", "key"]) == "arrow, key"
    assert caption([]) == ""


def test_training_batch_targets_match_the_scenes_masks():
    from difflens.data.toy import locate_seed, make_toy_scene
    from difflens.data.toy.shapes import class_id

    config = replace(PRESETS["control"], render_sizes=(64, 128))
    seeds = [TRAIN_SEED_START + 10, TRAIN_SEED_START + 11]  # one of each render size
    batch = render_batch(seeds, config)
    assert batch.pixels.shape == (2, 3, 64, 64) and batch.class_maps.shape == (2, 64, 64)
    for row, seed in enumerate(seeds):
        split, offset = locate_seed(seed)
        scene = make_toy_scene(offset, 64, config.n_objects, scene_classes(seed, config), split)
        expected = np.zeros((64, 64), np.int64)
        for mask, name in zip(scene.masks, scene.class_names):
            expected[mask] = class_id(name)
        np.testing.assert_array_equal(batch.class_maps[row].numpy(), expected)
        assert ((batch.part_maps[row] > 0) == (batch.class_maps[row] > 0)).all()
        assert batch.captions[row] == caption(scene.class_names)


def test_pixel_space_extraction_feeds_the_unet_raw_pixels(toy_backbone):
    from difflens.data.toy import make_toy_scene
    from difflens.features.extractor import FeatureExtractor

    extractor = FeatureExtractor(toy_backbone, image_size=64)
    image = make_toy_scene(3, size=64).image
    pixels = extractor.encode([image])
    expected = torch.from_numpy(image.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)
    torch.testing.assert_close(pixels[0], expected)
    # feature map sizes follow from 64 px with no VAE: 64 / 2**stage
    feats = extractor.features([image], ["down0.res0", "down2.attn1", "mid.attn0"], timestep=0)
    assert feats["down0.res0"].shape[-2:] == (64, 64)
    assert feats["down2.attn1"].shape[-2:] == (16, 16)
    assert feats["mid.attn0"].shape[-2:] == (8, 8)
    with pytest.raises(ValueError, match="positive multiple of 1"):
        FeatureExtractor(toy_backbone, image_size=0)


def test_the_hooked_output_layer_matches_a_plain_forward(toy_backbone):
    from difflens.features.extractor import FeatureExtractor

    extractor = FeatureExtractor(toy_backbone, image_size=64)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = extractor.encode([image])
    text = extractor.text_embedding("")
    with torch.no_grad():
        reference = toy_backbone.unet(x, torch.tensor([0]), encoder_hidden_states=text).sample
    hooked = extractor.features([image], ["up3"], timestep=0)["up3"]
    # up3's output goes through conv_norm_out, conv_act and conv_out to give the sample
    unet = toy_backbone.unet
    with torch.no_grad():
        out = unet.conv_out(unet.conv_act(unet.conv_norm_out(hooked)))
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)


SMALL = ToyTrainConfig(
    steps=4,
    batch_size=2,
    checkpoint_every=2,
    validation_images=4,
    channels=(8, 16, 16, 16),
    class_heads=("mid",),
    part_heads=("up2.res1",),
)


def test_training_resumes_on_the_same_path(tmp_path):
    straight = train(SMALL, tmp_path / "straight", progress=False)
    train(SMALL, tmp_path / "resumed", progress=False, max_steps=2)
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2 and set(state["heads"]) and set(state["text_encoder"])
    resumed = train(SMALL, tmp_path / "resumed", progress=False)
    assert len(resumed.log["loss"]) == 4 and len(resumed.log["aux_loss"]) == 4
    assert all(a > 0 for a in resumed.log["aux_loss"])
    np.testing.assert_allclose(resumed.log["loss"], straight.log["loss"], rtol=1e-5)
    np.testing.assert_allclose(resumed.log["aux_loss"], straight.log["aux_loss"], rtol=1e-5)
    for module in ("unet", "text_encoder"):
        a_state = getattr(straight, module).state_dict()
        b_state = getattr(resumed, module).state_dict()
        for name in a_state:
            torch.testing.assert_close(a_state[name], b_state[name], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="another training configuration"):
        train(replace(SMALL, steps=5), tmp_path / "resumed", progress=False)


def test_a_pure_denoiser_trains_no_heads_and_keeps_a_frozen_text_encoder_if_asked(tmp_path):
    config = replace(SMALL, steps=2, aux_weight=0.0, train_text_encoder=False)
    result = train(config, tmp_path / "d", progress=False)
    state = torch.load(tmp_path / "d" / "checkpoint.pt", weights_only=False)
    assert "heads" not in state and result.log["aux_loss"] == [0.0, 0.0]
    from difflens.models.toy_training import build_text_side

    _, before = build_text_side(tmp_path / "tok", config.seed)
    for name, tensor in before.state_dict().items():
        torch.testing.assert_close(result.text_encoder.state_dict()[name], tensor)
