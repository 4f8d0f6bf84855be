"""Shared fixtures: the tiny model, loaded once, and an offline hub."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def tiny_backbone():
    from difflens.models.backbone import load_backbone

    return load_backbone("tiny")


@pytest.fixture(scope="session")
def tiny_extractor(tiny_backbone):
    from difflens.features.extractor import FeatureExtractor

    return FeatureExtractor(tiny_backbone, image_size=128)
