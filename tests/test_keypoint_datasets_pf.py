"""PF-PASCAL and PF-WILLOW from format-faithful miniature trees: every field, the box
readings, the PF-WILLOW extents by hand, and bad rows as counted skips."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.keypoint_trees import (
    PF_PASCAL_BBOX,
    PF_PASCAL_IMAGES,
    PF_PASCAL_TEST_ROWS,
    PF_PASCAL_VAL_ROWS,
    make_pf_pascal_tree,
    make_pf_willow_tree,
    pf_pascal_row,
    pf_willow_csv_row,
    pf_willow_rows,
    write_pf_pascal_csv,
    write_pf_willow_csv,
)
from PIL import Image

from difflens.data import load_pairs
from difflens.data.pf import (
    PF_PASCAL_TEST_PAIRS,
    PF_WILLOW_CATEGORIES,
    PFPascalDataset,
    PFWillowDataset,
)

VOC = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow"]
VOC += ["diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa"]
VOC += ["train", "tvmonitor"]


def cells(text: str) -> list[float]:
    return [float(v) for v in text.split(";")]


# --------------------------------------------------------------------------- PF-PASCAL


@pytest.fixture
def pascal(tmp_path):
    return make_pf_pascal_tree(tmp_path)


def test_pf_pascal_rows_are_read_exactly(pascal):
    dataset = load_pairs("pf-pascal", pascal.parent)
    pairs = list(dataset)
    assert len(pairs) == 4 and not dataset.skipped.records
    for pair, (src, trg, class_id, xa, ya, xb, yb) in zip(pairs, PF_PASCAL_TEST_ROWS):
        assert pair.category == VOC[class_id - 1]
        assert pair.meta["class_id"] == class_id
        assert pair.source_name == f"{src}.jpg" and pair.target_name == f"{trg}.jpg"
        np.testing.assert_array_equal(
            pair.source_points, np.array([cells(xa), cells(ya)], np.float32).T
        )
        np.testing.assert_array_equal(
            pair.target_points, np.array([cells(xb), cells(yb)], np.float32).T
        )
        assert pair.keypoint_ids == [str(i) for i in range(len(cells(xa)))]
        np.testing.assert_array_equal(pair.source_box, PF_PASCAL_BBOX[src])
        np.testing.assert_array_equal(pair.target_box, PF_PASCAL_BBOX[trg])
        assert pair.meta["box_reading"] == "annotation"
        expected = np.asarray(Image.open(pascal / "JPEGImages" / f"{src}.jpg").convert("RGB"))
        np.testing.assert_array_equal(pair.source_image, expected)
        assert pair.target_size == PF_PASCAL_IMAGES[trg]
    assert [p.meta["line"] for p in pairs] == [2, 3, 4, 5]
    assert pairs[0].pair_id == "0001-2009_000001-2009_000002"


def test_pf_pascal_box_readings(pascal):
    kp = list(PFPascalDataset(pascal, box="keypoints"))[2]  # row 3
    np.testing.assert_array_equal(kp.source_box, [4, 2, 27, 17])  # min/max of 27;4;13.5 / 17;2;9
    np.testing.assert_array_equal(kp.target_box, [0, 1, 17, 27])
    image = list(PFPascalDataset(pascal, box="image"))[2]
    h, w = PF_PASCAL_IMAGES["2010_000004"]
    np.testing.assert_array_equal(image.source_box, [0, 0, w - 1, h - 1])
    with pytest.raises(ValueError, match="box reading"):
        PFPascalDataset(pascal, box="voc")


def test_pf_pascal_splits_categories_and_counts(pascal):
    val = PFPascalDataset(pascal.parent, split="val")
    assert len(val) == len(PF_PASCAL_VAL_ROWS)
    assert PFPascalDataset(pascal, categories=["cat", "tvmonitor"]).categories == [
        "cat",
        "tvmonitor",
    ]
    assert list(PF_PASCAL_TEST_PAIRS) == VOC and sum(PF_PASCAL_TEST_PAIRS.values()) == 299
    with pytest.raises(FileNotFoundError, match="split 'trn'"):
        PFPascalDataset(pascal, split="train")
    with pytest.raises(ValueError, match="no categories"):
        PFPascalDataset(pascal, categories=["giraffe"])
    # the CSV may also sit next to the PF-dataset-PASCAL folder; paths stay relative to it
    (pascal / "test_pairs_pf_pascal.csv").rename(pascal.parent / "test_pairs_pf_pascal.csv")
    assert len(list(PFPascalDataset(pascal.parent))) == 4


def pascal_fault_rows():
    rows = [pf_pascal_row(r) for r in PF_PASCAL_TEST_ROWS]
    missing = [list(r) for r in rows]
    missing[1][5] = ""  # no XB
    short = [list(r) for r in rows]
    short[1] = short[1][:5]
    outside = [list(r) for r in rows]
    outside[1][5] = "7;26"  # target 2009_000003 is 22 wide
    unequal = [list(r) for r in rows]
    unequal[1][5], unequal[1][6] = "7", "2"  # 2 source points, 1 target point
    x_vs_y = [list(r) for r in rows]
    x_vs_y[1][4] = "21"  # 2 x, 1 y
    bad_class = [list(r) for r in rows]
    bad_class[1][2] = "21"
    no_image = [list(r) for r in rows]
    no_image[1][1] = "PF-dataset-PASCAL/JPEGImages/2009_009999.jpg"
    return {
        "missing coordinates": missing,
        "missing coordinates (short row)": short,
        "keypoint outside image": outside,
        "bad pair": unequal,
        "corrupt annotation (x vs y)": x_vs_y,
        "corrupt annotation": bad_class,
        "missing file": no_image,
    }


@pytest.mark.parametrize("fault", list(pascal_fault_rows()))
def test_pf_pascal_bad_row_is_a_counted_skip(pascal, fault):
    write_pf_pascal_csv(pascal / "test_pairs_pf_pascal.csv", pascal_fault_rows()[fault])
    dataset = PFPascalDataset(pascal)
    read = [p.meta["line"] for p in dataset]
    assert read == [2, 4, 5]  # line 3 skipped, the rows after it read
    assert len(dataset.skipped) == 1
    item, reason = dataset.skipped.records[0]
    assert item == dataset.ids[1] and reason.startswith(fault.split(" (")[0] + ": ")
    assert f"pair {item}" in reason and "line 3" in reason


def test_pf_pascal_missing_annotation_is_a_counted_skip(pascal):
    (pascal / "Annotations" / "cat" / "2010_000005.mat").unlink()
    dataset = PFPascalDataset(pascal)
    assert [p.meta["line"] for p in dataset] == [2, 3, 5]
    assert dataset.skipped.counts() == {"missing file": 1}
    assert "2010_000005.mat does not exist" in dataset.skipped.records[0][1]
    assert len(list(PFPascalDataset(pascal, box="keypoints"))) == 4


# --------------------------------------------------------------------------- PF-WILLOW


@pytest.fixture
def willow(tmp_path):
    return make_pf_willow_tree(tmp_path)


def test_pf_willow_rows_are_read_exactly(willow):
    dataset = load_pairs("pf-willow", willow)
    pairs = list(dataset)
    assert len(pairs) == 3 and not dataset.skipped.records
    for pair, (src, trg, a, b) in zip(pairs, pf_willow_rows()):
        folder = src.split("/")[0]
        assert pair.category == folder and pair.meta["object"] == folder.split("(")[0]
        np.testing.assert_allclose(pair.source_points, a.astype(np.float32))
        np.testing.assert_allclose(pair.target_points, b.astype(np.float32))
        assert pair.keypoint_ids == [str(i) for i in range(10)]
        np.testing.assert_allclose(pair.target_box, [*b.min(0), *b.max(0)], rtol=1e-6)
        expected = np.asarray(Image.open(willow / "PF-dataset" / f"{trg}.png").convert("RGB"))
        np.testing.assert_array_equal(pair.target_image, expected)
    assert [p.category for p in pairs] == ["car(G)", "car(G)", "duck(S)"]
    assert set(p.category for p in pairs) <= set(PF_WILLOW_CATEGORIES)


def test_pf_willow_extent_by_hand(willow):
    pair = list(PFWillowDataset(willow))[1]  # the hand-made target points
    # x spans 2.5..27 (24.5), y spans 4..11.5 (7.5): extent 24.5
    assert pair.meta["keypoint_extent"] == 24.5
    # padded with -1 as dhpf / LDM_correspondences do: max(27 + 1, 11.5 + 1) = 28
    assert pair.meta["keypoint_extent_padded"] == 28.0
    # the box around the target points has that extent as its longer side
    x1, y1, x2, y2 = pair.target_box
    assert max(x2 - x1, y2 - y1) == 24.5


def test_pf_willow_finds_either_csv_name_and_filters(tmp_path):
    root = make_pf_willow_tree(tmp_path, csv_name="test_pairs_pf.csv")
    assert len(PFWillowDataset(root)) == 3
    assert PFWillowDataset(root, categories=["duck(S)"]).categories == ["duck(S)"]
    with pytest.raises(ValueError, match="only a test split"):
        PFWillowDataset(root, split="val")
    with pytest.raises(FileNotFoundError, match="download pf-willow"):
        PFWillowDataset(tmp_path / "PF-dataset" / "car(G)")


@pytest.mark.parametrize("fault", ["missing coordinates", "missing file", "outside", "number"])
def test_pf_willow_bad_row_is_a_counted_skip(willow, fault):
    rows = [pf_willow_csv_row(*r) for r in pf_willow_rows()]
    if fault == "missing coordinates":
        rows[0][30] = ""
        kind = "missing coordinates"
    elif fault == "missing file":
        rows[0][0] = "PF-dataset/car(G)/car_0999.png"
        kind = "missing file"
    elif fault == "outside":
        rows[0][22] = "31.5"  # target car_0002 is 30 wide
        kind = "keypoint outside image"
    else:
        rows[0][5] = "12,5"
        kind = "corrupt annotation"
    write_pf_willow_csv(willow / "test_pairs.csv", rows)
    dataset = PFWillowDataset(willow)
    assert [p.meta["line"] for p in dataset] == [3, 4]
    assert dataset.skipped.counts() == {kind: 1}
    assert f"pair {dataset.ids[0]}" in dataset.skipped.records[0][1]


def test_header_is_read_and_a_headerless_list_keeps_its_first_row(pascal, willow):
    from difflens.data.pf import PF_PASCAL_COLUMNS

    assert PFPascalDataset(pascal).header == list(PF_PASCAL_COLUMNS)
    assert PFWillowDataset(willow).header[:3] == ["imageA", "imageB", "XA1"]
    csv_path = pascal / "test_pairs_pf_pascal.csv"
    csv_path.write_text("".join(",".join(pf_pascal_row(r)) + "\n" for r in PF_PASCAL_TEST_ROWS))
    headerless = PFPascalDataset(pascal)
    assert headerless.header == [] and [p.meta["line"] for p in headerless] == [1, 2, 3, 4]
    rows = [pf_willow_csv_row(*r) for r in pf_willow_rows()]
    (willow / "test_pairs.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    assert len(list(PFWillowDataset(willow))) == 3


def test_load_pairs_accepts_the_aliases(pascal, willow):
    assert isinstance(load_pairs("PF_PASCAL", pascal), PFPascalDataset)
    assert isinstance(load_pairs("pfwillow", willow), PFWillowDataset)
