"""The aggregation network against hand computations and a functional re-implementation;
the loss by hand; saved weights refuse other settings; training resumes exactly."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from difflens.correspondence.hyperfeatures import (
    AggregationNetwork,
    AggregatorSettings,
    SettingsMismatchError,
    TrainConfig,
    contrastive_loss,
    grid_indices,
    load_aggregator,
    mixing_table,
    norm_groups,
    save_aggregator,
    train_aggregator,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small maps run fastest on one thread (and a shared machine's cores stay free)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _set_identity(model):
    block = model.bottlenecks[0]
    with torch.no_grad():
        block.conv1[0].weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        block.conv2[0].weight.zero_()
        block.conv2[0].weight[:, :, 1, 1] = torch.eye(2)  # only the centre tap
        block.conv3[0].weight.copy_(torch.eye(2).view(2, 2, 1, 1))


def test_aggregator_forward_by_hand():
    # one layer of 2 channels, 2 timesteps, D = b = 2, one GN group, identity convolutions,
    # identity shortcut (C == D). One pixel, timestep 0 holds (3, 1):
    #   conv1 (3, 1) -> GN (mean 2, var 1) (1, -1) -> ReLU (1, 0)
    #   conv2 (1, 0) -> GN (1, -1) -> ReLU (1, 0); conv3 (1, 0) -> GN (1, -1)
    #   + shortcut (3, 1) = (4, 0) -> ReLU (4, 0).   Timestep 1 holds (1, 3): (0, 4).
    # mixing weights (0, ln 3): softmax (1/4, 3/4), output (1, 3). GN's eps 1e-5 moves the
    # normalised values by at most 2e-5 each.
    model = AggregationNetwork([2], n_timesteps=2, out_dim=2, bottleneck_dim=2, max_groups=1)
    assert model.bottlenecks[0].shortcut is None
    _set_identity(model)
    with torch.no_grad():
        model.mixing_weights.copy_(torch.tensor([0.0, math.log(3.0)]))
    stacks = torch.tensor([[3.0, 1.0], [1.0, 3.0]]).view(1, 2, 2, 1, 1)
    out = model(stacks)
    torch.testing.assert_close(out.flatten(), torch.tensor([1.0, 3.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(model.weights(), torch.tensor([[0.25], [0.75]]))


def _functional_bottleneck(block, x, groups):
    """The block re-implemented with F.conv2d / F.group_norm from its weights."""

    def conv_gn(seq, y, padding):
        conv, gn = seq[0], seq[1]
        y = F.conv2d(y, conv.weight, None, padding=padding)
        return F.group_norm(y, groups(gn.num_channels), gn.weight, gn.bias, gn.eps)

    y = F.relu(conv_gn(block.conv1, x, 0))
    y = F.relu(conv_gn(block.conv2, y, 1))
    y = conv_gn(block.conv3, y, 0)
    skip = x if block.shortcut is None else conv_gn(block.shortcut, x, 0)
    return F.relu(y + skip)


def test_aggregator_forward_equals_a_functional_reimplementation():
    torch.manual_seed(0)
    channels, s = [40, 24, 96], 3
    model = AggregationNetwork(channels, n_timesteps=s, out_dim=64)
    with torch.no_grad():
        model.mixing_weights.normal_()
        for gn in [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]:
            gn.weight.normal_()
            gn.bias.normal_()
    stacks = torch.randn(2, s, sum(channels), 6, 5)
    mix = torch.softmax(model.mixing_weights.detach(), 0)
    expected = 0
    for t in range(s):
        start = 0
        for layer, c in enumerate(channels):
            x = stacks[:, t, start : start + c]
            y = _functional_bottleneck(model.bottlenecks[layer], x, lambda n: norm_groups(n, 32))
            expected = expected + mix[t * len(channels) + layer] * y
            start += c
    torch.testing.assert_close(model(stacks), expected, atol=1e-5, rtol=1e-5)
    # the flat (B, S * sum C, H, W) layout of Hyperfeatures gives the same
    torch.testing.assert_close(model(stacks.reshape(2, -1, 6, 5)), expected, atol=1e-5, rtol=1e-5)
    assert model.bottlenecks[0].shortcut is not None  # 40 != 64: projection
    assert model.bottlenecks[0].conv1[1].num_groups == 16  # b = 16: at most 16 groups
    assert norm_groups(96) == 32 and norm_groups(24) == 24 and norm_groups(40) == 20


def test_msra_initialisation_and_ones_for_the_mixing_weights():
    torch.manual_seed(0)
    model = AggregationNetwork([256], n_timesteps=2, out_dim=384)
    weight = model.bottlenecks[0].conv1[0].weight  # 1x1, fan_out = 96
    assert float(weight.detach().std()) == pytest.approx(math.sqrt(2 / 96), rel=0.05)
    assert torch.equal(model.mixing_weights.detach(), torch.ones(2))
    assert model.bottlenecks[0].conv1[0].bias is None


def test_contrastive_loss_by_hand():
    t = 0.07
    # two cells; source (1, 0), (0, 1); target (0.6, 0.8), (1, 0); keypoint: source 0 <-> target 0
    # source -> target row: cosines (0.6, 1): CE = log(1 + e^{0.4 / t})
    # target -> source row: cosines (0.6, 0.8): CE = log(1 + e^{0.2 / t})
    source = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(2, 1, 2)
    target = torch.tensor([[0.6, 0.8], [1.0, 0.0]]).T.reshape(2, 1, 2)
    loss = contrastive_loss(source, target, torch.tensor([0]), torch.tensor([0]), t)
    expected = (math.log1p(math.exp(0.4 / t)) + math.log1p(math.exp(0.2 / t))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_grid_indices_by_hand():
    # 128 px on a 32 grid: cell of x is round((x + 0.5) / 4 - 0.5)
    pts = [[0, 0], [127, 127], [64, 10]]
    idx = grid_indices(pts, (128, 128), (32, 32))
    assert idx.tolist() == [0, 31 * 32 + 31, 2 * 32 + 16]


def _settings(**changes):
    base = dict(
        model="toy",
        fingerprint="abc",
        image_size=(64, 64),
        prompt="",
        latent="mean",
        stack={"layers": ["a", "b"], "mode": "noise", "timesteps": [50]},
        channels=(4, 8),
        timesteps=(50,),
        out_dim=8,
        bottleneck_dim=2,
        max_groups=32,
    )
    return AggregatorSettings(**{**base, **changes})


def test_saved_weights_refuse_other_settings(tmp_path):
    settings = _settings()
    model = settings.build()
    path = save_aggregator(tmp_path / "agg.pt", model, settings)
    loaded, saved = load_aggregator(path, settings)
    assert saved == settings
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    other = _settings(fingerprint="def", timesteps=(60,))
    with pytest.raises(SettingsMismatchError) as error:
        load_aggregator(path, other)
    message = str(error.value)
    assert "fingerprint: 'def' here, 'abc' there" in message and "timesteps" in message
    assert "channels" not in message


def test_mixing_table_labels():
    model = _settings().build()
    table = mixing_table(model, ["a", "b"], [50])
    assert list(table.index) == ["a", "b"] and list(table.columns) == [50]
    assert table.to_numpy().sum() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def toy_extractor(tmp_path_factory):
    from difflens.features.extractor import FeatureExtractor
    from difflens.models.backbone import load_backbone

    store = tmp_path_factory.mktemp("store")
    return FeatureExtractor(load_backbone("toy"), image_size=64, store=store)


def test_training_resumes_to_the_same_weights(toy_extractor, tmp_path):
    from difflens.data.toy import ToyPairs
    from difflens.features.trajectory import StackSpec

    train = list(ToyPairs(3, split="train", size=64))
    val = list(ToyPairs(1, split="validation", size=64))
    spec = StackSpec(("up1.res2.conv2", "up2.res1.conv2"), mode="noise", timesteps=(50,), grid=8)
    kwargs = dict(out_dim=16, progress=False)
    config = TrainConfig(steps=4, val_every=2, checkpoint_every=2, seed=3)
    whole = train_aggregator(
        train, val, toy_extractor, spec, config=config, folder=tmp_path / "a", **kwargs
    )
    half = TrainConfig(steps=2, val_every=2, checkpoint_every=2, seed=3)
    train_aggregator(train, val, toy_extractor, spec, config=half, folder=tmp_path / "b", **kwargs)
    resumed = train_aggregator(
        train, val, toy_extractor, spec, config=config, folder=tmp_path / "b", **kwargs
    )
    assert resumed.resumed_from == 2 and len(resumed.losses) == 4
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert list(whole.history.step) == [2, 4] and whole.history.val_pck.between(0, 1).all()
    model, settings = load_aggregator(whole.weights_path, whole.settings)
    assert settings.channels == (64, 32) and settings.timesteps == (50,)
