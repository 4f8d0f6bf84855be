"""The runner's kernel: its own Python whatever kernel specs lie on the Jupyter path, no
unencrypted-TCP warning on the console, and a dying kernel reported in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

BOGUS_PYTHON = "/nonexistent/bin/python"
KERNEL_LINE = "kernel's own stderr line"


def write_notebook(path: Path, *bodies: str) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('out = ""')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(body) for body in bodies)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def bogus_jupyter_env(tmp_path: Path) -> dict[str, str]:
    """A user-level and a path ``python3`` kernel spec that point at no interpreter."""
    env = {}
    for var, folder in (("JUPYTER_PATH", "path"), ("JUPYTER_DATA_DIR", "data")):
        spec = tmp_path / folder / "kernels" / "python3"
        spec.mkdir(parents=True)
        argv = [BOGUS_PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec.joinpath("kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "stale", "language": "python"})
        )
        env[var] = str(tmp_path / folder)
    return env


def run_runner(tmp_path: Path, *bodies: str) -> tuple[subprocess.CompletedProcess, Path]:
    """``python -m difflens.runner`` on one tiny notebook, with the bogus kernel specs first."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "00_tiny.ipynb", *bodies)
    out = tmp_path / "executable.txt"
    config = tmp_path / "cfg.yaml"
    config.write_text(f"common:\n  out: {out}\n")
    args = [
        "--config",
        str(config),
        "--notebooks",
        str(notebooks),
        "--runs",
        str(tmp_path / "runs"),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "difflens.runner", *args, "--figures", str(tmp_path / "figures")],
        env={**os.environ, **bogus_jupyter_env(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done, out


def test_the_bogus_spec_is_what_a_plain_python3_kernel_would_start(tmp_path, monkeypatch):
    for var, value in bogus_jupyter_env(tmp_path).items():
        monkeypatch.setenv(var, value)
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == BOGUS_PYTHON


@pytest.fixture(scope="module")
def healthy_run(tmp_path_factory):
    body = (
        "import os, sys\n"
        f"os.write(2, {KERNEL_LINE!r}.encode() + b'\\n')\n"
        "open(out, 'w').write(sys.executable)"
    )
    return run_runner(tmp_path_factory.mktemp("healthy"), body)


def test_the_notebook_runs_in_the_runners_own_python(healthy_run):
    done, out = healthy_run
    assert done.returncode == 0, done.stderr
    assert Path(out.read_text()).resolve() == Path(sys.executable).resolve()


def test_the_console_has_no_unencrypted_tcp_warning_but_the_kernels_own_output(healthy_run):
    done, _ = healthy_run
    console = done.stdout + done.stderr
    assert "without encryption" not in console
    assert "[IPKernelApp] WARNING" not in console
    assert KERNEL_LINE in done.stderr
    assert "00_tiny.ipynb done in" in done.stdout


def test_a_dying_kernel_is_reported_in_one_line(tmp_path):
    done, _ = run_runner(tmp_path, "x = 1", "import os\nos._exit(1)", "y = 2")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    # cells: parameters (1), papermill's injected parameters (2), x = 1 (3), os._exit (4)
    lines = [line for line in done.stderr.splitlines() if line.startswith("difflens:")]
    executed = next((tmp_path / "runs").iterdir()) / "00_tiny.ipynb"
    assert lines == [
        "difflens: 00_tiny.ipynb failed in cell 4 (the kernel died: Kernel died); "
        f"the executed copy is {executed.relative_to(tmp_path)}"
    ]
    assert executed.exists()


@pytest.mark.parametrize(
    ("curve", "ipc", "expected"),
    [
        (True, True, {"transport_encryption": "auto"}),
        (False, True, {"transport": "ipc"}),
        (False, False, {}),
    ],
)
def test_the_channel_is_encrypted_else_local(monkeypatch, curve, ipc, expected):
    import zmq

    from difflens.runner import kernel

    monkeypatch.setattr(zmq, "has", lambda name: {"curve": curve, "ipc": ipc}[name])
    assert kernel.channel_settings() == expected


@pytest.mark.skipif(
    not __import__("zmq").has("ipc"), reason="this platform's libzmq has no IPC transport"
)
def test_the_ipc_channel_runs_a_notebook_without_the_warning(tmp_path, monkeypatch, capfd):
    import papermill as pm

    from difflens.runner import kernel
    from difflens.runner.notebooks import Plan, execute

    monkeypatch.setattr(kernel, "channel_settings", lambda: {"transport": "ipc"})
    (tmp_path / "nbs").mkdir()
    notebook = write_notebook(tmp_path / "nbs" / "00_ipc.ipynb", "open(out, 'w').write('ran')")
    out = tmp_path / "ran.txt"
    plan = Plan(notebook, {"out": str(out)}, pm.inspect_notebook(str(notebook)), {})
    execute(plan, tmp_path / "executed.ipynb")
    assert out.read_text() == "ran"
    captured = capfd.readouterr()
    assert "without encryption" not in captured.out + captured.err
    executed = json.loads((tmp_path / "executed.ipynb").read_text())
    assert executed["metadata"]["kernelspec"]["name"] == "python3"
    assert sorted(p.name for p in (tmp_path / "nbs").iterdir()) == ["00_ipc.ipynb"]  # no sockets


def test_a_failing_cell_is_reported_in_one_line(tmp_path, monkeypatch):
    import papermill as pm

    from difflens.runner.notebooks import Plan, execute

    monkeypatch.chdir(tmp_path)
    notebook = write_notebook(tmp_path / "00_fail.ipynb", "x = 1", "raise ValueError('boom')")
    plan = Plan(notebook, {"out": ""}, pm.inspect_notebook(str(notebook)), {})
    with pytest.raises(SystemExit) as exit_info:
        execute(plan, tmp_path / "executed.ipynb")
    # cells: parameters (1), injected parameters (2), x = 1 (3), raise (4)
    assert exit_info.value.code == (
        "difflens: 00_fail.ipynb failed in cell 4 (ValueError: boom); "
        "the executed copy is executed.ipynb"
    )
