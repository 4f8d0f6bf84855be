"""The controls study: its measures against independent references, and the controls on
the committed toy model (trained above random weights, shuffled labels at chance)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from difflens.controls import (
    centroid_accuracy,
    centroid_predictions,
    measure_arms,
    random_weights_backbone,
    separation,
    shuffle_labels,
)
from difflens.prototypes import META_COLUMNS, PrototypeTable


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


def test_separation_equals_the_studies_separation_of_the_distance_sets():
    from difflens.sets import distance_sets
    from difflens.studies import separation as sets_separation

    table = random_table(n_images=9, per_image=3, seed=11, signal=0.4)
    long = distance_sets(table, metric="correlation", sets=("scdi", "dcdi"), progress=False)
    assert separation(table, "correlation") == pytest.approx(sets_separation(long), abs=1e-12)


def test_separation_matches_a_brute_force_count():
    table = random_table(n_images=5, per_image=3, seed=2, signal=0.5)
    d = cdist(table.features.astype(float), table.features.astype(float), "cosine")
    meta = table.meta
    between, within = [], []
    for i, j in itertools.combinations(range(len(table)), 2):
        if meta.image_id[i] == meta.image_id[j]:
            continue
        (within if meta.class_name[i] == meta.class_name[j] else between).append(d[i, j])
    greater = sum(a > b for a, b in itertools.product(between, within))
    less = sum(a < b for a, b in itertools.product(between, within))
    expected = (greater - less) / (len(between) * len(within))
    assert separation(table, "cosine") == pytest.approx(expected, abs=1e-9)


def test_separation_treats_copies_of_one_source_image_as_the_same_image():
    # Two images; the second row of each class is a bootstrap copy of image a.
    features = [[1, 0], [0, 1], [1, 0.1], [0.1, 1], [1, 0.05], [0.05, 1]]
    classes = ["circle", "square"] * 3
    images = ["a~0", "a~0", "b~1", "b~1", "a~2", "a~2"]
    sources = ["a", "a", "b", "b", "a", "a"]
    table = make_table(features, classes, images, sources)
    # Only a-b pairs count: 8 pairs, 4 same class (close) and 4 different class (far).
    assert separation(table, "euclidean") == 1.0
    same_source = make_table(features, classes, images, ["a"] * 6)
    assert np.isnan(separation(same_source, "euclidean"))


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


def test_the_trained_toy_model_separates_classes_and_the_controls_do_not():
    from difflens.controls import controls_study

    results, numbers = controls_study("toy", n_images=300, n_boot=200, progress=False)
    summary = results.round(4).to_string()
    assert numbers["trained_above_random"], summary
    assert numbers["shuffled_covers_zero"], summary
    assert numbers["shuffled_accuracy_covers_chance"], summary
    assert numbers["trained_separation_estimate"] > 0
