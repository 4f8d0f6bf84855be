"""The README and docs/ stay true to the code: size, links, module paths, notebooks, build.

- the README stays short (under 12 KB): reference material belongs in docs/;
- every relative link of the README and of docs/ points to a file that exists (and, for a
  Markdown target with an anchor, to a heading that exists);
- every ``difflens.<module>[.<name>]`` path they name imports, so a renamed or split module
  is caught here rather than by a reader;
- every notebook is listed in the README and documented in docs/notebooks.md, whose
  parameter tables name parameters the notebooks declare, with their defaults;
- ``mkdocs build --strict`` builds the site offline without a warning. Warnings that come
  from lib's docstrings (griffe's) are told apart from those of the pages and config.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
NOTEBOOKS = ROOT / "notebooks"
README_LIMIT = 12_000  # bytes

DOC_FILES = [README, *sorted(DOCS.rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
MODULE_PATH = re.compile(r"(?<![\w/.-])difflens(?:\.[A-Za-z_]\w*)+")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def without_code_blocks(text: str) -> str:
    return FENCE.sub("", text)


# --------------------------------------------------------------------------- README


def test_readme_is_under_12_kb():
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; move reference material to docs/"


def test_docs_name_no_paths_of_a_machine():
    for path in DOC_FILES:
        text = path.read_text()
        for pattern in ("/work/", "/tmp/", "/home/", "/root/"):
            assert pattern not in text, f"{rel(path)} names a local path ({pattern})"


# --------------------------------------------------------------------------- links


def slugs(markdown_file: Path) -> set[str]:
    """The heading anchors of a Markdown file, as Python-Markdown's toc extension makes them."""
    from markdown.extensions.toc import slugify

    text = without_code_blocks(markdown_file.read_text())
    return {slugify(title, "-") for _, title in HEADING.findall(text)}


def relative_links(path: Path) -> list[str]:
    text = without_code_blocks(path.read_text())
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    ]


@pytest.mark.parametrize("path", DOC_FILES, ids=rel)
def test_relative_links_point_to_files_that_exist(path):
    missing = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve()
        if not linked.exists():
            missing.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and importlib.util.find_spec("markdown"):
            if anchor not in slugs(linked):
                missing.append(f"{target} (no heading with that anchor)")
    assert not missing, f"{rel(path)}: broken links: " + ", ".join(missing)


# --------------------------------------------------------------------------- module paths


def named_paths() -> dict[str, list[str]]:
    """``difflens.*`` paths named in the README and docs -> the files naming them."""
    found: dict[str, list[str]] = {}
    for path in DOC_FILES:
        for name in MODULE_PATH.findall(path.read_text()):
            found.setdefault(name, []).append(rel(path))
    return found


def resolve(dotted: str) -> None:
    """Import the longest module prefix of ``dotted`` and look the rest up as attributes."""
    parts = dotted.split(".")
    if "__main__" in parts:  # importing a __main__ module would run it
        raise AssertionError("name the package, not its __main__ module")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is None or not module_name.startswith(err.name):
                raise
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return
    raise ModuleNotFoundError(dotted)


def test_every_difflens_path_named_in_the_docs_exists():
    problems = []
    for dotted, files in sorted(named_paths().items()):
        try:
            resolve(dotted)
        except Exception as err:  # noqa: BLE001 - any failure is a stale name
            problems.append(f"{dotted} (in {', '.join(sorted(set(files)))}): {err!r}")
    assert not problems, "stale difflens paths:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- notebooks


def notebook_parameters(path: Path) -> dict[str, object]:
    """Name -> default of a notebook's ``parameters`` cell (``...`` where not a literal)."""
    cells = json.loads(path.read_text())["cells"]
    source = next(
        "".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])
    )
    params: dict[str, object] = {}
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
                try:
                    params[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    params[target.id] = ...
    return params


NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def documented_tables() -> dict[str, list[tuple[list[str], list[str]]]]:
    """Section of docs/notebooks.md -> rows of its tables as (names, defaults) in backticks."""
    sections: dict[str, list[tuple[list[str], list[str]]]] = {}
    current = None
    for line in (DOCS / "notebooks.md").read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current and line.startswith("|") and not re.match(r"^\|[\s|:-]+\|$", line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            names = re.findall(r"`([^`]+)`", cells[0])
            defaults = re.findall(r"`([^`]+)`", cells[1]) if len(cells) > 1 else []
            if names:
                sections[current].append((names, defaults))
    return sections


def pair_defaults(names: list[str], defaults: list[str]) -> list[tuple[str, object]]:
    """(name, documented default) where a default can be read for it."""
    if len(defaults) == 1:
        defaults = defaults * len(names)
    if len(defaults) != len(names):
        return []
    out = []
    for name, text in zip(names, defaults):
        if "<" in text:  # a pattern such as "../figures/<notebook>"
            continue
        try:
            out.append((name, ast.literal_eval(text)))
        except (ValueError, SyntaxError):
            continue
    return out


def test_every_notebook_is_listed_in_the_readme_and_documented():
    readme = README.read_text()
    sections = documented_tables()
    for path in NOTEBOOK_FILES:
        assert f"notebooks/{path.name}" in readme, f"README does not list {path.name}"
        assert path.stem in sections, f"docs/notebooks.md has no section '## {path.stem}'"
    stems = {p.stem for p in NOTEBOOK_FILES}
    for title in sections:
        if re.match(r"^\d\d_", title):
            assert title in stems, f"docs/notebooks.md documents a missing notebook {title}"


def test_documented_parameters_exist_with_their_defaults():
    params = {p.stem: notebook_parameters(p) for p in NOTEBOOK_FILES}
    problems = []
    for section, rows in documented_tables().items():
        for names, defaults in rows:
            if section in params:  # a notebook's own table
                for name in names:
                    if name not in params[section]:
                        problems.append(f"{section}: no parameter {name}")
                for name, value in pair_defaults(names, defaults):
                    actual = params[section].get(name, value)
                    if actual != value:
                        problems.append(f"{section}: {name} defaults to {actual!r}, not {value!r}")
            elif section == "Common parameters":
                for name in names:
                    if not any(name in p for p in params.values()):
                        problems.append(f"common: no notebook declares {name}")
                for name, value in pair_defaults(names, defaults):
                    values = Counter(repr(p[name]) for p in params.values() if name in p)
                    if values and values.most_common(1)[0][0] != repr(value):
                        problems.append(f"common: {name} mostly defaults to {values}")
    assert not problems, "docs/notebooks.md is out of date:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- benchmarks


def test_every_benchmark_is_explained_and_every_fragment_exists():
    page = (DOCS / "benchmarks.md").read_text()
    for script in sorted((ROOT / "benchmarks").glob("[!_]*.py")):  # _*.py: shared helpers
        assert f"benchmarks/{script.name}" in page, f"docs/benchmarks.md: {script.name}?"
    for fragment in re.findall(r'--8<-- "([^"]+)"', page):
        assert (DOCS / fragment).is_file(), f"docs/benchmarks.md includes missing {fragment}"


# --------------------------------------------------------------------------- mkdocs build

GRIFFE_LIB = re.compile(r"^WARNING\s+-\s+griffe: lib/")


@pytest.fixture(scope="module")
def mkdocs_build(tmp_path_factory):
    for module in ("mkdocs", "mkdocstrings_handlers.python", "material"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"{module} is not installed: make install (the dev extra) installs it")
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    warnings = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.startswith(("WARNING", "ERROR"))
    ]
    return result, warnings, site


def test_docs_pages_and_config_build_without_warnings(mkdocs_build):
    result, warnings, _ = mkdocs_build
    own = [w for w in warnings if not GRIFFE_LIB.match(w)]
    assert not own, "warnings from docs/ or mkdocs.yml:\n" + "\n".join(own)
    assert result.returncode == 0 or warnings, result.stdout + result.stderr


def test_docs_build_strict_including_the_docstrings(mkdocs_build):
    result, warnings, site = mkdocs_build
    assert result.returncode == 0, (
        f"mkdocs build --strict failed with {len(warnings)} warnings "
        "(griffe: lib/... ones come from docstrings):\n" + "\n".join(warnings)
    )
    assert (site / "index.html").is_file()
    assert (site / "api" / "data" / "index.html").is_file()
