"""The controls study: its measures against independent references (scikit-learn, loops,
hand computations), the planted controls, and the controls on the committed positive control
(trained above random weights, shuffled labels at chance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.distance import cdist

from difflens.analysis.controls import (
    PLANTED_PAIRS,
    centroid_accuracy,
    centroid_predictions,
    class_directions,
    linear_probe_accuracy,
    measure_arms,
    pixel_spread,
    plant_signal,
    planted_onsets,
    planted_power_curve,
    random_weights_backbone,
    shuffle_labels,
)
from difflens.features.prototypes import META_COLUMNS, PrototypeTable


def make_table(features, classes, images, sources=None) -> PrototypeTable:
    n = len(classes)
    meta = pd.DataFrame(
        {
            "object_key": [f"{images[i]}:{i}" for i in range(n)],
            "image_id": list(images),
            "source_image": list(sources) if sources is not None else list(images),
            "instance_id": list(range(n)),
            "instance_key": [f"{images[i]}#{i}" for i in range(n)],
            "class_name": list(classes),
            "source": ["original"] * n,
            "area_fraction": [0.1] * n,
        },
        columns=list(META_COLUMNS),
    )
    return PrototypeTable(meta, np.asarray(features, np.float32))


def random_table(n_images=12, per_image=3, dim=6, seed=0, signal=0.0) -> PrototypeTable:
    rng = np.random.default_rng(seed)
    classes = ["circle", "square", "triangle", "cross"]
    names, images, rows = [], [], []
    centres = rng.normal(size=(4, dim)) * 3
    for g in range(n_images):
        for _ in range(per_image):
            k = int(rng.integers(4))
            names.append(classes[k])
            images.append(f"img{g}")
            rows.append(rng.normal(size=dim) + 5 + signal * centres[k])
    return make_table(np.array(rows), names, images)


def test_centroid_accuracy_matches_sklearn_leave_one_group_out():
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.neighbors import NearestCentroid

    table = random_table(n_images=10, per_image=4, dim=5, seed=3, signal=0.6)
    X = table.features.astype(float)
    y = table.meta["class_name"].to_numpy()
    groups = table.meta["image_id"].to_numpy()
    expected = np.empty(len(y), dtype=object)
    for train, test in LeaveOneGroupOut().split(X, y, groups):
        expected[test] = NearestCentroid().fit(X[train], y[train]).predict(X[test])
    assert list(centroid_predictions(table, "euclidean")) == list(expected)
    assert centroid_accuracy(table, "euclidean") == pytest.approx(np.mean(expected == y))


def test_centroid_predictions_with_cosine_match_a_loop():
    table = random_table(n_images=6, per_image=3, dim=4, seed=4, signal=0.8)
    X = table.features.astype(float)
    meta = table.meta
    expected = []
    for i in range(len(table)):
        others = meta.image_id != meta.image_id[i]
        names = sorted(set(meta.class_name[others]))
        centroids = np.stack(
            [X[(others & (meta.class_name == c)).to_numpy()].mean(0) for c in names]
        )
        expected.append(names[int(cdist(X[i : i + 1], centroids, "cosine").argmin())])
    assert list(centroid_predictions(table, "cosine")) == expected


def test_shuffle_labels_keeps_class_counts_and_features():
    table = random_table(n_images=20, seed=5)
    shuffled = shuffle_labels(table, seed=1)
    assert (
        shuffled.meta["class_name"]
        .value_counts()
        .sort_index()
        .equals(table.meta["class_name"].value_counts().sort_index())
    )
    assert (shuffled.meta["class_name"] != table.meta["class_name"]).any()
    np.testing.assert_array_equal(shuffled.features, table.features)
    assert (
        table.meta["class_name"].tolist()
        == random_table(n_images=20, seed=5).meta["class_name"].tolist()
    )  # the original is untouched


def test_measure_arms_finds_planted_classes_and_none_after_shuffling():
    table = random_table(n_images=40, per_image=3, dim=8, seed=8, signal=1.5)
    results = measure_arms(
        {"planted": table, "shuffled": shuffle_labels(table, seed=2)}, "euclidean", n_boot=200
    ).set_index(["arm", "measure"])
    planted_sep = results.loc[("planted", "separation")]
    assert planted_sep["low"] > 0.3 and planted_sep["estimate"] <= planted_sep["high"]
    assert results.loc[("planted", "centroid accuracy"), "low"] > 0.6
    shuffled_sep = results.loc[("shuffled", "separation")]
    assert shuffled_sep["low"] <= 0.0 <= shuffled_sep["high"]
    shuffled_acc = results.loc[("shuffled", "centroid accuracy")]
    assert shuffled_acc["low"] <= 0.25 + 0.1 and shuffled_acc["high"] >= 0.25 - 0.1
    assert (results["n_images"] == 40).all() and (results["n_objects"] == 120).all()


def test_random_weights_backbone_is_the_same_architecture(tiny_backbone):
    random = random_weights_backbone(tiny_backbone, seed=3)
    assert random.unet is not tiny_backbone.unet
    assert dict(random.unet.config) == dict(tiny_backbone.unet.config)
    trained_state, random_state = tiny_backbone.unet.state_dict(), random.unet.state_dict()
    assert trained_state.keys() == random_state.keys()
    conv = "conv_in.weight"
    assert not np.allclose(trained_state[conv].numpy(), random_state[conv].numpy())
    assert random.text_encoder is tiny_backbone.text_encoder
    again = random_weights_backbone(tiny_backbone, seed=3)
    np.testing.assert_array_equal(again.unet.state_dict()[conv], random_state[conv])


def test_random_weights_of_a_compiled_unet_are_those_of_the_plain_one(tiny_backbone):
    import dataclasses

    import torch

    compiled = dataclasses.replace(tiny_backbone, unet=torch.compile(tiny_backbone.unet))
    assert type(compiled.unet).__name__ == "OptimizedModule"  # no from_config of its own
    random = random_weights_backbone(compiled, seed=3)
    reference = random_weights_backbone(tiny_backbone, seed=3)  # the unwrapped U-Net
    assert type(random.unet) is type(tiny_backbone.unet)
    state, expected = random.unet.state_dict(), reference.unet.state_dict()
    assert state.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(state[name], expected[name], rtol=0, atol=0)


def test_linear_probe_matches_sklearn_ridge_classifier_with_the_same_folds():
    from sklearn.linear_model import RidgeClassifier
    from sklearn.preprocessing import StandardScaler

    from difflens.analysis.sets import source_codes

    table = random_table(n_images=20, per_image=3, dim=5, seed=6, signal=0.5)
    X = table.features.astype(float)
    y = table.meta["class_name"].to_numpy()
    groups = source_codes(table.meta)[0]
    folds = np.random.default_rng(1).permutation(groups.max() + 1) % 4
    expected = np.empty(len(y), dtype=object)
    for k in range(4):
        train, test = folds[groups] != k, folds[groups] == k
        scaler = StandardScaler().fit(X[train])
        fitted = RidgeClassifier(alpha=30.0).fit(scaler.transform(X[train]), y[train])
        expected[test] = fitted.predict(scaler.transform(X[test]))
    # RidgeClassifier codes targets as -1/+1; with an unpenalised intercept the argmax is the
    # same as with 0/1 targets. A penalty this size changes some predictions, so it is checked.
    ours = linear_probe_accuracy(table, n_folds=4, ridge=30.0, seed=1)
    assert ours == pytest.approx(np.mean(expected == y))
    assert ours != pytest.approx(linear_probe_accuracy(table, n_folds=4, ridge=0.01, seed=1))


def test_class_directions_are_orthonormal_and_seeded():
    directions = class_directions(["a", "b", "c"], dim=6, seed=2)
    u = np.stack(list(directions.values()))
    np.testing.assert_allclose(u @ u.T, np.eye(3), atol=1e-12)
    again = class_directions(["a", "b", "c"], dim=6, seed=2)
    np.testing.assert_array_equal(again["b"], directions["b"])
    with pytest.raises(ValueError):
        class_directions(["a", "b", "c"], dim=2)


def test_pixel_spread_is_the_rms_distance_from_the_mean_pixel():
    rng = np.random.default_rng(0)
    maps = [torch.from_numpy(rng.normal(size=(3, 4, 5)).astype(np.float32)) for _ in range(2)]
    pixels = np.concatenate([m.numpy().reshape(3, -1).T for m in maps])
    expected = np.sqrt(np.mean(np.sum((pixels - pixels.mean(0)) ** 2, axis=1)))
    assert pixel_spread(maps) == pytest.approx(expected, rel=1e-6)


def _two_object_scene():
    from difflens.data.scene import Scene

    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, :4, :4] = True
    masks[1, 4:, 2:8] = True
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    return Scene(image, masks, ["a", "b"], [1, 2], "img0")


def test_planted_signal_lands_on_the_object_cells_only_and_shifts_prototypes_exactly():
    from difflens.features.prototypes import scene_prototypes

    scene = _two_object_scene()
    feature_map = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0))
    offsets = {"a": np.array([1.0, 0, 0]), "b": np.array([0, 2.0, 0])}
    planted = plant_signal(feature_map, scene, offsets)
    diff = (planted - feature_map).numpy()
    np.testing.assert_allclose(diff[:, :4, :4], np.broadcast_to([[[1]], [[0]], [[0]]], (3, 4, 4)))
    np.testing.assert_allclose(diff[:, 4:, 2:], np.broadcast_to([[[0]], [[2]], [[0]]], (3, 4, 6)))
    background = ~(scene.masks[0] | scene.masks[1])
    assert np.all(diff[:, background] == 0)
    before = scene_prototypes(feature_map, scene).features
    after = scene_prototypes(planted, scene).features
    np.testing.assert_allclose(after - before, np.stack(list(offsets.values())), atol=1e-5)
    # at the feature map's own (coarser) size the mask weights are used the same way
    small = plant_signal(feature_map[:, ::2, ::2].contiguous(), scene, offsets)
    shift = (
        scene_prototypes(small, scene).features
        - scene_prototypes(feature_map[:, ::2, ::2].contiguous(), scene).features
    )
    np.testing.assert_allclose(shift, np.stack(list(offsets.values())), atol=1e-5)


def test_planted_onsets_need_the_criterion_to_hold_from_there_on():
    curve = pd.DataFrame(
        {
            "delta": [0.0, 0.1, 0.2, 0.3],
            "separation low": [-0.1, 0.01, -0.01, 0.2],
            "centroid accuracy low": [0.1, 0.2, 0.3, 0.9],
            "P[scdi < dcdi]": [0.5, 0.96, 0.99, 1.0],
        }
    )
    for a, b in PLANTED_PAIRS:
        curve[f"log10 p {a} vs {b}"] = [-0.5, -2.0, -3.0, -9.0]
        curve[f"{a} < {b}"] = [True, False, True, True]
    onsets = planted_onsets(curve, chance=0.125)
    assert onsets["separation interval above 0"] == 0.3  # dips below 0 at 0.2
    assert onsets["accuracy interval above chance"] == 0.1
    assert onsets["P[scdi < dcdi] >= 0.95"] == 0.1
    assert onsets["p(scdi < dcdi) < 0.05"] == 0.2  # at 0.1 the direction is reversed
    curve["separation low"] = -1.0
    assert planted_onsets(curve, chance=0.125)["separation interval above 0"] is None


def test_planted_power_curve_on_noise_maps_finds_nothing_at_zero_and_everything_when_large(
    monkeypatch,
):
    import difflens.analysis.controls as controls
    from difflens.data.toy import ToyWorld

    scenes = list(ToyWorld(n_images=30, size=64, seed=0))
    rng = np.random.default_rng(0)
    maps = {
        s.image_id: torch.from_numpy(rng.normal(size=(16, 16, 16)).astype(np.float32))
        for s in scenes
    }
    monkeypatch.setattr(controls, "layer_maps", lambda *args, **kwargs: maps)
    curve, info = planted_power_curve(
        scenes, None, deltas=(0.0, 3.0), n_boot=100, metric="euclidean"
    )
    null, strong = curve.iloc[0], curve.iloc[1]
    assert null["separation low"] <= 0 <= null["separation high"]
    assert null["centroid accuracy low"] <= info["chance"] <= null["centroid accuracy high"]
    assert strong["separation low"] > 0.9 and strong["centroid accuracy"] == 1.0
    assert strong["P[scdi < dcdi]"] == 1.0 and strong["log10 p scdi vs dcdi"] < -10
    assert info["onsets"]["separation interval above 0"] == 3.0
    assert info["pixel_spread"] == pytest.approx(4.0, rel=0.05)  # sqrt(16) for unit normals


@pytest.mark.slow  # the default run checks the same on notebook 07's 300 held-out images
def test_the_positive_control_separates_classes_and_the_controls_do_not():
    from difflens.analysis.controls import controls_study

    results, numbers = controls_study("toy", n_images=200, n_boot=200, progress=False)
    summary = results.round(4).to_string()
    for check in (
        "trained_above_random",
        "trained_accuracy_above_random",
        "trained_accuracy_above_shuffled",
        "shuffled_covers_zero",
        "shuffled_accuracy_covers_chance",
    ):
        assert numbers[check], f"{check}\n{summary}"
    # The separation target (>= 0.25) is met with a wide margin and guarded here; the
    # accuracy target (>= 0.8) is reported by notebook 07 and the model card, met or not: the
    # checks above (intervals disjoint from random weights' and shuffled labels') are the claim.
    assert numbers["trained_separation_estimate"] >= 0.25, summary


def test_the_controls_layer_and_timestep_are_the_committed_validation_choice():
    from difflens.analysis.controls import (
        CONTROL_LAYER,
        CONTROL_TIMESTEP,
        DENOISER_LAYER,
        DENOISER_TIMESTEP,
    )
    from difflens.models.toy import toy_model_path

    for model, layer, timestep in (
        ("toy", CONTROL_LAYER, CONTROL_TIMESTEP),
        ("toy-denoiser", DENOISER_LAYER, DENOISER_TIMESTEP),
    ):
        search = pd.read_csv(toy_model_path(model) / "validation_search.csv")
        assert (search["layer"][0], int(search["timestep"][0])) == (layer, timestep), model
        assert search["gap"].is_monotonic_decreasing


def test_the_search_names_a_layer_the_model_lacks():
    from difflens.analysis.controls import layer_timestep_search
    from difflens.models.layers import UnknownLayerError

    with pytest.raises(UnknownLayerError, match="down9.attn0"):
        layer_timestep_search("tiny", n_images=2, layers=["down9.attn0"], timesteps=[0])
