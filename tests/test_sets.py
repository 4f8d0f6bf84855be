"""The paper's Fig. 2 example, against its formal definitions (Eqs. 11-15)."""

import numpy as np
import pandas as pd
import pytest

from difflens.prototypes import PrototypeTable
from difflens.sets import distance_sets


def fig2_table() -> PrototypeTable:
    # image 1: a (person) and b (horse); image 2: c, d (horses); image 3 = image 2 flipped: e, f
    rows = [
        ("a", "img1", "img1", 1, "person"),
        ("b", "img1", "img1", 2, "horse"),
        ("c", "img2", "img2", 1, "horse"),
        ("d", "img2", "img2", 2, "horse"),
        ("e", "img2@hflip", "img2", 1, "horse"),
        ("f", "img2@hflip", "img2", 2, "horse"),
    ]
    meta = pd.DataFrame(
        {
            "object_key": [r[0] for r in rows],
            "image_id": [r[1] for r in rows],
            "source_image": [r[2] for r in rows],
            "instance_id": [r[3] for r in rows],
            "instance_key": [f"{r[2]}#{r[3]}" for r in rows],
            "class_name": [r[4] for r in rows],
            "source": ["original"] * 4 + ["hflip"] * 2,
            "area_fraction": 0.1,
        }
    )
    features = np.random.default_rng(0).normal(size=(6, 5))
    return PrototypeTable(meta, features)


def pairs_of(long, name):
    sub = long[long["set"] == name]
    return {"".join(sorted((a, b))) for a, b in zip(sub["a"], sub["b"])}


def test_fig2_sets_follow_the_equations():
    long = distance_sets(fig2_table(), metric="euclidean")
    assert pairs_of(long, "scsi") == {"cd", "ef"}
    assert pairs_of(long, "dcsi") == {"ab"}
    assert pairs_of(long, "dcdi") == {"ac", "ad", "ae", "af"}
    assert pairs_of(long, "scdi") == {"bc", "bd", "be", "bf", "ce", "cf", "de", "df"}
    assert pairs_of(long, "sidi") == {"ce", "df"}
    # every pair exactly once per set
    assert not long.duplicated(["set", "a", "b"]).any()


def test_scdi_without_same_instance_pairs():
    long = distance_sets(fig2_table(), metric="euclidean", scdi_same_instance=False)
    assert pairs_of(long, "scdi") == {"bc", "bd", "be", "bf", "cf", "de"}


@pytest.mark.parametrize("block", [1, 2, 4, 100])
def test_distances_in_sets_are_the_pair_distances(block):
    table = fig2_table()
    long = distance_sets(table, metric="euclidean", block=block)
    index = {k: i for i, k in enumerate(table.meta["object_key"])}
    for _, row in long.iterrows():
        f = table.features.astype(np.float64)
        expected = np.linalg.norm(f[index[row.a]] - f[index[row.b]])
        assert row.distance == pytest.approx(expected, rel=1e-9)
    # 15 unordered pairs; sidi pairs (2) are also in scdi
    assert len(long) == 15 + 2
