"""Toy videos: deterministic, persistent ids, motion, scale and occlusion."""

from __future__ import annotations

import numpy as np

from difflens.datasets import ToyVideos, toy_video
from difflens.datasets.toyworld import ToyObject, _bounce, random_motions
from difflens.frames import frames_at_offsets


def test_same_seed_same_frames_other_seed_other_frames():
    a, b = toy_video(5, n_frames=6, size=64), toy_video(5, n_frames=6, size=64)
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.masks, y.masks)
        assert x.instance_ids == y.instance_ids and x.class_names == y.class_names
    assert not np.array_equal(toy_video(6, n_frames=1, size=64)[0].image, a[0].image)


def test_ids_persist_with_their_class_and_names_follow_the_davis_convention():
    frames = toy_video(11, n_frames=12, size=64)
    class_of: dict[int, str] = {}
    for index, scene in enumerate(frames):
        assert scene.image_id == f"toyvid_000011/{index:05d}"
        assert scene.source_image == "toyvid_000011"
        assert scene.meta["sequence"] == "toyvid_000011" and scene.meta["frame"] == index
        assert scene.masks.sum(0).max() <= 1  # visible pixels: disjoint
        for k, iid in enumerate(scene.instance_ids):
            assert class_of.setdefault(iid, scene.class_names[k]) == scene.class_names[k]
            assert scene.instance_key(k) == f"toyvid_000011#{iid}"


def test_objects_move_and_change_size():
    moved = grew = 0
    for seed in range(10):
        first, last = toy_video(seed, n_frames=8, size=64)[:: 8 - 1]
        for k, iid in enumerate(first.instance_ids):
            if iid not in last.instance_ids:
                continue
            a, b = first.masks[k], last.masks[last.instance_ids.index(iid)]
            ca = np.argwhere(a).mean(0)
            cb = np.argwhere(b).mean(0)
            moved += np.hypot(*(ca - cb)) > 3
            fa = first.meta["visible_fraction"][iid]
            fb = last.meta["visible_fraction"][iid]
            # full-area ratio (visible / visible-fraction) changes when the object scales
            grew += abs(np.log((b.sum() / fb) / (a.sum() / fa))) > 0.1
    assert moved >= 10 and grew >= 10


def test_objects_occlude_each_other():
    occluded_videos = 0
    for seed in range(10):
        frames = toy_video(seed, n_frames=10, size=64)
        fractions = [f for s in frames for f in s.meta["visible_fraction"].values()]
        for scene in frames:
            for iid, mask in zip(scene.instance_ids, scene.masks):
                assert 0 < scene.meta["visible_fraction"][iid] <= 1 and mask.any()
        occluded_videos += min(fractions) < 0.8
    assert occluded_videos >= 8


def test_bounce_by_hand():
    assert _bounce(0.5, 0.1, 0.9) == 0.5
    assert abs(_bounce(1.3, 0.1, 0.9) - 0.5) < 1e-12  # 0.4 past the top edge -> back to 0.5
    assert abs(_bounce(-0.1, 0.1, 0.9) - 0.3) < 1e-12  # 0.2 below the bottom edge
    assert _bounce(0.7, 0.5, 0.5) == 0.5


def test_motion_passes_the_meeting_point_region():
    rng = np.random.default_rng(0)
    obj = ToyObject("circle", 0.2, 0.2, 0.05, 0.0, (0, 0, 0), (9, 9, 9), "solid", 1)
    (motion,) = random_motions(rng, [obj])
    xs = [motion.at(t).cx for t in np.linspace(0, 1, 101)]
    assert min(xs) >= 0.05 - 1e-9 and max(xs) <= 0.95 + 1e-9
    assert motion.at(0.0) == obj


def test_toy_videos_dataset_and_offset_study():
    videos = ToyVideos(n_videos=2, n_frames=6, size=48, seed=3)
    scenes = list(videos)
    assert len(videos) == len(scenes) == 12
    assert videos.sequences == ["toyvid_000003", "toyvid_000004"]
    frames = videos.frames("toyvid_000004")
    picked = frames_at_offsets(frames, offsets=[1, 3, 10])
    assert [s.image_id for s in picked] == [f"toyvid_000004/{i:05d}" for i in (0, 1, 3)]
    assert np.array_equal(frames[2].image, scenes[8].image)
