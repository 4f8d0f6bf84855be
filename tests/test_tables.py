"""Table 1-style tables: layout, p-values from their logarithms, markdown and LaTeX."""

import numpy as np
import pandas as pd
import pytest

from difflens.analysis.bootstrap import bootstrap_set_means
from difflens.analysis.comparisons import pairwise_tests
from difflens.analysis.sets import distance_sets
from difflens.analysis.summaries import set_summary
from difflens.features.prototypes import PrototypeTable
from difflens.viz.tables import (
    MEASURE_LABELS,
    bootstrap_table,
    comparison_table,
    format_table,
    summary_table,
    to_latex,
    to_markdown,
)


def long_form(shift, n_far=4000, seed=0):
    rng = np.random.default_rng(seed)
    spec = [("scsi", 0.0, 40), ("scdi", 0.5, 600), ("dcsi", 0.8, 50), ("dcdi", shift, n_far)]
    return pd.concat(
        [pd.DataFrame({"set": s, "distance": rng.normal(mu, 1, n)}) for s, mu, n in spec],
        ignore_index=True,
    )


@pytest.fixture(scope="module")
def results():
    return {
        ("Pascal-VOC", "cosine"): pairwise_tests(long_form(1.0)),
        ("Pascal-VOC", "correlation"): pairwise_tests(long_form(60.0)),  # p underflows
    }


def test_comparison_table_layout_and_values(results):
    table = comparison_table(results)
    assert table.index.get_level_values(0).unique().tolist() == [
        "scsi vs scdi", "scsi vs dcsi", "scsi vs dcdi", "scdi vs dcsi", "scdi vs dcdi", "dcsi vs dcdi",
    ]  # fmt: skip
    assert table.columns.tolist() == list(results)
    ref = results[("Pascal-VOC", "cosine")].set_index(["a", "b"])
    p_label, dunn_label = MEASURE_LABELS["p_mwu_holm"], MEASURE_LABELS["dunn_mean_sd"]
    assert (
        table.loc[("scsi vs dcdi", p_label), ("Pascal-VOC", "cosine")]
        == ref.loc[("scsi", "dcdi"), "p_mwu_holm"]
    )
    assert (
        table.loc[("scdi vs dcsi", dunn_label), ("Pascal-VOC", "cosine")]
        == ref.loc[("scdi", "dcsi"), "dunn_mean_sd"]
    )
    with pytest.raises(ValueError, match="unknown measures"):
        comparison_table(results, measures=("p_value",))


def test_underflowed_p_values_are_written_from_their_logarithm(results):
    table = comparison_table(results)
    p_label = MEASURE_LABELS["p_mwu_holm"]
    cell = ("scdi vs dcdi", p_label), ("Pascal-VOC", "correlation")
    assert table.loc[cell] == 0.0  # below the float range
    log10 = (
        results[("Pascal-VOC", "correlation")]
        .set_index(["a", "b"])
        .loc[("scdi", "dcdi"), "log10_p_mwu_holm"]
    )
    assert log10 < -320
    text = format_table(table)
    exponent = int(np.floor(log10))
    assert text.loc[cell].endswith(f"e{exponent}")
    assert (
        "0.0" != text.loc[cell]
        and not (text.map(lambda v: v in ("0", "0.0", "0.00000"))).any().any()
    )
    md = to_markdown(table)
    assert f"e{exponent}" in md and md.count("\n") == 12 + 1
    tex = to_latex(table, caption="Distance comparison")
    assert f"10^{{{exponent}}}" in tex and r"\begin{tabular}" in tex
    assert "Dunn index ($\\Delta$ mean / max sd)" in tex


def test_summary_and_bootstrap_tables():
    long = long_form(1.0, n_far=60)
    summary = summary_table({"VOC": set_summary(long)}, digits=2)
    m, s = long.distance[long.set == "scsi"].mean(), long.distance[long.set == "scsi"].std()
    assert summary.loc["scsi", "VOC"] == f"{m:.2f} ± {s:.2f}"
    rows = [(f"k{i}", f"img{i // 3}", f"img{i // 3}", i, "AB"[i % 2]) for i in range(30)]
    meta = pd.DataFrame(
        rows, columns=["object_key", "image_id", "source_image", "instance_id", "class_name"]
    )
    meta["instance_key"] = meta["object_key"]
    table = PrototypeTable(meta, np.random.default_rng(0).normal(size=(30, 4)))
    result = bootstrap_set_means(distance_sets(table, "cosine"), table, n_boot=50)
    boot = bootstrap_table({"VOC": result})
    intervals = result.intervals()
    assert boot.loc["mean scsi [95% CI]", "VOC"].startswith(
        f"{intervals.loc['scsi', 'estimate']:.3f} ["
    )
    assert "P[scsi < scdi < dcsi < dcdi]" in boot.index
    assert "|" in to_markdown(boot)
