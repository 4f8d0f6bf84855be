"""Paper-style box plots: panels, colours, bootstrap mean markers, saved files."""

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from difflens.viz.plots import (
    SET_COLOURS,
    TRANSFORM_COLOURS,
    boxplot_panels,
    boxplot_sets,
    record_numbers,
    save_figure,
)

matplotlib.use("Agg")


def long_form(shift=0.0, seed=0, sets=("scsi", "scdi", "dcsi", "dcdi")):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "set": np.repeat(sets, 50),
            "distance": np.concatenate([rng.normal(k + shift, 0.1, 50) for k in range(len(sets))]),
        }
    )


def box_colours(ax):
    return [to_hex(p.get_facecolor()) for p in ax.patches]


def test_panels_one_per_setting_in_the_paper_colours():
    panels = {"euclidean": long_form(), "cosine": long_form(1.0), "correlation": long_form(2.0)}
    fig, axes = boxplot_panels(panels, ncols=2)
    visible = [ax for ax in axes.ravel() if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == list(panels)
    assert not axes[1][1].get_visible()
    for ax in visible:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["scsi", "scdi", "dcsi", "dcdi"]
        assert box_colours(ax) == [SET_COLOURS[s] for s in ("scsi", "scdi", "dcsi", "dcdi")]
    # medians drawn where the data put them (the widest horizontal lines: box width)
    cosine = panels["cosine"]
    flat = [
        ln for ln in visible[1].lines if len(ln.get_xdata()) == 2 and np.ptp(ln.get_ydata()) == 0
    ]
    widest = max(np.ptp(ln.get_xdata()) for ln in flat)
    medians = [ln.get_ydata()[0] for ln in flat if np.isclose(np.ptp(ln.get_xdata()), widest)]
    expected = [
        np.median(cosine.distance[cosine.set == s]) for s in ("scsi", "scdi", "dcsi", "dcdi")
    ]
    assert medians == pytest.approx(expected)


def test_transform_colours_for_fig8():
    long = long_form(sets=("sidi", "scsi", "dcsi"))
    ax = boxplot_sets(long, sets=("sidi", "scsi", "dcsi"), colours=TRANSFORM_COLOURS)
    assert box_colours(ax) == [TRANSFORM_COLOURS[s] for s in ("sidi", "scsi", "dcsi")]


def test_mean_markers_with_bootstrap_intervals():
    long = long_form()
    intervals = pd.DataFrame(
        {
            "estimate": [0.0, 1.0, 2.0, 3.0],
            "low": [-0.1, 0.9, 1.8, 2.9],
            "high": [0.1, 1.2, 2.1, 3.2],
        },
        index=["scsi", "scdi", "dcsi", "dcdi"],
    )
    ax = boxplot_sets(long, mean_intervals=intervals)
    bars = [c for c in ax.containers if hasattr(c, "lines")]
    assert len(bars) == 4
    xs = [bar.lines[0].get_xdata()[0] for bar in bars]
    ys = [bar.lines[0].get_ydata()[0] for bar in bars]
    # each marker stands at its set's box: the position of the tick that names the set
    ticks = {t.get_text(): t.get_position()[0] for t in ax.get_xticklabels()}
    assert xs == [ticks[s] for s in ("scsi", "scdi", "dcsi", "dcdi")]
    assert ys == [0.0, 1.0, 2.0, 3.0]
    segments = bars[1].lines[2][0].get_segments()[0]
    assert segments[:, 1].tolist() == pytest.approx([0.9, 1.2])


def test_non_finite_distances_are_counted_not_silent():
    long = long_form()
    long.loc[[0, 1], "distance"] = np.nan
    with pytest.warns(UserWarning, match="2 non-finite distances in scsi"):
        boxplot_sets(long)


def test_empty_input_says_so():
    ax = boxplot_sets(pd.DataFrame({"set": [], "distance": []}))
    assert ax.texts[0].get_text() == "no pairs"


def test_saved_files_and_numbers(tmp_path):
    fig, _ = boxplot_panels({"a": long_form()})
    paths = save_figure(fig, tmp_path, "fig3")
    assert [p.name for p in paths] == ["fig3.png", "fig3.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    path = record_numbers(
        {"mean": np.float64(0.5), "nan": float("nan"), "n": np.int64(3)}, tmp_path
    )
    assert json.loads(path.read_text()) == {"mean": 0.5, "n": 3, "nan": None}
