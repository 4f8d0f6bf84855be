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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger("difflens")

KEY_VERSION = 1
"""Bumped whenever a change in difflens changes what an entry would hold."""


def canonical_json(fields: Mapping) -> str:
    """Key fields as compact JSON with sorted keys (tuples become lists)."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)


def digest(fields: Mapping) -> str:
    """SHA-256 hex digest of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


def array_digest(array: np.ndarray) -> str:
    """Content hash of an array: its dtype, shape and bytes (32 hex characters)."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()[:32]


def image_digest(image: np.ndarray) -> str:
    """Content hash of an image (the pixels as given, before any resizing)."""
    return array_digest(np.asarray(image))


@dataclass
class Entry:
    """One stored entry: its arrays, its key fields and its metadata."""

    arrays: dict[str, np.ndarray]
    fields: dict
    meta: dict = field(default_factory=dict)


class FeatureStore:
    """Content-addressed ``.npz`` entries under ``root/<kind>/<ab>/<digest>.npz``.

    ``stats`` counts ``hits``, ``misses``, ``writes`` and ``corrupt`` reads.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stats: Counter = Counter()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"

    def key(self, kind: str, fields: Mapping) -> str:
        return digest({"kind": kind, "fields": fields})

    def path(self, kind: str, fields: Mapping) -> Path:
        key = self.key(kind, fields)
        return self.root / kind / key[:2] / f"{key}.npz"

    def __contains__(self, item: tuple[str, Mapping]) -> bool:
        kind, fields = item
        return self.path(kind, fields).exists()

    def get(self, kind: str, fields: Mapping) -> Entry | None:
        """The entry for ``fields``, or ``None`` (missing, unreadable or not matching)."""
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
        return Entry(arrays, json.loads(stored)["fields"], meta)

    def put(
        self,
        kind: str,
        fields: Mapping,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping | None = None,
    ) -> Path:
        """Write an entry atomically (temporary file in the same folder, then ``os.replace``)."""
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
        """Paths of the complete entries (of one kind, or all)."""
        base = self.root / kind if kind else self.root
        return sorted(p for p in base.rglob("*.npz") if not p.name.startswith("."))

    def count(self, kind: str | None = None) -> int:
        return len(self.entries(kind))

    def nbytes(self) -> int:
        """Disk space used by complete entries."""
        return sum(p.stat().st_size for p in self.entries())

    def clean(self, older_than_s: float = 3600.0) -> int:
        """Remove temporary files left by killed writers (older than ``older_than_s``)."""
        now = time.time()
        removed = 0
        for tmp in self.root.rglob(".*.tmp"):
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed
