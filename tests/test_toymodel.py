"""The trained toy model: committed files, loading through from_pretrained, the pixel-space
(no VAE) extraction path, and the training loop with its resume (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from difflens.toymodel import (
    MAX_WEIGHTS_MB,
    TRAIN_SEED_START,
    VALIDATION_SEED_START,
    ToyTrainConfig,
    caption,
    toy_model_path,
    train,
)


@pytest.fixture(scope="module")
def toy_backbone():
    from difflens.backbone import load_backbone

    return load_backbone("toy")


def test_committed_weights_are_safetensors_under_the_size_limit():
    folder = toy_model_path()
    weights = list(folder.rglob("*.safetensors"))
    assert {w.parent.name for w in weights} == {"unet", "text_encoder"}
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    total = sum(w.stat().st_size for w in weights)
    assert total <= MAX_WEIGHTS_MB * 1e6
    for name in ("MODEL_CARD.md", "loss_curve.png", "training_log.json"):
        assert (folder / name).is_file(), name


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
    from difflens.backbone import load_backbone

    by_folder = load_backbone(str(toy_model_path()), with_text=False)
    assert by_folder.fingerprint() != toy_backbone.fingerprint()  # model id is hashed too
    torch.testing.assert_close(by_folder.unet.conv_in.weight, toy_backbone.unet.conv_in.weight)


def test_model_card_matches_the_training_log():
    folder = toy_model_path()
    log = json.loads((folder / "training_log.json").read_text())
    config = ToyTrainConfig.from_dict(log["config"])
    card = (folder / "MODEL_CARD.md").read_text()
    assert len(log["loss"]) == config.steps
    final = float(np.mean(log["loss"][-50:]))
    assert f"{final:.4f}" in card
    assert f"{config.steps:,} steps" in card
    assert f"{log['wall_seconds'] / 60:.1f} min" in card
    assert log["wall_seconds"] <= 30 * 60  # the training budget on a 2-core CPU
    # the loss went down: last 50 steps well below the first 50
    assert final < 0.5 * float(np.mean(log["loss"][:50]))
    # training seeds never reach the validation or ToyWorld's default (held-out) seeds
    assert TRAIN_SEED_START > VALIDATION_SEED_START + 10_000


def test_caption_lists_present_shapes_in_a_fixed_order():
    assert caption(["triangle", "circle", "triangle"]) == "circle, triangle"
    assert caption([]) == ""


def test_pixel_space_extraction_feeds_the_unet_raw_pixels(toy_backbone):
    from difflens.datasets import make_toy_scene
    from difflens.extract import FeatureExtractor

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
    with pytest.raises(ValueError, match="multiple of 8"):
        FeatureExtractor(toy_backbone, image_size=60)


def test_the_hooked_output_layer_matches_a_plain_forward(toy_backbone):
    from difflens.extract import FeatureExtractor

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


@pytest.mark.slow
def test_training_resumes_on_the_same_path(tmp_path):
    config = ToyTrainConfig(steps=4, batch_size=2, checkpoint_every=2, validation_images=4)
    straight = train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", progress=False, max_steps=2)
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2
    resumed = train(config, tmp_path / "resumed", progress=False)
    assert len(resumed.log["loss"]) == 4
    np.testing.assert_allclose(resumed.log["loss"], straight.log["loss"], rtol=1e-5)
    for (name, a), b in zip(straight.unet.state_dict().items(), resumed.unet.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match="another training configuration"):
        train(ToyTrainConfig(steps=5, batch_size=2), tmp_path / "resumed", progress=False)
