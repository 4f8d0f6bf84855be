"""Feature presets: their fields as the papers state them, validation, and the re-runnable
choice from a layer x timestep search."""

from __future__ import annotations

import pandas as pd
import pytest

from difflens.correspondence.presets import (
    PRESETS,
    FeaturePreset,
    choose_from_search,
    get_preset,
    preset_extractor,
    preset_table,
)
from difflens.features.settings import Setting


def test_dift_sd_is_dift_semantic_correspondence_setting():
    p = get_preset("dift_sd")
    assert p.model == "stabilityai/stable-diffusion-2-1"
    assert (p.image_size, p.layer, p.timestep, p.ensemble) == (768, "up1", 261, 8)
    assert p.prompt == "a photo of a {class}"
    assert p.latent == "sample-per-draw" and p.upsample == "bilinear"
    assert p.setting == Setting(261, 8)
    assert "dift" in p.source.lower()


def test_semantic_lens_and_toy_presets():
    p = get_preset("semantic_lens")
    assert p.model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert (p.image_size, p.layer, p.timestep, p.ensemble, p.prompt, p.latent) == (
        512,
        "down2.attn0",
        0,
        1,
        "",
        "mean",
    )
    toy = get_preset("toy")
    assert toy.model == "toy" and toy.image_size == 64
    assert "validation" in toy.note
    assert set(preset_table().index) == set(PRESETS)


def test_presets_are_frozen_and_checked():
    p = get_preset("toy")
    with pytest.raises(AttributeError):
        p.layer = "up1"  # type: ignore[misc]
    assert p.with_(layer="up1").layer == "up1" and p.layer != "up1"
    with pytest.raises(ValueError, match="latent"):
        FeaturePreset("x", "toy", 64, "up1", 0, latent="median")
    with pytest.raises(ValueError):
        FeaturePreset("x", "toy", 64, "up1", -1)
    with pytest.raises(KeyError, match="known"):
        get_preset("dift_adm")
    assert get_preset(p) is p


def test_choose_from_search_takes_the_best_cell_first_on_ties():
    search = pd.DataFrame(
        {
            "layer": ["up1", "up1", "up2", "up2"],
            "timestep": [0, 100, 0, 100],
            "pck": [0.1, 0.3, 0.3, 0.2],
        }
    )
    chosen = choose_from_search("toy", search)
    assert (chosen.layer, chosen.timestep) == ("up1", 100)
    assert chosen.image_size == get_preset("toy").image_size
    with pytest.raises(ValueError):
        choose_from_search("toy", search.iloc[:0])


def test_preset_extractor_with_a_given_backbone(tiny_backbone):
    preset = get_preset("dift_sd").with_(image_size=128)
    extractor = preset_extractor(preset, tiny_backbone)
    assert extractor.size == (128, 128)
    assert extractor.prompt == "a photo of a {class}"
    assert extractor.latent == "sample-per-draw"
    assert extractor.prompt_for(["pottedplant"]) == "a photo of a pottedplant"
    assert extractor.store is None
