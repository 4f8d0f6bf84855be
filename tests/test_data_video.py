"""Frame offsets follow the frame numbers of the file names, never the position in a list.

Each fixture frame's object sits at the column equal to its frame number, so the pixels of a
picked scene say which file it came from, independently of ``meta["frame"]``.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
from fixtures.dataset_trees import make_davis_sequence

from difflens.core.skips import SkipLog
from difflens.data.registry import load
from difflens.data.scene import Scene
from difflens.data.video import frames_at_offsets


def stems(numbers, pad=5):
    return [f"{n:0{pad}d}" if pad else str(n) for n in numbers]


def file_frame(scene: Scene) -> int:
    """The frame number written into the pixels: the left column of object 1."""
    return int(np.flatnonzero(scene.masks[0].any(0))[0])


def davis_frames(tmp_path, numbers, pad=5, sequence="walk"):
    make_davis_sequence(tmp_path, sequence, stems(numbers, pad))
    return load("davis", tmp_path, ids=[sequence]).frames(sequence)


def test_handed_case_missing_frame_3(tmp_path, caplog):
    # frames 00000..00011 without 00003 (the repro script's sequence)
    frames = davis_frames(tmp_path, [t for t in range(12) if t != 3])
    assert frames.frame_numbers == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11]
    skipped = SkipLog(verbose=False)
    with caplog.at_level(logging.WARNING, logger="difflens"):
        picked = frames_at_offsets(frames, [1, 2, 3, 4, 5, 10], skipped=skipped)
    assert [s.source for s in picked] == [
        "frame+0",
        "frame+1",
        "frame+2",
        "frame+4",
        "frame+5",
        "frame+10",
    ]
    assert [file_frame(s) for s in picked] == [0, 1, 2, 4, 5, 10]  # 00004 and 00010
    assert [s.meta["frame"] for s in picked] == [0, 1, 2, 4, 5, 10]
    assert list(picked.missing) == [3] and "missing from the numbering" in picked.missing[3]
    assert "walk" in caplog.text and "frame+3" in caplog.text
    assert skipped.records[0][0] == "walk/frame+3" and skipped.counts() == Counter(
        {"missing offset": 1}
    )
    assert not picked.by_position


def test_gap_at_the_reference_frame(tmp_path):
    frames = davis_frames(tmp_path, [0, 1, 2, 4, 5, 6, 9])
    picked = frames_at_offsets(frames, [1, 2, 5], reference=3)
    # reference 3 is missing: no frame+0; 3+1=4, 3+2=5, 3+5=8 (missing too)
    assert [s.source for s in picked] == ["frame+1", "frame+2"]
    assert [file_frame(s) for s in picked] == [4, 5]
    assert set(picked.missing) == {0, 5}
    assert "frame 3 is missing" in picked.missing[0] and "frame 8" in picked.missing[5]
    assert all(s.meta["reference_frame"] == 3 for s in picked)


def test_several_gaps_and_offsets_past_the_end(tmp_path):
    frames = davis_frames(tmp_path, [0, 1, 2, 4, 5, 8, 9, 10])  # 3, 6, 7 missing
    picked = frames_at_offsets(frames, range(1, 13))
    # by hand: offsets 1..10 exist except 3, 6, 7; 11 and 12 lie past frame 10
    assert [s.meta["offset"] for s in picked] == [0, 1, 2, 4, 5, 8, 9, 10]
    assert [file_frame(s) for s in picked] == [0, 1, 2, 4, 5, 8, 9, 10]
    assert sorted(picked.missing) == [3, 6, 7, 11, 12]
    assert "past the last frame (10)" in picked.missing[11]
    assert "missing from the numbering" in picked.missing[6]


def test_names_without_zero_padding_are_ordered_by_number(tmp_path):
    # sorted as text: 0, 1, 10, 11, 2, ...; by number: 0, 1, 2, ..., 11
    frames = davis_frames(tmp_path, range(12), pad=0)
    assert frames.frame_names == [str(n) for n in range(12)]
    assert frames.frame_numbers == list(range(12))
    picked = frames_at_offsets(frames, [2, 10])
    assert [file_frame(s) for s in picked] == [0, 2, 10]
    assert [s.image_id for s in picked] == ["walk/0", "walk/2", "walk/10"]


def test_repeated_and_unnumbered_frame_files_are_left_out_and_counted(tmp_path):
    make_davis_sequence(tmp_path, "walk", ["00000", "00001", "2", "00002", "00003", "cover"])
    data = load("davis", tmp_path, ids=["walk"])
    # "2" and "00002" are both frame 2: neither can be trusted; "cover" has no number
    assert data.frame_names("walk") == ["00000", "00001", "00003"]
    assert data.skipped.counts() == Counter({"repeated frame number": 2, "unnumbered frame": 1})
    picked = frames_at_offsets(data.frames("walk"), [1, 2, 3])
    assert [file_frame(s) for s in picked] == [0, 1, 3] and list(picked.missing) == [2]


def test_unreadable_frame_leaves_its_offset_out(tmp_path):
    base = make_davis_sequence(tmp_path, "walk", stems(range(6)))
    (base / "JPEGImages" / "480p" / "walk" / "00002.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    frames = load("davis", tmp_path, ids=["walk"]).frames("walk")
    picked = frames_at_offsets(frames, [1, 2, 3])
    assert [file_frame(s) for s in picked] == [0, 1, 3]
    assert "cannot be read" in picked.missing[2] and "00002.jpg" in picked.missing[2]


def plain_frame(number: int | None, position: int) -> Scene:
    masks = np.zeros((1, 4, 16), bool)
    masks[0, 1, position] = True
    meta = {} if number is None else {"frame": number, "sequence": "toy"}
    return Scene(np.zeros((4, 16, 3), np.uint8), masks, ["cat"], [1], f"toy/{position}", meta=meta)


def test_scene_lists_use_meta_frame():
    # a list of scenes numbered 0, 1, 2, 5, 6 (as toy videos carry meta["frame"])
    frames = [plain_frame(n, i) for i, n in enumerate([0, 1, 2, 5, 6])]
    picked = frames_at_offsets(frames, [1, 3, 5])
    assert [s.image_id for s in picked] == ["toy/0", "toy/1", "toy/3"]
    assert [s.source for s in picked] == ["frame+0", "frame+1", "frame+5"]
    assert list(picked.missing) == [3] and picked.sequence == "toy"


def test_scenes_without_frame_numbers_fall_back_to_positions_with_a_warning(caplog):
    frames = [plain_frame(None, i) for i in range(4)]
    with caplog.at_level(logging.WARNING, logger="difflens"):
        picked = frames_at_offsets(frames, [1, 5])
    assert picked.by_position and [s.image_id for s in picked] == ["toy/0", "toy/1"]
    assert "counted by list position" in caplog.text
    assert "past the last position (3)" in picked.missing[5]


def test_toy_videos_carry_frame_numbers():
    videos = load("toyvideos", n_videos=1, n_frames=4, size=32)
    frames = videos.frames(videos.sequences[0])
    picked = frames_at_offsets(frames, [1, 3])
    assert not picked.by_position
    assert [s.meta["frame"] for s in picked] == [0, 1, 3]
