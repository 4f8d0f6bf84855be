"""Dataset archives and image lists on the command line: ``python -m difflens.data``.

- ``download voc|coco|davis --root DIR``: fetch, verify and unpack the official archives;
- ``resolve LIST``: resolve an image list (``src,dataset``) against the dataset folders;
- ``select voc|coco --root DIR --n N --seed S``: draw a seeded sample with the paper's rules.
"""

from difflens.data.download import (
    DATASET_ARCHIVES,
    DEFAULT_PARTS,
    Archive,
    ChecksumError,
    DownloadError,
    OfflineError,
    download_dataset,
    extract,
    fetch,
    verify_file,
)

__all__ = [
    "DATASET_ARCHIVES",
    "DEFAULT_PARTS",
    "Archive",
    "ChecksumError",
    "DownloadError",
    "OfflineError",
    "download_dataset",
    "extract",
    "fetch",
    "verify_file",
]
