"""Run configs: environment placeholders, YAML values, merged and absolute parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from difflens.runner.config import (
    config_path,
    load_config,
    notebook_parameters,
    placeholder_names,
    read_config,
)

VARS = ("DIFFLENS_N", "DIFFLENS_DATASETS", "DIFFLENS_X", "DIFFLENS_Y")


@pytest.fixture
def write_config(tmp_path, monkeypatch):
    for var in VARS:
        monkeypatch.delenv(var, raising=False)

    def write(text: str) -> Path:
        path = tmp_path / "cfg.yaml"
        path.write_text(text)
        return path

    return write


def test_the_handed_case_gives_an_int_and_a_list(write_config):
    path = write_config(
        "common:\n  n_images: ${DIFFLENS_N:-4}\n  datasets: ${DIFFLENS_DATASETS:-[toyworld]}\n"
    )
    params = notebook_parameters(load_config(str(path)), "00_datasets")
    assert params == {"n_images": 4, "datasets": ["toyworld"]}
    assert type(params["n_images"]) is int


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("12", 12),
        ("0.25", 0.25),
        ("[coco, voc]", ["coco", "voc"]),
        ("true", True),
        ("false", False),
        ("null", None),
        ("{a: 1}", {"a": 1}),
        ("data/coco", "data/coco"),
        (
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
        ),
    ],
)
def test_a_single_placeholder_is_read_as_yaml(write_config, monkeypatch, env, expected):
    monkeypatch.setenv("DIFFLENS_X", env)
    config = load_config(str(write_config("common:\n  value: ${DIFFLENS_X:-0}\n")))
    assert config["common"]["value"] == expected
    assert type(config["common"]["value"]) is type(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"run-${DIFFLENS_N:-4}"', "run-4"),
        ('"${DIFFLENS_N:-4}0"', "40"),
        ('"${DIFFLENS_X:-/data}/voc"', "/data/voc"),
        ('"${DIFFLENS_N:-4}${DIFFLENS_N:-4}"', "44"),
    ],
)
def test_text_around_a_placeholder_stays_a_string(write_config, value, expected):
    config = load_config(str(write_config(f"common:\n  value: {value}\n")))
    assert config["common"]["value"] == expected


def test_an_empty_variable_takes_the_default_as_in_a_shell(write_config, monkeypatch):
    monkeypatch.setenv("DIFFLENS_N", "")
    config = load_config(str(write_config("common:\n  a: ${DIFFLENS_N:-4}\n  b: ${DIFFLENS_N}\n")))
    assert config["common"] == {"a": 4, "b": ""}


@pytest.mark.parametrize("text", ["[unclosed", "2024-01-01", "a: b: c"])
def test_text_that_is_no_plain_yaml_value_stays_text(write_config, monkeypatch, text):
    monkeypatch.setenv("DIFFLENS_X", text)
    config = load_config(str(write_config("common:\n  value: ${DIFFLENS_X}\n")))
    assert config["common"]["value"] == text


def test_placeholders_inside_lists_and_notebook_sections_are_filled(write_config, monkeypatch):
    monkeypatch.setenv("DIFFLENS_Y", "7")
    path = write_config(
        "common:\n  offsets: [1, '${DIFFLENS_Y}']\n"
        "notebooks:\n  03_x:\n    n_images: ${DIFFLENS_Y}\n"
    )
    config = load_config(str(path))
    assert config["common"]["offsets"] == [1, 7]
    assert notebook_parameters(config, "03_x") == {"offsets": [1, 7], "n_images": 7}
    assert notebook_parameters(config, "04_y") == {"offsets": [1, 7]}


def test_placeholder_names_follow_the_notebook_overrides(write_config):
    raw = read_config(
        write_config(
            "common:\n  voc_root: ${DIFFLENS_VOC:-data/voc}\n  n_images: 5\n"
            "notebooks:\n  07_c:\n    voc_root: ${OTHER_VOC}/x\n"
        )
    )
    assert placeholder_names(raw, "00_a") == {"voc_root": "DIFFLENS_VOC"}
    assert placeholder_names(raw, "07_c") == {"voc_root": "OTHER_VOC"}


def test_relative_paths_and_a_relative_model_folder_become_absolute(tmp_path):
    (tmp_path / "models" / "sd").mkdir(parents=True)
    config = {
        "common": {
            "voc_root": "data/voc",
            "cache": "",
            "model": "models/sd",
            "data_list": "/abs/list.csv",
        }
    }
    params = notebook_parameters(config, "01_x", tmp_path)
    assert params["voc_root"] == str(tmp_path.resolve() / "data" / "voc")
    assert params["model"] == str(tmp_path.resolve() / "models" / "sd")
    assert params["cache"] == ""
    assert params["data_list"] == "/abs/list.csv"
    hub = notebook_parameters({"common": {"model": "org/model"}}, "01_x", tmp_path)
    assert hub["model"] == "org/model"  # no such folder: a hub id, left alone


def test_a_missing_config_names_the_file_and_the_configs_there(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("common: {}\n")
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml not found.*demo"):
        config_path("nope", tmp_path)


@pytest.mark.parametrize(
    ("text", "match"),
    [("common: [1, 2]\n", "common must be a mapping"), ("common: {a: [\n", "not valid YAML")],
)
def test_a_malformed_config_is_named(write_config, text, match):
    path = write_config(text)
    with pytest.raises(ValueError, match=match) as error:
        read_config(path)
    assert str(path) in str(error.value)


def test_a_misspelt_or_stale_config_key_is_named_with_a_hint():
    from difflens.runner.config import unknown_keys

    declared = {"01_a": {"model", "n_images", "seed"}, "02_b": {"model", "metric"}}
    config = {
        "common": {"model": "toy", "n_imges": 4},
        "notebooks": {"02_b": {"metric": "cosine", "dtype": "fp32"}, "03_c": {"seed": 1}},
    }
    lines = unknown_keys(config, declared)
    assert lines == [
        "common: 'n_imges' is declared by no notebook (did you mean n_images?)",
        "notebooks.02_b: 'dtype' is not a parameter of 02_b",
        "notebooks: no notebook '03_c'",
    ]
    assert (
        unknown_keys({"common": {"model": "toy"}, "notebooks": {"01_a": {"seed": 2}}}, declared)
        == []
    )


@pytest.mark.parametrize("name", ["demo", "ci", "paper"])
def test_the_shipped_configs_name_only_declared_parameters(name):
    import papermill as pm

    from difflens.runner.config import load_config, unknown_keys

    root = Path(__file__).resolve().parents[1]
    declared = {
        nb.stem: set(pm.inspect_notebook(str(nb)))
        for nb in (root / "notebooks").glob("[0-9][0-9]_*.ipynb")
    }
    assert unknown_keys(load_config(name, root), declared) == []


def test_only_without_a_notebook_is_an_error(capsys):
    from difflens.runner.notebooks import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--only"])
    assert exit_info.value.code == 2 and "--only" in capsys.readouterr().err
