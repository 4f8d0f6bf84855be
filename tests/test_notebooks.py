"""Every notebook executes under papermill on the quick CI configuration, and the numbers
it records are complete and sane."""

import ast
import json
import math
import os
from pathlib import Path

import papermill as pm
import pytest

from difflens.runner.notebooks import run_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    out = tmp_path_factory.mktemp("nb")
    cwd = os.getcwd()
    os.chdir(ROOT)  # configs/ are found relative to the repository
    try:
        run_dir = run_notebooks("ci", ROOT / "notebooks", out / "runs", out / "figures")
    finally:
        os.chdir(cwd)
    return run_dir, out / "figures"


def numbers_of(executed, stem):
    return json.loads((executed[1] / stem / "numbers.json").read_text())


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_parsable_parameters(nb):
    cells = json.loads(nb.read_text())["cells"]
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), nb.name
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, nb.name
    assigned = {t.id for node in ast.parse("".join(tagged[0]["source"])).body for t in node.targets}
    assert assigned <= set(pm.inspect_notebook(str(nb))), "papermill cannot read every parameter"
    assert "figures_dir" in assigned


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_and_records_numbers(executed, nb):
    run_dir, figures = executed
    assert (run_dir / nb.name).exists()
    assert numbers_of(executed, nb.stem), nb.stem
    assert list((figures / nb.stem).glob("*.png")), nb.stem
    assert list((figures / nb.stem).glob("*.pdf")), nb.stem


def _check_result(result):
    assert set(result["means"]) <= {"scsi", "scdi", "sidi", "dcsi", "dcdi"}
    for name, mean in result["means"].items():
        if mean is None:  # a set without a pair: null, with its reason recorded
            assert f"summary.{name}" in result["reasons"], name
            continue
        assert mean >= 0, name
        low, high = result["mean_ci95"][name]
        if low is not None:  # an interval needs enough source images to resample
            assert low <= high
    sep = result["separation_cliffs_delta"]
    assert sep is None or -1 <= sep <= 1  # None where scdi or dcdi is not among the sets
    for label, ordering in result["orderings"].items():
        if ordering["probability"] is None:  # no draw defines every set of the chain
            assert f"orderings.{label}" in result["reasons"], label
            continue
        assert 0 <= ordering["probability"] <= 1


@pytest.mark.parametrize(
    "stem", ["02_distance_study", "03_layer_ablation", "04_inference_steps", "05_transformations"]
)
def test_study_numbers_are_sane(executed, stem):
    numbers = numbers_of(executed, stem)
    assert numbers["results"]
    for result in numbers["results"].values():
        _check_result(result)


def test_distance_study_covers_every_configured_metric(executed):
    numbers = numbers_of(executed, "02_distance_study")
    assert set(numbers["results"]) == {"toyworld/euclidean", "toyworld/correlation"}
    assert (executed[1] / "02_distance_study" / "table1.md").read_text().count("scsi vs scdi") >= 1


def test_transform_study_has_sidi_pairs(executed):
    numbers = numbers_of(executed, "05_transformations")
    for key, result in numbers["results"].items():
        assert result["counts"].get("sidi", 0) > 0, key


def test_feature_extraction_rerun_is_served_from_the_cache(executed):
    numbers = numbers_of(executed, "01_feature_extraction")
    assert numbers["cached_on_rerun"] == 6


def test_video_study_has_every_offset(executed):
    summary = numbers_of(executed, "06_davis_video")["summary"]
    offsets = {row["offset"] for row in summary if row["set"] == "sidi"}
    assert offsets <= {1, 2, 5, 10} and len(offsets) >= 3
    assert all(math.isfinite(row["mean"]) for row in summary)


def test_controls_notebook_meets_the_acceptance_checks(executed):
    numbers = numbers_of(executed, "07_controls")
    assert numbers["model"].startswith("toy")
    assert numbers["trained_above_random"], numbers
    assert numbers["shuffled_covers_zero"], numbers
    assert numbers["shuffled_accuracy_covers_chance"], numbers
    assert numbers["trained_separation_low"] > numbers["random_weights_separation_high"]
    assert numbers["trained_accuracy_above_random"], numbers
    assert numbers["trained_accuracy_above_shuffled"], numbers
    assert numbers["trained_separation_estimate"] >= 0.25, numbers  # the positive control's target
