"""The ``dift_sd`` preset on the SD 2.x architecture (random weights): DIFT's feature shape.

Slow (the SD 2.x U-Net, VAE and text encoder, about 5 GB; one VAE encode at 768 px and a U-Net
batch of 8 up to ``up_blocks[1]``): ``make test-slow``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difflens.correspondence.dense import dense_features
from difflens.correspondence.presets import get_preset, preset_extractor
from difflens.models.sd_configs import build_sd_backbone

pytestmark = pytest.mark.slow


def test_dift_sd_preset_gives_1280_x_48_x_48_at_768_px():
    backbone = build_sd_backbone("2", seed=0)
    preset = get_preset("dift_sd")
    extractor = preset_extractor(preset, backbone)
    assert extractor.size == (768, 768)
    image = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    maps = dense_features([image], extractor, preset.layer, [preset.setting], categories=["cat"])
    (per_setting,) = maps.values()
    fmap = per_setting[0]["up1"]
    assert tuple(fmap.shape) == (1280, 48, 48)
    assert fmap.dtype == torch.float32 and torch.isfinite(fmap).all()
    assert extractor.registry.info("up1").module_path == "up_blocks.1"
