"""Correspondence figures: correct and wrong matches in their colours, bars and heat map cells."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer

from difflens.correspondence.pck import evaluate_pck
from difflens.data.keypoints import KeypointPair
from difflens.viz.correspondence import (
    CORRECT_COLOUR,
    PUBLISHED,
    WRONG_COLOUR,
    plot_matches,
    plot_pck_bars,
    plot_search_heatmap,
    record_table,
)


def _pair():
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    return KeypointPair(
        pair_id="p",
        category="c",
        source_image=image,
        target_image=image,
        source_points=[[5, 5], [10, 10], [20, 20]],
        target_points=[[5, 5], [10, 10], [20, 20]],
        keypoint_ids=["a", "b", "c"],
        source_box=[0, 0, 30, 30],
        target_box=[0, 0, 30, 30],  # side 30: correct within 3 px at alpha 0.1
    )


def test_matches_are_coloured_by_correctness():
    pred = np.array([[5, 5], [13, 10], [20, 23.5]])  # errors 0, 3 (correct), 3.5 (wrong)
    fig, ax = plot_matches(_pair(), pred)
    colours = [to_hex(line.get_color()) for line in ax.lines if line.get_linestyle() == "-"]
    assert colours.count(CORRECT_COLOUR) == 2 and colours.count(WRONG_COLOUR) == 1
    # target drawn to the right of the source: the line ends are shifted by the source width
    ends = [line.get_xdata()[1] for line in ax.lines if line.get_linestyle() == "-"]
    np.testing.assert_allclose(ends, pred[:, 0] + 60)
    assert "2/3" in ax.get_title()


def test_pck_bars_and_heatmap():
    records = [
        {"pred": [[0, 0]], "gt": [[0, 1]], "category": c, "trg_bbox": (0, 0, 20, 20)} for c in "ab"
    ]
    table = evaluate_pck(records, alphas=(0.1,), n_boot=20)
    fig, ax = plot_pck_bars({"trained": table, "random weights": table})
    # the bars (seaborn also puts empty legend proxies among ax.patches)
    bars = [p for c in ax.containers if isinstance(c, BarContainer) for p in c]
    assert len(bars) == 2 * 3  # two arms x (all, a, b)
    assert [p.get_height() for p in bars[:3]] == [100.0, 100.0, 100.0]
    search = pd.DataFrame(
        {"layer": ["x", "x", "y", "y"], "timestep": [0, 50, 0, 50], "pck": [0.1, 0.2, 0.4, 0.3]}
    )
    fig, ax = plot_search_heatmap(search)
    values = np.asarray(ax.collections[0].get_array()).reshape(2, 2)  # seaborn's cell mesh
    np.testing.assert_allclose(values, [[10, 20], [40, 30]])
    assert sorted(t.get_text() for t in ax.texts) == ["10", "20", "30", "40"]
    (outline,) = [p for p in ax.patches]
    # the best cell, layer y at t = 0: the outline is centred on the ticks naming them
    xticks = {t.get_text(): t.get_position()[0] for t in ax.get_xticklabels()}
    yticks = {t.get_text(): t.get_position()[1] for t in ax.get_yticklabels()}
    x, y = outline.get_xy()
    assert (x + outline.get_width() / 2, y + outline.get_height() / 2) == (xticks["0"], yticks["y"])
    table = record_table([{"method": "ours", "pck": 1.0}])
    assert len(table) == len(PUBLISHED) + 1 and table.method.iloc[-1] == "ours"
