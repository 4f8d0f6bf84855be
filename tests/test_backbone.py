import time

import pytest
import torch

from difflens.core.errors import BadInputError
from difflens.models.backbone import BackboneNotFoundError, load_backbone


def test_tiny_model_is_saved_then_loaded_like_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLENS_CACHE", str(tmp_path))
    first = load_backbone("tiny")
    folder = tmp_path / "models" / "tiny-v1"
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (folder / sub).is_dir(), sub
    second = load_backbone(str(folder))  # the same weights through the local-folder path
    for (name, a), (_, b) in zip(first.unet.state_dict().items(), second.unet.state_dict().items()):
        assert torch.equal(a, b), name
    assert first.fingerprint() != "" and first.latent_scale == 8


def test_vae_downsamples_8x(tiny_backbone):
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        z = tiny_backbone.vae.encode(x).latent_dist.mean
    assert z.shape == (1, 4, 8, 8)


def test_hub_id_offline_fails_fast_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(BackboneNotFoundError, match="local folder"):
        load_backbone("stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert time.perf_counter() - start < 5


def test_names_that_cannot_be_a_model_are_named_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(BackboneNotFoundError, match="did you mean 'toy'"):
        load_backbone("toyy")
    with pytest.raises(BackboneNotFoundError, match="does not exist"):
        load_backbone(str(tmp_path / "models" / "sd15"))
    with pytest.raises(BackboneNotFoundError, match="lacks unet/, scheduler/"):
        load_backbone(str(tmp_path))


def test_an_unresolvable_hub_fails_without_retrying(monkeypatch):
    import socket

    from difflens.models import backbone as module

    def no_dns(*args, **kwargs):
        raise socket.gaierror("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert not module._hub_host_resolves()
    start = time.perf_counter()
    with pytest.raises(BackboneNotFoundError, match="host does not resolve"):
        load_backbone("difflens-tests/no-such-model")
    assert time.perf_counter() - start < 5


def test_a_cuda_device_without_cuda_is_named():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BadInputError, match="torch sees no CUDA device"):
        load_backbone("toy", device="cuda")
