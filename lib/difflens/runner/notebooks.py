"""Batch runner: execute every notebook under ``notebooks/`` in name order with papermill.

``python -m difflens.runner --config demo`` (``make demo``) and ``--config paper``
(``make reproduce``). A config (:mod:`difflens.runner.config`) gives ``common`` parameters and
per-notebook overrides; only the parameters a notebook declares in its ``parameters`` cell
are passed to it. Before the first notebook starts, every value is checked against the type
its parameters cell declares (:mod:`difflens.runner.parameters`) and everything the values
name (model, datasets, image list) is looked for (:mod:`difflens.runner.preflight`); the run
stops at once with one message when something is wrong. Notebooks execute in a kernel of the
runner's own Python (:mod:`difflens.runner.kernel`). Executed copies go to
``runs/<timestamp>/``, figures to ``figures/<notebook>/``; the merged config of each notebook
is written next to its executed copy.

Under ``accelerate launch`` (``accelerate launch --multi_gpu --num_processes 8 -m
difflens.runner --config paper``) every process runs the same notebooks in step; their
kernels inherit the launcher's environment and form one process group per notebook, so each
batch extraction is shared out (:mod:`difflens.features.distributed`) and every kernel reads
the finished tables from the one store. Only the main process writes the executed copies
and figures; the others write theirs to a temporary folder that is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from difflens.runner.config import (
    config_path,
    expand,
    notebook_parameters,
    placeholder_names,
    read_config,
    unknown_keys,
)
from difflens.runner.parameters import default_value, type_problems
from difflens.runner.preflight import format_missing, missing_requirements


@dataclass
class Plan:
    """What one notebook will be run with.

    Attributes:
        notebook: the notebook file.
        params: the parameters passed to it (only those it declares).
        declared: ``papermill.inspect_notebook`` of the notebook.
        env_names: ``parameter -> environment variable`` of values read from the environment.
    """

    notebook: Path
    params: dict
    declared: dict
    env_names: dict[str, str]

    def effective(self) -> dict:
        """The values the notebook will hold: its defaults updated by :attr:`params`.

        Returns:
            ``name -> value`` (a default that is not a literal reads as ``None``).
        """
        defaults = {key: default_value(entry) for key, entry in self.declared.items()}
        return {**defaults, **self.params}


def _select(notebooks_dir: Path, only: list[str] | None) -> list[Path]:
    notebooks = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [nb for nb in notebooks if any(nb.stem.startswith(o) for o in only)]
    if not notebooks:
        chosen = f" starting with {' '.join(only)}" if only else ""
        raise SystemExit(f"difflens: no notebooks{chosen} in {notebooks_dir}")
    return notebooks


def plan_run(
    config_name: str,
    notebooks: list[Path],
    figures_root: Path,
    root: Path | None = None,
) -> list[Plan]:
    """The parameters of every notebook, checked before any of them starts.

    Args:
        config_name: ``configs/<name>.yaml`` under ``root``, or a path.
        notebooks: the notebooks to run.
        figures_root: the folder of every notebook's ``figures/<notebook>/``.
        root: the folder relative paths are read from (default: the current folder).

    Returns:
        One :class:`Plan` per notebook.

    Raises:
        SystemExit: the config names a parameter no notebook declares, a value does not fit
            the type its notebook declares, or something the values name (model, dataset root, image list, CUDA) is missing; one message
            lists every such problem.
    """
    import papermill as pm

    root = Path.cwd() if root is None else root
    raw = read_config(config_path(config_name, root))
    config = expand(raw)
    _check_keys(config, config_name, notebooks)
    plans = []
    for nb in notebooks:
        declared = pm.inspect_notebook(str(nb))
        params = notebook_parameters(config, nb.stem, root)
        params["figures_dir"] = str(figures_root / nb.stem)
        params = {k: v for k, v in params.items() if k in declared}
        plans.append(Plan(nb, params, declared, placeholder_names(raw, nb.stem)))
    wrong = [line for p in plans for line in type_problems(p.notebook.stem, p.params, p.declared)]
    if wrong:
        head = (
            f"difflens: config {config_name!r} gives values of the wrong type; nothing was started:"
        )
        raise SystemExit("\n  ".join([head, *wrong]))
    names = {p.notebook.stem: p.env_names for p in plans}
    missing = missing_requirements({p.notebook.stem: p.effective() for p in plans}, names)
    if missing:
        raise SystemExit(format_missing(missing, config_name, names))
    return plans


def _check_keys(config: dict, config_name: str, notebooks: list[Path]) -> None:
    """Stop when the config names a parameter that no notebook of the folder declares."""
    import papermill as pm

    folder = notebooks[0].parent if notebooks else Path("notebooks")
    declared = {
        nb.stem: set(pm.inspect_notebook(str(nb))) for nb in folder.glob("[0-9][0-9]_*.ipynb")
    }
    unknown = unknown_keys(config, declared)
    if unknown:
        head = f"difflens: config {config_name!r} names parameters no notebook declares:"
        raise SystemExit("\n  ".join([head, *unknown]))


def _failed_cell(executed: Path) -> int | None:
    """The execution count of the last cell that started in an executed copy."""
    try:
        cells = json.loads(executed.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return None
    count = 0
    for cell in cells:
        if cell.get("cell_type") != "code" or not cell["metadata"].get("papermill", {}).get(
            "start_time"
        ):
            continue
        count = cell.get("execution_count") or count + 1
    return count or None


def _shown(path: Path) -> Path:
    """``path`` relative to the current folder where it lies below it, for shorter lines."""
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def _took(start: float) -> str:
    seconds = time.perf_counter() - start
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def execute(plan: Plan, out: Path) -> None:
    """Execute one notebook in the runner's own kernel.

    Args:
        plan: the notebook and its parameters.
        out: where the executed copy is written.

    Raises:
        SystemExit: a cell failed or the kernel died; the one-line message names the
            notebook, the cell and the executed copy.
    """
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    from difflens.runner.kernel import OwnKernelManager

    nb = plan.notebook
    try:
        pm.execute_notebook(
            str(nb),
            str(out),
            parameters=plan.params,
            cwd=str(nb.parent),
            progress_bar=False,
            kernel_name="python3",
            kernel_manager_class=OwnKernelManager,
        )
    except pm.PapermillExecutionError as error:
        cell, cause = error.exec_count, f"{error.ename}: {error.evalue}"
    except DeadKernelError as error:
        cell, cause = _failed_cell(out), f"the kernel died: {error}"
    else:
        return
    raise SystemExit(
        f"difflens: {nb.name} failed in cell {cell} ({cause}); the executed copy is {_shown(out)}"
    )


def run_notebooks(
    config_name: str,
    notebooks_dir: Path = Path("notebooks"),
    runs_dir: Path = Path("runs"),
    figures_root: Path = Path("figures"),
    only: list[str] | None = None,
) -> Path:
    """Check, then execute the notebooks in name order.

    Args:
        config_name: ``configs/<name>.yaml`` (read from the current folder) or a path.
        notebooks_dir: the folder of the numbered notebooks.
        runs_dir: the folder that gets one ``<timestamp>/`` folder per run.
        figures_root: the folder of every notebook's ``figures/<notebook>/``.
        only: run only the notebooks whose names start with one of these.

    Returns:
        The run folder, holding the executed copies and each notebook's config.
    """
    plans = plan_run(config_name, _select(notebooks_dir, only), figures_root)
    run_dir = runs_dir / datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    count = f"{len(plans)} notebook" + ("s" if len(plans) != 1 else "")
    print(f"difflens: {count}, config {config_name!r} -> {_shown(run_dir)}", flush=True)
    begin = time.perf_counter()
    for index, plan in enumerate(plans, 1):
        nb = plan.notebook
        (run_dir / f"{nb.stem}.config.yaml").write_text(yaml.safe_dump(plan.params))
        print(f"  [{index}/{len(plans)}] {nb.name} ...", flush=True)
        start = time.perf_counter()
        execute(plan, run_dir / nb.name)
        print(f"  [{index}/{len(plans)}] {nb.name} done in {_took(start)}", flush=True)
    print(
        f"difflens: done in {_took(begin)}; executed copies in {_shown(run_dir)}, "
        f"figures in {_shown(figures_root)}/"
    )
    return run_dir


def main(argv: list[str] | None = None) -> int:
    """The command line: ``python -m difflens.runner --config NAME [--only 03 05]``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when every notebook ran.

    Raises:
        SystemExit: the config cannot be read, a check failed or a notebook failed; the
            message says which.
    """
    parser = argparse.ArgumentParser(
        prog="python -m difflens.runner", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--config", default="demo", help="configs/<name>.yaml or a path (default: demo)"
    )
    parser.add_argument(
        "--only", nargs="+", help="run only notebooks whose names start with these (e.g. 02 07)"
    )
    parser.add_argument(
        "--notebooks", type=Path, default=Path("notebooks"), help="notebook folder (notebooks/)"
    )
    parser.add_argument(
        "--runs", type=Path, default=Path("runs"), help="executed copies go to RUNS/<timestamp>/"
    )
    parser.add_argument(
        "--figures",
        type=Path,
        default=Path("figures"),
        help="figures and numbers.json go to FIGURES/<notebook>/",
    )
    args = parser.parse_args(argv)
    try:
        if launched_rank():
            _run_as_helper(args)
            return 0
        run_notebooks(
            args.config,
            args.notebooks.resolve(),
            args.runs.resolve(),
            args.figures.resolve(),
            args.only,
        )
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"difflens: {error}") from None
    return 0


def launched_rank() -> int | None:
    """This runner's rank under a launcher (``RANK`` with ``WORLD_SIZE`` > 1), else ``None``.

    The runner itself joins no process group: its kernels do, one notebook at a time.

    Returns:
        The rank, or ``None`` without a multi-process launch.
    """
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return int(os.environ.get("RANK", "0"))
    except ValueError:
        return None
    return None


def _run_as_helper(args: argparse.Namespace) -> None:
    """A non-main process of a launched run: the same notebooks, outputs thrown away."""
    with (
        tempfile.TemporaryDirectory(prefix="difflens-rank-") as scratch,
        open(os.devnull, "w") as quiet,
        contextlib.redirect_stdout(quiet),  # the main process reports
    ):
        run_notebooks(
            args.config,
            args.notebooks.resolve(),
            Path(scratch) / "runs",
            Path(scratch) / "figures",
            args.only,
        )


if __name__ == "__main__":
    sys.exit(main())
