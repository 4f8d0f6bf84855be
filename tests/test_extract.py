"""Feature extraction against forwards without hooks, early stop, settings batching, bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from difflens.core.errors import BadInputError
from difflens.data.images import check_image
from difflens.data.images import read_image as load_image
from difflens.data.toy import ToyWorld
from difflens.features.extractor import FeatureExtractor
from difflens.features.hooks import capture, run_unet
from difflens.features.settings import Setting

LAYERS = [
    "down0.attn1",
    "down1.downsample",
    "down2.attn0.query",
    "down2.attn0",
    "mid",
    "up1.res2",
    "up2.upsample",
]


@pytest.fixture(scope="module")
def images():
    world = ToyWorld(n_images=3, size=128)
    return [world[i].image for i in range(3)]


@pytest.fixture(scope="module")
def latents(tiny_extractor, images):
    return tiny_extractor.encode(images)


def _hook_count(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def _hand_encoder(unet, x, t, emb):
    """down2.attn0 and its cross-attention query, computed block by block without hooks."""
    with torch.no_grad():
        temb = unet.time_embedding(unet.time_proj(t).to(x.dtype))
        h = unet.conv_in(x)
        h, _ = unet.down_blocks[0](h, temb, encoder_hidden_states=emb)
        h, _ = unet.down_blocks[1](h, temb, encoder_hidden_states=emb)
        block = unet.down_blocks[2]
        h = block.resnets[0](h, temb)
        attn = block.attentions[0]
        b, _, height, width = h.shape
        tokens = attn.proj_in(attn.norm(h))
        tokens = tokens.permute(0, 2, 3, 1).reshape(b, height * width, -1)
        tb = attn.transformer_blocks[0]
        tokens = tb.attn1(tb.norm1(tokens)) + tokens
        query = tb.attn2.to_q(tb.norm2(tokens))
        query = query.reshape(b, height, width, -1).permute(0, 3, 1, 2)
        out = attn(h, encoder_hidden_states=emb, return_dict=False)[0]
    return out, query


def test_early_stop_equals_full_pass_exactly_and_skips_the_rest(tiny_extractor, latents):
    unet = tiny_extractor.backbone.unet
    calls = []
    handle = unet.up_blocks[-1].register_forward_hook(lambda *a: calls.append(1))
    try:
        for deepest in ("down2.attn0.query", "mid", "up2.upsample"):
            layers = [name for name in LAYERS if LAYERS.index(name) <= LAYERS.index(deepest)]
            early = tiny_extractor.features_from_latents(latents, layers, 0, stop_early=True)
            full = tiny_extractor.features_from_latents(latents, layers, 0, stop_early=False)
            for name in layers:
                assert early[name].dtype == torch.float32
                assert torch.equal(early[name], full[name]), (deepest, name)
        assert len(calls) == 3  # only the three full passes reached the last up block
    finally:
        handle.remove()


def test_noised_ensemble_features_equal_a_hand_run_without_hooks(tiny_extractor, latents):
    unet, scheduler = tiny_extractor.backbone.unet, tiny_extractor.backbone.scheduler
    t, draws = 50, 2
    got = tiny_extractor.features_from_latents(
        latents, ["down2.attn0", "down2.attn0.query"], t, ensemble=draws
    )
    emb = tiny_extractor.text_embedding().expand(len(latents), -1, -1)
    alpha = scheduler.alphas_cumprod[t]
    outs, queries = [], []
    for k in range(draws):  # draw k: torch.randn seeded with seed + k, the same for each image
        noise = torch.randn(
            latents.shape[1:], generator=torch.Generator().manual_seed(tiny_extractor.seed + k)
        )
        x = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
        out, query = _hand_encoder(unet, x, torch.full((len(latents),), t), emb)
        outs.append(out)
        queries.append(query)
    torch.testing.assert_close(got["down2.attn0"], torch.stack(outs).mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        got["down2.attn0.query"], torch.stack(queries).mean(0), rtol=1e-5, atol=1e-5
    )


def test_decoder_capture_matches_the_unhooked_model_output(tiny_extractor, latents):
    unet = tiny_extractor.backbone.unet
    emb = tiny_extractor.text_embedding().expand(len(latents), -1, -1)
    t = torch.zeros(len(latents), dtype=torch.long)
    with torch.no_grad():
        output = unet(latents, t, encoder_hidden_states=emb).sample
        up3 = tiny_extractor.features_from_latents(latents, ["up3"], 0)["up3"]
        rebuilt = unet.conv_out(unet.conv_act(unet.conv_norm_out(up3)))
    torch.testing.assert_close(rebuilt, output, rtol=1e-5, atol=1e-5)


def test_settings_in_one_batch_equal_separate_runs(tiny_backbone, tiny_extractor, latents):
    settings = [Setting(0), Setting(0, 4), Setting(50), Setting(200, 3), Setting(200)]
    layers = ["down2.attn0", "up1.res2"]
    batched = tiny_extractor.features_for_settings(latents, layers, settings)
    chunked = FeatureExtractor(tiny_backbone, image_size=128, max_batch=2).features_for_settings(
        latents, layers, settings
    )
    for setting, together, in_chunks in zip(settings, batched, chunked):
        for i in range(len(latents)):  # each image and setting alone: batch of one
            alone = tiny_extractor.features_from_latents(
                latents[i : i + 1], layers, setting.timestep, ensemble=setting.ensemble
            )
            for name in layers:
                torch.testing.assert_close(
                    together[name][i : i + 1], alone[name], rtol=1e-5, atol=1e-5
                )
                torch.testing.assert_close(in_chunks[name], together[name], rtol=1e-5, atol=1e-5)
    twice = tiny_extractor.features_from_latents(latents, ["down2.attn0", "down2.attn0"])
    assert twice["down2.attn0"].shape[0] == len(latents)
    # t = 0 adds no noise, so its ensemble is one forward; t = 200 x3 averages three draws
    assert Setting(0, 4).draws == 1 and Setting(200, 3).draws == 3
    assert not torch.allclose(batched[3]["down2.attn0"], batched[4]["down2.attn0"])


def test_per_image_noise_follows_the_image_not_its_batch(tiny_backbone, images):
    extractor = FeatureExtractor(tiny_backbone, image_size=128, noise="per-image")
    a = extractor.features(images[:2], ["down1.attn0"], timestep=300)["down1.attn0"]
    b = extractor.features(images[1::-1], ["down1.attn0"], timestep=300)["down1.attn0"]
    torch.testing.assert_close(a[0], b[1], rtol=1e-5, atol=1e-5)
    same = np.stack([images[0], images[0]])
    latents = extractor.encode(list(same))
    keys = ["x", "y"]
    noisy = extractor.noised(latents, 300, keys=keys)
    assert not torch.allclose(noisy[0], noisy[1])  # different keys, different draws
    shared = FeatureExtractor(tiny_backbone, image_size=128).noised(latents, 300)
    torch.testing.assert_close(shared[0], shared[1])


def test_hooks_are_removed_after_success_stop_and_exception(tiny_extractor, latents):
    unet = tiny_extractor.backbone.unet
    before = _hook_count(unet)
    emb = tiny_extractor.text_embedding().expand(len(latents), -1, -1)
    t = torch.zeros(len(latents), dtype=torch.long)
    tiny_extractor.features_from_latents(latents, LAYERS, 0, stop_early=True)
    tiny_extractor.features_from_latents(latents, LAYERS, 0, stop_early=False)
    assert _hook_count(unet) == before

    def explode(module, args):
        raise RuntimeError("boom in the mid block")

    bomb = unet.mid_block.register_forward_pre_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with capture(tiny_extractor.registry, ["down1.attn0.query", "up1.res0"]):
                run_unet(unet, latents, t, emb)
    finally:
        bomb.remove()
    assert _hook_count(unet) == before
    with pytest.raises(KeyError):  # an unknown name fails before anything is hooked
        with capture(tiny_extractor.registry, ["down1.attn0", "nope"]):
            pass
    assert _hook_count(unet) == before


def test_bad_images_get_named_errors(tmp_path, tiny_backbone, images):
    grey = np.zeros((64, 64), np.uint8)
    rgba = np.zeros((64, 64, 4), np.uint8)
    with pytest.raises(BadInputError, match="photo.png: a grey image"):
        check_image(grey, "photo.png")
    with pytest.raises(BadInputError, match="RGBA"):
        check_image(rgba, "x")
    with pytest.raises(BadInputError, match="uint8"):
        check_image(np.zeros((8, 8, 3), np.float32), "x")
    assert check_image(grey, "x", colour="convert").shape == (64, 64, 3)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(BadInputError, match="broken.png cannot be decoded"):
        load_image(broken)
    with pytest.raises(BadInputError, match="missing.jpg"):
        load_image(tmp_path / "missing.jpg")
    Image.fromarray(grey).save(tmp_path / "grey.png")
    with pytest.raises(BadInputError, match="grey.png: a grey image"):
        load_image(tmp_path / "grey.png")
    # converting a grey image equals feeding its three-channel copy
    converting = FeatureExtractor(tiny_backbone, image_size=128, colour="convert")
    grey_image = images[0].mean(2).astype(np.uint8)
    a = converting.features([grey_image], ["down0.res0"])["down0.res0"]
    b = converting.features([np.repeat(grey_image[..., None], 3, 2)], ["down0.res0"])["down0.res0"]
    assert torch.equal(a, b)
    strict = FeatureExtractor(tiny_backbone, image_size=128)
    with pytest.raises(BadInputError, match="image 0: a grey image"):
        strict.features([grey_image], ["down0.res0"])


def test_bad_settings_get_named_errors(tiny_backbone, tiny_extractor, latents):
    for t in (1000, -1):
        with pytest.raises(BadInputError, match=rf"timestep {t} is outside .* 0\.\.999"):
            tiny_extractor.features_from_latents(latents, ["down0.res0"], t)
    with pytest.raises(ValueError, match="ensemble must be >= 1"):
        Setting(10, 0)
    with pytest.raises(KeyError, match="Close matches: down2.attn0"):
        tiny_extractor.features_from_latents(latents, ["down2.attn0", "down2.atn0"])
    for size in (100, 124, (128, 100)):
        with pytest.raises(ValueError, match="multiple of 8"):
            FeatureExtractor(tiny_backbone, image_size=size)


def test_rectangular_images_and_prompts(tiny_backbone, images):
    extractor = FeatureExtractor(
        tiny_backbone, image_size=(128, 192), prompt="a photo of a {class}"
    )
    assert extractor.prompt_for(["cat", "dog", "cat"]) == "a photo of a cat and dog"
    feats = extractor.features(images[:1], ["down2.attn0", "down2.attn0.query"])
    assert feats["down2.attn0"].shape == (1, 96, 4, 6)
    assert feats["down2.attn0.query"].shape == (1, 96, 4, 6)
    plain = FeatureExtractor(tiny_backbone, image_size=(128, 192))
    with_prompt = extractor.features(images[:1], ["down2.attn0"], prompts=["a photo of a cat"])
    assert not torch.allclose(
        with_prompt["down2.attn0"], plain.features(images[:1], ["down2.attn0"])["down2.attn0"]
    )


def test_bf16_stays_close_to_fp32(tiny_extractor, images):
    from difflens.models.backbone import load_backbone

    bf16 = FeatureExtractor(load_backbone("tiny", dtype="bf16"), image_size=128)
    assert bf16.config()["dtype"] == "bfloat16"
    low = bf16.features(images, ["down2.attn0"], timestep=100)["down2.attn0"]
    ref = tiny_extractor.features(images, ["down2.attn0"], timestep=100)["down2.attn0"]
    assert low.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(low.flatten(1), ref.flatten(1))
    assert (cosine > 0.99).all() and not torch.equal(low, ref)


def test_sizes_off_the_unet_grid_run_as_diffusers_runs_them(tiny_backbone):
    """120 x 136 px is a multiple of the VAE factor (8) but not of the U-Net's downsampling:
    diffusers rounds deeper maps up; every captured map has the hand-computed size."""
    extractor = FeatureExtractor(tiny_backbone, image_size=(120, 136))
    names = [info.name for info in extractor.registry if info.kind == "resnet"]
    image = np.random.default_rng(0).integers(0, 256, (90, 100, 3), dtype=np.uint8)
    feats = extractor.features([image], names, timestep=10)
    for name in names:
        scale = extractor.registry.info(name).scale
        # latent 15 x 17; each stride-2 stage rounds up: ceil(15 / scale), ceil(17 / scale)
        expected = (-(-15 // scale), -(-17 // scale))
        assert tuple(feats[name].shape[-2:]) == expected, name
        assert torch.isfinite(feats[name]).all(), name


def test_batches_that_are_not_lists_of_images_are_named(tiny_extractor, tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    for batch, message in (
        (image, r"one array of shape \(64, 64, 3\); pass a list of images: \[image\]"),
        ([], "the list is empty"),
        (str(tmp_path / "x.png"), "single path"),
        ([str(tmp_path / "x.png")], "is a file path, not pixels"),
    ):
        with pytest.raises(BadInputError, match=message):
            tiny_extractor.features(batch, ["down0.res0"], timestep=0)
    stacked = tiny_extractor.features(np.stack([image, image]), ["down0.res0"], timestep=0)
    listed = tiny_extractor.features([image, image], ["down0.res0"], timestep=0)
    torch.testing.assert_close(stacked["down0.res0"], listed["down0.res0"])
