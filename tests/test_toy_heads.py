"""The auxiliary heads of the toy positive control: hooks, soft targets and the loss, against
hand computations and a forward pass without hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from difflens.models.toy_heads import (
    N_CLASS_LABELS,
    N_PART_LABELS,
    AuxHeads,
    aux_loss,
    capture_outputs,
    soft_cross_entropy,
    soft_targets,
)
from difflens.models.toy_training import ToyTrainConfig, build_unet


@pytest.fixture(scope="module")
def small_unet():
    return build_unet(ToyTrainConfig(channels=(8, 16, 16, 16)))


def test_label_counts_cover_background_and_every_class_and_part():
    from difflens.data.toy import PART_NAMES, TOY_CLASSES

    assert N_CLASS_LABELS == len(TOY_CLASSES) + 1 == 9
    assert N_PART_LABELS == len(PART_NAMES) + 1


def test_soft_targets_are_the_label_shares_of_each_cell():
    maps = torch.tensor([[[0, 1, 2, 2], [1, 1, 2, 0], [0, 0, 0, 0], [3, 3, 3, 1]]])
    out = soft_targets(maps, 4, (2, 2))
    # top-left cell holds labels 0, 1, 1, 1; bottom-right holds 0, 0, 3, 1
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), [0.25, 0.75, 0, 0])
    np.testing.assert_allclose(out[0, :, 1, 1].numpy(), [0.5, 0.25, 0, 0.25])
    np.testing.assert_allclose(out.sum(1).numpy(), np.ones((1, 2, 2)))


def test_soft_cross_entropy_equals_the_hard_one_for_one_hot_targets():
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 3, 3, generator=rng)
    labels = torch.randint(0, 5, (2, 3, 3), generator=rng)
    targets = F.one_hot(labels, 5).permute(0, 3, 1, 2).float()
    expected = F.cross_entropy(logits, labels, reduction="none").mean(dim=(1, 2))
    torch.testing.assert_close(soft_cross_entropy(logits, targets), expected)


def test_captured_outputs_are_the_modules_outputs_and_hooks_are_removed(small_unet):
    x = torch.randn(2, 3, 64, 64)
    t = torch.tensor([10, 500])
    text = torch.randn(2, 5, 64)
    with torch.no_grad(), capture_outputs(small_unet, ["mid", "up2.res1"]) as outputs:
        sample = small_unet(x, t, encoder_hidden_states=text).sample
    assert outputs["mid"].shape == (2, 16, 8, 8)
    assert outputs["up2.res1"].shape == (2, 16, 32, 32)
    # the up2.res1 output, passed through the rest of the decoder, gives the same sample
    assert not small_unet.up_blocks[2].resnets[1]._forward_hooks
    assert not small_unet.mid_block._forward_hooks
    with torch.no_grad():
        plain = small_unet(x, t, encoder_hidden_states=text).sample
    torch.testing.assert_close(sample, plain)


def test_heads_read_each_layer_with_a_linear_map(small_unet):
    heads = AuxHeads(small_unet, ["mid"], ["up2.res1"])
    assert heads.layers == ("mid", "up2.res1")
    feats = {"mid": torch.randn(2, 16, 8, 8), "up2.res1": torch.randn(2, 16, 32, 32)}
    logits = heads(feats)
    assert logits["class:mid"].shape == (2, N_CLASS_LABELS, 8, 8)
    assert logits["part:up2.res1"].shape == (2, N_PART_LABELS, 32, 32)
    conv = heads.class_heads["mid"]
    expected = torch.einsum("kc,bchw->bkhw", conv.weight[:, :, 0, 0], feats["mid"])
    torch.testing.assert_close(logits["class:mid"], expected + conv.bias[None, :, None, None])


def test_cosine_heads_read_the_direction_of_each_cell_only(small_unet):
    heads = AuxHeads(small_unet, ["mid"], [], kind="cosine", temperature=7.0)
    feats = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    logits = heads({"mid": feats})["class:mid"]
    w = heads.class_heads["mid"].weight.detach()
    f = feats[0, :, 3, 5]
    expected = 7.0 * (w @ f) / (w.norm(dim=1) * f.norm())
    torch.testing.assert_close(logits[0, :, 3, 5], expected)
    scaled = heads({"mid": feats * torch.rand(2, 1, 8, 8) * 10})["class:mid"]
    torch.testing.assert_close(scaled, logits, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="head kind"):
        AuxHeads(small_unet, ["mid"], [], kind="mlp")


def test_aux_loss_weights_examples_by_their_signal():
    logits = {"class:a": torch.zeros(2, N_CLASS_LABELS, 4, 4)}
    class_maps = torch.zeros(2, 16, 16, dtype=torch.long)
    part_maps = torch.zeros(2, 16, 16, dtype=torch.long)
    logits["class:a"][0, 0] = 10.0  # example 0 is confidently right, example 1 uniform
    loss, per_head = aux_loss(logits, class_maps, part_maps, torch.tensor([0.0, 1.0]))
    assert float(loss) == pytest.approx(np.log(N_CLASS_LABELS), rel=1e-5)  # only example 1
    loss, _ = aux_loss(logits, class_maps, part_maps, torch.tensor([1.0, 1.0]))
    right = -F.log_softmax(logits["class:a"][0, :, 0, 0], 0)[0].item()
    assert float(loss) == pytest.approx((right + np.log(N_CLASS_LABELS)) / 2, rel=1e-5)
    assert set(per_head) == {"class:a"}


def test_unknown_head_layers_are_refused(small_unet):
    from difflens.models.layers import UnknownLayerError

    with pytest.raises(UnknownLayerError):
        AuxHeads(small_unet, ["mid.nothing"], [])
