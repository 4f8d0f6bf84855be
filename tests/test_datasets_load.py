"""The one entry point: difflens.data.load."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.dataset_trees import make_coco_tree, make_davis_tree, make_voc_tree

from difflens.data.coco import COCODataset
from difflens.data.davis import DAVISDataset
from difflens.data.registry import load
from difflens.data.scene import Scene
from difflens.data.toy import ToyVideos, ToyWorld, make_toy_scene
from difflens.data.voc import VOCDataset


def test_each_name_gives_its_loader(tmp_path):
    make_voc_tree(tmp_path)
    make_coco_tree(tmp_path)
    make_davis_tree(tmp_path)
    assert isinstance(load("voc", tmp_path), VOCDataset)
    assert isinstance(load("pascal", tmp_path), VOCDataset)
    assert isinstance(load("COCO", tmp_path), COCODataset)
    assert isinstance(load("davis", tmp_path), DAVISDataset)
    for name in ("voc", "coco", "davis"):
        data = load(name, tmp_path)
        scenes = list(data)
        assert scenes and all(isinstance(s, Scene) for s in scenes)
        assert len(data) >= len(scenes)


def test_toy_datasets_ignore_root():
    world = load("toyworld", "/no/such/folder", n_images=3, size=32)
    assert isinstance(world, ToyWorld) and len(world) == 3
    assert np.array_equal(next(iter(world)).image, make_toy_scene(0, size=32).image)
    videos = load("toyvideos", None, n_videos=1, n_frames=2, size=32)
    assert isinstance(videos, ToyVideos) and len(list(videos)) == 2
    with pytest.raises(ValueError, match="no splits or ids"):
        load("toyworld", split="val")


def test_unknown_name_and_missing_root_are_explained():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*voc, coco, davis"):
        load("imagenet", "x")
    with pytest.raises(ValueError, match="needs the dataset's root"):
        load("voc")
