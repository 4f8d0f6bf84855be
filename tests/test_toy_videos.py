"""Toy videos: determinism, persistent ids, smooth motion, occlusion, leaving and re-entering."""

from __future__ import annotations

import numpy as np
import pytest

from difflens.data.toy import ToyVideos, toy_video
from difflens.data.toy.videos import MAX_CENTRE_STEP, MAX_KEYPOINT_STEP
from difflens.data.video import frames_at_offsets


@pytest.fixture(scope="module")
def long_videos():
    return [toy_video(seed, n_frames=80, size=48) for seed in range(10)]


def test_same_seed_same_frames_other_seed_other_frames():
    a, b = toy_video(5, n_frames=6, size=64), toy_video(5, n_frames=6, size=64)
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.masks, y.masks)
        assert x.instance_ids == y.instance_ids and x.class_names == y.class_names
    assert not np.array_equal(toy_video(6, n_frames=1, size=64)[0].image, a[0].image)
    other = toy_video(5, n_frames=1, size=64, split="validation")[0]
    assert other.source_image == "toyvid_validation_000005"
    assert not np.array_equal(other.image, a[0].image)


def test_ids_persist_with_their_class_and_names_follow_the_davis_convention():
    frames = toy_video(11, n_frames=12, size=64)
    class_of: dict[int, str] = {}
    for index, scene in enumerate(frames):
        assert scene.image_id == f"toyvid_000011/{index:05d}"
        assert scene.source_image == "toyvid_000011"
        assert scene.meta["sequence"] == "toyvid_000011" and scene.meta["frame"] == index
        assert scene.masks.sum(0).max() <= 1  # visible pixels: disjoint
        assert len(scene.keypoints) == len(scene.boxes) == scene.n_objects
        for k, iid in enumerate(scene.instance_ids):
            assert class_of.setdefault(iid, scene.class_names[k]) == scene.class_names[k]
            assert scene.instance_key(k) == f"toyvid_000011#{iid}"


def test_motion_is_smooth_and_real(long_videos):
    size = 48
    moved = 0.0
    for frames in long_videos:
        for a, b in zip(frames, frames[1:]):
            for oa, ob in zip(a.meta["layout"].objects, b.meta["layout"].objects):
                assert oa.instance_id == ob.instance_id
                step = np.hypot(ob.cx - oa.cx, ob.cy - oa.cy)
                assert step <= MAX_CENTRE_STEP + 1e-9
                moved += step
                ka, kb = oa.keypoints(size), ob.keypoints(size)
                assert np.hypot(*(kb - ka).T).max() <= MAX_KEYPOINT_STEP * size
            for iid in set(a.instance_ids) & set(b.instance_ids):
                ka = a.keypoints[a.instance_ids.index(iid)]
                kb = b.keypoints[b.instance_ids.index(iid)]
                assert ka.names == kb.names
                assert np.hypot(*(kb.xy - ka.xy).T).max() <= MAX_KEYPOINT_STEP * size
    assert moved / (10 * 79) > 0.005  # objects do move: on average over 0.5 % of the side


def test_objects_turn_and_scale(long_videos):
    turned = scaled = 0
    for frames in long_videos:
        first, last = frames[0].meta["layout"].objects, frames[-1].meta["layout"].objects
        for a, b in zip(first, last):
            turned += abs(a.angle - b.angle) > 5
            scaled += abs(np.log(a.area / b.area)) > 0.1
            assert -40 <= b.angle <= 40
    assert turned >= 5 and scaled >= 5


def test_objects_occlude_each_other_leave_and_come_back(long_videos):
    occluded = returned = 0
    for frames in long_videos:
        fractions = [f for s in frames for f in s.meta["visible_fraction"].values()]
        occluded += min(fractions) < 0.8
        ids = {o.instance_id for o in frames[0].meta["layout"].objects}
        for scene in frames:
            assert set(scene.meta["absent"]) == ids - set(scene.instance_ids)
            for iid, mask in zip(scene.instance_ids, scene.masks):
                assert 0 < scene.meta["visible_fraction"][iid] <= 1 and mask.any()
        for iid in ids:
            present = "".join("1" if iid in s.instance_ids else "0" for s in frames)
            returned += "10" in present and "1" in present[present.index("10") + 1 :]
    assert occluded >= 7 and returned >= 2


def test_min_visible_leaves_out_mostly_hidden_objects():
    frames = toy_video(3, n_frames=40, size=48, min_visible=0.5)
    for scene in frames:
        assert all(scene.meta["visible_fraction"][i] >= 0.5 for i in scene.instance_ids)
        assert len(scene.keypoints) == scene.n_objects == len(scene.boxes)


def test_toy_videos_dataset_and_offset_study():
    videos = ToyVideos(n_videos=2, n_frames=6, size=48, seed=3)
    scenes = list(videos)
    assert len(videos) == len(scenes) == 12
    assert videos.sequences == ["toyvid_000003", "toyvid_000004"]
    frames = videos.frames("toyvid_000004")
    picked = frames_at_offsets(frames, offsets=[1, 3, 10])
    assert [s.image_id for s in picked] == [f"toyvid_000004/{i:05d}" for i in (0, 1, 3)]
    assert np.array_equal(frames[2].image, scenes[8].image)
    with pytest.raises(KeyError):
        videos.frames("toyvid_000009")
    with pytest.raises(ValueError, match="leave the 'test' split"):
        ToyVideos(n_videos=2, seed=499_999)
    with pytest.raises(ValueError, match="at least one frame"):
        toy_video(0, n_frames=0)
