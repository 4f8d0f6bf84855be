"""Every notebook executes under papermill on the quick CI configuration."""

import json
from pathlib import Path

import pytest

from difflens.run import run_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    out = tmp_path_factory.mktemp("nb")
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)  # configs/ are found relative to the repository
    try:
        run_dir = run_notebooks("ci", ROOT / "notebooks", out / "runs", out / "figures")
    finally:
        os.chdir(cwd)
    return run_dir, out / "figures"


def test_notebooks_are_committed_without_outputs():
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), nb.name
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), nb.name


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_and_records_numbers(executed, nb):
    run_dir, figures = executed
    assert (run_dir / nb.name).exists()
    numbers = json.loads((figures / nb.stem / "numbers.json").read_text())
    assert numbers, nb.stem
    assert list((figures / nb.stem).glob("*.png")), nb.stem


def test_distance_study_numbers_are_sane(executed):
    _, figures = executed
    numbers = json.loads((figures / "02_distance_study" / "numbers.json").read_text())
    assert numbers["n_objects"] > 0
    assert set(numbers["means"]) <= {"scsi", "scdi", "dcsi", "dcdi"}
    assert all(v is not None and 0 <= v <= 2 for v in numbers["means"].values())
