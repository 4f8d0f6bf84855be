"""Subset rules, seeded samples written as lists, and resolving the authors' image list."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fixtures.dataset_trees import (
    VOC_H,
    VOC_W,
    coco_fixture_annotations,
    coco_image,
    make_coco_tree,
    make_davis_tree,
    make_voc_tree,
    noise_image,
    voc_labels_000001,
    write_coco_split,
    write_voc_item,
    write_voc_splits,
)

from difflens.data.__main__ import main
from difflens.data.lists import read_list, resolve_list
from difflens.data.registry import load
from difflens.data.scene import Scene
from difflens.data.selection import SelectionRules, class_rule_failure, select, size_rule_failure

AUTHORS_LIST = Path(
    os.environ.get(
        "DIFFLENS_AUTHORS_LIST",
        Path(__file__).resolve().parents[1] / "data_lists" / "diffprops_images_and_video_list.csv",
    )
)


def scene_with_object(pixels: int, class_name: str = "dog", size: int = 100) -> Scene:
    mask = np.zeros((1, size, size), bool)
    mask.reshape(-1)[:pixels] = True
    return Scene(np.zeros((size, size, 3), np.uint8), mask, [class_name], [1], "x")


def test_size_rule_is_strictly_more_than_one_percent():
    rules = SelectionRules()
    assert size_rule_failure(scene_with_object(100), rules) == "no object over 1% of the image"
    assert size_rule_failure(scene_with_object(101), rules) is None
    assert size_rule_failure(scene_with_object(5000, "giraffe"), rules) == (
        "no object of a counted class"
    )
    anything = SelectionRules(counted_classes=None)
    assert size_rule_failure(scene_with_object(5000, "giraffe"), anything) is None


def test_class_rules_read_both_ways():
    any_voc, all_voc = SelectionRules(class_rule="any_voc"), SelectionRules(class_rule="all_voc")
    mixed = ["person", "giraffe"]
    assert class_rule_failure(mixed, any_voc) is None
    assert class_rule_failure(mixed, all_voc) == "an object outside the VOC classes"
    assert class_rule_failure(["tv", "dining table"], all_voc) is None
    assert class_rule_failure(["giraffe"], any_voc) == "no object in a VOC class"
    with pytest.raises(ValueError, match="class_rule"):
        SelectionRules(class_rule="most_voc")


def make_voc_pool(root: Path, n: int) -> tuple[Path, set[str]]:
    """``n`` images; those with an odd index hold only a 1-pixel object (they fail)."""
    base = root / "VOC2012"
    objects, classes = voc_labels_000001()
    tiny = np.zeros((VOC_H, VOC_W), np.uint8)
    tiny[3, 3] = 1
    names, good = [], set()
    for i in range(n):
        name = f"2008_{i:06d}"
        names.append(name)
        if i % 2 == 0:
            write_voc_item(base, name, noise_image(VOC_H, VOC_W, i), objects, classes)
            good.add(name)
        else:
            write_voc_item(base, name, noise_image(VOC_H, VOC_W, i), tiny, tiny * 3)
    write_voc_splits(base, names, [])
    return base, good


def test_seeded_sample_is_the_first_qualifying_images_of_a_permutation(tmp_path):
    base, good = make_voc_pool(tmp_path, 10)
    data = load("voc", base)
    for seed in (0, 1, 2):
        selection = select(data, 3, seed=seed, progress=False)
        order = [data.ids[i] for i in np.random.default_rng(seed).permutation(10)]
        expected = [i for i in order if i in good][:3]
        assert selection.image_ids == expected
        assert selection.src == [f"{i}.jpg" for i in expected]
        assert selection.examined == order.index(expected[-1]) + 1
        assert selection.rejected == Counter(
            {"no object over 1% of the image": selection.examined - 3}
        )
        assert selection.complete
    short = select(data, 8, seed=0, progress=False)
    assert not short.complete and len(short.src) == 5


def test_selection_written_as_authors_format_with_record(tmp_path):
    base, _ = make_voc_pool(tmp_path, 6)
    selection = select(load("voc", base), 2, seed=7, progress=False)
    csv_path, record_path = selection.write(tmp_path / "data_lists" / "voc_n2_seed7.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "src,dataset"
    assert lines[1:] == [f"{src},pascal" for src in selection.src]
    record = yaml.safe_load(record_path.read_text())
    assert record_path.name == "voc_n2_seed7.yaml"
    assert record["seed"] == 7 and record["n_selected"] == 2
    assert record["rules"]["min_area_fraction"] == 0.01
    assert record["rules"]["class_rule"] == "any_voc"
    assert record["candidates"]["count"] == 6
    back = resolve_list(csv_path, voc_root=base)
    assert back.ids("pascal") == selection.image_ids


def test_coco_selection_follows_the_class_rule(tmp_path):
    make_coco_tree(tmp_path)
    data = load("coco", tmp_path)
    lenient = select(data, 5, seed=0, progress=False)
    assert sorted(lenient.src) == ["000000000001.jpg", "000000000003.jpg"]
    strict = select(data, 5, seed=0, rules=SelectionRules(class_rule="all_voc"), progress=False)
    assert strict.src == []
    assert strict.rejected == Counter(
        {"an object outside the VOC classes": 2, "no object in a VOC class": 1}
    )


def test_list_format_is_checked(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("file,set\na.jpg,pascal\n")
    with pytest.raises(ValueError, match=r"bad.csv: columns \['src', 'dataset'\] missing"):
        read_list(path)
    path.write_text("src,dataset\na.jpg,imagenet\n2007_000001.jpg,pascal\n")
    resolved = resolve_list(path, voc_root=make_voc_tree(tmp_path))
    assert resolved.unresolved()["reason"].tolist() == [
        "unknown dataset 'imagenet' (known: pascal, coco, davis)"
    ]
    assert resolved.ids("pascal") == ["2007_000001"]


def test_repeated_rows_and_empty_src_are_unresolved_not_read_twice(tmp_path):
    base = make_voc_tree(tmp_path)
    path = tmp_path / "list.csv"
    # row 3 names row 1's image again (with and without the extension); row 4 is empty
    path.write_text(
        "src,dataset\n2007_000001.jpg,pascal\n2007_000002.jpg,pascal\n2007_000001,pascal\n,pascal\n"
    )
    resolved = resolve_list(path, voc_root=base)
    assert resolved.frame["resolved"].tolist() == [True, True, False, False]
    assert resolved.frame["reason"].tolist()[2:] == [
        "repeats row 1 (2007_000001); an image is read once",
        "empty src",
    ]
    assert resolved.ids("pascal") == ["2007_000001", "2007_000002"]
    assert [s.image_id for s in resolved.load("pascal")] == ["2007_000001", "2007_000002"]


def test_unreadable_list_names_the_file(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text('src,dataset\n"2007_000001.jpg,pascal\n')  # a quote never closed
    with pytest.raises(ValueError, match="broken.csv is not a readable CSV"):
        read_list(path)


def test_authors_list_resolves_against_a_tree_holding_a_few_of_its_names(tmp_path):
    listed = read_list(AUTHORS_LIST)
    assert Counter(listed["dataset"]) == Counter({"pascal": 1000, "coco": 1000, "davis": 8})
    pascal = listed.loc[listed["dataset"] == "pascal", "src"].tolist()[:3]
    coco = listed.loc[listed["dataset"] == "coco", "src"].tolist()[:2]
    davis = ["dancing", "walking"]
    assert set(davis) <= set(listed["src"])
    # VOC tree with three of the listed names (two train, one val)
    voc_base = tmp_path / "voc" / "VOC2012"
    objects, classes = voc_labels_000001()
    for k, name in enumerate(pascal):
        image_id = name.removesuffix(".jpg")
        write_voc_item(voc_base, image_id, noise_image(VOC_H, VOC_W, k), objects, classes)
    ids = [p.removesuffix(".jpg") for p in pascal]
    write_voc_splits(voc_base, ids[:2], ids[2:])
    # COCO tree: the first listed name in val2017, the second in train2017
    coco_base = tmp_path / "coco"
    numbers = [int(c.removesuffix(".jpg")) for c in coco]
    template = coco_fixture_annotations()["val2017"][6]  # a 100-px person
    for split, number in zip(("val2017", "train2017"), numbers):
        ann = {**template, "id": number, "image_id": number}
        write_coco_split(coco_base, split, [coco_image(number)], [ann])
    make_davis_tree(tmp_path / "davis", sequences={"dancing": 3, "walking": 2})

    resolved = resolve_list(
        AUTHORS_LIST, voc_root=voc_base, coco_root=coco_base, davis_root=tmp_path / "davis"
    )
    table = resolved.frame
    assert len(table) == len(listed) and table["src"].tolist() == listed["src"].tolist()
    counts = resolved.counts()
    assert counts.loc["pascal"].tolist() == [1000, 3, 997]
    assert counts.loc["coco"].tolist() == [1000, 2, 998]
    assert counts.loc["davis"].tolist() == [8, 2, 6]
    assert set(resolved.unresolved("davis")["src"]) == {
        "boxing-fisheye",
        "disc-jockey",
        "india",
        "judo",
        "lindy-hop",
        "tuk-tuk",
    }
    assert resolved.unresolved()["reason"].str.len().min() > 0
    rows = resolved.resolved().set_index("src")
    assert rows.loc[pascal, "split"].tolist() == ["train", "train", "val"]
    assert rows.loc[coco, "split"].tolist() == ["val2017", "train2017"]
    assert rows.loc[davis, "split"].tolist() == ["val", "train"]
    assert "997 unresolved" in resolved.summary()

    voc_scenes = list(resolved.load("pascal"))
    assert [s.meta["file"] for s in voc_scenes] == pascal
    coco_scenes = list(resolved.load("coco"))
    assert [s.meta["split"] for s in coco_scenes] == ["val2017", "train2017"]
    assert all(s.class_names == ["person"] for s in coco_scenes)
    davis_data = resolved.load("davis")
    assert davis_data.sequences == ["dancing", "walking"] and len(davis_data) == 5


def test_cli_resolve_and_select(tmp_path, capsys):
    base = make_voc_tree(tmp_path)
    out = tmp_path / "lists" / "voc.csv"
    code = main(
        ["select", "voc", "--root", str(base), "--n", "2", "--seed", "3", "--out", str(out)]
    )
    assert code == 0 and out.is_file() and out.with_suffix(".yaml").is_file()
    assert len(pd.read_csv(out)) == 2
    rows = tmp_path / "rows.csv"
    code = main(["resolve", str(out), "--voc", str(base), "--out", str(rows)])
    assert code == 0
    assert "pascal: 2 listed, 2 resolved" in capsys.readouterr().out
    assert pd.read_csv(rows)["resolved"].all()
    code = main(["resolve", str(out)])  # no VOC root: every row unresolved, exit 1
    assert code == 1


def test_selecting_from_the_toy_world_says_why_not():
    from difflens.data.registry import load

    with pytest.raises(TypeError, match="ToyWorld has none"):
        select(load("toyworld", n_images=2), 1)
