"""CUB-200-2011 within-class pairs from a format-faithful miniature tree: Hedlin's default
pairs by hand, every field, the options, and bad lines as counted skips."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.keypoint_trees import (
    CUB_CLASSES,
    CUB_IMAGES,
    CUB_PART_NAMES,
    cub_part_xy,
    cub_path,
    make_cub_tree,
)
from PIL import Image

from difflens.data import load_pairs
from difflens.data.cub import CUBPairs


@pytest.fixture
def cub(tmp_path):
    return make_cub_tree(tmp_path)


def test_default_pairs_are_hedlins_by_hand(cub):
    dataset = CUBPairs(cub.parent)
    # classes 1-3, test images: class 1 -> 2, 3, 4; class 2 -> 5, 6 (no common part);
    # class 3 -> 8 alone; image 1 and 7 are training images
    assert dataset.ids == ["2-3", "2-4", "3-4"]
    assert dataset.skipped.counts() == {"no common keypoints": 1}
    assert dataset.skipped.records[0][0] == "5-6"
    pairs = list(dataset)
    common = {"2-3": ["2", "4", "7"], "2-4": ["1", "7", "15"], "3-4": ["7"]}
    for pair in pairs:
        source, target = (int(v) for v in pair.pair_id.split("-"))
        assert pair.keypoint_ids == common[pair.pair_id]
        names = [CUB_PART_NAMES[int(p) - 1] for p in common[pair.pair_id]]
        assert pair.meta["keypoint_names"] == names
        for image_id, points in ((source, pair.source_points), (target, pair.target_points)):
            expected = [cub_part_xy(image_id, int(p)) for p in common[pair.pair_id]]
            np.testing.assert_array_equal(points, np.array(expected, np.float32))
        x, y, w, h = CUB_IMAGES[target][4]
        np.testing.assert_array_equal(pair.target_box, [x, y, x + w, y + h])
        assert max(pair.target_box[2] - x, pair.target_box[3] - y) == max(w, h)
        assert pair.category == CUB_CLASSES[1] and pair.meta["class_id"] == 1
        assert pair.source_name == cub_path(source)
        expected = np.asarray(Image.open(cub / "images" / cub_path(source)).convert("RGB"))
        np.testing.assert_array_equal(pair.source_image, expected)
    assert pairs[0].meta["keypoint_names"] == ["beak", "breast", "left eye"]


def test_classes_split_and_sample(cub):
    assert CUBPairs(cub, classes=[4]).ids == ["9-10"]
    assert CUBPairs(cub, classes=["004.Groove_billed_Ani"]).ids == ["9-10"]
    assert CUBPairs(cub, classes=None).ids == ["2-3", "2-4", "3-4", "9-10"]
    assert CUBPairs(cub, split="train").ids == []  # one training image per class
    every = CUBPairs(cub, classes=None).ids
    keep = sorted(np.random.default_rng(3).choice(4, 2, replace=False))
    assert CUBPairs(cub, classes=None, max_pairs=2, seed=3).ids == [every[i] for i in keep]
    with pytest.raises(ValueError, match="no class 'penguin'"):
        CUBPairs(cub, classes=["penguin"])
    for name in ("cub", "CUB-200-2011", "cub_200_2011"):
        assert len(load_pairs(name, cub)) == 3
    assert load_pairs("cub", cub, ids=["4-2", "2-99"]).ids == ["4-2"]


def test_part_line_naming_an_unknown_image_is_counted_and_reading_goes_on(cub):
    locs = cub / "parts" / "part_locs.txt"
    lines = locs.read_text().splitlines()
    lines.insert(20, "99 3 4.0 5.0 1")
    lines.insert(21, "2 3 4.0")  # a line that does not parse
    locs.write_text("\n".join(lines) + "\n")
    dataset = CUBPairs(cub)
    assert dataset.skipped.counts() == {
        "unknown image": 1,
        "corrupt annotation": 1,
        "no common keypoints": 1,
    }
    item, reason = dataset.skipped.records[0]
    assert item == "part_locs.txt:21" and "image 99 is not in images.txt" in reason
    assert [p.pair_id for p in dataset] == ["2-3", "2-4", "3-4"]


def test_missing_image_and_outside_keypoint_are_counted_skips(cub):
    (cub / "images" / cub_path(3)).unlink()
    dataset = CUBPairs(cub)
    assert [p.pair_id for p in dataset] == ["2-4"]
    assert dataset.skipped.counts() == {"no common keypoints": 1, "missing file": 2}
    assert all(f"pair {i}" in r for i, r in dataset.skipped.records[1:])

    make_cub_tree(cub.parent)  # restore, then move part 15 of image 4 outside the image
    locs = cub / "parts" / "part_locs.txt"
    w = CUB_IMAGES[4][3]
    lines = [
        f"4 15 {w + 2}.0 1.0 1" if line.split()[:2] == ["4", "15"] else line
        for line in locs.read_text().splitlines()
    ]
    locs.write_text("\n".join(lines) + "\n")
    dataset = CUBPairs(cub)
    assert [p.pair_id for p in dataset] == ["2-3", "3-4"]
    assert dataset.skipped.counts() == {"no common keypoints": 1, "keypoint outside image": 1}


def test_image_without_box_is_not_annotated(cub):
    boxes = cub / "bounding_boxes.txt"
    kept = [line for line in boxes.read_text().splitlines() if line.split()[0] != "3"]
    boxes.write_text("\n".join(kept) + "\n")
    dataset = CUBPairs(cub)
    assert [p.pair_id for p in dataset] == ["2-4"]
    assert dataset.skipped.counts() == {"no common keypoints": 1, "not annotated": 2}


def test_missing_tree_says_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download cub"):
        CUBPairs(tmp_path)
