"""SPair-71k from a format-faithful miniature tree: every field, the listings, the subsets,
and each kind of bad input as a counted skip with the following pairs still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.keypoint_trees import (
    SPAIR_LARGE_TEST_ORDER,
    SPAIR_SMALL_TEST,
    make_spair_tree,
    write_layout,
    write_spair_pair,
)
from PIL import Image

from difflens.data import load, load_pairs
from difflens.data.keypoints import SPAIR_FLAGS
from difflens.data.spair import (
    SPAIR_CATEGORIES,
    SPAIR_PAIR_FIELDS,
    SPAIR_TEST_PAIRS,
    SPairDataset,
    spair_categories,
    spair_record,
)

# SPair-71k's pair JSON fields, written out by hand: the field list a pair JSON carries
NOTES_FIELDS = {
    "pair_id",
    "filename",
    "src_imname",
    "trg_imname",
    "src_imsize",
    "trg_imsize",
    "src_bndbox",
    "trg_bndbox",
    "src_pose",
    "trg_pose",
    "src_kps",
    "trg_kps",
    "kps_ids",
    "category",
    "mirror",
    "viewpoint_variation",
    "scale_variation",
    "truncation",
    "occlusion",
}


@pytest.fixture
def spair(tmp_path):
    base, records = make_spair_tree(tmp_path)
    return base, records


def stems(numbers, records):
    by_number = {r["pair_id"]: r for r in records}
    return [by_number[n]["filename"] for n in numbers]


def test_field_list_is_the_notes_list_and_the_fixture_writes_every_field(spair):
    _, records = spair
    assert set(SPAIR_PAIR_FIELDS) == NOTES_FIELDS
    for split in records.values():
        for record in split:
            assert set(record) == NOTES_FIELDS


def test_every_field_is_read_exactly(spair):
    base, records = spair
    dataset = SPairDataset(base.parent)
    pairs = {p.pair_id: p for p in dataset}
    assert len(pairs) == 6 and not dataset.skipped.records
    for record in records["test"]:
        pair = pairs[record["filename"]]
        folder = base / "JPEGImages" / record["category"]
        assert pair.category == record["category"]
        assert pair.source_name == record["src_imname"] and pair.target_name == record["trg_imname"]
        np.testing.assert_array_equal(pair.source_points, np.array(record["src_kps"], np.float32))
        np.testing.assert_array_equal(pair.target_points, np.array(record["trg_kps"], np.float32))
        np.testing.assert_array_equal(pair.source_box, np.array(record["src_bndbox"], np.float32))
        np.testing.assert_array_equal(pair.target_box, np.array(record["trg_bndbox"], np.float32))
        assert pair.keypoint_ids == record["kps_ids"]
        assert pair.flags == {k: record[k] for k in SPAIR_FLAGS}
        for key in ("pair_id", "filename", "src_imname", "trg_imname", "src_imsize", "trg_imsize"):
            assert pair.meta[key] == record[key]
        assert pair.meta["split"] == "test"
        assert pair.meta["listing"] == "Layout/large/test.txt"
        for side, name in (("source", "src_imname"), ("target", "trg_imname")):
            expected = np.asarray(Image.open(folder / record[name]).convert("RGB"))
            np.testing.assert_array_equal(getattr(pair, f"{side}_image"), expected)
            w, h, _ = record[name.replace("imname", "imsize")]
            assert getattr(pair, f"{side}_size") == (h, w)


def test_the_pair_json_round_trips(spair):
    base, records = spair
    written = {r["filename"]: r for r in records["test"]}
    for pair in SPairDataset(base):
        back = spair_record(pair)
        assert set(back) == NOTES_FIELDS
        on_disk = json.loads(
            (base / "PairAnnotation" / "test" / f"{pair.pair_id}.json").read_text()
        )
        assert back == on_disk == written[pair.pair_id]


def test_extra_json_fields_are_kept_in_meta(spair):
    base, records = spair
    record = dict(records["test"][0], src_note="a field the notes do not list")
    write_spair_pair(base, "test", record)
    pair = next(p for p in SPairDataset(base) if p.pair_id == record["filename"])
    assert pair.meta["src_note"] == "a field the notes do not list"


def test_layout_order_small_layout_and_directory_reading(spair):
    base, records = spair
    test = records["test"]
    assert SPairDataset(base).ids == stems(SPAIR_LARGE_TEST_ORDER, test)
    assert SPairDataset(base, layout="small").ids == stems(SPAIR_SMALL_TEST, test)
    directory = SPairDataset(base, pairs_from="directory")
    assert directory.ids == sorted(r["filename"] for r in test)
    assert directory.listing == "PairAnnotation/test"
    # the directory reading ignores the layout: a pair file no layout lists is read
    extra = dict(test[4], filename="000009-2010_004567-2008_000112:cat", pair_id=9)
    write_spair_pair(base, "test", extra)
    assert extra["filename"] in SPairDataset(base, pairs_from="directory").ids
    assert extra["filename"] not in SPairDataset(base).ids


def test_splits_and_aliases(spair):
    base, records = spair
    assert SPairDataset(base, split="trn").ids == [records["trn"][0]["filename"]]
    assert SPairDataset(base, split="train").ids == [records["trn"][0]["filename"]]
    assert SPairDataset(base, split="validation").ids == [records["val"][0]["filename"]]
    with pytest.raises(ValueError, match="unknown SPair-71k split"):
        SPairDataset(base, split="dev")
    with pytest.raises(ValueError, match="layout"):
        SPairDataset(base, layout="medium")


def test_categories_are_the_jpegimages_folders_and_filter(spair):
    base, records = spair
    assert spair_categories(base) == ["aeroplane", "cat", "tvmonitor"]
    assert len(SPAIR_CATEGORIES) == 18 and sum(SPAIR_TEST_PAIRS.values()) == 12234
    cats = SPairDataset(base, categories=["cat", "tvmonitor"])
    assert [cats.category_of[i] for i in cats.ids] == ["cat", "cat", "tvmonitor"]
    assert SPairDataset(base, categories=["cow"]).ids == []  # an SPair category, no pairs
    with pytest.raises(ValueError, match="no categories \\['giraffe'\\]"):
        SPairDataset(base, categories=["giraffe"])


def test_seeded_subset_per_category(spair):
    base, records = spair
    listed = SPairDataset(base, pairs_from="directory").ids  # aeroplane x3, cat x2, tv x1
    sub = SPairDataset(base, pairs_from="directory", max_pairs_per_category=2, seed=7)
    # reference: a fresh default_rng(seed) per category, choice without replacement
    aero = listed[:3]
    keep = sorted(np.random.default_rng(7).choice(3, 2, replace=False))
    assert sub.ids == [aero[i] for i in keep] + listed[3:5] + listed[5:]
    assert len(set(sub.ids)) == 5


def test_sd_dino_subset_reproduces_its_draw(spair):
    base, _ = spair
    listed = SPairDataset(base, pairs_from="directory").ids
    sub = SPairDataset(
        base, pairs_from="directory", max_pairs_per_category=4, subset="sd-dino", seed=42
    )
    expected = []
    for members in (listed[:3], listed[3:5], listed[5:]):
        np.random.seed(42)  # as Junyi42/sd-dino: pck_spair_pascal.py does per category
        expected += [members[i] for i in np.random.choice(len(members), 4)]
    assert sub.ids == expected and len(sub.ids) == 12  # with replacement: 4 per category


def test_ids_read_a_given_list(spair):
    base, records = spair
    wanted = [records["test"][5]["filename"] + ".json", records["test"][0]["filename"]]
    dataset = load_pairs("spair", base, ids=wanted)
    assert [p.pair_id for p in dataset] == [w.removesuffix(".json") for w in wanted]
    assert dataset[0].meta["listing"] == "ids"


def test_load_pairs_names_and_scene_loader_hint(spair):
    base, _ = spair
    for name in ("spair", "SPair-71k", "spair71k"):
        assert isinstance(load_pairs(name, base.parent), SPairDataset)
    with pytest.raises(ValueError, match="unknown keypoint-pair dataset 'pascal3d'"):
        load_pairs("pascal3d", base)
    with pytest.raises(ValueError, match="load_pairs"):
        load("spair", base)
    with pytest.raises(FileNotFoundError, match="download spair"):
        load_pairs("spair", base / "JPEGImages")


# --------------------------------------------------------------------------- bad input


def _edit(base: Path, record: dict, **changes) -> str:
    write_spair_pair(base, "test", dict(record, **changes))
    return record["filename"]


def fault_missing_image(base, test):
    return _edit(base, test[1], trg_imname="2009_009999.jpg"), "missing file"


def fault_keypoint_outside(base, test):
    w = test[1]["trg_imsize"][0]
    return _edit(base, test[1], trg_kps=[[w + 3, 2], [8, 17]]), "keypoint outside image"


def fault_unequal_counts(base, test):
    return _edit(base, test[0], trg_kps=test[0]["trg_kps"][:2]), "bad pair"


def fault_json_does_not_parse(base, test):
    path = base / "PairAnnotation" / "test" / f"{test[3]['filename']}.json"
    path.write_text('{"pair_id": 4, "src_kps": [[1, 2],')
    return test[3]["filename"], "corrupt annotation"


def fault_imsize_mismatch(base, test):
    w, h, c = test[0]["src_imsize"]
    return _edit(base, test[0], src_imsize=[w + 1, h, c]), "size mismatch"


def fault_missing_pair_file(base, test):
    (base / "PairAnnotation" / "test" / f"{test[2]['filename']}.json").unlink()
    return test[2]["filename"], "missing file"


def fault_missing_category_folder(base, test):
    stem = "000010-2009_000001-2009_000002:cow"
    record = dict(test[0], filename=stem, category="cow", pair_id=10)
    write_spair_pair(base, "test", record)
    lines = (base / "Layout" / "large" / "test.txt").read_text().split()
    write_layout(base, "large", "test", lines[:2] + [stem] + lines[2:])
    return stem, "missing file"


def fault_missing_field(base, test):
    record = {k: v for k, v in test[4].items() if k != "trg_bndbox"}
    write_spair_pair(base, "test", record)
    return test[4]["filename"], "corrupt annotation"


FAULTS = [
    fault_missing_image,
    fault_keypoint_outside,
    fault_unequal_counts,
    fault_json_does_not_parse,
    fault_imsize_mismatch,
    fault_missing_pair_file,
    fault_missing_category_folder,
    fault_missing_field,
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.__name__ for f in FAULTS])
def test_each_fault_is_a_counted_skip_and_the_rest_is_read(spair, fault):
    base, records = spair
    bad, kind = fault(base, records["test"])
    dataset = SPairDataset(base)
    read = [p.pair_id for p in dataset]
    assert bad in dataset.ids and bad not in read
    assert read == [i for i in dataset.ids if i != bad]  # the pairs after it are read
    assert len(dataset.skipped) == 1
    item, reason = dataset.skipped.records[0]
    assert item == bad and reason.startswith(f"{kind}: ")
    assert f"pair {bad}" in reason  # the message names the pair
    assert dataset.skipped.counts() == {kind: 1}


def test_a_layout_line_without_category_is_counted_while_listing(spair):
    base, records = spair
    lines = (base / "Layout" / "large" / "test.txt").read_text().split()
    write_layout(base, "large", "test", [lines[0], "000011-2008_000585-2008_003996", *lines[1:]])
    dataset = SPairDataset(base)
    assert dataset.ids == lines
    assert dataset.skipped.records[0][0] == "test.txt:2"
    assert dataset.skipped.records[0][1].startswith("bad layout line: line 2 of ")
    assert len(list(dataset)) == 6


def test_getitem_raises_where_iteration_skips(spair):
    base, records = spair
    fault_missing_image(base, records["test"])
    dataset = SPairDataset(base)
    index = dataset.ids.index(records["test"][1]["filename"])
    from difflens.core.errors import DatasetError

    with pytest.raises(DatasetError, match="2009_009999.jpg does not exist"):
        dataset[index]
