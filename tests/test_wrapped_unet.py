"""A U-Net wrapped by torch.compile or a data-parallel wrapper: layer lookup on the original
modules, features equal to the unwrapped forward, unchanged fingerprints, and a clear error
when the wrapper's forward never runs the hooked modules."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from difflens.data.toy import ToyWorld
from difflens.features.extractor import FeatureExtractor
from difflens.features.hooks import HooksDidNotFireError
from difflens.models.backbone import Backbone, load_backbone
from difflens.models.layers import LayerRegistry
from difflens.models.wrappers import describe_wrappers, is_compiled, unwrap_module, wrapper_chain

SIZE = 64
# two layer sets in a row: a compiled graph traced with the first set's hooks must not be
# replayed for the second (PyTorch issues #117758, #96722)
FIRST = ["down1.res0", "down2.attn0.query", "down2.attn0"]
SECOND = ["down0.res0", "mid.attn0", "up1.res0"]


class DataParallelLike(torch.nn.Module):
    """What DDP, DataParallel and accelerate's prepare look like: the model as ``.module``."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class CallsACopy(torch.nn.Module):
    """A wrapper whose forward runs another copy of the model, never the hooked modules."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module
        object.__setattr__(self, "_copy", copy.deepcopy(module))  # not a registered child

    def forward(self, *args, **kwargs):
        return self._copy(*args, **kwargs)


@pytest.fixture(scope="module")
def toy():
    return load_backbone("toy", with_text=False)


@pytest.fixture(scope="module")
def images():
    world = ToyWorld(n_images=2, size=SIZE, seed=0)
    return [world[i].image for i in range(2)]


@pytest.fixture(scope="module")
def reference(toy, images):
    """Features of the bare U-Net: the forward without any wrapper."""
    extractor = FeatureExtractor(toy, image_size=SIZE)
    return {
        (tuple(layers), t): extractor.features(images, layers, timestep=t)
        for layers, t in ((FIRST, 0), (SECOND, 50))
    }


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def wrapped(backbone: Backbone, unet: torch.nn.Module) -> Backbone:
    """The same backbone with another ``unet``; a fresh fingerprint cache."""
    return dataclasses.replace(backbone, unet=unet, extras={})


def assert_same_features(extractor, images, reference):
    for (layers, t), expected in reference.items():
        got = extractor.features(images, list(layers), timestep=t)
        for name in layers:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)


def test_unwrapping_finds_the_original_module(toy):
    unet = toy.unet
    outer = torch.compile(DataParallelLike(unet), backend="eager")
    assert [type(m).__name__ for m in wrapper_chain(outer)] == [
        "OptimizedModule",
        "DataParallelLike",
        "UNet2DConditionModel",
    ]
    assert unwrap_module(outer) is unet and unwrap_module(unet) is unet
    assert describe_wrappers(outer) == "OptimizedModule -> DataParallelLike -> UNet2DConditionModel"
    assert is_compiled(outer) and not is_compiled(DataParallelLike(unet))
    # a module with a `.module` child *and* other children is a model, not a wrapper
    model = torch.nn.Module()
    model.module, model.head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    assert unwrap_module(model) is model
    registry = LayerRegistry(outer, toy.latent_scale)
    assert registry.names == LayerRegistry(unet, toy.latent_scale).names
    assert registry.module("down2.attn0") is unet.down_blocks[2].attentions[0]


def test_compiled_wrapper_gives_the_unwrapped_features(toy, images, reference, fresh_dynamo):
    backbone = wrapped(toy, torch.compile(toy.unet, backend="eager"))
    assert backbone.base_unet is toy.unet
    extractor = FeatureExtractor(backbone, image_size=SIZE)
    assert_same_features(extractor, images, reference)


def test_in_place_compile_and_a_graph_traced_before_the_hooks(images, reference, fresh_dynamo):
    backbone = load_backbone("toy", with_text=False)
    backbone.unet.compile(backend="eager")
    assert is_compiled(backbone.unet) and unwrap_module(backbone.unet) is backbone.unet
    extractor = FeatureExtractor(backbone, image_size=SIZE)
    # a compiled call without hooks on the extraction's own inputs traces a graph that
    # dynamo replays later without checking for hooks
    x = extractor.encode(images)
    t = torch.zeros(len(images), dtype=torch.long)
    text = extractor.prompts([""] * len(images))
    with torch.no_grad():
        backbone.unet(x, t, encoder_hidden_states=text, return_dict=False)
    with pytest.raises(HooksDidNotFireError, match="skip_nnmodule_hook_guards") as error:
        extractor.features(images, FIRST)
    assert f"layers {FIRST} did not fire" in str(error.value)
    assert "torch._dynamo.reset()" in str(error.value)
    torch._dynamo.reset()  # the remedy the message names: traced again, with hook guards
    assert_same_features(extractor, images, reference)


def test_data_parallel_wrapper_gives_the_unwrapped_features(toy, images, reference):
    backbone = wrapped(toy, DataParallelLike(toy.unet))
    with pytest.raises(AttributeError):
        backbone.unet.config  # noqa: B018 - the wrapper does not forward attributes
    assert_same_features(FeatureExtractor(backbone, image_size=SIZE), images, reference)


def test_distributed_data_parallel_on_one_process(toy, images, reference, tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        unet = toy.unet.requires_grad_(True)  # DDP refuses a module with nothing to train
        ddp = torch.nn.parallel.DistributedDataParallel(unet)
        unet.requires_grad_(False)
        backbone = wrapped(toy, ddp)
        assert backbone.base_unet is toy.unet
        assert backbone.fingerprint() == wrapped(toy, toy.unet).fingerprint()
        assert_same_features(FeatureExtractor(backbone, image_size=SIZE), images, reference)
    finally:
        toy.unet.requires_grad_(False)
        dist.destroy_process_group()


def test_fingerprints_look_through_wrappers(toy, fresh_dynamo):
    bare = wrapped(toy, toy.unet)
    for unet in (torch.compile(toy.unet, backend="eager"), DataParallelLike(toy.unet)):
        other = wrapped(toy, unet)
        assert list(unet.state_dict())[0].startswith(("_orig_mod.", "module."))
        assert other.component_fingerprint("unet") == bare.component_fingerprint("unet")
        assert other.fingerprint() == bare.fingerprint()
    # and the fingerprint does see the weights: a changed copy hashes differently
    changed = copy.deepcopy(toy.unet)
    with torch.no_grad():
        changed.conv_in.weight.add_(1.0)
    assert wrapped(toy, DataParallelLike(changed)).fingerprint() != bare.fingerprint()


def test_hooks_that_cannot_fire_give_a_clear_error(toy, images):
    backbone = wrapped(toy, CallsACopy(toy.unet))
    extractor = FeatureExtractor(backbone, image_size=SIZE)
    with pytest.raises(HooksDidNotFireError) as error:
        extractor.features(images, ["down1.res0", "down2.attn0"])
    message = str(error.value)
    assert "['down1.res0', 'down2.attn0'] did not fire" in message
    assert "CallsACopy -> UNet2DConditionModel" in message
    assert "unwrap_module(unet)" in message
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in toy.unet.modules())
    assert hooks == 0  # removed after the failed pass
