"""The content-addressed store and the cached, resumable pipeline built on it."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from difflens.core.errors import BadInputError
from difflens.data.toy import ToyWorld
from difflens.features.batch import PrototypeSpec, feature_maps, prototype_table, prototype_tables
from difflens.features.extractor import FeatureExtractor
from difflens.features.store import FeatureStore

LAYER = "down1.attn0"


@pytest.fixture(scope="module")
def scenes():
    world = ToyWorld(n_images=5, size=128, seed=3)
    return [world[i] for i in range(5)]


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tmp_path / "cache")


class ForwardCounter:
    """Counts U-Net forward passes (a plain hook, removed on exit)."""

    def __init__(self, unet):
        self.unet, self.calls = unet, 0

    def __enter__(self):
        self.handle = self.unet.register_forward_pre_hook(self._count)
        return self

    def _count(self, module, args):
        self.calls += 1

    def __exit__(self, *exc):
        self.handle.remove()


def assert_tables_equal(a, b, exact=False):
    pd.testing.assert_frame_equal(a.meta, b.meta)
    if exact:
        np.testing.assert_array_equal(a.features, b.features)
    else:
        # float32 convolutions of one input held in different buffers (a latent read back
        # from disk vs. one computed in the batch) round differently: 1.1e-5 was seen on
        # values of about 0.1, so the tolerance is a few float32 ulps of the largest values
        np.testing.assert_allclose(a.features, b.features, rtol=1e-4, atol=5e-5)
    assert a.skipped.records == b.skipped.records


def test_entries_round_trip_and_any_changed_field_misses(store):
    fields = {"model": "m", "t": 0, "layers": ["a", "b"], "size": [128, 128]}
    arrays = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = store.put("features", fields, arrays, {"note": "hi"})
    entry = store.get("features", dict(fields))
    np.testing.assert_array_equal(entry.arrays["x"], arrays["x"])
    assert entry.meta == {"note": "hi"} and entry.fields == fields
    for change in ({"t": 1}, {"layers": ["a"]}, {"size": [128, 64]}, {"extra": None}):
        assert store.get("features", {**fields, **change}) is None
    assert store.get("latents", fields) is None  # the kind is part of the key
    assert store.stats["hits"] == 1 and store.stats["writes"] == 1
    # a file that holds other key fields (collision, copied file) is never served
    other = {**fields, "t": 7}
    store.path("features", other).parent.mkdir(parents=True, exist_ok=True)
    store.path("features", other).write_bytes(path.read_bytes())
    assert store.get("features", other) is None and store.stats["corrupt"] == 1


def test_writes_are_atomic_and_debris_is_ignored(store, monkeypatch):
    fields = {"k": 1}

    def dies_midway(handle, **arrays):
        handle.write(b"PK\x03\x04 half an entry")
        raise KeyboardInterrupt  # the process is killed while writing

    monkeypatch.setattr(np, "savez", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        store.put("features", fields, {"x": np.ones(3)})
    monkeypatch.undo()
    assert store.get("features", fields) is None
    assert store.count() == 0 and not list(store.root.rglob("*.tmp"))
    # debris from a killed writer (a temporary file) and a truncated entry
    folder = store.path("features", fields).parent
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".abc.123.tmp").write_bytes(b"partial")
    store.path("features", fields).write_bytes(b"PK\x03\x04 truncated")
    assert store.get("features", fields) is None and store.stats["corrupt"] == 1
    store.put("features", fields, {"x": np.ones(3)})
    np.testing.assert_array_equal(store.get("features", fields).arrays["x"], np.ones(3))
    assert store.count() == 1 and store.clean(older_than_s=0) == 1


def test_cached_prototypes_equal_an_uncached_run_without_any_forward(tiny_extractor, scenes, store):
    reference = prototype_table(scenes, tiny_extractor, LAYER, batch_size=2, progress=False)
    first = prototype_table(
        scenes, tiny_extractor, LAYER, batch_size=2, progress=False, store=store
    )
    assert first.info["counts"] == {"done": 5, "cached": 0, "skipped": 0, "failed": 0}
    assert_tables_equal(first, reference)
    with ForwardCounter(tiny_extractor.backbone.unet) as counter:
        again = prototype_table(
            scenes, tiny_extractor, LAYER, batch_size=2, progress=False, store=store
        )
    assert counter.calls == 0
    assert again.info["counts"] == {"done": 0, "cached": 5, "skipped": 0, "failed": 0}
    assert_tables_equal(again, first, exact=True)
    assert store.count("prototypes") == 5 and store.count("latents") == 5


def test_changed_settings_and_inputs_never_reuse_an_entry(tiny_backbone, scenes, store):
    from dataclasses import replace

    base = FeatureExtractor(tiny_backbone, image_size=128)
    prototype_table(scenes[:1], base, LAYER, progress=False, store=store)
    variants = [
        (base, dict(layers="down1.attn1")),
        (base, dict(timestep=10)),
        (base, dict(timestep=10, ensemble=2)),
        (base, dict(mask_mode="area")),
        (FeatureExtractor(tiny_backbone, image_size=192), {}),
        (FeatureExtractor(tiny_backbone, image_size=128, prompt="a photo"), {}),
        (FeatureExtractor(tiny_backbone, image_size=128, latent="sample"), {}),
    ]
    for extractor, change in variants:
        kwargs = {"layers": LAYER, **change}
        table = prototype_table(scenes[:1], extractor, progress=False, store=store, **kwargs)
        assert table.info["counts"]["done"] == 1, change
    scene = scenes[0]
    brighter = replace(scene, image=np.clip(scene.image.astype(int) + 1, 0, 255).astype(np.uint8))
    renamed = replace(scene, class_names=["x"] * scene.n_objects)
    flipped = replace(scene, source="hflip")
    for changed in (brighter, renamed, flipped):
        table = prototype_table([changed], base, LAYER, progress=False, store=store)
        assert table.info["counts"]["done"] == 1
    # t = 0 ignores the ensemble size, so that entry is shared
    same = prototype_table(scenes[:1], base, LAYER, ensemble=4, progress=False, store=store)
    assert same.info["counts"]["cached"] == 1


def test_changed_weights_invalidate_the_cache(scenes, store):
    from difflens.models.backbone import load_backbone

    backbone = load_backbone("tiny")
    extractor = FeatureExtractor(backbone, image_size=128)
    prototype_table(scenes[:2], extractor, LAYER, progress=False, store=store)
    with torch.no_grad():
        backbone.unet.conv_in.weight.mul_(1.01)  # e.g. a fine-tune
    table = prototype_table(scenes[:2], extractor, LAYER, progress=False, store=store)
    assert table.info["counts"]["done"] == 2
    assert store.count("latents") == 2  # the VAE did not change: its latents are reused


def _interrupting(scenes, after):
    for i, scene in enumerate(scenes):
        if i == after:
            raise RuntimeError("simulated crash while reading the dataset")
        yield scene


def test_an_interrupted_run_resumes_with_nothing_lost_or_duplicated(tiny_extractor, scenes, store):
    reference = prototype_table(scenes, tiny_extractor, LAYER, batch_size=2, progress=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prototype_table(
            _interrupting(scenes, 3),
            tiny_extractor,
            LAYER,
            batch_size=2,
            progress=False,
            store=store,
        )
    assert store.count("prototypes") == 2  # the first full batch was saved
    # a kill inside a forward pass (Ctrl-C) is not mistaken for a failed image
    unet = tiny_extractor.backbone.unet
    calls = []

    def interrupt_second_forward(module, args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    handle = unet.register_forward_pre_hook(interrupt_second_forward)
    try:
        with pytest.raises(KeyboardInterrupt):
            prototype_table(
                scenes, tiny_extractor, LAYER, batch_size=1, progress=False, store=store
            )
    finally:
        handle.remove()
    assert store.count("prototypes") == 3  # 2 cached + 1 computed before the kill
    resumed = prototype_table(
        scenes, tiny_extractor, LAYER, batch_size=2, progress=False, store=store
    )
    assert resumed.info["counts"] == {"done": 2, "cached": 3, "skipped": 0, "failed": 0}
    assert resumed.meta["object_key"].is_unique
    assert_tables_equal(resumed, reference)


def test_a_failing_image_is_counted_and_retried_next_run(
    tiny_extractor, scenes, store, monkeypatch
):
    from difflens.features.store import image_digest

    poisoned = image_digest(scenes[2].image)
    original = FeatureExtractor.features_for_settings

    def nan_for_one_image(self, latents, layers, settings, **kwargs):
        maps = original(self, latents, layers, settings, **kwargs)
        for row, key in enumerate(kwargs["keys"]):
            if key == poisoned:
                for per_layer in maps:
                    for tensor in per_layer.values():
                        tensor[row] = float("nan")
        return maps

    monkeypatch.setattr(FeatureExtractor, "features_for_settings", nan_for_one_image)
    table = prototype_table(
        scenes, tiny_extractor, LAYER, batch_size=2, progress=False, store=store
    )
    assert table.info["counts"] == {"done": 4, "cached": 0, "skipped": 0, "failed": 1}
    assert scenes[2].image_id not in set(table.meta["image_id"])
    assert any(
        "failed: FloatingPointError" in r and scenes[2].image_id == i
        for i, r in table.skipped.records
    )
    monkeypatch.undo()
    again = prototype_table(
        scenes, tiny_extractor, LAYER, batch_size=2, progress=False, store=store
    )
    assert again.info["counts"] == {"done": 1, "cached": 4, "skipped": 0, "failed": 0}


def test_many_settings_share_one_forward_per_batch(tiny_extractor, scenes, store):
    specs = [
        PrototypeSpec("down0.attn1+down1.attn1", 0),
        PrototypeSpec(LAYER, 0, mask_mode="area"),
        PrototypeSpec(LAYER, 50),
        PrototypeSpec("down2.attn0", 200, ensemble=2),
        PrototypeSpec("down2.atn0", 0),  # unknown layer: skipped, named, counted
        PrototypeSpec(LAYER, 1000),  # outside the scheduler's range
    ]
    with ForwardCounter(tiny_extractor.backbone.unet) as counter:
        tables = prototype_tables(scenes, tiny_extractor, specs, batch_size=3, progress=False)
    assert counter.calls == 2  # 5 scenes in batches of 3, every setting in the same pass
    assert len(tables) == 4 and len(tables.skipped) == 2
    reasons = " ".join(reason for _, reason in tables.skipped.records)
    assert "Close matches: down2.attn0" in reasons and "timestep 1000 is outside" in reasons
    for spec in specs[:4]:
        alone = prototype_table(
            scenes,
            tiny_extractor,
            spec.layers,
            spec.timestep,
            spec.mask_mode,
            ensemble=spec.ensemble,
            progress=False,
        )
        assert_tables_equal(tables[spec.label], alone)
    with pytest.raises(BadInputError, match="no valid settings"):
        prototype_tables(scenes, tiny_extractor, specs[4:], progress=False)
    # with a store, a second study over the same scenes adds only what is new
    prototype_tables(scenes, tiny_extractor, specs[:2], progress=False, store=store)
    with ForwardCounter(tiny_extractor.backbone.unet) as counter:
        tables = prototype_tables(
            scenes, tiny_extractor, specs[:3], batch_size=5, progress=False, store=store
        )
    assert counter.calls == 1 and tables.counts["done"] == 5


def test_feature_maps_skip_bad_files_and_cache_good_ones(tmp_path, tiny_extractor, scenes, store):
    good = tmp_path / "good.png"
    Image.fromarray(scenes[0].image).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated jpeg")
    grey = tmp_path / "grey.png"
    Image.fromarray(scenes[0].image[..., 0]).save(grey)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([scenes[0].image, np.full((128, 128), 255, np.uint8)])).save(rgba)
    items = [good, broken, grey, rgba, scenes[1].image]
    maps = feature_maps(items, tiny_extractor, "down2.attn0", [0, 100], progress=False, store=store)
    assert maps.counts == {"done": 2, "cached": 0, "skipped": 3, "failed": 0}
    assert set(maps) == {str(good), "image4"}
    skipped = dict(maps.skipped.records)
    assert "cannot be decoded" in skipped[str(broken)] and "grey" in skipped[str(grey)]
    assert "RGBA" in skipped[str(rgba)]
    direct = tiny_extractor.features([scenes[0].image], ["down2.attn0"], timestep=100)
    torch.testing.assert_close(
        maps[str(good)][1]["down2.attn0"], direct["down2.attn0"][0], rtol=1e-5, atol=1e-5
    )
    again = feature_maps(
        items, tiny_extractor, "down2.attn0", [0, 100], progress=False, store=store
    )
    assert again.counts["cached"] == 2
    assert torch.equal(again[str(good)][1]["down2.attn0"], maps[str(good)][1]["down2.attn0"])
