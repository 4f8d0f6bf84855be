"""Models load through accelerate (``low_cpu_mem_usage=True``), silently and completely."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import pytest
import torch
from safetensors.torch import load_file

from difflens.models.backbone import load_backbone
from difflens.models.toy import toy_model_path

WARNING = "low cpu memory usage"


@contextmanager
def everything_said(capfd):
    """Collect what diffusers / transformers log, every Python warning and the stderr text."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers")]
    for logger in loggers:
        logger.addHandler(handler)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield records
        finally:
            for logger in loggers:
                logger.removeHandler(handler)
    records.extend(str(w.message) for w in caught)
    records.append(capfd.readouterr().err)


@pytest.mark.parametrize("model", ["toy", "tiny", "toy-denoiser"])
def test_loading_says_nothing_about_accelerate(model, capfd):
    with everything_said(capfd) as said:
        load_backbone(model)
    text = "\n".join(said)
    assert WARNING not in text.lower()
    assert "accelerate" not in text


def test_the_check_sees_the_warning_when_accelerate_is_missing(capfd, monkeypatch):
    # the control: without accelerate diffusers warns, and the check above would see it
    import diffusers.models.modeling_utils as modeling_utils

    monkeypatch.setattr(modeling_utils, "is_accelerate_available", lambda: False)
    with everything_said(capfd) as said:
        load_backbone("toy", with_text=False)
    assert WARNING in "\n".join(said).lower()


def test_weights_are_the_checkpoint_s(capfd):
    # low_cpu_mem_usage builds on the meta device: every tensor must come from the file
    backbone = load_backbone("toy", with_text=False)
    stored = load_file(toy_model_path("toy") / "unet" / "diffusion_pytorch_model.safetensors")
    loaded = backbone.unet.state_dict()
    assert set(loaded) == set(stored)
    for name, tensor in stored.items():
        assert loaded[name].device.type == "cpu", name
        assert torch.equal(loaded[name], tensor), name
