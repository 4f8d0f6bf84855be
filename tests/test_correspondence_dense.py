"""Dense features for correspondence: the cached path against a direct extractor call, DIFT's
per-draw posterior sampling against encoding the copies, per-image prompts in the cache key,
and the bounded map cache."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from difflens.correspondence.dense import MapCache, dense_features, image_key
from difflens.features.extractor import FeatureExtractor
from difflens.features.settings import Setting
from difflens.features.store import FeatureStore


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (90, 150, 3), dtype=np.uint8) for _ in range(2)]


def test_dense_path_equals_a_direct_extractor_call(tiny_backbone, images, tmp_path):
    extractor = FeatureExtractor(
        tiny_backbone, image_size=128, prompt="a photo of a {class}", store=FeatureStore(tmp_path)
    )
    setting = Setting(261, 3)
    maps = dense_features(images, extractor, "up1", [setting], categories=["cat", "dog"])
    assert maps.counts["done"] == 2
    for image, category in zip(images, ["cat", "dog"]):
        key = image_key(image, f"a photo of a {category}")
        direct = extractor.features(
            [image], ["up1"], 261, ensemble=3, prompts=[f"a photo of a {category}"]
        )["up1"][0]
        assert torch.allclose(maps[key][0]["up1"], direct, atol=1e-6)
    again = dense_features(images, extractor, "up1", [setting], categories=["cat", "dog"])
    assert again.counts["cached"] == 2  # served from the store
    # the prompt is part of the cache key: another category is computed, and differs
    other = dense_features(images[:1], extractor, "up1", [setting], categories=["bird"])
    assert other.counts["done"] == 1
    (bird,) = other.values()
    cat = maps[image_key(images[0], "a photo of a cat")]
    assert not torch.allclose(bird[0]["up1"], cat[0]["up1"])


def _draw_seed(seed: int, draw: int, key: str) -> int:
    """The documented seed rule, written out: first 60 bits of SHA-256 of 'seed:draw:key'."""
    return int(hashlib.sha256(f"{seed}:{draw}:{key}".encode()).hexdigest()[:15], 16)


def _randn(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _dift_path(backbone, image, size, timestep, n, seed, prompt_embedding):
    """DIFT's way: the image repeated n times, each copy VAE-encoded and sampled, noised,
    one U-Net pass, a plain forward hook on up_blocks[1], mean over the copies."""
    pil = Image.fromarray(image).resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(pil, np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        posterior = backbone.vae.encode(x.repeat(n, 1, 1, 1)).latent_dist
        eps = torch.stack(
            [
                _randn(posterior.mean.shape[1:], _draw_seed(seed, k, "vae-posterior"))
                for k in range(n)
            ]
        )
        latents = (posterior.mean + posterior.std * eps) * backbone.vae.config.scaling_factor
        noise = torch.stack([_randn(latents.shape[1:], seed + k) for k in range(n)])
        t = torch.full((n,), timestep, dtype=torch.long)
        noisy = backbone.scheduler.add_noise(latents, noise, t) if timestep else latents
        out = {}
        handle = backbone.unet.up_blocks[1].register_forward_hook(
            lambda m, i, o: out.setdefault("up1", o)
        )
        try:
            backbone.unet(noisy, t, encoder_hidden_states=prompt_embedding.expand(n, -1, -1))
        finally:
            handle.remove()
    return out["up1"].mean(0)


@pytest.mark.parametrize("timestep", [261, 0])
def test_per_draw_posterior_sampling_equals_encoding_the_copies(tiny_backbone, images, timestep):
    n, seed = 4, 7
    extractor = FeatureExtractor(
        tiny_backbone, image_size=128, latent="sample-per-draw", seed=seed, prompt="a photo"
    )
    ours = extractor.features(images[:1], ["up1"], timestep, ensemble=n)["up1"][0]
    reference = _dift_path(
        tiny_backbone, images[0], 128, timestep, n, seed, extractor.text_embedding()
    )
    assert ours.shape == reference.shape
    assert torch.allclose(ours, reference, atol=1e-5)
    # every copy has its own posterior sample: at t = 0 an ensemble differs from one draw
    single = extractor.features(images[:1], ["up1"], timestep, ensemble=1)["up1"][0]
    assert (ours - single).abs().max() > 1e-4
    # and it is not the posterior mean
    mean = FeatureExtractor(
        tiny_backbone, image_size=128, latent="mean", seed=seed, prompt="a photo"
    )
    assert not torch.allclose(
        ours, mean.features(images[:1], ["up1"], timestep, ensemble=n)["up1"][0]
    )


def test_per_draw_ensembles_are_cached_apart_at_t0(tiny_backbone, images, tmp_path):
    extractor = FeatureExtractor(
        tiny_backbone, image_size=128, latent="sample-per-draw", store=FeatureStore(tmp_path)
    )
    one = dense_features(images[:1], extractor, "up1", [Setting(0, 1)])
    four = dense_features(images[:1], extractor, "up1", [Setting(0, 4)])
    assert four.counts["done"] == 1  # not served by the ensemble-1 entry
    (a,), (b,) = one.values(), four.values()
    assert not torch.allclose(a[0]["up1"], b[0]["up1"])


def test_bad_images_are_named_and_counted(tiny_extractor, images):
    grey = images[0][..., 0]
    maps = dense_features([images[0], grey], tiny_extractor, "up1", keys=["ok", "grey"])
    assert list(maps) == ["ok"]
    assert maps.counts["skipped"] == 1
    assert maps.skipped.records[0][0] == "grey"
    with pytest.raises(ValueError, match="categories"):
        dense_features(images, tiny_extractor, "up1", categories=["cat"])


def test_map_cache_keeps_at_most_its_budget():
    cache = MapCache(max_bytes=3 * 400)
    for k in range(4):
        cache.put(f"k{k}", [{"up1": torch.zeros(100)}])  # 400 bytes each
    assert len(cache) == 3 and "k0" not in cache and cache.nbytes == 1200
    assert cache.get("k1") is not None  # k1 becomes the most recent
    cache.put("k4", {"a": torch.zeros(100)})
    assert "k2" not in cache and "k1" in cache
    cache.put("huge", torch.zeros(1000))  # larger than the budget: not kept
    assert "huge" not in cache and cache.nbytes <= cache.max_bytes
    assert (cache.hits, cache.misses) == (1, 0)
    assert cache.get("nothing") is None and cache.misses == 1
