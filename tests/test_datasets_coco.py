"""COCO 2017 loader against pycocotools' own annToMask and hand-counted pixels."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from fixtures.dataset_trees import (
    COCO_H,
    COCO_W,
    DOG_PIXELS,
    coco_fixture_annotations,
    coco_image,
    make_coco_tree,
    write_coco_split,
    write_jpeg,
)
from pycocotools.coco import COCO

from difflens.data.coco import COCODataset
from difflens.data.registry import load
from difflens.data.vocabulary import COCO_TO_VOC, VOC_CLASSES


def box(rows, cols):
    mask = np.zeros((COCO_H, COCO_W), bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def test_vocabulary_maps_twenty_coco_names_onto_voc():
    assert len(COCO_TO_VOC) == 20 and set(COCO_TO_VOC.values()) == set(VOC_CLASSES)
    renamed = {k: v for k, v in COCO_TO_VOC.items() if k != v}
    assert renamed == {
        "airplane": "aeroplane",
        "motorcycle": "motorbike",
        "couch": "sofa",
        "dining table": "diningtable",
        "potted plant": "pottedplant",
        "tv": "tvmonitor",
    }


def test_masks_equal_pycocotools_anntomask(tmp_path):
    base = make_coco_tree(tmp_path)
    reference = COCO(str(base / "annotations" / "instances_val2017.json"))
    data = COCODataset(base, include_crowd=True, non_voc="keep")
    scenes = list(data)
    assert [s.image_id for s in scenes] == ["000000000001", "000000000002", "000000000003"]
    n_checked = 0
    for scene in scenes:
        for ann_id, mask in zip(scene.instance_ids, scene.masks):
            expected = reference.annToMask(reference.anns[ann_id]).astype(bool)
            assert np.array_equal(mask, expected), ann_id
            n_checked += 1
    assert n_checked == 8  # every annotation of the three images


def test_hand_counted_polygon_and_rle_pixels(tmp_path):
    make_coco_tree(tmp_path)
    scene = load("coco", tmp_path, ids=["000000000001.jpg"])[0]
    assert scene.instance_ids == [101, 102, 103]
    assert scene.class_names == ["person", "dog", "diningtable"]
    masks = dict(zip(scene.instance_ids, scene.masks))
    # polygon (2,2)-(12,10): pixel centres inside -> rows 2-9, cols 2-11
    assert np.array_equal(masks[101], box((2, 10), (2, 12)))
    # uncompressed RLE written by hand
    dog = np.zeros((COCO_H, COCO_W), bool)
    for r, c in DOG_PIXELS:
        dog[r, c] = True
    assert masks[102].sum() == 12 and np.array_equal(masks[102], dog)
    # compressed RLE string
    assert np.array_equal(masks[103], box((14, 18), (20, 28)))
    assert scene.meta["coco_classes"] == ["person", "dog", "dining table"]
    assert scene.meta["crowd_excluded"] == 1 and scene.meta["non_voc_dropped"] == 1


def test_crowd_is_switchable(tmp_path):
    make_coco_tree(tmp_path)
    default = load("coco", tmp_path, ids=[1])[0]
    assert 104 not in default.instance_ids
    with_crowd = load("coco", tmp_path, ids=[1], include_crowd=True)[0]
    k = with_crowd.instance_ids.index(104)
    assert with_crowd.meta["crowd"][k] is True
    assert np.array_equal(with_crowd.masks[k], box((0, 4), (25, 30)))  # 20 px by hand


def test_non_voc_objects_dropped_or_kept(tmp_path):
    make_coco_tree(tmp_path)
    dropped = load("coco", tmp_path, ids=[3])[0]
    assert dropped.class_names == ["person"]
    kept = load("coco", tmp_path, ids=[3], non_voc="keep")[0]
    assert kept.class_names == ["person", "giraffe"]
    with pytest.raises(ValueError, match="non_voc"):
        load("coco", tmp_path, non_voc="maybe")


def test_image_without_voc_objects_is_skipped_with_reason(tmp_path):
    make_coco_tree(tmp_path)
    data = load("coco", tmp_path)
    assert [s.image_id for s in data] == ["000000000001", "000000000003"]
    ((item, reason),) = data.skipped.records
    assert item == "000000000002" and "1 non voc dropped" in reason


def test_split_is_found_by_file(tmp_path):
    make_coco_tree(tmp_path)
    scene = load("coco", tmp_path, ids=["000000000004.jpg"])[0]
    assert scene.meta["split"] == "train2017"
    assert scene.class_names == ["tvmonitor"] and scene.masks.sum() == 150
    only_val = load("coco", tmp_path, split="val", ids=[4])
    assert list(only_val) == []
    assert "is in none of" in only_val.skipped.records[0][1]


def test_bad_items_are_skipped_named_and_counted(tmp_path):
    base = tmp_path / "coco"
    images = [coco_image(i) for i in (10, 11, 12, 13, 14, 15)]
    images[2]["width"] = 31  # size mismatch with the JPEG written below at 30
    good_rle = {"counts": [0, 600], "size": [COCO_H, COCO_W]}
    anns = [
        {"id": 1, "image_id": 10, "category_id": 1, "iscrowd": 0, "segmentation": good_rle},
        {"id": 2, "image_id": 10, "category_id": 999, "iscrowd": 0, "segmentation": good_rle},
        {"id": 3, "image_id": 10, "category_id": 18, "iscrowd": 0, "segmentation": [[1, 1, 1]]},
        {
            "id": 4,
            "image_id": 10,
            "category_id": 18,
            "iscrowd": 0,
            "segmentation": [[5.2, 5.2, 5.4, 5.2, 5.3, 5.4]],  # covers no pixel centre
        },
        {
            "id": 9,
            "image_id": 10,
            "category_id": 18,
            "iscrowd": 0,
            "segmentation": {"counts": [10, 5], "size": [COCO_H, COCO_W]},  # sums to 15, not 600
        },
        {"id": 5, "image_id": 11, "category_id": 1, "iscrowd": 0, "segmentation": good_rle},
        {"id": 6, "image_id": 12, "category_id": 1, "iscrowd": 0, "segmentation": good_rle},
        {"id": 7, "image_id": 14, "category_id": 1, "iscrowd": 0, "segmentation": good_rle},
        {
            "id": 8,
            "image_id": 15,
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": {"counts": [600], "size": [COCO_H, COCO_W]},
        },
    ]
    write_coco_split(base, "val2017", images, anns)
    images[2]["width"] = 30
    write_jpeg(base / "val2017" / images[2]["file_name"], np.zeros((COCO_H, COCO_W, 3), np.uint8))
    (base / "val2017" / "000000000013.jpg").write_bytes(b"not a jpeg at all")
    (base / "val2017" / "000000000014.jpg").unlink()
    write_jpeg(base / "val2017" / "000000000016.jpg", np.zeros((COCO_H, COCO_W, 3), np.uint8))
    ids = [10, 11, 12, 13, 14, 15, 16, 17]
    data = COCODataset(base, split="val2017", ids=ids)
    scenes = list(data)
    assert [s.image_id for s in scenes] == ["000000000010", "000000000011"]
    assert scenes[0].instance_ids == [1]
    counts = data.skipped.counts()
    assert counts == Counter(
        {
            "unknown class": 1,  # annotation 2
            "corrupt annotation": 2,  # annotation 3 (a polygon of 1.5 points), 9 (short RLE)
            "empty mask": 2,  # annotation 4 (a sliver polygon) and annotation 8 (all-zero RLE)
            "size mismatch": 1,  # image 12
            "corrupt image": 1,  # image 13
            "missing file": 2,  # image 14 (deleted), 17 (never there)
            "no objects": 1,  # image 15: its only object was empty
            "not annotated": 1,  # image 16: a file the JSON does not list
        }
    ), data.skipped.records
    reasons = dict(data.skipped.records)
    assert "category id 999" in reasons["000000000010#2"]
    assert "run lengths sum to 15" in reasons["000000000010#9"]
    assert "000000000013.jpg" in reasons["000000000013"]
    assert "31x20" in reasons["000000000012"] and "30x20" in reasons["000000000012"]


def test_missing_annotation_file_is_a_counted_skip(tmp_path):
    base = make_coco_tree(tmp_path)
    (base / "annotations" / "instances_train2017.json").unlink()
    data = load("coco", base, ids=[1, 4])
    assert [s.image_id for s in data] == ["000000000001"]
    assert "instances_train2017.json does not exist" in data.skipped.records[0][1]


def test_annotation_json_is_the_official_structure(tmp_path):
    base = make_coco_tree(tmp_path)
    doc = json.loads((base / "annotations" / "instances_val2017.json").read_text())
    assert {"images", "annotations", "categories"} <= set(doc)
    kinds = Counter(
        "polygon"
        if isinstance(a["segmentation"], list)
        else "rle"
        if isinstance(a["segmentation"]["counts"], list)
        else "compressed"
        for a in coco_fixture_annotations()["val2017"]
    )
    assert kinds["polygon"] and kinds["rle"] and kinds["compressed"]
