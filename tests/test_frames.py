import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from difflens.analysis.video import offset_distance_sets, offset_summary
from difflens.data.scene import Scene
from difflens.data.video import frames_at_offsets
from difflens.features.prototypes import PrototypeTable
from difflens.viz.video import plot_offset_trend


def frame(seq: str, index: int, ids: list[int], classes: list[str]) -> Scene:
    masks = np.zeros((len(ids), 8, 8), bool)
    for k in range(len(ids)):
        masks[k, k, :] = True
    return Scene(
        np.zeros((8, 8, 3), np.uint8), masks, classes, ids, f"{seq}/{index:05d}", source_image=seq
    )


def test_frames_at_offsets_tags_and_drops_past_the_end():
    frames = [frame("s", i, [1], ["person"]) for i in range(12)]
    picked = frames_at_offsets(frames, offsets=(1, 5, 20), reference=2)
    assert [s.image_id for s in picked] == ["s/00002", "s/00003", "s/00007"]
    assert [s.source for s in picked] == ["frame+0", "frame+1", "frame+5"]


def test_offset_sets_by_hand():
    # reference frame: persons 1, 2 and a dog 3; offset 4: persons 1, 2
    rows = [
        ("s/00000:1", "s/00000", 1, "person", "frame+0"),
        ("s/00000:2", "s/00000", 2, "person", "frame+0"),
        ("s/00000:3", "s/00000", 3, "dog", "frame+0"),
        ("s/00004:1", "s/00004", 1, "person", "frame+4"),
        ("s/00004:2", "s/00004", 2, "person", "frame+4"),
    ]
    meta = pd.DataFrame(
        {
            "object_key": [r[0] for r in rows],
            "image_id": [r[1] for r in rows],
            "source_image": "s",
            "instance_id": [r[2] for r in rows],
            "instance_key": [f"s#{r[2]}" for r in rows],
            "class_name": [r[3] for r in rows],
            "source": [r[4] for r in rows],
            "area_fraction": 0.1,
        }
    )
    x = np.random.default_rng(1).normal(size=(5, 6))
    long = offset_distance_sets(PrototypeTable(meta, x), metric="euclidean")
    ref = cdist(x, x)
    got = {(r.set, r.a, r.b): r.distance for r in long.itertuples()}
    expected = {
        ("scsi", "s/00000:1", "s/00000:2"): ref[0, 1],
        ("sidi", "s/00000:1", "s/00004:1"): ref[0, 3],
        ("scdi", "s/00000:1", "s/00004:2"): ref[0, 4],
        ("scdi", "s/00000:2", "s/00004:1"): ref[1, 3],
        ("sidi", "s/00000:2", "s/00004:2"): ref[1, 4],
        ("dcdi", "s/00000:3", "s/00004:1"): ref[2, 3],
        ("dcdi", "s/00000:3", "s/00004:2"): ref[2, 4],
    }
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5)
    summary = offset_summary(long)
    sidi = summary[(summary["set"] == "sidi") & (summary["offset"] == 4)].iloc[0]
    assert sidi["mean"] == pytest.approx((ref[0, 3] + ref[1, 4]) / 2, rel=1e-5)
    plot_offset_trend(summary)
