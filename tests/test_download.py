"""Downloads against a local HTTP server on 127.0.0.1: resume, checksums, skip, unpack, offline."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from fixtures.archive_server import ArchiveServer
from fixtures.dataset_trees import make_davis_tree, make_voc_tree

from difflens.data.__main__ import main
from difflens.data.davis import DAVISDataset
from difflens.data.download import (
    AUTHORS_LIST_NAME,
    AUTHORS_LIST_SHA256,
    DATASET_ARCHIVES,
    Archive,
    ChecksumError,
    DownloadError,
    OfflineError,
    download_dataset,
    fetch,
    unpack,
)
from difflens.data.voc import VOCDataset

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every byte value


@pytest.fixture
def serve():
    servers = []

    def start(files, **options) -> ArchiveServer:
        server = ArchiveServer(files, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def tar_of(folder: Path, arcname: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        tf.add(folder, arcname=arcname)
    return buffer.getvalue()


def zip_of(folder: Path, arcname: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, f"{arcname}/{path.relative_to(folder)}")
    return buffer.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_fetch_verifies_md5_and_sha256(serve, tmp_path):
    server = serve({"a.bin": PAYLOAD})
    checks = {"md5": md5(PAYLOAD), "sha256": hashlib.sha256(PAYLOAD).hexdigest()}
    out = fetch(f"{server.url}/a.bin", tmp_path / "a.bin", len(PAYLOAD), checks, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()


def test_interrupted_download_resumes_with_range(serve, tmp_path):
    half = len(PAYLOAD) // 2 + 123
    server = serve({"a.bin": PAYLOAD}, cut_first=half)
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="run the command again to resume"):
        fetch(f"{server.url}/a.bin", dest, checksums={"md5": md5(PAYLOAD)}, progress=False)
    part = tmp_path / "a.bin.part"
    assert part.stat().st_size == half and not dest.exists()
    fetch(f"{server.url}/a.bin", dest, checksums={"md5": md5(PAYLOAD)}, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("a.bin", f"bytes={half}-", 206)


def test_server_ignoring_range_restarts_the_file(serve, tmp_path):
    server = serve({"a.bin": PAYLOAD}, honour_range=False)
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:1000])
    fetch(
        f"{server.url}/a.bin", tmp_path / "a.bin", checksums={"md5": md5(PAYLOAD)}, progress=False
    )
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD  # not appended to the old part
    assert server.requests == [("a.bin", "bytes=1000-", 200)]


def test_complete_partial_file_is_finished_without_data(serve, tmp_path):
    server = serve({"a.bin": PAYLOAD})
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    fetch(
        f"{server.url}/a.bin", tmp_path / "a.bin", checksums={"md5": md5(PAYLOAD)}, progress=False
    )
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert server.requests == [("a.bin", f"bytes={len(PAYLOAD)}-", 416)]


def test_checksum_mismatch_deletes_the_download(serve, tmp_path):
    server = serve({"a.bin": PAYLOAD})
    wrong = "0" * 32
    with pytest.raises(ChecksumError, match=f"md5 is {md5(PAYLOAD)}, expected {wrong}"):
        fetch(f"{server.url}/a.bin", tmp_path / "a.bin", checksums={"md5": wrong}, progress=False)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()


def test_wrong_size_is_a_checksum_error(serve, tmp_path):
    server = serve({"a.bin": PAYLOAD})
    with pytest.raises(ChecksumError, match=r"a.bin is 1048576 bytes, expected 5\."):
        fetch(f"{server.url}/a.bin", tmp_path / "a.bin", size=5, progress=False)


def test_missing_file_on_server_names_the_http_status(serve, tmp_path):
    server = serve({})
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{server.url}/nothing.zip", tmp_path / "nothing.zip", progress=False)


def test_offline_fails_fast_with_a_clear_message(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    start = time.perf_counter()
    with pytest.raises(OfflineError) as info:
        fetch(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", timeout=5, progress=False)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "offline" in message and str(tmp_path / "x.zip") in message


def test_voc_and_davis_archives_download_unpack_and_load(serve, tmp_path):
    source = tmp_path / "source"
    make_voc_tree(source)
    make_davis_tree(source)
    voc_tar = tar_of(source / "VOCdevkit", "VOCdevkit")
    davis_zip = zip_of(source / "DAVIS", "DAVIS")
    server = serve({"voc.tar": voc_tar, "davis.zip": davis_zip})
    voc = {
        "trainval": Archive(
            "voc.tar",
            f"{server.url}/voc.tar",
            ".",
            "VOCdevkit/VOC2012/SegmentationObject",
            size=len(voc_tar),
            checksums={"md5": md5(voc_tar)},
        )
    }
    root = tmp_path / "data"
    folder = download_dataset("voc", root, archives=voc, progress=False)
    assert folder == root / "VOCdevkit" / "VOC2012"
    assert [s.image_id for s in VOCDataset(root)] == ["2007_000001", "2007_000003", "2007_000002"]
    assert (root / "downloads" / "voc.tar.extracted").is_file()
    n_requests = len(server.requests)
    # present and verified: not fetched again, not unpacked again
    (folder / "JPEGImages" / "2007_000001.jpg").unlink()
    download_dataset("voc", root, archives=voc, progress=False)
    assert len(server.requests) == n_requests
    assert not (folder / "JPEGImages" / "2007_000001.jpg").exists()
    # archive deleted after unpacking: the stamp and the marker say it is done
    (root / "downloads" / "voc.tar").unlink()
    download_dataset("voc", root, archives=voc, progress=False)
    assert len(server.requests) == n_requests

    davis = {"trainval": Archive("davis.zip", f"{server.url}/davis.zip", ".", "DAVIS/Annotations")}
    download_dataset("davis", root, archives=davis, progress=False)
    record = json.loads((root / "downloads" / "checksums.json").read_text())
    assert record["davis.zip"]["sha256"] == hashlib.sha256(davis_zip).hexdigest()
    assert record["davis.zip"]["size"] == len(davis_zip)
    assert len(DAVISDataset(root)) == 5
    # a later run verifies the kept archive against the recorded checksum
    (root / "downloads" / "davis.zip").write_bytes(davis_zip[:-10] + b"0123456789")
    with pytest.raises(ChecksumError, match="sha256"):
        download_dataset("davis", root, archives=davis, progress=False)


def test_marker_missing_after_unpacking_is_reported(serve, tmp_path):
    source = tmp_path / "source"
    make_davis_tree(source)
    data = zip_of(source / "DAVIS", "Other")
    server = serve({"d.zip": data})
    archives = {"trainval": Archive("d.zip", f"{server.url}/d.zip", ".", "DAVIS/Annotations")}
    with pytest.raises(DownloadError, match=r"DAVIS/Annotations is missing .*\['Other'\]"):
        download_dataset("davis", tmp_path / "data", archives=archives, progress=False)


def test_zip_entries_leaving_the_folder_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DownloadError, match="outside"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_cli_rejects_a_wrong_archive_against_the_official_md5(serve, tmp_path, capsys):
    source = tmp_path / "source"
    make_voc_tree(source)
    fake = tar_of(source / "VOCdevkit", "VOCdevkit")
    server = serve({"VOCtrainval_11-May-2012.tar": fake})
    root = tmp_path / "data"
    code = main(["download", "voc", "--root", str(root), "--mirror", server.url])
    assert code == 2
    err = capsys.readouterr().err
    assert "6cd6e144f989b92b3379bac3b3de84fd" in err and md5(fake) in err
    assert not (root / "downloads" / "VOCtrainval_11-May-2012.tar").exists()


def test_cli_with_a_checksum_table_fetches_and_unpacks(serve, tmp_path, capsys):
    source = tmp_path / "source"
    make_voc_tree(source)
    fake = tar_of(source / "VOCdevkit", "VOCdevkit")
    server = serve({"VOCtrainval_11-May-2012.tar": fake})
    table = tmp_path / "sums.json"
    table.write_text(json.dumps({"VOCtrainval_11-May-2012.tar": {"md5": md5(fake)}}))
    root = tmp_path / "data"
    args = ["download", "voc", "--root", str(root), "--mirror", server.url]
    assert main([*args, "--checksums", str(table)]) == 0
    assert "ready in" in capsys.readouterr().out
    assert len(VOCDataset(root)) == 3


def test_official_table_names_the_brief_urls():
    urls = {a.url for parts in DATASET_ARCHIVES.values() for a in parts.values()}
    assert "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar" in urls
    assert "http://images.cocodataset.org/zips/val2017.zip" in urls
    assert "http://images.cocodataset.org/zips/train2017.zip" in urls
    assert "http://images.cocodataset.org/annotations/annotations_trainval2017.zip" in urls
    assert "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip" in urls


# --------------------------------------------------------------------------- the authors' list

SHIPPED_LIST = Path(__file__).resolve().parents[1] / "data_lists" / AUTHORS_LIST_NAME
LIST_SHA256 = "5105d312f202caf8b7cb02198fff56db8cf88d908842a5bcbaadc2edba4071be"


def test_shipped_authors_list_is_the_published_file():
    data = SHIPPED_LIST.read_bytes()
    assert hashlib.sha256(data).hexdigest() == LIST_SHA256 == AUTHORS_LIST_SHA256
    rows = data.decode().splitlines()
    assert rows[0] == "src,dataset" and len(rows) == 1 + 2008
    tags = [row.rsplit(",", 1)[1] for row in rows[1:]]
    assert (tags.count("pascal"), tags.count("coco"), tags.count("davis")) == (1000, 1000, 8)


def test_cli_fetches_the_authors_list_and_checks_its_sha256(serve, tmp_path, capsys):
    data = SHIPPED_LIST.read_bytes()
    server = serve({"images_and_video_list.csv": data})
    out = tmp_path / "lists" / "authors.csv"
    url = f"{server.url}/images_and_video_list.csv"
    assert main(["download", "authors-list", "--out", str(out), "--url", url]) == 0
    assert out.read_bytes() == data and "verified" in capsys.readouterr().out
    # present: verified, not fetched again
    assert main(["download", "authors-list", "--out", str(out), "--url", url]) == 0
    assert len(server.requests) == 1


def test_cli_rejects_an_authors_list_with_another_checksum(serve, tmp_path, capsys):
    altered = SHIPPED_LIST.read_bytes().replace(b"walking,davis", b"bear,davis")
    server = serve({"images_and_video_list.csv": altered})
    out = tmp_path / "authors.csv"
    url = f"{server.url}/images_and_video_list.csv"
    assert main(["download", "authors-list", "--out", str(out), "--url", url]) == 2
    err = capsys.readouterr().err
    assert hashlib.sha256(altered).hexdigest() in err and LIST_SHA256 in err
    assert not out.exists() and not out.with_name("authors.csv.part").exists()
    # a wrong file already in place is reported, never used
    out.write_bytes(altered)
    assert main(["download", "authors-list", "--out", str(out), "--url", url]) == 2
    assert "is not the authors' list" in capsys.readouterr().err


def test_authors_list_options_are_refused_for_datasets(tmp_path, capsys):
    assert main(["download", "voc", "--root", str(tmp_path), "--out", "x.csv"]) == 2
    assert "--out and --url are for authors-list" in capsys.readouterr().err
