"""``make reproduce`` without weights or data stops before any notebook, with one message."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import constants

from difflens.runner.notebooks import main, plan_run
from difflens.runner.preflight import SD_PARTS, model_problem

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture
def empty_setup(tmp_path, monkeypatch):
    """The paper config's variables pointing at empty folders, an empty Hugging Face cache."""
    for var, name in [
        ("DIFFLENS_MODEL", "model"),
        ("DIFFLENS_VOC", "voc"),
        ("DIFFLENS_COCO", "coco"),
        ("DIFFLENS_DAVIS", "davis"),
    ]:
        (tmp_path / name).mkdir()
        monkeypatch.setenv(var, str(tmp_path / name))
    monkeypatch.setenv("DIFFLENS_LIST", str(tmp_path / "list.csv"))
    monkeypatch.setenv("DIFFLENS_DEVICE", "cpu")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.chdir(ROOT)
    return tmp_path


def test_paper_without_weights_or_data_names_everything_and_starts_nothing(empty_setup):
    runs = empty_setup / "runs"
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", "paper", "--runs", str(runs), "--figures", str(empty_setup / "figs")])
    message = str(exit_info.value.code)
    lines = message.splitlines()
    assert lines[0] == "difflens: config 'paper' cannot run; nothing was started. Missing:"
    whats = [line.split()[1] for line in lines[1:] if line.startswith("  - ")]
    assert whats == [
        "model",  # SD 1.5: the paper's notebooks and Hyperfeatures
        "model",  # SD 2.1: DIFT (08, 09)
        "model",  # SD 1.4: Hedlin et al. (11)
        "voc_root",
        "coco_root",
        "davis_root",
        "pairs_root",  # SPair-71k (08, 10, 11, 12)
        "data_list",
    ]
    for var in (
        "DIFFLENS_MODEL",
        "DIFFLENS_SD21_MODEL",
        "DIFFLENS_SD14_MODEL",
        "DIFFLENS_SPAIR",
        "DIFFLENS_VOC",
        "DIFFLENS_COCO",
        "DIFFLENS_DAVIS",
        "DIFFLENS_LIST",
    ):
        assert var in message
    assert "the folder lacks unet/ vae/ text_encoder/ tokenizer/ scheduler/" in message
    assert "download stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    for name in ("voc", "coco", "davis"):
        assert f"python -m difflens.data download {name} --root DIR" in message
    assert "make data" in message
    assert "python -m difflens.data download authors-list" in message
    assert "python -m difflens.data download spair --root DIR" in message
    assert "notebooks 00 06" in message  # DAVIS: the datasets overview and the video study
    assert not runs.exists()


def test_a_hub_id_missing_from_the_local_cache_is_named_with_its_download(empty_setup, monkeypatch):
    monkeypatch.setenv("DIFFLENS_MODEL", "difflens-tests/no-such-model")
    with pytest.raises(SystemExit) as exit_info:
        plan_run("paper", NOTEBOOKS[1:2], empty_setup / "figs")
    message = str(exit_info.value.code)
    assert "model difflens-tests/no-such-model (DIFFLENS_MODEL, notebooks 01)" in message
    assert f"not in the local Hugging Face cache ({empty_setup / 'hf'})" in message
    assert "download difflens-tests/no-such-model" in message


def _hub_snapshot(cache: Path, repo: str, parts: tuple[str, ...]) -> None:
    """The cache layout huggingface_hub writes: refs/main -> snapshots/<commit>/..."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    snapshot = folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    for part in parts:
        (snapshot / part).mkdir()
        (snapshot / part / "config.json").write_text("{}")


def test_a_hub_id_in_the_local_cache_passes_and_an_incomplete_one_does_not(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    _hub_snapshot(tmp_path, "org/complete", SD_PARTS)
    _hub_snapshot(tmp_path, "org/partial", ("unet", "scheduler"))
    assert model_problem("org/complete", "DIFFLENS_MODEL") is None
    reason, remedy = model_problem("org/partial", "DIFFLENS_MODEL")
    assert reason.startswith("incomplete in the local Hugging Face cache")
    assert "set DIFFLENS_MODEL=DIR, a local folder holding unet/" in remedy


def test_a_local_folder_needs_every_part(tmp_path):
    for part in SD_PARTS:
        (tmp_path / part).mkdir()
    assert model_problem(str(tmp_path), "DIFFLENS_MODEL") is None
    (tmp_path / "vae").rmdir()
    reason, remedy = model_problem(str(tmp_path), "DIFFLENS_MODEL")
    assert reason == "the folder lacks vae/"
    assert f"--local-dir {tmp_path}" in remedy


@pytest.mark.parametrize("model", ["toy", "tiny"])
def test_built_in_models_need_nothing(model):
    assert model_problem(model, "model") is None


def test_a_path_that_is_no_folder_and_no_hub_id(tmp_path):
    reason, remedy = model_problem(str(tmp_path / "nowhere"), "DIFFLENS_MODEL")
    assert reason == "no such folder, and not a hub id"
    assert remedy.startswith("set DIFFLENS_MODEL=DIR, a local folder holding unet/")


@pytest.mark.parametrize("config", ["demo", "ci"])
def test_the_offline_configs_pass(config, monkeypatch):
    monkeypatch.chdir(ROOT)
    plans = plan_run(config, NOTEBOOKS, ROOT / "figures")
    assert [p.notebook for p in plans] == NOTEBOOKS


def test_paper_only_the_controls_notebook_needs_nothing(empty_setup):
    plans = plan_run("paper", [p for p in NOTEBOOKS if p.name.startswith("07")], Path("figs"))
    assert plans[0].params["model"] == "toy"


def test_an_unknown_dataset_and_a_missing_cuda_are_named(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = tmp_path / "cfg.yaml"
    config.write_text("common:\n  datasets: [toyworld, vco]\n  device: cuda\n  model: toy\n")
    with pytest.raises(SystemExit) as exit_info:
        plan_run(str(config), NOTEBOOKS[1:2], tmp_path / "figs")
    message = str(exit_info.value.code)
    assert "  - datasets vco (notebooks 01): unknown dataset" in message
    assert "  - device cuda (notebooks 01): torch sees no CUDA device" in message
    assert "fix: set device: cpu in the config (slow)" in message


def test_make_reproduce_exits_non_zero_within_seconds(tmp_path):
    env = {
        **os.environ,
        "DIFFLENS_VOC": str(tmp_path),
        "DIFFLENS_COCO": str(tmp_path),
        "DIFFLENS_DAVIS": str(tmp_path),
        "DIFFLENS_LIST": str(tmp_path / "list.csv"),
        "DIFFLENS_MODEL": str(tmp_path),
        "DIFFLENS_DEVICE": "cpu",
    }
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "difflens.runner",
            "--config",
            "paper",
            "--runs",
            str(tmp_path / "r"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "cannot run; nothing was started" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.perf_counter() - start < 120  # imports on a loaded machine; no notebook ran
    assert not (tmp_path / "r").exists()
