"""``python -m difflens.data download spair|pf-pascal|pf-willow|cub`` against a local
archive server holding small fake archives built from the fixture trees."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from fixtures.archive_server import ArchiveServer
from fixtures.keypoint_trees import (
    make_cub_tree,
    make_pf_pascal_tree,
    make_pf_willow_tree,
    make_spair_tree,
)

from difflens.data import load_pairs
from difflens.data.__main__ import main
from difflens.data.download import DATASET_ARCHIVES, DEFAULT_PARTS


@pytest.fixture
def serve():
    servers = []

    def start(files) -> ArchiveServer:
        server = ArchiveServer(files)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def tgz_of(folder: Path, arcname: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        tf.add(folder, arcname=arcname)
    return buffer.getvalue()


def zip_of(folder: Path, arcname: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, f"{arcname}/{path.relative_to(folder)}")
        zf.writestr("__MACOSX/._x", b"")  # the official PF zips carry one
    return buffer.getvalue()


def recorded(root: Path) -> dict:
    return json.loads((root / "downloads" / "checksums.json").read_text())


def test_official_table_names_the_published_urls():
    urls = {a.url for parts in DATASET_ARCHIVES.values() for a in parts.values()}
    assert "http://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz" in urls
    proposal_flow = "https://www.di.ens.fr/willow/research/proposalflow/dataset/"
    assert proposal_flow + "PF-dataset-PASCAL.zip" in urls
    assert proposal_flow + "PF-dataset.zip" in urls
    lists = "https://www.di.ens.fr/willow/research/cnngeometric/other_resources/"
    for name in ("test_pairs_pf_pascal.csv", "val_pairs_pf_pascal.csv", "test_pairs_pf.csv"):
        assert lists + name in urls
    assert "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz" in urls
    assert DATASET_ARCHIVES["cub"]["images"].checksums == {
        "md5": "97eceeb196236b17998738112f37df78"
    }
    for name in ("spair", "pf-pascal", "pf-willow", "cub"):
        assert set(DEFAULT_PARTS[name]) <= set(DATASET_ARCHIVES[name])


def test_spair_download_records_its_checksum_and_loads(serve, tmp_path, capsys):
    source = tmp_path / "source"
    base, _ = make_spair_tree(source)
    data = tgz_of(base, "SPair-71k")
    server = serve({"SPair-71k.tar.gz": data})
    root = tmp_path / "data"
    assert main(["download", "spair", "--root", str(root), "--mirror", server.url]) == 0
    assert f"ready in {root / 'SPair-71k'}" in capsys.readouterr().out
    assert recorded(root)["SPair-71k.tar.gz"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(list(load_pairs("spair", root))) == 6
    # a second run verifies against the record, fetches nothing
    assert main(["download", "spair", "--root", str(root), "--mirror", server.url]) == 0
    assert len(server.requests) == 1


def test_pf_pascal_download_fetches_the_zip_and_both_lists(serve, tmp_path):
    source = tmp_path / "source"
    base = make_pf_pascal_tree(source, with_csvs=False)
    lists = make_pf_pascal_tree(tmp_path / "lists")
    files = {
        "PF-dataset-PASCAL.zip": zip_of(base, "PF-dataset-PASCAL"),
        "test_pairs_pf_pascal.csv": (lists / "test_pairs_pf_pascal.csv").read_bytes(),
        "val_pairs_pf_pascal.csv": (lists / "val_pairs_pf_pascal.csv").read_bytes(),
    }
    server = serve(files)
    root = tmp_path / "data"
    assert main(["download", "pf-pascal", "--root", str(root), "--mirror", server.url]) == 0
    folder = root / "PF-dataset-PASCAL"
    assert (folder / "test_pairs_pf_pascal.csv").read_bytes() == files["test_pairs_pf_pascal.csv"]
    assert set(recorded(root)) == set(files)
    assert len(list(load_pairs("pf-pascal", root))) == 4
    assert len(list(load_pairs("pf-pascal", root, split="val"))) == 1


def test_pf_willow_download_places_the_list_next_to_the_images(serve, tmp_path):
    source = make_pf_willow_tree(tmp_path / "source", csv_name="test_pairs_pf.csv")
    files = {
        "PF-dataset.zip": zip_of(source / "PF-dataset", "PF-dataset"),
        "test_pairs_pf.csv": (source / "test_pairs_pf.csv").read_bytes(),
    }
    server = serve(files)
    root = tmp_path / "data"
    assert main(["download", "pf-willow", "--root", str(root), "--mirror", server.url]) == 0
    assert (root / "test_pairs_pf.csv").is_file() and (root / "PF-dataset" / "duck(S)").is_dir()
    assert len(list(load_pairs("pf-willow", root))) == 3


def test_cub_download_is_checked_against_the_published_md5(serve, tmp_path, capsys):
    source = make_cub_tree(tmp_path / "source")
    data = tgz_of(source, "CUB_200_2011")
    server = serve({"CUB_200_2011.tgz": data})
    root = tmp_path / "data"
    args = ["download", "cub", "--root", str(root), "--mirror", server.url]
    assert main(args) == 2  # a fake archive is not the published one
    err = capsys.readouterr().err
    assert "97eceeb196236b17998738112f37df78" in err and hashlib.md5(data).hexdigest() in err
    table = tmp_path / "sums.json"
    table.write_text(json.dumps({"CUB_200_2011.tgz": {"md5": hashlib.md5(data).hexdigest()}}))
    assert main([*args, "--checksums", str(table)]) == 0
    assert len(list(load_pairs("cub", root))) == 3
