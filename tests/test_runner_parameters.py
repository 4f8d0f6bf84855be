"""Values of the wrong type for a notebook parameter are rejected before the notebook starts."""

from __future__ import annotations

import nbformat
import papermill as pm
import pytest

from difflens.runner.notebooks import run_notebooks
from difflens.runner.parameters import type_problems

PARAMETERS = """\
n_images = 64
ratio = 0.5
datasets = ["toyworld"]
cache = None
name = "x"
flag = False
count: int = 3
maybe: Optional[int] = None
names: list[str] = []
out = ""
"""


def write_notebook(path, parameters=PARAMETERS, body="open(out, 'w').write('ran')"):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    path = write_notebook(tmp_path_factory.mktemp("nb") / "00_types.ipynb")
    return pm.inspect_notebook(str(path))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n_images", 4),
        ("ratio", 1),
        ("ratio", 0.1),
        ("datasets", ["voc", "coco"]),
        ("datasets", ("voc",)),
        ("cache", None),
        ("cache", "runs/cache"),
        ("cache", {"any": "thing"}),
        ("name", "y"),
        ("flag", True),
        ("count", 3),
        ("maybe", None),
        ("maybe", 2),
        ("names", ["a"]),
        ("undeclared", object()),
    ],
)
def test_a_value_of_the_declared_type_passes(declared, key, value):
    assert type_problems("00_types", {key: value}, declared) == []


@pytest.mark.parametrize(
    ("key", "value", "declaration"),
    [
        ("n_images", "4", "int (default 64)"),
        ("n_images", True, "int (default 64)"),
        ("n_images", 4.0, "int (default 64)"),
        ("n_images", None, "int (default 64)"),
        ("ratio", True, "float (default 0.5)"),
        ("ratio", "0.5", "float (default 0.5)"),
        ("datasets", "toyworld", 'list (default ["toyworld"])'),
        ("name", 3, 'str (default "x")'),
        ("flag", 1, "bool (default False)"),
        ("count", 3.5, "int"),
        ("maybe", "2", "Optional[int]"),
        ("names", "a", "list[str]"),
    ],
)
def test_a_wrongly_typed_value_is_named_with_its_declared_type(declared, key, value, declaration):
    problems = type_problems("00_types", {key: value}, declared)
    assert problems == [
        f"00_types: {key} = {value!r} is {type(value).__name__}; "
        f"its parameters cell declares {declaration}"
    ]


def test_the_runner_rejects_a_wrong_type_before_the_notebook_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("DIFFLENS_N", raising=False)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "00_types.ipynb")
    marker = tmp_path / "ran.txt"
    config = tmp_path / "cfg.yaml"
    config.write_text(f"common:\n  n_images: ${{DIFFLENS_N:-four}}\n  out: {marker}\n")
    with pytest.raises(SystemExit) as exit_info:
        run_notebooks(str(config), notebooks, tmp_path / "runs", tmp_path / "figures")
    message = str(exit_info.value.code)
    assert "nothing was started" in message
    assert "00_types: n_images = 'four' is str; its parameters cell declares int (default 64)" in (
        message
    )
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()
