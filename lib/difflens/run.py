"""Batch runner: execute every notebook under ``notebooks/`` in name order with papermill.

``python -m difflens.run --config demo`` (``make demo``) and ``--config paper``
(``make reproduce``). A config is a YAML file (``configs/<name>.yaml`` or a path) with
``common`` parameters and per-notebook ``notebooks: {stem: {...}}`` overrides; only the
parameters a notebook declares in its ``parameters`` cell are passed to it. Values written
``${VAR}`` or ``${VAR:-default}`` are read from the environment. Executed copies go to
``runs/<timestamp>/``, figures to ``figures/<notebook>/``; the merged config of each
notebook is written next to its executed copy.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value):
    if isinstance(value, str):
        return _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def load_config(name_or_path: str, root: Path = Path(".")) -> dict:
    """Read a run config by name (``configs/<name>.yaml``) or path, env variables expanded."""
    path = Path(name_or_path)
    if not path.suffix:
        path = root / "configs" / f"{name_or_path}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"run config {path} not found (configs/: demo, paper, ...)")
    config = yaml.safe_load(path.read_text()) or {}
    return _expand(config)


PATH_KEYS = ("data_list", "voc_root", "coco_root", "davis_root", "cache")


def notebook_parameters(config: dict, stem: str, base: Path | None = None) -> dict:
    """Parameters for one notebook: ``common`` updated by ``notebooks[stem]``.

    Relative paths among :data:`PATH_KEYS` are made absolute against ``base`` (the folder
    the runner was started in), since notebooks execute in their own folder.
    """
    params = dict(config.get("common") or {})
    params.update((config.get("notebooks") or {}).get(stem) or {})
    if base is not None:
        for key in PATH_KEYS:
            value = params.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                params[key] = str((base / value).resolve())
    return params


def run_notebooks(
    config_name: str,
    notebooks_dir: Path = Path("notebooks"),
    runs_dir: Path = Path("runs"),
    figures_root: Path = Path("figures"),
    only: list[str] | None = None,
) -> Path:
    """Execute the notebooks; returns the run folder. Raises SystemExit naming a failed cell."""
    import papermill as pm

    config = load_config(config_name)
    notebooks = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [nb for nb in notebooks if any(nb.stem.startswith(o) for o in only)]
    if not notebooks:
        raise SystemExit(f"no notebooks to run in {notebooks_dir}")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = runs_dir / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"difflens: running {len(notebooks)} notebooks with config {config_name!r} -> {run_dir}")
    for nb in notebooks:
        declared = pm.inspect_notebook(str(nb))
        params = notebook_parameters(config, nb.stem, Path.cwd())
        params["figures_dir"] = str(figures_root / nb.stem)
        params = {k: v for k, v in params.items() if k in declared}
        out = run_dir / nb.name
        (run_dir / f"{nb.stem}.config.yaml").write_text(yaml.safe_dump(params, sort_keys=True))
        start = time.perf_counter()
        print(f"  {nb.name} ...", flush=True)
        try:
            pm.execute_notebook(
                str(nb),
                str(out),
                parameters=params,
                cwd=str(nb.parent),
                progress_bar=False,
                kernel_name="python3",
            )
        except pm.PapermillExecutionError as error:
            raise SystemExit(
                f"difflens: {nb.name} failed in cell {error.exec_count} ({error.ename}: {error.evalue}); "
                f"the executed copy is {out}"
            ) from None
        print(f"  {nb.name} done in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"difflens: executed copies in {run_dir}, figures in {figures_root}/")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config", default="demo", help="configs/<name>.yaml or a path (default: demo)"
    )
    parser.add_argument("--only", nargs="*", help="run only notebooks whose names start with these")
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--figures", type=Path, default=Path("figures"))
    args = parser.parse_args(argv)
    run_notebooks(
        args.config,
        args.notebooks.resolve(),
        args.runs.resolve(),
        args.figures.resolve(),
        args.only,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
