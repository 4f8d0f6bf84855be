"""Fetch the official dataset archives and the authors' image list: verified, resumable.

Written with the standard library only (``urllib``, ``hashlib``, ``tarfile``, ``zipfile``).
Layout under ``root``: archives in ``root/downloads/``; VOC extracts to
``root/VOCdevkit/VOC2012``, COCO to ``root/coco/{val2017,train2017,annotations}``, DAVIS to
``root/DAVIS``, SPair-71k to ``root/SPair-71k``, PF-PASCAL to ``root/PF-dataset-PASCAL``
(its pair lists copied into it), PF-WILLOW to ``root/PF-dataset`` (its pair list
``test_pairs_pf.csv`` copied into ``root``), CUB-200-2011 to ``root/CUB_200_2011``. A part
that is a plain file (a pair list) is copied to its folder instead of unpacked.

Checksums: an archive is verified against every checksum known for it (the built-in table,
overridden by a user table). Where none is known, its SHA-256 is computed on the first
download and recorded in ``root/downloads/checksums.json``; later runs verify against that
record. Without any checksum the size is checked when known. Archives are skipped when
present and unpacked once. No checksum is published for SPair-71k, the Proposal Flow
archives (PF-PASCAL, PF-WILLOW) or their pair lists: theirs are recorded on the first
download. CUB-200-2011 is checked against the MD5 that CUB loaders have long used for
the archive (``TDeVries/cub2011_dataset``, Avalanche's ``CUB200``).

The authors' image list (``images_and_video_list.csv`` of their Diff-Props repository) is
fetched by :func:`download_authors_list` and must match :data:`AUTHORS_LIST_SHA256`, the
checksum of the copy shipped in ``data_lists/``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import socket
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from tqdm.auto import tqdm

logger = logging.getLogger("difflens")

HASHES: tuple[str, ...] = ("md5", "sha1", "sha256")
"""The checksum kinds understood (``hashlib`` names)."""
CHECKSUM_RECORD = "checksums.json"
"""The file in ``root/downloads/`` recording the SHA-256 of archives without a published one."""

AUTHORS_LIST_NAME = "diffprops_images_and_video_list.csv"
"""The file name of the authors' list under ``data_lists/``."""
AUTHORS_LIST_URL = (
    "https://raw.githubusercontent.com/SimoneBonechi/Diff-Props/main/images_and_video_list.csv"
)
"""Where the authors' list is published: ``images_and_video_list.csv`` of the Diff-Props
repository on the GitHub account of the paper's first author (Simone Bonechi), at GitHub's
raw-file address for its ``main`` branch. If the file moves, ``--url`` (``url=``) replaces
the address; whatever the address, the file must match :data:`AUTHORS_LIST_SHA256`."""
AUTHORS_LIST_SHA256 = "5105d312f202caf8b7cb02198fff56db8cf88d908842a5bcbaadc2edba4071be"
"""SHA-256 of the authors' list (1,000 ``pascal``, 1,000 ``coco``, 8 ``davis`` rows)."""


class DownloadError(RuntimeError):
    """A download that cannot go on; the message says what to do."""


class OfflineError(DownloadError):
    """The host cannot be reached."""


class ChecksumError(DownloadError):
    """A file whose size or checksum is not the expected one."""


@dataclass(frozen=True)
class Archive:
    """One official archive.

    Attributes:
        filename: the archive's file name.
        url: where it is published.
        extract_to: folder (relative to the download root) it is unpacked into.
        marker: a path (relative to the download root) that exists once it is unpacked.
        size: bytes, where known.
        checksums: ``{"md5"|"sha1"|"sha256": hex}`` known for it.
        checksum_source: where the checksums come from.
        is_archive: ``False`` for a plain file (a pair list), copied into ``extract_to``
            under its file name instead of unpacked.
    """

    filename: str
    url: str
    extract_to: str
    marker: str
    size: int | None = None
    checksums: Mapping[str, str] = field(default_factory=dict)
    checksum_source: str = ""
    is_archive: bool = True


DATASET_ARCHIVES: dict[str, dict[str, Archive]] = {
    "voc": {
        "trainval": Archive(
            "VOCtrainval_11-May-2012.tar",
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            extract_to=".",
            marker="VOCdevkit/VOC2012/SegmentationObject",
            checksums={"md5": "6cd6e144f989b92b3379bac3b3de84fd"},
            checksum_source="MD5 published with the VOC 2012 trainval archive",
        ),
    },
    "coco": {
        "val2017": Archive(
            "val2017.zip",
            "http://images.cocodataset.org/zips/val2017.zip",
            extract_to="coco",
            marker="coco/val2017",
            checksums={"sha1": "4950dc9d00dbe1c933ee0170f5797584351d2a41"},
            checksum_source="SHA-1 as listed by GluonCV's COCO download script",
        ),
        "train2017": Archive(
            "train2017.zip",
            "http://images.cocodataset.org/zips/train2017.zip",
            extract_to="coco",
            marker="coco/train2017",
            checksums={"sha1": "10ad623668ab00c62c096f0ed636d6aff41faca5"},
            checksum_source="SHA-1 as listed by GluonCV's COCO download script",
        ),
        "annotations": Archive(
            "annotations_trainval2017.zip",
            "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
            extract_to="coco",
            marker="coco/annotations/instances_val2017.json",
            checksums={"sha1": "8551ee4bb5860311e79dace7e79cb91e432e78b3"},
            checksum_source="SHA-1 as listed by GluonCV's COCO download script",
        ),
    },
    "davis": {
        "trainval": Archive(
            "DAVIS-2017-trainval-480p.zip",
            "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip",
            extract_to=".",
            marker="DAVIS/Annotations/480p",
            checksum_source="none published: SHA-256 recorded on first download",
        ),
        "semantics": Archive(
            "DAVIS-2017_semantics-480p.zip",
            "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017_semantics-480p.zip",
            extract_to=".",
            marker="DAVIS/davis_semantics.json",
            checksum_source="none published: SHA-256 recorded on first download",
        ),
    },
}
"""The official archives of each dataset, by part."""

_NO_CHECKSUM = "none published: SHA-256 recorded on first download"
_PROPOSAL_FLOW = "https://www.di.ens.fr/willow/research/proposalflow/dataset"
_PAIR_LISTS = "https://www.di.ens.fr/willow/research/cnngeometric/other_resources"

PAIR_DATASET_ARCHIVES: dict[str, dict[str, Archive]] = {
    "spair": {
        "spair": Archive(
            "SPair-71k.tar.gz",
            "http://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz",
            extract_to=".",
            marker="SPair-71k/PairAnnotation",
            checksum_source=_NO_CHECKSUM,
        ),
    },
    "pf-pascal": {
        "images": Archive(
            "PF-dataset-PASCAL.zip",
            f"{_PROPOSAL_FLOW}/PF-dataset-PASCAL.zip",
            extract_to=".",
            marker="PF-dataset-PASCAL/JPEGImages",
            checksum_source=_NO_CHECKSUM,
        ),
        "test_pairs": Archive(
            "test_pairs_pf_pascal.csv",
            f"{_PAIR_LISTS}/test_pairs_pf_pascal.csv",
            extract_to="PF-dataset-PASCAL",
            marker="PF-dataset-PASCAL/test_pairs_pf_pascal.csv",
            checksum_source=_NO_CHECKSUM,
            is_archive=False,
        ),
        "val_pairs": Archive(
            "val_pairs_pf_pascal.csv",
            f"{_PAIR_LISTS}/val_pairs_pf_pascal.csv",
            extract_to="PF-dataset-PASCAL",
            marker="PF-dataset-PASCAL/val_pairs_pf_pascal.csv",
            checksum_source=_NO_CHECKSUM,
            is_archive=False,
        ),
    },
    "pf-willow": {
        "images": Archive(
            "PF-dataset.zip",
            f"{_PROPOSAL_FLOW}/PF-dataset.zip",
            extract_to=".",
            marker="PF-dataset",
            checksum_source=_NO_CHECKSUM,
        ),
        "test_pairs": Archive(
            "test_pairs_pf.csv",
            f"{_PAIR_LISTS}/test_pairs_pf.csv",
            extract_to=".",
            marker="test_pairs_pf.csv",
            checksum_source=_NO_CHECKSUM,
            is_archive=False,
        ),
    },
    "cub": {
        "images": Archive(
            "CUB_200_2011.tgz",
            "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
            extract_to=".",
            marker="CUB_200_2011/parts/part_locs.txt",
            checksums={"md5": "97eceeb196236b17998738112f37df78"},
            checksum_source="MD5 used for this archive by TDeVries/cub2011_dataset and "
            "Avalanche's CUB200 loader",
        ),
    },
}
"""The official archives of the keypoint-pair datasets, by part (also in
:data:`DATASET_ARCHIVES`). The PF pair lists are those of the weakly-supervised
alignment code (Rocco et al.), published next to the Proposal Flow archives; PF-WILLOW's
is also found as ``test_pairs.csv`` (e.g. ``https://www.robots.ox.ac.uk/~xinghui/sd4match/
test_pairs.csv``), a name the loader accepts. PF-PASCAL's ``trn`` list is not published
there and is not fetched."""
DATASET_ARCHIVES.update(PAIR_DATASET_ARCHIVES)

DEFAULT_PARTS: dict[str, tuple[str, ...]] = {
    "voc": ("trainval",),
    "coco": ("val2017", "annotations"),
    "davis": ("trainval", "semantics"),
    "spair": ("spair",),
    "pf-pascal": ("images", "test_pairs", "val_pairs"),
    "pf-willow": ("images", "test_pairs"),
    "cub": ("images",),
}
"""Parts fetched when none are named (COCO train2017, 18 GB, only when asked for)."""
DATASET_FOLDERS: dict[str, str] = {
    "voc": "VOCdevkit/VOC2012",
    "coco": "coco",
    "davis": "DAVIS",
    "spair": "SPair-71k",
    "pf-pascal": "PF-dataset-PASCAL",
    "pf-willow": ".",
    "cub": "CUB_200_2011",
}
"""The folder below ``root`` that :func:`download_dataset` returns (PF-WILLOW: ``root``,
which holds ``PF-dataset/`` and the pair list)."""


# --------------------------------------------------------------------------- checksums


def file_digests(path: Path, algorithms: Iterable[str], progress: bool = False) -> dict[str, str]:
    """Digests of a file, all in one pass over it.

    Args:
        path: the file.
        algorithms: ``hashlib`` names (``md5``, ``sha1``, ``sha256``).
        progress: show a progress bar.

    Returns:
        ``{algorithm: hex digest}``.
    """
    hashers = {name: hashlib.new(name) for name in algorithms}
    size = path.stat().st_size
    with (
        path.open("rb") as handle,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=f"verify {path.name}",
            disable=not progress,
        ) as bar,
    ):
        while chunk := handle.read(1 << 22):
            for hasher in hashers.values():
                hasher.update(chunk)
            bar.update(len(chunk))
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def verify_file(
    path: Path,
    size: int | None = None,
    checksums: Mapping[str, str] | None = None,
    progress: bool = False,
    label: str | None = None,
) -> None:
    """Check a file's size and checksums.

    Args:
        path: the file.
        size: the expected size in bytes; ``None`` skips the check.
        checksums: ``{"md5"|"sha1"|"sha256": hex}``; empty values are ignored.
        progress: show a progress bar while hashing.
        label: names the file in messages (default: its path).

    Raises:
        ChecksumError: the size or a checksum differs; the message gives both values.
        ValueError: a checksum kind other than :data:`HASHES`.
    """
    label = label or str(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{label} is {actual_size} bytes, expected {size}")
    wanted = {k.lower(): v.lower() for k, v in (checksums or {}).items() if v}
    unknown = set(wanted) - set(HASHES)
    if unknown:
        raise ValueError(f"unknown checksum kinds {sorted(unknown)}; use {HASHES}")
    if not wanted:
        return
    got = file_digests(path, wanted, progress)
    for name, value in wanted.items():
        if got[name] != value:
            raise ChecksumError(f"{label}: {name} is {got[name]}, expected {value}")


def _read_record(folder: Path) -> dict:
    path = folder / CHECKSUM_RECORD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DownloadError(f"{path} is not valid JSON ({err}); fix or delete it") from err


def _write_record(folder: Path, filename: str, entry: dict) -> None:
    record = _read_record(folder)
    record[filename] = entry
    (folder / CHECKSUM_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_checksum_table(path: str | Path) -> dict[str, dict]:
    """Read a user checksum table.

    Args:
        path: a JSON file ``{archive file name: {"md5"|"sha1"|"sha256": hex, "size": bytes}}``.

    Returns:
        The table.

    Raises:
        ValueError: the file is not JSON of that shape (``FileNotFoundError`` when absent).
    """
    try:
        table = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ValueError(f"{path}: expected {{file name: {{md5|sha1|sha256|size: value}}}}")
    return table


# --------------------------------------------------------------------------- fetching


def _network_reason(err: BaseException) -> BaseException | None:
    """The low-level cause when ``err`` means "cannot reach the host"."""
    reason = getattr(err, "reason", err)
    if isinstance(reason, (socket.gaierror, ConnectionRefusedError, TimeoutError, socket.timeout)):
        return reason
    if isinstance(reason, OSError) and not isinstance(err, urllib.error.HTTPError):
        return reason
    return None


def _open(url: str, dest: Path, offset: int, timeout: float):
    """The HTTP response for ``url`` from byte ``offset`` on; ``None`` when nothing is left."""
    headers = {"User-Agent": "difflens-data/1", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return None  # the partial file already holds everything the server has
        raise DownloadError(f"{url}: the server answered HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        cause = _network_reason(err)
        raise OfflineError(
            f"cannot reach {urlsplit(url).netloc} to fetch {dest.name} ({cause or err}). Are "
            f"you offline? Fetch {url} by other means, put it at {dest} and run the command "
            "again: it will be verified and unpacked."
        ) from err


def _resume_mode(response, url: str, part: Path, offset: int) -> tuple[int, str]:
    """``(offset, file mode)`` to write the answer with: append to a resumed part or restart."""
    if getattr(response, "status", 200) == 206:
        content_range = response.headers.get("Content-Range", "")
        if _range_start(content_range) != offset:
            raise DownloadError(
                f"{url}: asked to resume at byte {offset}, the server sent "
                f"{content_range!r}; delete {part} and run again"
            )
        return offset, "ab"
    if offset:
        logger.info("%s ignores range requests: starting %s again", urlsplit(url).netloc, part.name)
    return 0, "wb"


def _receive(
    response,
    url: str,
    dest: Path,
    part: Path,
    offset: int,
    size: int | None,
    progress: bool,
    chunk_size: int,
) -> None:
    """Write the response body into ``part``; raise when the transfer stops short."""
    offset, mode = _resume_mode(response, url, part, offset)
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length is not None else size
    try:
        with (
            part.open(mode) as handle,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=dest.name,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(chunk_size):
                handle.write(chunk)
                bar.update(len(chunk))
    except (OSError, ValueError, http.client.HTTPException) as err:  # reset, timeout
        raise DownloadError(
            f"download of {dest.name} interrupted after {part.stat().st_size} bytes "
            f"({err}); run the command again to resume"
        ) from err
    if total is not None and part.stat().st_size < total:
        raise DownloadError(
            f"download of {dest.name} stopped at {part.stat().st_size} of {total} bytes; "
            "run the command again to resume"
        )


def fetch(
    url: str,
    dest: str | Path,
    size: int | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    progress: bool = True,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download a file, resuming a partial ``dest.part`` with an HTTP Range request.

    A server that ignores the range (status 200) restarts the file. The finished file is
    verified (size, checksums) before it is renamed to ``dest``. An unreachable host raises
    :class:`OfflineError` at once (the message says how to place the file by hand); an
    error answer or a transfer that stops raises :class:`DownloadError` and leaves
    ``dest.part`` to resume from.

    Args:
        url: what to download (``http``, ``https`` or ``file``).
        dest: where to put it; its folder is created.
        size: the expected size in bytes, if known.
        checksums: ``{"md5"|"sha1"|"sha256": hex}`` the file must have.
        timeout: seconds to wait for the server at each step.
        progress: show a progress bar.
        chunk_size: bytes read at a time.

    Returns:
        ``dest``.

    Raises:
        ChecksumError: the finished file has another size or checksum; it is deleted.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    response = _open(url, dest, offset, timeout)
    if response is not None:
        with response:
            _receive(response, url, dest, part, offset, size, progress, chunk_size)
    try:
        verify_file(part, size, checksums, progress, label=dest.name)
    except ChecksumError as err:
        part.unlink()
        raise ChecksumError(
            f"{err}. The download of {url} is corrupt and was deleted; run again to fetch it "
            "afresh (or check the checksum table)"
        ) from err
    os.replace(part, dest)
    return dest


def _range_start(content_range: str) -> int | None:
    """``100`` from ``bytes 100-199/200``."""
    try:
        unit, spec = content_range.split(" ", 1)
        return int(spec.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- unpacking


def unpack(archive: str | Path, dest: str | Path) -> list[str]:
    """Unpack a .tar(.gz) or .zip archive, refusing entries that would leave ``dest``.

    Tar archives are unpacked with the standard library's ``"data"`` filter where it exists
    (no links, no absolute or escaping paths), else with the same checks made here.

    Args:
        archive: the archive file.
        dest: the folder to unpack into (created).

    Returns:
        The archive's top-level entries, sorted.

    Raises:
        DownloadError: an entry would land outside ``dest``, or the file is neither a tar
            nor a zip archive.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                target = (root / name).resolve()
                if not target.is_relative_to(root):
                    raise DownloadError(f"{archive}: entry {name!r} would unpack outside {dest}")
            zf.extractall(root)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            names = tf.getnames()
            if hasattr(tarfile, "data_filter"):
                tf.extractall(root, filter="data")
            else:  # Python without extraction filters: check every member ourselves
                for member in tf.getmembers():
                    target = (root / member.name).resolve()
                    if not target.is_relative_to(root) or member.issym() or member.islnk():
                        raise DownloadError(f"{archive}: refusing entry {member.name!r}")
                tf.extractall(root)
    else:
        raise DownloadError(f"{archive} is neither a tar nor a zip archive")
    return sorted({name.split("/", 1)[0] for name in names if name.strip("/")})


# --------------------------------------------------------------------------- datasets


def _mirrored(archive: Archive, mirror: str | None) -> Archive:
    if not mirror:
        return archive
    return replace(archive, url=f"{mirror.rstrip('/')}/{archive.filename}")


def _stamp(downloads: Path, archive: Archive) -> Path:
    return downloads / f"{archive.filename}.extracted"


def download_dataset(
    name: str,
    root: str | Path,
    parts: Iterable[str] | None = None,
    mirror: str | None = None,
    checksum_table: Mapping[str, Mapping] | None = None,
    keep_archives: bool = True,
    timeout: float = 30.0,
    progress: bool = True,
    archives: Mapping[str, Archive] | None = None,
) -> Path:
    """Fetch, verify and unpack the parts of a dataset.

    Skips what is present: an archive on disk is verified instead of fetched, and an archive
    already unpacked (stamp file and marker present) is not unpacked again. Download, check
    and unpacking failures raise :class:`DownloadError` and its subclasses (see :func:`fetch`).

    Args:
        name: ``voc``, ``coco``, ``davis``, ``spair``, ``pf-pascal``, ``pf-willow`` or
            ``cub``.
        root: the data folder; see the module docstring for the layout.
        parts: which archives (default :data:`DEFAULT_PARTS`; COCO also has ``train2017``).
        mirror: a base URL serving the same file names (replaces the official host).
        checksum_table: ``{file name: {"md5"|"sha1"|"sha256": hex, "size": bytes}}``; it
            overrides the built-in values for the files it names.
        keep_archives: keep the archives after unpacking (then a later run re-verifies
            them instead of fetching them again).
        timeout: network timeout in seconds.
        progress: show progress bars.
        archives: replaces the built-in archive table of ``name`` (tests, other mirrors).

    Returns:
        The dataset folder under ``root`` (:data:`DATASET_FOLDERS`).

    Raises:
        ValueError: an unknown dataset or part.
    """
    table = dict(archives or DATASET_ARCHIVES.get(name, {}))
    if not table:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_ARCHIVES)}")
    if parts:
        chosen = list(parts)
    else:  # a given archive table is fetched whole
        chosen = list(table) if archives is not None else list(DEFAULT_PARTS[name])
    unknown = [p for p in chosen if p not in table]
    if unknown:
        raise ValueError(f"{name} has no parts {unknown}; known: {', '.join(table)}")
    root = Path(root).expanduser()
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    user = {k: dict(v) for k, v in (checksum_table or {}).items()}
    for part in chosen:
        archive = _mirrored(table[part], mirror)
        _fetch_and_unpack(archive, root, downloads, user, keep_archives, timeout, progress)
    return root / DATASET_FOLDERS.get(name, ".")


def _expected(archive: Archive, user: Mapping[str, Mapping], record: dict) -> tuple:
    """``(size, checksums, source)`` to verify ``archive`` with."""
    size, checksums, source = archive.size, dict(archive.checksums), archive.checksum_source
    if archive.filename in user:
        entry = user[archive.filename]
        size = entry.get("size", size)
        checksums = {k: v for k, v in entry.items() if k in HASHES} or checksums
        source = "user checksum table"
    if not checksums and archive.filename in record:
        entry = record[archive.filename]
        checksums = {k: v for k, v in entry.items() if k in HASHES}
        size = entry.get("size", size)
        source = f"recorded on first download ({entry.get('recorded', '?')})"
    return size, checksums, source


def _place(archive: Archive, path: Path, root: Path) -> list[str]:
    """Unpack an archive, or copy a plain file, into ``root/extract_to``; its top entries."""
    folder = root / archive.extract_to
    if archive.is_archive:
        return unpack(path, folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, folder / archive.filename)
    return [archive.filename]


def _fetch_and_unpack(
    archive: Archive,
    root: Path,
    downloads: Path,
    user: Mapping[str, Mapping],
    keep_archives: bool,
    timeout: float,
    progress: bool,
) -> None:
    path = downloads / archive.filename
    stamp = _stamp(downloads, archive)
    marker = root / archive.marker
    if stamp.is_file() and marker.exists() and not path.is_file():
        logger.info("%s: already unpacked (%s), skipping", archive.filename, marker.parent)
        return
    size, checksums, source = _expected(archive, user, _read_record(downloads))
    if path.is_file():
        logger.info(f"{archive.filename}: present, verifying ({source or 'size only'})")
        try:
            verify_file(path, size, checksums, progress)
        except ChecksumError as err:
            raise ChecksumError(
                f"{err}. Delete {path} (or fix the checksum table) and run again"
            ) from err
    else:
        logger.info(f"{archive.filename}: fetching {archive.url}")
        fetch(archive.url, path, size, checksums, timeout, progress)
    if not checksums:
        digest = file_digests(path, ["sha256"])["sha256"]
        _write_record(
            downloads,
            archive.filename,
            {
                "sha256": digest,
                "size": path.stat().st_size,
                "url": archive.url,
                "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
        logger.info(f"{archive.filename}: no published checksum; recorded sha256 {digest}")
    if stamp.is_file() and marker.exists():
        logger.info(f"{archive.filename}: already unpacked, skipping")
    else:
        verb = "unpacking" if archive.is_archive else "copying"
        logger.info(f"{archive.filename}: {verb} into {root / archive.extract_to}")
        top = _place(archive, path, root)
        if not marker.exists():
            raise DownloadError(
                f"{archive.filename} unpacked, but {marker} is missing (the archive holds "
                f"{top}); the loaders will not find the data there"
            )
        stamp.write_text(
            json.dumps({"archive": archive.filename, "url": archive.url, "top_level": top}) + "\n"
        )
    if not keep_archives:
        path.unlink()
        logger.info(f"{archive.filename}: archive deleted after unpacking")


def download_authors_list(
    out: str | Path,
    url: str = AUTHORS_LIST_URL,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Fetch the authors' image list and check it against :data:`AUTHORS_LIST_SHA256`.

    A file already at ``out`` is verified instead of fetched.

    Args:
        out: where to write the list (e.g. ``data_lists/diffprops_images_and_video_list.csv``).
        url: where to fetch it from (default :data:`AUTHORS_LIST_URL`).
        timeout: network timeout in seconds.
        progress: show a progress bar.

    Returns:
        ``out``.

    Raises:
        ChecksumError: the present file is not the authors' list (a fetched file that is
            not is deleted by :func:`fetch`, which raises the same error).
    """
    out = Path(out)
    checksums = {"sha256": AUTHORS_LIST_SHA256}
    if out.is_file():
        try:
            verify_file(out, checksums=checksums)
        except ChecksumError as err:
            raise ChecksumError(
                f"{err}: {out} is not the authors' list; move it away and run again"
            ) from err
        logger.info("%s: present and verified (sha256 %s)", out, AUTHORS_LIST_SHA256)
        return out
    logger.info("fetching the authors' list from %s", url)
    return fetch(url, out, checksums=checksums, timeout=timeout, progress=progress)


__all__ = [
    "AUTHORS_LIST_NAME",
    "AUTHORS_LIST_SHA256",
    "AUTHORS_LIST_URL",
    "DATASET_ARCHIVES",
    "DATASET_FOLDERS",
    "DEFAULT_PARTS",
    "PAIR_DATASET_ARCHIVES",
    "Archive",
    "ChecksumError",
    "DownloadError",
    "OfflineError",
    "download_authors_list",
    "download_dataset",
    "unpack",
    "fetch",
    "file_digests",
    "read_checksum_table",
    "verify_file",
]
