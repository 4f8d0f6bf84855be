"""Where difflens keeps its caches (features, built-in models, training runs)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The root folder of difflens' caches.

    Returns:
        ``$DIFFLENS_CACHE`` when that variable is set, else ``~/.cache/difflens``. The
        folder is not created here; each cache creates its own subfolder when it writes.
    """
    return Path(os.environ.get("DIFFLENS_CACHE", Path.home() / ".cache" / "difflens"))
