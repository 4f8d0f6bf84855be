"""A content-addressed on-disk cache of latents, feature maps and prototypes.

An entry is one ``.npz`` file of named arrays plus two JSON strings: the *key fields*
(everything that produced the entry: model id and weights fingerprint, layers, timestep,
seeds, ensemble size, image size, dtype, prompt, latent and mask mode, and the content hash
of the image and its masks) and free-form metadata. Its file name is the SHA-256 of the
canonical JSON of ``kind`` + key fields, so a changed setting is a different file and a
stale entry is never reused; the fields stored inside are compared on every read as well.

Writes are atomic: the entry is written to a temporary file in the same folder, flushed to
disk and moved into place with ``os.replace``. A run killed at any point leaves either the
complete entry or none (plus, at worst, a ``.tmp`` file that readers ignore and
:meth:`FeatureStore.clean` removes); a truncated or unreadable entry is reported, counted
and treated as missing, so it is recomputed and overwritten.

The store is plain numpy (``np.savez``, read with ``allow_pickle=False``): no database, no
lock; two processes that compute the same entry write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger("difflens")

KEY_VERSION = 1
"""Bumped whenever a change in difflens changes what an entry would hold."""


def canonical_json(fields: Mapping) -> str:
    """Key fields as compact JSON with sorted keys (tuples become lists).

    Args:
        fields: JSON-able key fields (other objects are written with ``str``).

    Returns:
        The canonical JSON text: the same fields always give the same string.
    """
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)


def digest(fields: Mapping) -> str:
    """SHA-256 of the canonical JSON of ``fields``.

    Args:
        fields: JSON-able key fields.

    Returns:
        64 hexadecimal characters.
    """
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


def array_digest(array: np.ndarray) -> str:
    """Content hash of an array: its dtype, shape and bytes.

    Args:
        array: any numpy array (made contiguous before hashing).

    Returns:
        The first 32 hexadecimal characters of its SHA-256.
    """
    array = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()[:32]


def image_digest(image: np.ndarray) -> str:
    """Content hash of an image (the pixels as given, before any resizing).

    Args:
        image: an ``(H, W, 3)`` uint8 array (or anything ``np.asarray`` accepts).

    Returns:
        32 hexadecimal characters (:func:`array_digest`).
    """
    return array_digest(np.asarray(image))


@dataclass
class Entry:
    """One stored entry: its arrays, its key fields and its metadata.

    Attributes:
        arrays: the named numpy arrays (e.g. ``"latent"``, ``"features"``, ``"map"``).
        fields: the key fields that produced it.
        meta: free-form JSON metadata (rows of a prototype table, skip records).
        cached: True when the entry was read from the store, False when just computed.
    """

    arrays: dict[str, np.ndarray]
    fields: dict
    meta: dict = field(default_factory=dict)
    cached: bool = False


class FeatureStore:
    """Content-addressed ``.npz`` entries under ``root/<kind>/<ab>/<digest>.npz``.

    Args:
        root: the store's folder (created if missing).

    Attributes:
        root: the folder, as a path.
        stats: counts of ``hits``, ``misses``, ``writes`` and ``corrupt`` reads.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stats: Counter = Counter()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"

    def key(self, kind: str, fields: Mapping) -> str:
        """The digest that names an entry.

        Args:
            kind: the entry kind (``"latents"``, ``"prototypes"``, ``"features"``).
            fields: its key fields.

        Returns:
            64 hexadecimal characters: :func:`digest` of ``{"kind": kind, "fields": fields}``.
        """
        return digest({"kind": kind, "fields": fields})

    def path(self, kind: str, fields: Mapping) -> Path:
        """Where an entry lives, whether it exists or not.

        Args:
            kind: the entry kind.
            fields: its key fields.

        Returns:
            ``root/<kind>/<first two digest characters>/<digest>.npz``.
        """
        key = self.key(kind, fields)
        return self.root / kind / key[:2] / f"{key}.npz"

    def __contains__(self, item: tuple[str, Mapping]) -> bool:
        kind, fields = item
        return self.path(kind, fields).exists()

    def get(self, kind: str, fields: Mapping) -> Entry | None:
        """Read one entry; a missing, unreadable or mismatching one counts as a miss.

        An unreadable file (truncated, not a zip) or one whose stored key fields differ
        from ``fields`` is logged, counted under ``stats["corrupt"]`` and treated as
        missing, so it is recomputed and overwritten.

        Args:
            kind: the entry kind.
            fields: its key fields.

        Returns:
            The :class:`Entry` (``cached=True``), or ``None``.
        """
        path = self.path(kind, fields)
        if not path.exists():
            self.stats["misses"] += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = str(data["__key__"])
                meta = json.loads(str(data["__meta__"]))
                arrays = {name: data[name] for name in data.files if not name.startswith("__")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            logger.warning("cache entry %s is unreadable (%s); it will be recomputed", path, error)
            self.stats["corrupt"] += 1
            self.stats["misses"] += 1
            return None
        expected = canonical_json({"kind": kind, "fields": fields})
        if stored != expected:
            logger.warning("cache entry %s holds other key fields; it will be recomputed", path)
            self.stats["corrupt"] += 1
            self.stats["misses"] += 1
            return None
        self.stats["hits"] += 1
        return Entry(arrays, json.loads(stored)["fields"], meta, cached=True)

    def put(
        self,
        kind: str,
        fields: Mapping,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping | None = None,
    ) -> Path:
        """Write an entry atomically (temporary file in the same folder, then ``os.replace``).

        Args:
            kind: the entry kind.
            fields: its key fields (stored inside as canonical JSON too).
            arrays: the named arrays; names starting with ``"__"`` are reserved.
            meta: free-form JSON metadata.

        Returns:
            The entry's path.

        Raises:
            ValueError: an array name starts with ``"__"``.
        """
        for name in arrays:
            if name.startswith("__"):
                raise ValueError(f"array names starting with '__' are reserved: {name!r}")
        path = self.path(kind, fields)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        payload = {name: np.asarray(value) for name, value in arrays.items()}
        payload["__key__"] = np.array(canonical_json({"kind": kind, "fields": fields}))
        payload["__meta__"] = np.array(json.dumps(dict(meta or {}), default=str))
        try:
            with open(tmp, "wb") as handle:
                np.savez(handle, **payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        self.stats["writes"] += 1
        return path

    def entries(self, kind: str | None = None) -> list[Path]:
        """Paths of the complete entries (temporary files left out).

        Args:
            kind: one entry kind, or ``None`` for all.

        Returns:
            Sorted paths.
        """
        base = self.root / kind if kind else self.root
        return sorted(p for p in base.rglob("*.npz") if not p.name.startswith("."))

    def count(self, kind: str | None = None) -> int:
        """How many complete entries the store holds.

        Args:
            kind: one entry kind, or ``None`` for all.

        Returns:
            The number of entries.
        """
        return len(self.entries(kind))

    def nbytes(self) -> int:
        """Disk space used by complete entries.

        Returns:
            Bytes.
        """
        return sum(p.stat().st_size for p in self.entries())

    def clean(self, older_than_s: float = 3600.0) -> int:
        """Remove temporary files left by killed writers.

        Args:
            older_than_s: only files last written more than this many seconds ago (so a
                writer at work is not disturbed).

        Returns:
            How many files were removed.
        """
        now = time.time()
        removed = 0
        for tmp in self.root.rglob(".*.tmp"):
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed


Computed = tuple[Mapping[str, np.ndarray], Mapping]
"""What a compute function returns for one entry: its arrays and its metadata."""


def get_or_compute(
    store: FeatureStore | None,
    kind: str,
    fields: Sequence[Mapping],
    compute: Callable[[list[int]], Sequence[Computed | Exception]],
) -> list[Entry | Exception]:
    """Read the entries that are stored, compute the others in one call, store them.

    The one get-or-compute of difflens: latents, prototype tables and feature maps all go
    through it, so that an interrupted run resumes where it stopped and a finished entry
    is never computed twice.

    Args:
        store: the store, or ``None`` to compute everything without caching.
        kind: the entry kind (``"latents"``, ``"prototypes"``, ``"features"``).
        fields: the key fields of each wanted entry.
        compute: called once with the positions (into ``fields``) of the missing entries;
            returns, for each of them in that order, ``(arrays, meta)`` or the exception
            that prevented it (an entry that failed is returned as its exception and is not
            stored, so the next run tries again).

    Returns:
        One :class:`Entry` (``cached`` tells whether it was read back) or exception per
        field, in the order of ``fields``.

    Raises:
        ValueError: ``compute`` returned a different number of results than it was asked for.
    """
    found: list[Entry | Exception | None] = [
        None if store is None else store.get(kind, f) for f in fields
    ]
    missing = [i for i, entry in enumerate(found) if entry is None]
    if missing:
        results = list(compute(missing))
        if len(results) != len(missing):
            raise ValueError(f"compute returned {len(results)} results for {len(missing)} entries")
        for i, result in zip(missing, results):
            if isinstance(result, Exception):
                found[i] = result
                continue
            arrays, meta = result
            if store is not None:
                store.put(kind, fields[i], arrays, meta)
            found[i] = Entry(
                {k: np.asarray(v) for k, v in arrays.items()}, dict(fields[i]), dict(meta or {})
            )
    return found  # type: ignore[return-value]
