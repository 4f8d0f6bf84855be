"""Run configs: read one YAML file, fill in its environment placeholders, merge per notebook.

A config (``configs/<name>.yaml`` or a path) holds ``common`` parameters and per-notebook
overrides ``notebooks: {stem: {...}}``. A string value may carry ``${VAR}`` or
``${VAR:-default}`` placeholders, filled from the environment (the default when ``VAR`` is
unset or empty, as in a POSIX shell). A value that is exactly one placeholder is then read as
YAML, so ``${N:-4}`` gives the number 4 and ``${SETS:-[coco, voc]}`` a list; a placeholder
with text around it stays a string.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import yaml

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
"""``${VAR}`` or ``${VAR:-default}``."""
PATH_KEYS: tuple[str, ...] = (
    "data_list",
    "voc_root",
    "coco_root",
    "davis_root",
    "pairs_root",
    "cache",
)
"""Parameters that name files or folders; relative ones are read from the run's folder."""
_PLAIN_TYPES = (str, int, float, bool, list, dict, type(None))


def _fill(match: re.Match[str]) -> str:
    return os.environ.get(match.group(1)) or match.group(2) or ""


def expand(value: object) -> object:
    """Fill the environment placeholders of a config value, recursively.

    Args:
        value: a config value (a string, a list, a mapping or a plain scalar).

    Returns:
        The value with every placeholder filled; a string that is exactly one placeholder is
        read as YAML (a number, a list, a boolean, null), unless the filled text is empty,
        is not valid YAML or reads as something other than a plain YAML value (a date), in
        which case it stays the text.
    """
    if isinstance(value, dict):
        return {key: expand(item) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item) for item in value]
    if not isinstance(value, str):
        return value
    text = PLACEHOLDER.sub(_fill, value)
    if not text or not PLACEHOLDER.fullmatch(value.strip()):
        return text
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return parsed if isinstance(parsed, _PLAIN_TYPES) else text


def config_path(name_or_path: str, root: Path = Path(".")) -> Path:
    """The file of a run config given by name (``configs/<name>.yaml``) or path.

    Args:
        name_or_path: a config name such as ``"demo"`` or a path to a YAML file.
        root: the folder holding ``configs/``.

    Returns:
        The path of the YAML file.

    Raises:
        FileNotFoundError: no such file; the message lists the configs under ``root``.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = root / "configs" / f"{name_or_path}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in (root / "configs").glob("*.yaml"))) or "none"
        raise FileNotFoundError(f"run config {path} not found (configs/: {names})")
    return path


def read_config(path: Path) -> dict:
    """The config of one YAML file as written, placeholders unfilled.

    Args:
        path: the YAML file.

    Returns:
        Its ``common`` and ``notebooks`` sections (an empty dict for an empty file).

    Raises:
        ValueError: the file is not valid YAML or its sections are not mappings.
    """
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"run config {path} is not valid YAML: {error}") from None
    sections = [("top level", config)]
    if isinstance(config, dict):
        sections += [(key, config.get(key) or {}) for key in ("common", "notebooks")]
        sections += [
            (f"notebooks.{k}", v or {}) for k, v in (config.get("notebooks") or {}).items()
        ]
    for where, section in sections:
        if not isinstance(section, dict):
            raise ValueError(f"run config {path}: {where} must be a mapping, got {section!r}")
    return config


def load_config(name_or_path: str, root: Path = Path(".")) -> dict:
    """Read a run config by name or path, its placeholders filled from the environment.

    Args:
        name_or_path: a config name such as ``"demo"`` or a path to a YAML file.
        root: the folder holding ``configs/``.

    Returns:
        The config, see :func:`expand` for how its values are filled.
    """
    return expand(read_config(config_path(name_or_path, root)))


def notebook_parameters(config: dict, stem: str, base: Path | None = None) -> dict:
    """Parameters for one notebook: ``common`` updated by ``notebooks[stem]``.

    Args:
        config: a run config (filled or as written).
        stem: the notebook's file name without ``.ipynb``.
        base: the folder the run was started in; relative paths among :data:`PATH_KEYS`,
            and a ``model`` that is a relative folder there, are made absolute against it,
            since notebooks execute in their own folder. ``None`` leaves paths as they are.

    Returns:
        ``name -> value``.
    """
    params = dict(config.get("common") or {})
    params.update((config.get("notebooks") or {}).get(stem) or {})
    if base is not None:
        for key in PATH_KEYS:
            value = params.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                params[key] = str((base / value).resolve())
        model = params.get("model")
        if isinstance(model, str) and model and (base / model).is_dir():
            params["model"] = str((base / model).resolve())
    return params


def placeholder_names(raw_config: dict, stem: str) -> dict[str, str]:
    """The environment variables each parameter of one notebook is read from.

    Args:
        raw_config: the config as written (:func:`read_config`).
        stem: the notebook's file name without ``.ipynb``.

    Returns:
        ``parameter -> "VAR"`` (several joined by ``", "``) for the parameters with
        placeholders.
    """
    names = {}
    for key, value in notebook_parameters(raw_config, stem).items():
        found = PLACEHOLDER.findall(value) if isinstance(value, str) else []
        if found:
            names[key] = ", ".join(dict.fromkeys(name for name, _ in found))
    return names


def unknown_keys(config: dict, declared: dict[str, set[str]]) -> list[str]:
    """Config keys that no notebook would receive: misspellings, stale names.

    A ``common`` key must be declared by at least one notebook; a per-notebook key must be
    declared by that notebook, whose stem must exist.

    Args:
        config: the run config (``common`` and ``notebooks``).
        declared: ``notebook stem -> names its parameters cell declares``, for every
            notebook of the folder (not only those selected for this run).

    Returns:
        One line per unknown key, with the closest declared names as a hint.
    """
    everything = set().union(*declared.values()) if declared else set()
    lines = []
    for key in config.get("common") or {}:
        if key not in everything:
            lines.append(f"common: {key!r} is declared by no notebook{_hint(key, everything)}")
    for stem, values in (config.get("notebooks") or {}).items():
        if stem not in declared:
            lines.append(f"notebooks: no notebook {stem!r}{_hint(stem, set(declared))}")
            continue
        for key in values or {}:
            if key not in declared[stem]:
                lines.append(
                    f"notebooks.{stem}: {key!r} is not a parameter of {stem}"
                    f"{_hint(key, declared[stem])}"
                )
    return lines


def _hint(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""
