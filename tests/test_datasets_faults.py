"""Bad input from the field: one bad item is a named, counted skip; the loop goes on.

Every fault sits in a format-faithful fixture (a real COCO instances JSON, palette PNGs), and
the images after the bad one must still be read. Masks are checked against pycocotools
decoding the good parts on their own, or against hand-counted pixels.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from fixtures.dataset_trees import (
    COCO_H,
    COCO_W,
    VOC_H,
    VOC_W,
    coco_image,
    compressed_rle,
    make_voc_tree,
    noise_image,
    voc_labels_000001,
    write_coco_split,
    write_jpeg,
    write_palette_png,
    write_voc_item,
)
from pycocotools import mask as mask_utils

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.data.base import SceneDataset, build_scene
from difflens.data.coco import COCODataset
from difflens.data.coco_segmentation import polygon_problem, rle_string_runs
from difflens.data.registry import load
from difflens.data.selection import select
from difflens.data.voc import VOCDataset

PIXELS = COCO_H * COCO_W  # 600


def square(x: int, y: int, s: int = 6) -> list[list[int]]:
    return [[x, y, x + s, y, x + s, y + s, x, y + s]]


def ann(ann_id, image_id, segmentation, category_id=1, **extra):
    out = {"id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0}
    out.update(area=0.0, bbox=[0, 0, 0, 0], segmentation=segmentation)
    out.update(extra)
    return out


def reference_mask(segmentation) -> np.ndarray:
    """pycocotools' own decoding of a (good) polygon list, as annToMask does it."""
    rles = mask_utils.frPyObjects(segmentation, COCO_H, COCO_W)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


# --------------------------------------------------------------------------- repeated ids


def test_repeated_annotation_ids_are_rekeyed_and_the_loop_goes_on(tmp_path):
    # the handed case: a COCO export where both annotations of image 1 have id 0
    base = tmp_path / "coco"
    images = [coco_image(i) for i in (1, 2, 3)]
    anns = [
        ann(0, 1, square(2, 2), category_id=18),
        ann(0, 1, square(15, 10), category_id=1),
        ann(1, 2, square(5, 5)),
        ann(2, 3, square(5, 5), category_id=18),
    ]
    write_coco_split(base, "val2017", images, anns)
    data = COCODataset(base)
    scenes = list(data)
    assert [s.image_id for s in scenes] == ["000000000001", "000000000002", "000000000003"]
    first = scenes[0]
    assert first.instance_ids == [1, 2]  # positions in file order
    assert first.class_names == ["dog", "person"]
    assert (
        first.meta["annotation_ids"] == [0, 0]
        and "repeated annotation ids [0]" in (first.meta["rekeyed"])
    )
    assert np.array_equal(first.masks[0], reference_mask(square(2, 2)))
    assert np.array_equal(first.masks[1], reference_mask(square(15, 10)))
    assert scenes[1].instance_ids == [1] and scenes[2].instance_ids == [2]  # untouched
    assert len(data.skipped) == 0
    assert data.repaired.counts() == Counter({"re-keyed ids": 1})
    assert data.repaired.records[0][0] == "000000000001"


def test_rekeying_does_not_depend_on_which_objects_are_kept(tmp_path):
    # ids [5, 5, 9]: the crowd annotation counts for the numbering either way
    base = tmp_path / "coco"
    crowd = {"counts": [0, PIXELS], "size": [COCO_H, COCO_W]}
    anns = [
        ann(5, 1, crowd, iscrowd=1),
        ann(5, 1, square(2, 2)),
        ann(9, 1, "text instead of a segmentation"),
        ann(7, 1, square(15, 10), category_id=18),
    ]
    anns[0]["iscrowd"] = 1
    write_coco_split(base, "val2017", [coco_image(1)], anns)
    default = load("coco", base, ids=[1])
    with_crowd = load("coco", base, ids=[1], include_crowd=True)
    assert default[0].instance_ids == [2, 4]
    assert with_crowd[0].instance_ids == [1, 2, 4]
    scenes = list(default)
    assert default.skipped.records[0][0] == "000000000001#3"  # the bad one, by position
    assert scenes[0].meta["annotation_ids"] == [5, 7]


def test_ids_that_are_not_integers_are_rekeyed(tmp_path):
    base = tmp_path / "coco"
    anns = [ann("a", 1, square(2, 2)), ann(None, 1, square(15, 10))]
    write_coco_split(base, "val2017", [coco_image(1)], anns)
    data = load("coco", base)
    (scene,) = list(data)
    assert scene.instance_ids == [1, 2] and "not integers" in scene.meta["rekeyed"]


# --------------------------------------------------------------------------- RLE and polygons


def short_compressed_rle() -> dict:
    """A compressed RLE coding 300 pixels (a 10 x 30 mask) but claiming the 20 x 30 image."""
    half = np.zeros((10, COCO_W), np.uint8)
    half[2:5, 3:9] = 1
    rle = mask_utils.encode(np.asfortranarray(half))
    return {"counts": rle["counts"].decode("ascii"), "size": [COCO_H, COCO_W]}


def test_pycocotools_lets_bad_runs_through():
    # why difflens checks runs itself: pycocotools decodes short runs without complaint,
    # so the rest of the mask is whatever was in memory (not the 18 annotated pixels)
    assert sum(rle_string_runs(short_compressed_rle()["counts"])) == 300 != PIXELS
    short = mask_utils.frPyObjects({"counts": [100, 18], "size": [COCO_H, COCO_W]}, COCO_H, COCO_W)
    decoded = mask_utils.decode(short)
    assert decoded.shape == (COCO_H, COCO_W)  # no error raised for 118 of 600 pixels


def test_rle_string_runs_match_numpy_runs_on_random_masks():
    rng = np.random.default_rng(0)
    for trial in range(200):
        h, w = (int(v) for v in rng.integers(1, 30, size=2))
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        flat = mask.ravel(order="F")
        # runs by hand: 0s first, then alternating; np.diff finds where the value changes
        edges = np.flatnonzero(np.diff(flat)) + 1
        bounds = np.concatenate([[0], edges, [flat.size]])
        runs = np.diff(bounds).tolist()
        if flat[0] == 1:
            runs = [0, *runs]
        code = mask_utils.encode(np.asfortranarray(mask))["counts"]
        assert rle_string_runs(code) == runs, trial


@pytest.mark.parametrize(
    ("part", "problem"),
    [
        ([1, 1, 5, 1, 5, 5, 1, 5], None),
        ([1, 1, 5, 1, 5, 5, 1], "odd number of coordinates (7)"),
        ([1, 1, 5, 5], "2 points"),
        ([1, 1, 2, 2, 3, 3], "zero area"),
        ([1, 1, 5, 1, float("nan"), 5], "not finite"),
        (["1", 1, 5, 1, 5, 5], "not numbers"),
        ({"x": 1}, "not a list"),
    ],
)
def test_polygon_part_problems(part, problem):
    found = polygon_problem(part)
    assert found is None if problem is None else problem in found


def coco_fault_tree(tmp_path):
    """One fault per image; every image also holds a good object except where noted.

    Good object: id <image>0, a 6 x 6 person square at (20, 10) (pycocotools: 36 px).
    """
    base = tmp_path / "coco"
    good_square = square(20, 10)
    faults = {
        10: ann(101, 10, short_compressed_rle()),  # compressed runs sum to 300
        11: ann(111, 11, {"counts": [500, 200], "size": [COCO_H, COCO_W]}),  # 700 > 600
        12: ann(121, 12, {"counts": [5, -2, 597], "size": [COCO_H, COCO_W]}),  # negative run
        13: ann(131, 13, {"counts": "0e", "size": [COCO_H, COCO_W]}),  # ends inside a run
        14: ann(141, 14, {"counts": [0, 150], "size": [10, 15]}),  # RLE of another size
        15: ann(151, 15, [[1, 1, 10, 10]]),  # 4 numbers: pycocotools reads it as a box
        16: ann(161, 16, "a string"),  # unknown type
        17: ann(171, 17, [], bbox=[1, 1, 5, 5]),  # bbox-only
        18: ann(181, 18, None),  # no segmentation at all
        19: ann(191, 19, {"counts": "0e0 bad", "size": [COCO_H, COCO_W]}),  # not RLE code
    }
    anns = []
    for image_id, bad in faults.items():
        anns += [bad, ann(image_id * 10, image_id, good_square)]
    # image 20: one object with a degenerate part, kept with its good part
    degenerate = [square(2, 2)[0], [1, 1, 4, 4], [1, 1, 2, 2, 3, 3], [8, 8, 9, 8, 9, 9, 8]]
    anns.append(ann(201, 20, degenerate))
    # image 21 is listed twice; image 22 has no height; annotation 999 has no image;
    # image 23 has no annotation; image 24 is fault-free
    anns += [ann(211, 21, good_square), ann(221, 22, good_square), ann(999, 77, good_square)]
    anns.append(ann(240, 24, good_square))
    images = [coco_image(i) for i in range(10, 25)] + [coco_image(21)]
    del images[12]["height"]  # image 22
    path = write_coco_split(base, "val2017", images, anns)
    doc = json.loads(path.read_text())
    doc["images"].append({"id": "x17", "file_name": "x17.jpg", "height": 20, "width": 30})
    path.write_text(json.dumps(doc))
    return base, good_square, degenerate


def test_every_coco_fault_is_a_counted_skip_and_later_images_are_read(tmp_path):
    base, good_square, degenerate = coco_fault_tree(tmp_path)
    data = COCODataset(base)
    scenes = {s.image_id: s for s in data}
    # images 10-19 keep their good object, 20 its drawable part, 24 is fault-free
    expected_read = [f"{i:012d}" for i in [*range(10, 21), 24]]
    assert list(scenes) == expected_read
    good = reference_mask(good_square)
    for image_id in range(10, 20):
        scene = scenes[f"{image_id:012d}"]
        assert scene.instance_ids == [image_id * 10]
        assert np.array_equal(scene.masks[0], good) and good.sum() == 36
    # the degenerate object: exactly what pycocotools draws for its one good part
    kept = scenes["000000000020"]
    assert np.array_equal(kept.masks[0], reference_mask([degenerate[0]]))
    assert data.skipped.counts() == Counter(
        {
            "corrupt annotation": 10,  # 10, 11, 12, 13, 15, 16, 19; images 21, 22, "x17"
            "size mismatch": 1,  # 14
            "no segmentation": 2,  # 17, 18
            "orphan annotation": 1,  # 999
            "no objects": 1,  # image 23 has no annotation at all
        }
    ), data.skipped.records
    reasons = dict(data.skipped.records)
    assert "sum to 300, not 600" in reasons["000000000010#101"]
    assert "sum to 700, not 600" in reasons["000000000011#111"]
    assert "negative run lengths [-2]" in reasons["000000000012#121"]
    assert "ends inside run" in reasons["000000000013#131"]
    assert "RLE size [10, 15]" in reasons["000000000014#141"]
    assert "2 points" in reasons["000000000015#151"]
    assert "segmentation is a str" in reasons["000000000016#161"]
    assert "is not RLE code" in reasons["000000000019#191"]
    assert "listed 2 times" in reasons["000000000021"]
    assert "no usable height/width" in reasons["000000000022"]
    assert "image_id 77" in reasons["instances_val2017.json:annotations[23]"]
    assert "has no integer id" in reasons["instances_val2017.json:images[16]"]
    assert data.repaired.counts() == Counter({"dropped polygon part": 3})


def test_a_corrupt_annotation_file_skips_each_image_named(tmp_path):
    base = tmp_path / "coco"
    write_coco_split(base, "val2017", [coco_image(1), coco_image(2)], [])
    (base / "annotations" / "instances_val2017.json").write_text('{"images": [')
    data = load("coco", base, ids=[1, 2])
    assert list(data) == []
    assert data.skipped.counts() == Counter({"corrupt annotation": 2})
    assert "not readable JSON" in data.skipped.records[0][1]
    with pytest.raises(DatasetError, match="not readable JSON"):
        load("coco", base)  # without ids the split's file is needed at once


def test_compressed_rle_from_pycocotools_still_decodes(tmp_path):
    base = tmp_path / "coco"
    mask = np.zeros((COCO_H, COCO_W), np.uint8)
    mask[3:9, 4:20] = 1  # 96 px
    write_coco_split(base, "val2017", [coco_image(1)], [ann(1, 1, compressed_rle(mask))])
    (scene,) = list(load("coco", base))
    assert np.array_equal(scene.masks[0], mask.astype(bool)) and scene.masks[0].sum() == 96


# --------------------------------------------------------------------------- VOC


def test_voc_object_png_of_another_size_and_classless_instances(tmp_path):
    base = make_voc_tree(tmp_path)
    objects, classes = voc_labels_000001()
    rgb = noise_image(VOC_H, VOC_W, 5)
    # SegmentationObject resized, SegmentationClass and JPEG of the right size
    write_voc_item(base, "objsize", rgb, objects, classes)
    write_palette_png(base / "SegmentationObject" / "objsize.png", objects[:, :12])
    # object 3 lies on background in SegmentationClass, object 2 on void only
    classless = classes.copy()
    classless[objects == 3] = 0
    classless[objects == 2] = 255
    write_voc_item(base, "classless", rgb, objects, classless)
    data = VOCDataset(base, ids=["objsize", "classless", "2007_000002"])
    scenes = list(data)
    assert [s.image_id for s in scenes] == ["classless", "2007_000002"]
    assert scenes[0].instance_ids == [1] and scenes[0].masks[0].sum() == 20  # by hand
    assert data.skipped.counts() == Counter({"size mismatch": 1, "no class pixels": 2})
    reasons = dict(data.skipped.records)
    assert "objsize.png is 12x12" in reasons["objsize"]
    assert "labels {0: 10}" in reasons["classless#3"]
    assert "labels {255: 24}" in reasons["classless#2"]


# --------------------------------------------------------------------------- the loop itself


class Faulty(SceneDataset):
    """Items ``ok*`` read; ``repeat`` repeats an instance id; ``key`` raises KeyError."""

    name = "faulty"

    def __init__(self, ids):
        super().__init__()
        self.ids = list(ids)

    def load_scene(self, image_id):
        if image_id == "key":
            raise KeyError("category_id")
        ids = [4, 4] if image_id == "repeat" else [1, 2]
        return build_scene(
            f"{image_id} (test)",
            image=np.zeros((4, 4, 3), np.uint8),
            masks=np.ones((2, 4, 4), bool),
            class_names=["cat", "dog"],
            instance_ids=ids,
            image_id=image_id,
        )


def test_scene_errors_and_unexpected_errors_are_counted_skips():
    data = Faulty(["ok1", "repeat", "key", "ok2"])
    assert [s.image_id for s in data] == ["ok1", "ok2"]
    assert data.skipped.counts() == Counter({"inconsistent scene": 1, "unexpected error": 1})
    reasons = dict(data.skipped.records)
    assert "instance ids repeat" in reasons["repeat"] and "repeat (test)" in reasons["repeat"]
    assert "KeyError" in reasons["key"]
    with pytest.raises(DatasetError, match="inconsistent scene"):
        data[1]


def test_selection_counts_any_fault_and_goes_on():
    data = Faulty(["ok1", "repeat", "key", "ok2", "ok3"])
    selection = select(data, n=5, seed=0, progress=False)  # every candidate is examined
    assert not selection.complete and sorted(selection.image_ids) == ["ok1", "ok2", "ok3"]
    assert selection.skipped.counts() == Counter({"inconsistent scene": 1, "unexpected error": 1})


def test_skip_log_summary_and_counts():
    log = SkipLog(verbose=False)
    log.skip("a", "missing file: a.jpg does not exist")
    log.skip("b", "missing file: b.jpg does not exist")
    log.skip("c", "empty mask: c.png")
    assert log.counts() == Counter({"missing file": 2, "empty mask": 1})
    assert log.summary() == "3 skipped (2 x missing file, 1 x empty mask)"
    assert SkipLog(action="repaired").summary() == "nothing repaired"


def test_voc_davis_bad_pngs_keep_later_frames(tmp_path):
    # a DAVIS annotation of the wrong size between two good frames
    from fixtures.dataset_trees import make_davis_tree

    base = make_davis_tree(tmp_path, sequences={"dancing": 3})
    write_palette_png(
        base / "Annotations" / "480p" / "dancing" / "00001.png", np.zeros((3, 3), np.uint8)
    )
    data = load("davis", tmp_path, ids=["dancing"])
    assert [s.image_id for s in data] == ["dancing/00000", "dancing/00002"]
    assert data.skipped.counts() == Counter({"size mismatch": 1})


def test_unreadable_jpeg_between_good_coco_images(tmp_path):
    base = tmp_path / "coco"
    images = [coco_image(i) for i in (1, 2, 3)]
    write_coco_split(base, "val2017", images, [ann(i, i, square(2, 2)) for i in (1, 2, 3)])
    write_jpeg(base / "val2017" / "000000000002.jpg", np.zeros((2, 2, 3), np.uint8))
    data = load("coco", base)
    assert [s.image_id for s in data] == ["000000000001", "000000000003"]
    assert data.skipped.counts() == Counter({"size mismatch": 1})
    assert json.loads((base / "annotations" / "instances_val2017.json").read_text())["images"]
