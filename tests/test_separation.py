"""The one separation measure: hand counts, its two groupings, and the distance sets."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import mannwhitneyu

from difflens.analysis.set_analysis import separation
from difflens.analysis.sets import distance_sets
from difflens.analysis.undefined import UndefinedStatisticWarning
from difflens.features.prototypes import META_COLUMNS, PrototypeTable


def make_table(features, classes, images, sources=None, instances=None) -> PrototypeTable:
    n = len(classes)
    sources = list(sources) if sources is not None else list(images)
    instances = list(instances) if instances is not None else list(range(n))
    meta = pd.DataFrame(
        {
            "object_key": [f"{images[i]}:{instances[i]}" for i in range(n)],
            "image_id": list(images),
            "source_image": sources,
            "instance_id": instances,
            "instance_key": [f"{sources[i]}#{instances[i]}" for i in range(n)],
            "class_name": list(classes),
            "source": ["original"] * n,
            "area_fraction": [0.1] * n,
        },
        columns=list(META_COLUMNS),
    )
    return PrototypeTable(meta, np.asarray(features, np.float32))


def random_table(n_images=9, per_image=3, dim=6, seed=0, signal=0.4) -> PrototypeTable:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, dim)) * 3
    classes, images, rows = [], [], []
    for g in range(n_images):
        for _ in range(per_image):
            k = int(rng.integers(4))
            classes.append("abcd"[k])
            images.append(f"img{g}")
            rows.append(rng.normal(size=dim) + 5 + signal * centres[k])
    return make_table(np.array(rows), classes, images)


def test_transformed_copies_by_hand_under_both_groupings():
    # Photo "p" with a cat (0) and a dog (1), its flipped copy "p.hflip" (same source),
    # and photo "q" with a cat (2). One-dimensional features, euclidean distances:
    #   p:cat 0.0, p:dog 1.0, p.hflip:cat 0.1, p.hflip:dog 1.2, q:cat 0.3
    features = [[0.0], [1.0], [0.1], [1.2], [0.3]]
    classes = ["cat", "dog", "cat", "dog", "cat"]
    images = ["p", "p", "p.hflip", "p.hflip", "q"]
    sources = ["p", "p", "p", "p", "q"]
    instances = [0, 1, 0, 1, 0]
    table = make_table(features, classes, images, sources, instances)
    # group="source_image": only the p-q pairs count.
    #   same class: |0.0-0.3| = 0.3, |0.1-0.3| = 0.2
    #   different class: |1.0-0.3| = 0.7, |1.2-0.3| = 0.9
    #   every different-class distance exceeds every same-class one: delta = 4/4 = 1
    assert separation(table, "euclidean", group="source_image") == 1.0
    # group="image_id": the copy is another image, so p-p.hflip pairs count too.
    #   same class: p:cat-p.hflip:cat 0.1, p:dog-p.hflip:dog 0.2, plus 0.3, 0.2 -> {0.1, 0.2, 0.2, 0.3}
    #   different class: p:cat-p.hflip:dog 1.2, p:dog-p.hflip:cat 0.9, plus 0.7, 0.9
    #     -> {1.2, 0.9, 0.7, 0.9}; all 16 comparisons "greater": delta = 1
    assert separation(table, "euclidean", group="image_id") == 1.0
    # Move the copy's dog next to the cats: 0.15. Now by image_id the different-class
    # set is {p:cat-hflip:dog 0.15, p:dog-hflip:cat 0.9, p:dog-q 0.7, hflip:dog-q 0.15}
    # and same-class {0.1, |1.0-0.15| = 0.85, 0.3, 0.2}.
    #   0.15 vs same: > 0.1, < 0.85, < 0.3, < 0.2 -> +1 - 3 (twice: -4)
    #   0.9 vs same: > all four -> +4;   0.7 vs same: > 0.1, < 0.85, > 0.3, > 0.2 -> +2
    #   total (-4 + 4 + 2) / 16 = 0.125
    features[3] = [0.15]
    table = make_table(features, classes, images, sources, instances)
    assert separation(table, "euclidean", group="image_id") == pytest.approx(2 / 16)
    # By source image only p-q pairs: same {0.3, 0.2}, different {0.7, 0.15}
    #   0.7 > both (+2); 0.15 < both (-2): delta 0
    assert separation(table, "euclidean", group="source_image") == pytest.approx(0.0)


def test_image_grouping_equals_cliffs_delta_of_dcdi_over_scdi_from_scipy():
    table = random_table(seed=11)
    long = distance_sets(table, metric="correlation", sets=("scdi", "dcdi"), progress=False)
    dcdi = long.loc[long["set"] == "dcdi", "distance"].to_numpy()
    scdi = long.loc[long["set"] == "scdi", "distance"].to_numpy()
    u = mannwhitneyu(dcdi, scdi).statistic  # counts ties as 1/2
    expected = 2 * u / (len(dcdi) * len(scdi)) - 1
    got = separation(table, "correlation", group="image_id")
    assert got == pytest.approx(expected, abs=1e-12)


def test_separation_matches_a_brute_force_count():
    table = random_table(n_images=5, seed=2, signal=0.5)
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


def test_bootstrap_copies_of_one_source_image_count_as_the_same_image():
    features = [[1, 0], [0, 1], [1, 0.1], [0.1, 1], [1, 0.05], [0.05, 1]]
    classes = ["circle", "square"] * 3
    images = ["a~0", "a~0", "b~1", "b~1", "a~2", "a~2"]
    sources = ["a", "a", "b", "b", "a", "a"]
    table = make_table(features, classes, images, sources)
    # only a-b pairs count: 8 pairs, 4 same class (close) and 4 different class (far)
    assert separation(table, "euclidean") == 1.0
    one_source = make_table(features, classes, images, ["a"] * 6)
    with pytest.warns(UndefinedStatisticWarning, match="no different-class pair"):
        assert np.isnan(separation(one_source, "euclidean"))


def test_an_unknown_grouping_is_named():
    with pytest.raises(ValueError, match="group must be one of"):
        separation(random_table(), group="frame")
