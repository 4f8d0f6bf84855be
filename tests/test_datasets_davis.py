"""DAVIS 2017 loader on a palette-PNG fixture tree: persistent ids, classes, frames."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from fixtures.dataset_trees import DAVIS_H, DAVIS_W, make_davis_tree, write_palette_png

from difflens.data.davis import PAPER_DAVIS_CLASSES, PAPER_DAVIS_SEQUENCES, DAVISDataset
from difflens.data.registry import load
from difflens.data.video import frames_at_offsets


def test_frames_ids_and_hand_counted_pixels(tmp_path):
    make_davis_tree(tmp_path)
    data = load("davis", tmp_path, split="val")
    scenes = list(data)
    assert [s.image_id for s in scenes] == ["dancing/00000", "dancing/00001", "dancing/00002"]
    for frame, scene in enumerate(scenes):
        assert scene.source_image == "dancing"
        assert scene.meta["sequence"] == "dancing" and scene.meta["frame"] == frame
        assert scene.meta["split"] == "val"
        person = np.zeros((DAVIS_H, DAVIS_W), bool)
        person[2:5, 1 + frame : 5 + frame] = True
        assert np.array_equal(scene.masks[0], person)  # moves right one column per frame
        assert not scene.masks[:, 0, 0].any()  # void pixel
    assert [s.instance_ids for s in scenes] == [[1, 2], [1, 2], [1]]
    assert [s.masks.sum((1, 2)).tolist() for s in scenes] == [[12, 4], [12, 4], [12]]
    # the same object keeps its key in every frame
    keys = {s.instance_key(0) for s in scenes}
    assert keys == {"dancing#1"}


def test_classes_from_semantics_file_and_user_mapping(tmp_path):
    make_davis_tree(tmp_path)
    walking = load("davis", tmp_path, ids=["walking"])
    assert [s.class_names for s in walking] == [["person", "dog"], ["person", "dog"]]
    override = load("davis", tmp_path, ids=["walking/00001"], classes={"walking": {2: "horse"}})
    assert override[0].class_names == ["person", "horse"]
    everyone = load("davis", tmp_path, ids=["walking/00000"], classes="person")
    assert everyone[0].class_names == ["person", "person"]
    ignored = load("davis", tmp_path, ids=["walking/00000"], semantics=False, classes="x")
    assert ignored[0].class_names == ["x", "x"]


def test_without_any_class_source_the_loader_explains(tmp_path):
    make_davis_tree(tmp_path, semantics=None)
    data = load("davis", tmp_path)  # videos need no class; scenes do
    with pytest.raises(ValueError, match="classes='person'"):
        list(data)
    with pytest.raises(ValueError, match="classes='person'"):
        data.frames("dancing")[0]


def test_object_missing_from_semantics_is_an_unknown_class(tmp_path):
    make_davis_tree(tmp_path, semantics={"dancing": {"1": "person"}})
    data = load("davis", tmp_path, ids=["dancing"])
    scenes = list(data)
    assert [s.instance_ids for s in scenes] == [[1], [1], [1]]
    assert data.skipped.counts() == Counter({"unknown class": 2})  # object 2 in frames 0, 1
    assert "dancing/00000#2" == data.skipped.records[0][0]


def test_frames_of_a_sequence_feed_the_offset_study(tmp_path):
    make_davis_tree(tmp_path, sequences={"dancing": 3, "walking": 2})
    data = DAVISDataset(tmp_path)
    frames = data.frames("dancing")
    assert len(frames) == 3 and frames[2].image_id == "dancing/00002"
    picked = frames_at_offsets(frames, offsets=[1, 2, 5])
    assert [s.image_id for s in picked] == ["dancing/00000", "dancing/00001", "dancing/00002"]
    assert [s.source for s in picked] == ["frame+0", "frame+1", "frame+2"]
    assert data.sequences == ["walking", "dancing"]  # train.txt, then val.txt


def test_bad_frames_and_sequences_are_skipped_and_counted(tmp_path):
    base = make_davis_tree(tmp_path, sequences={"dancing": 3, "walking": 2})
    (base / "JPEGImages" / "480p" / "dancing" / "00001.jpg").write_bytes(b"\xff\xd8\xff broken")
    write_palette_png(
        base / "Annotations" / "480p" / "walking" / "00001.png", np.zeros((5, 5), np.uint8)
    )
    (base / "Annotations" / "480p" / "dancing" / "00002.png").unlink()
    data = load("davis", tmp_path, ids=["dancing", "walking", "india", "walking/00007"])
    scenes = list(data)
    assert [s.image_id for s in scenes] == ["dancing/00000", "walking/00000"]
    assert data.skipped.counts() == Counter(
        {"missing file": 2, "corrupt image": 1, "size mismatch": 1, "not annotated": 1}
    )
    reasons = dict(data.skipped.records)
    assert str(base / "JPEGImages" / "480p" / "india") in reasons["india"]
    assert "00001.jpg" in reasons["dancing/00001"]


def test_split_filter_and_paper_sequences(tmp_path):
    make_davis_tree(tmp_path)
    data = load("davis", tmp_path, split="train", ids=["dancing", "walking"])
    assert data.sequences == ["walking"]
    assert data.skipped.counts() == Counter({"not in split": 1})
    assert len(PAPER_DAVIS_SEQUENCES) == 8 and "lindy-hop" in PAPER_DAVIS_SEQUENCES
    paper = load(
        "davis", tmp_path, ids=["dancing/00000"], semantics=False, classes=PAPER_DAVIS_CLASSES
    )
    assert paper[0].class_names == ["person", "person"]
    make_davis_tree(tmp_path / "other", sequences={"bear": 2})
    bear = load("davis", tmp_path / "other", semantics=False, classes=PAPER_DAVIS_CLASSES)
    assert list(bear) == []  # not one of the eight: its objects have no class
    assert bear.skipped.counts() == Counter({"unknown class": 4, "no objects": 2})


def test_a_broken_semantics_file_is_not_needed_with_one_class_and_is_named_otherwise(tmp_path):
    from difflens.data.davis import SEMANTICS_FILE

    make_davis_tree(tmp_path)
    path = next(tmp_path.rglob(SEMANTICS_FILE))
    path.write_text("{not json")
    everyone = load("davis", tmp_path, ids=["walking/00000"], classes="person")
    assert everyone[0].class_names == ["person", "person"]
    with pytest.warns(UserWarning, match=f"{SEMANTICS_FILE}.*going on without it"):
        data = load("davis", tmp_path, ids=["walking/00000"])
    with pytest.raises(ValueError, match="classes='person'"):
        list(data)
