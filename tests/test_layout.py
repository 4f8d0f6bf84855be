"""The package's stages import one way only (the import-linter contract in pyproject.toml),
and an upward import is caught."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def contract_section() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    start = text.index("[tool.importlinter]")
    end = text.index("[tool.ruff]")
    return text[start:end]


def lint_imports(config: Path, package_parent: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=package_parent,
        timeout=300,
    )


@pytest.fixture(scope="module")
def linter():
    if not LINT_IMPORTS.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return LINT_IMPORTS


def test_the_stages_import_downward_only(linter, tmp_path):
    config = tmp_path / "pyproject.toml"
    config.write_text(contract_section())
    result = lint_imports(config, ROOT / "lib")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(linter, tmp_path):
    shutil.copytree(ROOT / "lib" / "difflens", tmp_path / "difflens")
    core = tmp_path / "difflens" / "core" / "skips.py"
    core.write_text(core.read_text() + "\nimport difflens.viz.plots  # noqa: E402,F401\n")
    config = tmp_path / "pyproject.toml"
    config.write_text(contract_section())
    result = lint_imports(config, tmp_path)
    assert result.returncode != 0
    assert re.search(r"difflens\.core is not allowed to import difflens\.viz", result.stdout)
    assert "difflens.core.skips -> difflens.viz.plots" in result.stdout


def test_the_stage_packages_are_the_documented_ones():
    stages = sorted(
        p.name for p in (ROOT / "lib" / "difflens").iterdir() if (p / "__init__.py").exists()
    )
    assert stages == sorted(
        ["analysis", "core", "correspondence", "data", "features", "models", "runner", "viz"]
    )
    layers = re.findall(r'"difflens\.(\w+)"', contract_section())
    assert sorted(layers) == stages
