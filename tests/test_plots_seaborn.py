"""The statistical plots drawn by seaborn: paper colours kept, numbers where the data put them,
intervals from the tables (not recomputed), and no deprecation warning from the box plots."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer

from difflens.viz.correspondence import plot_pck_bars
from difflens.viz.plots import (
    SET_COLOURS,
    boxplot_panels,
    boxplot_sets,
    plot_distance_among_sets,
    violinplot_sets,
)
from difflens.viz.scenes import object_size_histogram
from difflens.viz.video_propagation import plot_jf_per_sequence

SETS = ("scsi", "scdi", "dcsi", "dcdi")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def long_form(seed=0, sets=SETS, n=40):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "set": np.repeat(sets, n),
            "distance": np.concatenate([rng.normal(k, 0.1, n) for k in range(len(sets))]),
        }
    )


def test_box_plots_raise_no_warning_at_all():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the vert deprecation of matplotlib >= 3.10 included
        boxplot_sets(long_form())
        boxplot_panels({"a": long_form(), "b": long_form(1)})
        violinplot_sets(long_form())


def test_box_quartiles_are_numpys():
    long = long_form(3)
    ax = boxplot_sets(long, show_means=False)
    ticks = {t.get_text(): t.get_position()[0] for t in ax.get_xticklabels()}
    for name in SETS:
        values = long.distance[long.set == name].to_numpy()
        (box,) = [
            p for p in ax.patches if abs(p.get_path().vertices[:, 0].mean() - ticks[name]) < 0.45
        ]
        ys = box.get_path().vertices[:, 1]
        q1, q3 = np.percentile(values, [25, 75])
        assert (ys.min(), ys.max()) == pytest.approx((q1, q3))
        assert to_hex(box.get_facecolor()) == SET_COLOURS[name]


def test_violins_in_the_paper_colours_and_the_pair_line():
    long = long_form(1)
    ax = violinplot_sets(long)
    bodies = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert [to_hex(c.get_facecolor()[0]) for c in bodies] == [SET_COLOURS[s] for s in SETS]
    for body, name in zip(bodies, SETS):  # cut=0: each violin spans its set's range exactly
        values = long.distance[long.set == name]
        ys = np.concatenate([p.vertices[:, 1] for p in body.get_paths()])
        assert (ys.min(), ys.max()) == pytest.approx((values.min(), values.max()))
    ax = plot_distance_among_sets(long, 1.5)
    (line,) = [ln for ln in ax.lines if str(ln.get_label()).startswith("this pair")]
    assert list(line.get_ydata()) == [1.5, 1.5]


def pck_table(values):
    rows = []
    for category, (pck, low, high) in values.items():
        rows.append(
            {
                "category": category,
                "alpha": 0.1,
                "reading": "target_bbox",
                "averaging": "per_image",
                "pck": pck,
                "low": low,
                "high": high,
            }
        )
    return pd.DataFrame(rows)


def test_pck_bars_carry_the_tables_own_intervals():
    trained = pck_table({"all": (0.5, 0.4, 0.7), "a": (0.3, 0.1, 0.35), "b": (0.8, 0.75, 0.9)})
    random = pck_table(
        {"all": (0.2, 0.1, 0.3), "a": (0.1, float("nan"), float("nan")), "b": (0.25, 0.2, 0.3)}
    )
    _, ax = plot_pck_bars({"trained": trained, "random weights": random})
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    heights = [[p.get_height() for p in c] for c in bars]
    assert heights == [pytest.approx([50, 30, 80]), pytest.approx([20, 10, 25])]
    segments = {}
    for container in ax.containers:
        if not isinstance(container, BarContainer):
            (segment,) = container.lines[2][0].get_segments()
            segments[round(float(segment[0, 0]), 3)] = sorted(segment[:, 1])
    assert len(segments) == 5  # the undefined interval gets no bar
    for container, table in zip(bars, (trained, random)):
        for bar, row in zip(container, table.itertuples()):
            centre = round(bar.get_x() + bar.get_width() / 2, 3)
            if np.isfinite(row.low):
                assert segments[centre] == pytest.approx([100 * row.low, 100 * row.high])
            else:
                assert centre not in segments


def test_jf_bars_and_the_area_histogram():
    class Result:
        def __init__(self, values):
            self.values = values

        def sequence_table(self):
            return pd.DataFrame({"J&F-Mean": self.values}, index=["bike", "dance", "dogs"])

    ax = plot_jf_per_sequence({"trained": Result([0.5, 0.7, 0.2]), "random": Result([0.1, 0, 0.3])})
    bars = [[p.get_height() for p in c] for c in ax.containers if isinstance(c, BarContainer)]
    assert bars == [pytest.approx([0.5, 0.7, 0.2]), pytest.approx([0.1, 0, 0.3])]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["bike", "dance", "dogs"]
    objects = pd.DataFrame({"area_fraction": [0.001, 0.01, 0.02, 0.5, 0.0, 1.0]})
    ax = object_size_histogram(objects)
    counts = [p.get_height() for p in ax.patches]
    assert sum(counts) == 5  # the zero area is left out of the log scale
    edges = [p.get_x() for p in ax.patches] + [ax.patches[-1].get_x() + ax.patches[-1].get_width()]
    assert (min(edges), max(edges)) == pytest.approx((0.001, 1.0))
