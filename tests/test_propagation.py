"""Video label propagation: the windowed, chunked step against a dense implementation written
here (DINO's ``label_propagation`` line by line), hand cases for the window, the joint top-k and
the normalisation, the output rule, and the whole protocol on DAVIS-layout fixtures."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fixtures.dataset_trees import DAVIS_H, DAVIS_W, PALETTE, davis_labels, make_davis_tree
from PIL import Image

from difflens.correspondence.davis_eval import evaluate, read_results
from difflens.correspondence.propagation import (
    DIFT_SD,
    PRESETS,
    TOY,
    LabelPropagator,
    first_frame_labels,
    frame_size,
    open_label_videos,
    propagate_features,
    propagate_step,
    soft_to_labels,
    window_tiles,
)

# --------------------------------------------------------------------------- dense reference


def dense_neighbourhood(h: int, w: int, r: int | None) -> torch.Tensor:
    """DINO's ``restrict_neighborhood``: (h*w keys, h*w queries) 0/1, four explicit loops."""
    mask = torch.zeros(h, w, h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            for p in range(h):
                for q in range(w):
                    if r is None or (abs(p - i) <= r and abs(q - j) <= r):
                        mask[i, j, p, q] = 1
    return mask.reshape(h * w, h * w)  # symmetric: key and query roles can be swapped


def dense_step(query, feats, segs, temperature, topk, radius):
    """DINO's ``label_propagation`` on (C, h, w) features and (L, h, w) soft labels."""
    c, h, w = query.shape
    tar = F.normalize(query.reshape(c, -1).T, dim=1, p=2)  # h*w x C
    sources = F.normalize(torch.stack([f.reshape(c, -1) for f in feats]), dim=1, p=2)
    tar = tar.unsqueeze(0).repeat(len(feats), 1, 1)
    aff = torch.exp(torch.bmm(tar, sources) / temperature)  # ncontext x h*w (tar) x h*w (src)
    aff = aff * dense_neighbourhood(h, w, radius).unsqueeze(0)
    aff = aff.transpose(2, 1).reshape(-1, h * w)  # ncontext*h*w (keys) x h*w (queries)
    tk_val, _ = torch.topk(aff, dim=0, k=topk)
    tk_val_min, _ = torch.min(tk_val, dim=0)
    aff[aff < tk_val_min] = 0
    aff = aff / torch.sum(aff, dim=0, keepdim=True)
    segs = torch.stack(segs)  # ncontext x L x h x w
    n, labels, _, _ = segs.shape
    segs = segs.reshape(n, labels, -1).transpose(2, 1).reshape(-1, labels).T
    return torch.mm(segs, aff).reshape(labels, h, w)


def dense_norm_mask(mask):
    """DINO's ``norm_mask`` (a constant positive channel becomes NaN there)."""
    for cnt in range(mask.shape[0]):
        channel = mask[cnt]
        if channel.max() > 0:
            channel = channel - channel.min()
            mask[cnt] = channel / channel.max()
    return mask


def dense_video(features, first_mask, stride, temperature, topk, radius, n_last):
    """DINO's ``eval_video_tracking_davis``: a FIFO queue, upsample, norm, argmax, resize."""
    h, w = features[0].shape[1:]
    small = np.array(Image.fromarray(first_mask).resize((w, h), Image.NEAREST))
    first_seg = F.one_hot(torch.from_numpy(small).long()).permute(2, 0, 1).double()
    queue: deque = deque()
    out = [first_mask]
    for feat in features[1:]:
        soft = dense_step(
            feat,
            [features[0]] + [f for f, _ in queue],
            [first_seg] + [s for _, s in queue],
            temperature,
            topk,
            radius,
        )
        if n_last > 0:  # DINO's Queue(0) would be unbounded (and its get() block): none kept
            if len(queue) == n_last:
                queue.popleft()
            queue.append((feat, soft))
        up = F.interpolate(soft[None], scale_factor=stride, mode="bilinear", align_corners=False)
        _, seg = torch.max(dense_norm_mask(up[0]), dim=0)
        seg = np.array(seg.numpy(), dtype=np.uint8)
        out.append(np.array(Image.fromarray(seg).resize(first_mask.shape[::-1], Image.NEAREST)))
    return np.stack(out)


def random_case(seed, n, c, h, w, labels):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(c, h, w, generator=g, dtype=torch.float64)
    feats = [torch.randn(c, h, w, generator=g, dtype=torch.float64) for _ in range(n)]
    segs = [torch.rand(labels, h, w, generator=g, dtype=torch.float64) for _ in range(n)]
    return query, feats, segs


def channels_last(query, feats, segs):
    return (
        F.normalize(query.permute(1, 2, 0), dim=-1),
        F.normalize(torch.stack(feats).permute(0, 2, 3, 1), dim=-1),
        torch.stack(segs).permute(0, 2, 3, 1),
    )


# --------------------------------------------------------------------------- against dense


@pytest.mark.parametrize(
    "n, c, h, w, labels, topk, radius, chunk",
    [
        (1, 3, 5, 7, 2, 3, 1, 1),  # one context frame, one query at a time
        (2, 8, 9, 6, 3, 5, 2, 4),
        (4, 16, 12, 10, 4, 15, 3, 64),  # tiles larger than the window
        (3, 5, 11, 13, 3, 7, 0, 5),  # a window of one cell: the same cell of each frame
        (2, 4, 8, 8, 2, 20, None, 7),  # no window
        (5, 6, 7, 9, 5, 40, 2, 10),  # k above the keys of corner windows: every key is kept
        (3, 5, 6, 6, 2, 4, 10, 1000),  # window and chunk beyond the frame
        (29, 7, 10, 14, 3, 15, 3, 16),  # DIFT's context length (1 + 28)
    ],
)
def test_windowed_step_equals_dense_on_random_features(n, c, h, w, labels, topk, radius, chunk):
    query, feats, segs = random_case(n * 100 + h, n, c, h, w, labels)
    expected = dense_step(query, feats, segs, 0.2, topk, radius)
    got = propagate_step(
        *channels_last(query, feats, segs), temperature=0.2, topk=topk, radius=radius, chunk=chunk
    )
    got = got.permute(2, 0, 1)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    assert torch.equal(got.argmax(0), expected.argmax(0))


@pytest.mark.parametrize("chunk", [1, 6, 64, 4096])
def test_chunk_size_changes_nothing(chunk):
    query, feats, segs = random_case(7, 4, 12, 13, 11, 3)
    inputs = channels_last(query, feats, segs)
    reference = propagate_step(*inputs, temperature=0.1, topk=10, radius=4, chunk=13 * 11)
    got = propagate_step(*inputs, temperature=0.1, topk=10, radius=4, chunk=chunk)
    assert torch.allclose(got, reference, rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    "n_frames, n_last, topk, radius, chunk",
    [(6, 2, 5, 2, 9), (7, 28, 15, 3, 64), (5, 0, 4, None, 5), (8, 3, 6, 1, 1)],
)
def test_whole_video_equals_dinos_loop(n_frames, n_last, topk, radius, chunk):
    # stride 4: 8 x 12 cells for 32 x 48 px frames; labels 0..3 in blocks
    g = torch.Generator().manual_seed(n_frames * 10 + n_last)
    base = torch.randn(6, 8, 12, generator=g, dtype=torch.float64)
    feats = [base + 0.7 * torch.randn(6, 8, 12, generator=g, dtype=torch.float64)]
    for _ in range(n_frames - 1):
        feats.append(torch.roll(feats[-1], 1, dims=2) + 0.3 * torch.randn(6, 8, 12, generator=g))
    mask = np.zeros((32, 48), np.uint8)
    mask[4:20, 4:20], mask[10:30, 26:44], mask[0:6, 40:48] = 1, 2, 3
    expected = dense_video(feats, mask, 4, 0.2, topk, radius, n_last)
    preset = TOY.with_(temperature=0.2, topk=topk, radius=radius, n_last_frames=n_last)
    got = np.stack(
        list(propagate_features(feats, mask, (32, 48), preset, chunk=chunk, dtype=torch.float64))
    )
    assert got.dtype == np.uint8 and got.shape == (n_frames, 32, 48)
    assert np.array_equal(got, expected)


# --------------------------------------------------------------------------- hand cases


E = math.e
# A 1 x 4 frame, features 2-d unit vectors. Context frame A: cells [1,0], [0,1], [1,0], [-1,0]
# labelled 1, 0, 2, 0 (three classes). Every query of the target is [1,0], so its cosines with
# A's cells are 1, 0, 1, -1 and, with T = 1, its affinities e, 1, e, 1/e.
FRAME_A = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]]], dtype=torch.float64)
LABELS_A = F.one_hot(torch.tensor([[1, 0, 2, 0]]), 3).double()
QUERY = torch.tensor([[[1.0, 0.0]] * 4], dtype=torch.float64)


def hand_step(context, labels, topk, radius, temperature=1.0, chunk=1):
    return propagate_step(
        QUERY, context, labels, temperature=temperature, topk=topk, radius=radius, chunk=chunk
    )[0]


def test_hand_case_window_topk_and_normalisation():
    got = hand_step(FRAME_A[None], LABELS_A[None], topk=2, radius=1)
    expected = torch.tensor(
        [
            # x=0 sees keys 0, 1 (e, 1): both kept -> label 1 with e/(e+1), label 0 with 1/(e+1)
            [1 / (E + 1), E / (E + 1), 0.0],
            # x=1 sees keys 0, 1, 2 (e, 1, e): top 2 are keys 0 and 2 -> labels 1 and 2, 1/2 each
            [0.0, 0.5, 0.5],
            # x=2 sees keys 1, 2, 3 (1, e, 1/e): top 2 are keys 2 (label 2) and 1 (label 0)
            [1 / (E + 1), 0.0, E / (E + 1)],
            # x=3 sees keys 2, 3 (e, 1/e): label 2 with e/(e+1/e), label 0 with (1/e)/(e+1/e)
            [(1 / E) / (E + 1 / E), 0.0, E / (E + 1 / E)],
        ],
        dtype=torch.float64,
    )
    assert torch.allclose(got, expected, atol=1e-15)
    assert torch.allclose(got.sum(-1), torch.ones(4, dtype=torch.float64))


def test_hand_case_without_a_window_the_far_key_wins():
    # x=3 without the window sees keys 0..3 (e, 1, e, 1/e): the top 2 are keys 0 and 2
    got = hand_step(FRAME_A[None], LABELS_A[None], topk=2, radius=None)
    assert torch.allclose(got[3], torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64))


def test_hand_case_ties_at_the_threshold_are_all_kept():
    # x=1 with k = 1: keys 0 and 2 tie at e, DINO's rule (aff >= the k-th value) keeps both
    got = hand_step(FRAME_A[None], LABELS_A[None], topk=1, radius=1)
    assert torch.allclose(got[1], torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64))


def test_hand_case_topk_is_joint_over_the_context_frames():
    # Frame B: cell 1 is [1,0] labelled 1, the others [0,1] labelled 0. Query x=1 sees A's keys
    # 0, 1, 2 (e, 1, e) and B's keys 0, 1, 2 (1, e, 1): the top 3 over both frames are A0, A2
    # and B1, all e -> labels 1, 2, 1 with 1/3 each. (Top 3 per frame would also weigh A1.)
    frame_b = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    labels_b = F.one_hot(torch.tensor([[0, 1, 0, 0]]), 3).double()
    got = hand_step(torch.stack([FRAME_A, frame_b]), torch.stack([LABELS_A, labels_b]), 3, 1)
    assert torch.allclose(got[1], torch.tensor([0.0, 2 / 3, 1 / 3], dtype=torch.float64))


def test_hand_case_temperature_sharpens():
    # x=0 at T = 0.5: affinities e^2 (key 0, label 1) and 1 (key 1, label 0)
    got = hand_step(FRAME_A[None], LABELS_A[None], topk=2, radius=1, temperature=0.5)
    assert torch.allclose(
        got[0], torch.tensor([1 / (E**2 + 1), E**2 / (E**2 + 1), 0.0], dtype=torch.float64)
    )


def test_propagator_context_grows_to_one_plus_n_last_frames():
    # which frames the context holds is checked against DINO's queue in
    # test_whole_video_equals_dinos_loop; here only how many
    g = torch.Generator().manual_seed(3)
    feature = torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    labels = F.one_hot(torch.randint(0, 2, (3, 3), generator=g)).permute(2, 0, 1).double()
    propagator = LabelPropagator(
        feature, labels, temperature=0.2, topk=3, n_last_frames=2, radius=1, dtype=torch.float64
    )
    sizes = [propagator.n_context]
    for _ in range(4):
        propagator.step(feature + 0.1 * torch.randn(4, 3, 3, generator=g, dtype=torch.float64))
        sizes.append(propagator.n_context)
    assert sizes == [1, 2, 3, 3, 3]


def test_first_frame_labels_resize_nearest_count_after_resizing_and_void_is_background():
    # PIL NEAREST from 4 x 4 to 2 x 2 samples source pixels (1, 1), (1, 3), (3, 1), (3, 3)
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 3  # not sampled: label 3 vanishes, so there are max(2) + 1 = 3 channels
    mask[1, 1] = 2
    mask[3, 3] = 255  # void -> background
    got = first_frame_labels(mask, (2, 2))
    expected = torch.zeros(3, 2, 2)
    expected[0] = 1
    expected[0, 0, 0], expected[2, 0, 0] = 0, 1
    assert torch.equal(got, expected)


def test_soft_to_labels_normalises_each_channel_then_takes_the_first_maximum():
    soft = torch.tensor(
        [
            [[0.5, 0.6, 0.9]],  # -> (x - 0.5) / 0.4 = 0, 0.25, 1
            [[0.1, 0.3, 0.2]],  # -> 0, 1, 0.5; raw argmax would be channel 0 everywhere
            [[0.0, 0.0, 0.0]],  # max 0: left as it is
        ]
    )
    assert soft_to_labels(soft, 1, (1, 3)).tolist() == [[0, 1, 0]]  # x=0: tie at 0 -> first
    constant = torch.cat([soft, torch.full((1, 1, 3), 0.2)])  # DINO: 0/0 = NaN, torch.max picks it
    assert soft_to_labels(constant, 1, (1, 3)).tolist() == [[3, 3, 3]]


def test_soft_to_labels_upsamples_by_the_stride_then_resizes_nearest():
    # one channel rising to the right: after bilinear x2 and min-max, label 1 wins where channel 1
    # (constant 0.5) is above channel 0; the map is then resized NEAREST to 3 x 5.
    soft = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]])
    up = F.interpolate(soft[None], scale_factor=2, mode="bilinear", align_corners=False)[0]
    assert torch.allclose(up[0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))  # hand: taps at 1/4
    got = soft_to_labels(soft, 2, (3, 5))
    # normalised channel 0 per column 0, 0.25, 0.75, 1; channel 1 is constant -> +inf
    assert got.tolist() == [[1] * 5] * 3
    soft[1] = 0.0  # channel 1 all zero: kept at 0, channel 0 wins where > 0, ties -> 0
    assert soft_to_labels(soft, 2, (2, 4)).tolist() == [[0, 0, 0, 0]] * 2


def test_dift_sd_preset_is_difts_davis_readme_command():
    # DIFT's README command for DAVIS with SD (not eval_davis.py's argparse defaults t=201,
    # up_ft_index=1, ensemble 4, T=0.1, 7 frames, radius 12, top-k 5): t=51, up_ft_index=2
    # (up_blocks[2], registry name up2), T=0.2, top-k 15, 28 recent frames, ensemble 8, radius 15;
    # the name is spelt like the correspondence presets' (underscores)
    assert PRESETS["dift_sd"] is DIFT_SD and PRESETS["toy"] is TOY
    assert all("-" not in name for name in PRESETS)
    fields = ("layer", "timestep", "ensemble", "temperature", "topk", "n_last_frames", "radius")
    assert tuple(getattr(DIFT_SD, f) for f in fields) == ("up2", 51, 8, 0.2, 15, 28, 15)
    assert (DIFT_SD.prompt, DIFT_SD.model) == ("", "stabilityai/stable-diffusion-2-1")


def test_frame_size_follows_dift():
    assert frame_size(480, 854) == (480, 832)  # DAVIS 480p: 854 x 480 -> 832 x 480
    assert frame_size(854, 480) == (832, 480)  # portrait
    assert frame_size(64, 64, 64, 8) == (64, 64)
    assert DIFT_SD.frame_size(480, 854) == (480, 832)
    assert frame_size(480, 910) == (480, 896)  # 910 -> 896, floored to 32


def test_window_tiles_cover_the_grid_once_within_the_chunk():
    for h, w, chunk in [(60, 104, 64), (7, 5, 3), (1, 9, 4), (5, 5, 1000)]:
        cover = np.zeros((h, w), int)
        for y0, y1, x0, x1 in window_tiles(h, w, chunk):
            assert (y1 - y0) * (x1 - x0) <= chunk
            cover[y0:y1, x0:x1] += 1
        assert (cover == 1).all()


def test_bad_inputs_are_named():
    q, feats, segs = channels_last(*random_case(0, 2, 3, 4, 4, 2))
    with pytest.raises(ValueError, match="topk"):
        propagate_step(q, feats, segs, temperature=0.2, topk=0, radius=1)
    with pytest.raises(ValueError, match="do not fit"):
        propagate_step(q[:3], feats, segs, temperature=0.2, topk=1, radius=1)
    with pytest.raises(ValueError, match="chunk"):
        window_tiles(4, 4, 0)
    with pytest.raises(ValueError, match="whole stride"):
        list(propagate_features([torch.zeros(2, 3, 3)] * 2, np.zeros((10, 10)), (10, 10), TOY))


# --------------------------------------------------------------------------- DAVIS layout


def test_davis_frames_and_label_maps_without_classes(tmp_path):
    make_davis_tree(tmp_path, semantics=None)  # no semantics file, no classes
    videos = open_label_videos("davis", davis_root=str(tmp_path), split="val")
    assert list(videos) == ["dancing"]
    video = videos["dancing"]
    assert video.frame_names == ("00000", "00001", "00002")
    assert [np.asarray(im).shape for im in video.images] == [(DAVIS_H, DAVIS_W, 3)] * 3
    for frame in range(3):
        assert np.array_equal(video.labels[frame], davis_labels("dancing", frame))  # 255 kept
    assert np.array_equal(video.palette, PALETTE)


def test_written_results_read_back_frame_by_frame(tmp_path):
    from difflens.correspondence.davis_eval import write_results

    rng = np.random.default_rng(0)
    maps = rng.integers(0, 4, size=(3, 5, 7), dtype=np.uint8)
    palette = np.array([[0, 0, 0], [200, 10, 10], [10, 200, 10], [10, 10, 200]], np.uint8)
    write_results(tmp_path, "seq", ["00000", "00001", "00002"], maps, palette)
    back = read_results(tmp_path, "seq")
    assert back.frame_names == ["00000", "00001", "00002"]
    assert np.array_equal(back.label_maps, maps)
    for k, name in enumerate(back.frame_names):
        with Image.open(tmp_path / "seq" / f"{name}.png") as image:
            assert image.mode == "P"
            assert np.array_equal(np.asarray(image.getpalette(), np.uint8).reshape(-1, 3), palette)
            assert np.array_equal(np.asarray(image), maps[k])


def test_davis_results_folder_holds_the_pngs_and_the_two_csvs(tmp_path):
    from difflens.correspondence.propagation import make_propagation_extractor, run_propagation

    make_davis_tree(tmp_path, {"dancing": 4, "walking": 3}, semantics=None)
    videos = open_label_videos("davis", davis_root=str(tmp_path), sequences=["dancing", "walking"])
    # 12 x 16 frames -> 64 x 80 for the toy model (short side 64, long side floored to 8)
    preset = TOY.with_(short_side=64, size_multiple=8)
    extractor = make_propagation_extractor(preset, (DAVIS_H, DAVIS_W), cache="")
    assert tuple(extractor.size) == (64, 80)
    run = run_propagation(videos, extractor, preset, results_dir=tmp_path / "out", progress=False)
    for name, n in (("dancing", 4), ("walking", 3)):
        back = read_results(tmp_path / "out", name)
        assert back.frame_names == [f"{i:05d}" for i in range(n)]
        assert np.array_equal(back.label_maps, run.predictions[name])
        assert np.array_equal(back.label_maps[0], davis_labels(name, 0))  # frame 0: the given
        assert np.array_equal(back.palette, PALETTE)
    table = pd.read_csv(tmp_path / "out" / "global_results-val.csv")
    assert list(table.columns) == [
        "J&F-Mean",
        "J-Mean",
        "J-Recall",
        "J-Decay",
        "F-Mean",
        "F-Recall",
        "F-Decay",
    ]
    per_object = pd.read_csv(tmp_path / "out" / "per-sequence_results-val.csv")
    assert per_object["Sequence"].tolist() == ["dancing_1", "dancing_2", "walking_1", "walking_2"]
    # the folder scores as the in-memory run did (the toolkit's reading of the same PNGs)
    again = evaluate(tmp_path / "out", tmp_path / "DAVIS")
    assert np.allclose(again.global_metrics.to_numpy(), run.result.global_metrics.to_numpy())
    assert abs(table["J&F-Mean"][0] - run.result.global_metrics["J&F-Mean"]) < 5e-4


# --------------------------------------------------------------------------- J&F over videos


def two_sequences():
    from difflens.correspondence.davis_eval import SequenceScores, result_from_scores

    # A: one object, J = F = 1 in its three scored frames; B: three objects, J = F = 0
    a = SequenceScores("a", np.ones((1, 3)), np.ones((1, 3)))
    b = SequenceScores("b", np.zeros((3, 3)), np.zeros((3, 3)))
    return result_from_scores({"a": a, "b": b})


def test_bootstrap_over_sequences_by_hand():
    from difflens.correspondence.davis_eval import bootstrap_over_sequences

    result = two_sequences()
    # object-weighted: (1 + 0 + 0 + 0) / 4 objects
    assert result.global_metrics["J&F-Mean"] == pytest.approx(0.25)
    table = bootstrap_over_sequences(result, n_boot=4000, seed=1)
    # a draw of two sequences is (a, a): 1, (a, b): 1/4 or (b, b): 0, the extremes with
    # probability 1/4 each, so the 2.5th and 97.5th percentiles are 0 and 1
    assert table.loc["J&F-Mean", "estimate"] == pytest.approx(0.25)
    assert table.loc["J&F-Mean", "low"] == 0.0 and table.loc["J&F-Mean", "high"] == 1.0
    assert (table["n_sequences"] == 2).all()


def test_sequence_table_and_per_frame_curves():
    result = two_sequences()
    table = result.sequence_table()
    assert table.loc["a", "J&F-Mean"] == 1.0 and table.loc["b", "J&F-Mean"] == 0.0
    assert table["n_objects"].tolist() == [1, 3]
    curves = result.per_frame()
    assert curves["frame"].tolist() == [1, 2, 3, 1, 2, 3]
    assert curves["J"].tolist() == [1.0] * 3 + [0.0] * 3


# --------------------------------------------------------------------------- held-out toy videos


@pytest.mark.slow  # 144 toy-model frames and their propagation: minutes on a loaded 2-core CPU
def test_trained_toy_model_propagates_better_than_random_weights_on_held_out_videos():
    # The notebook's computation on held-out (test-split) toy videos: the trained toy model and
    # the same U-Net with random weights, J&F with percentile intervals over videos.
    from difflens.correspondence.propagation import (
        compare_extractors,
        make_propagation_extractor,
        with_random_weights,
    )

    videos = open_label_videos("toyvideos", n_videos=6, n_frames=12, scene_size=64, split="test")
    trained = make_propagation_extractor(TOY, (64, 64), cache="")
    extractors = {"trained": trained, "random weights": with_random_weights(trained, seed=0)}
    runs, table = compare_extractors(
        videos, extractors, TOY, n_boot=400, keep=False, progress=False
    )
    jf = table[table["statistic"] == "J&F-Mean"].set_index("arm")
    assert (jf["n_sequences"] == 6).all()
    for arm, run in runs.items():  # the table's estimate is the toolkit's object-weighted mean
        assert jf.loc[arm, "estimate"] == pytest.approx(run.result.global_metrics["J&F-Mean"])
        assert jf.loc[arm, "low"] <= jf.loc[arm, "estimate"] <= jf.loc[arm, "high"]
    assert jf.loc["trained", "low"] > jf.loc["random weights", "high"], jf


def test_dift_preset_takes_davis_480p_frames_at_832_by_480():
    """DIFT's frame size (832 x 480: a 104 x 60 SD latent, not a multiple of 64 px) is
    extracted as diffusers runs it; the map divides the frame into a whole stride."""
    from difflens.correspondence.propagation import (
        PRESETS,
        _stride,
        frame_features,
        make_propagation_extractor,
    )

    preset = PRESETS["dift_sd"]
    extractor = make_propagation_extractor(preset, (480, 854), model="tiny", device="cpu")
    assert tuple(extractor.image_size) == (480, 832)
    frame = np.random.default_rng(0).integers(0, 256, (480, 854, 3), dtype=np.uint8)
    feats = next(iter(frame_features([frame], extractor, preset)))
    scale = extractor.registry.info(preset.layer).scale
    assert tuple(feats.shape[-2:]) == (-(-60 // scale), -(-104 // scale))  # 104 x 60 latent
    assert _stride((480, 832), tuple(feats.shape[-2:])) == 8 * scale
