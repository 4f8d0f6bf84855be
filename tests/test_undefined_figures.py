"""Figures and tables of undefined numbers, and which modules start a plotting backend.

Box plots of empty and constant sets, markers and bars of NaN means and intervals,
tables with NaN p-values and intervals, JSON with NaN, and: importing the analysis stage
never imports ``matplotlib.pyplot`` (checked in a fresh interpreter).
"""

import json
import math
import subprocess
import sys
import textwrap

import matplotlib
import numpy as np
import pandas as pd
import pytest

from difflens.analysis.bootstrap import BootstrapResult, ordering_table
from difflens.analysis.comparisons import pairwise_tests
from difflens.analysis.summaries import set_summary
from difflens.viz.controls import plot_controls
from difflens.viz.plots import boxplot_sets, record_numbers
from difflens.viz.tables import bootstrap_table, comparison_table, format_table, summary_table
from difflens.viz.video import plot_offset_trend

matplotlib.use("Agg")
NAN = float("nan")


def run_fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet) and return its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_analysis_stage_never_imports_pyplot():
    out = run_fresh(
        """
        import importlib, pkgutil, sys
        import difflens.analysis
        import difflens.analysis.video, difflens.analysis.controls
        for module in pkgutil.iter_modules(difflens.analysis.__path__):
            importlib.import_module(f"difflens.analysis.{module.name}")
        print("matplotlib.pyplot" in sys.modules, "scikit_posthocs" in sys.modules)
        """
    )
    assert out == "False False"


def test_training_figures_are_written_without_pyplot(tmp_path):
    out = run_fresh(
        f"""
        import sys
        import numpy as np
        from difflens.viz.training import plot_loss_curve, save_sample_grid
        log = {{"loss": list(np.linspace(1, 0.1, 120)), "validation": [(50, 0.5), (100, 0.2)]}}
        plot_loss_curve(log, {str(tmp_path / "loss.png")!r})
        save_sample_grid(np.zeros((3, 8, 8, 3), np.uint8), ["a", "", "c"],
                         {str(tmp_path / "grid.png")!r}, cols=2)
        print("matplotlib.pyplot" in sys.modules)
        """
    )
    assert out == "False"
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert (tmp_path / "grid.png").stat().st_size > 500


# ------------------------------------------------------------------ box plots


def test_constant_set_is_a_flat_box_and_an_empty_set_is_left_out():
    long = pd.DataFrame(
        {
            "set": ["scsi"] * 4 + ["scdi"] * 3 + ["dcdi"] * 2,
            "distance": [0.7] * 4 + [1, 2, 3] + [NAN] * 2,
        }
    )
    with pytest.warns(UserWarning, match="2 non-finite distances in dcdi"):
        ax = boxplot_sets(long, sets=("scsi", "scdi", "dcdi"))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["scsi", "scdi"]
    # the constant set: every line of its box (box, whiskers, caps, median) at 0.7
    flat = [ln for ln in ax.lines if len(ln.get_xdata()) == 2 and np.ptp(ln.get_ydata()) == 0]
    first = ax.get_xticklabels()[0].get_position()[0]  # the scsi box's position
    near = [ln for ln in flat if np.all(np.abs(np.asarray(ln.get_xdata()) - first) < 0.5)]
    at_one = [ln.get_ydata()[0] for ln in near]
    assert at_one and np.allclose(at_one, 0.7)


def test_nan_means_and_intervals_get_no_marker_or_bar():
    long = pd.DataFrame({"set": ["scsi"] * 3 + ["scdi"] * 3, "distance": [1, 2, 3, 4, 5, 6.0]})
    intervals = pd.DataFrame(
        {"estimate": [2.0, NAN], "low": [NAN, NAN], "high": [NAN, NAN]}, index=["scsi", "scdi"]
    )
    ax = boxplot_sets(long, mean_intervals=intervals)
    bars = [c for c in ax.containers if hasattr(c, "lines")]
    assert len(bars) == 1  # scdi's mean is undefined: no marker
    marker, caps, segments = bars[0].lines
    assert marker.get_ydata()[0] == 2.0 and not caps and not segments  # no interval: no bar


def test_controls_figure_skips_undefined_estimates_and_intervals():
    results = pd.DataFrame(
        {
            "arm": ["trained", "random weights", "shuffled labels"],
            "measure": "separation",
            "estimate": [0.5, NAN, 0.0],
            "low": [0.4, NAN, NAN],
            "high": [0.6, NAN, NAN],
        }
    )
    _, axes = plot_controls(results)
    bars = [c for c in axes[0].containers if hasattr(c, "lines")]
    assert len(bars) == 2  # the NaN estimate is not drawn
    assert bars[0].lines[2] and not bars[1].lines[2]  # only the first has an interval


def test_offset_trend_with_undefined_means():
    summary = pd.DataFrame(
        {
            "set": ["sidi", "sidi", "scdi", "scsi"],
            "offset": [1, 2, 1, 0],
            "mean": [0.2, NAN, 0.5, NAN],
            "std": [NAN, NAN, 0.1, NAN],
            "n": [1, 0, 3, 0],
        }
    )
    ax = plot_offset_trend(summary)
    sidi = [c for c in ax.containers if c.get_label() == "sidi"]
    assert len(sidi) == 1 and sidi[0].lines[0].get_xdata().tolist() == [1]
    assert not [ln for ln in ax.lines if str(ln.get_label()).startswith("scsi")]


def test_record_numbers_writes_every_undefined_number_as_null(tmp_path):
    numbers = {
        "array": np.array([0.5, NAN, np.inf]),
        "nested": {"a": (np.float32(NAN), pd.NA), 3: np.int64(2)},
        "flag": np.bool_(True),
        "reason": "scsi has no finite distance",
    }

    def refuse(token):
        raise AssertionError(f"{token} written into the JSON")

    stored = json.loads(record_numbers(numbers, tmp_path).read_text(), parse_constant=refuse)
    assert stored == {
        "array": [0.5, None, None],
        "flag": True,
        "nested": {"3": 2, "a": [None, None]},
        "reason": "scsi has no finite distance",
    }


# ------------------------------------------------------------------ tables


def test_tables_write_undefined_numbers_as_na():
    long = pd.DataFrame({"set": ["scsi"] * 3 + ["scdi"] * 2, "distance": [1.0] * 5})
    tests = pairwise_tests(long)
    table = comparison_table({"VOC": tests}, measures=("p_dunn_holm", "p_mwu", "dunn_mean_sd"))
    text = format_table(table)
    assert text.loc[("scsi vs scdi", "p-value (Dunn, Holm)"), "VOC"] == "n/a"
    assert text.loc[("scsi vs scdi", "p-value (Mann-Whitney U)"), "VOC"] == "1.0000"
    assert text.loc[("scsi vs scdi", "Dunn index (Δ mean / max sd)"), "VOC"] == "n/a"
    assert "zero spread" in table.attrs["reasons"][("scsi vs scdi", "VOC")]
    single = pd.DataFrame({"set": ["scsi", "scdi", "scdi"], "distance": [0.5, 1.0, 2.0]})
    summary = summary_table({"VOC": set_summary(single)}, digits=3)
    assert summary.loc["scsi", "VOC"] == "0.500 ± n/a"  # one value: no standard deviation
    replicates = pd.DataFrame({"scsi": [NAN] * 5, "scdi": [1.0, 1.1, 0.9, 1.0, 1.2]})
    result = BootstrapResult({"scsi": NAN, "scdi": 1.0}, replicates, 0.95, 4, 0)
    result.orderings = ordering_table(result, ["scsi", "scdi"])
    boot = bootstrap_table({"VOC": result})
    assert boot.loc["mean scsi [95% CI]", "VOC"] == "n/a [n/a, n/a]"
    assert boot.loc["mean scdi [95% CI]", "VOC"] == "1.000 [n/a, n/a]"  # 5 draws < 40
    assert boot.loc["P[scsi < scdi]", "VOC"] == "n/a"
    assert not math.isnan(result.intervals().loc["scdi", "se"])
