"""Reading dataset files with messages that name the file and say what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from difflens.datasets.vocabulary import voc_palette


class DatasetError(Exception):
    """A dataset item that cannot be read; ``kind`` is a short reason, ``str()`` names the file.

    Kinds used by the loaders: ``missing file``, ``corrupt image``, ``size mismatch``,
    ``empty mask``, ``unknown class``, ``no objects``, ``not annotated``.
    """

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else a ``missing file`` error naming it."""
    if not path.is_file():
        raise DatasetError("missing file", f"{what} {path} does not exist")
    return path


def read_rgb(path: Path) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB array; the pixels are kept as stored (no EXIF rotation).

    Annotations of VOC, COCO and DAVIS refer to the stored pixel grid, so EXIF orientation
    is deliberately not applied.
    """
    require_file(path, "image")
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError("corrupt image", f"{path} cannot be decoded ({err})") from err
    return np.asarray(rgb, dtype=np.uint8)


def read_label_png(path: Path) -> np.ndarray:
    """The label value of each pixel of an indexed PNG (VOC or DAVIS), ``(H, W)`` uint8.

    A "P" (palette) or "L" (grey) PNG holds the labels directly. An RGB PNG (a palette PNG
    re-saved as colours) is mapped back through the VOC palette; a colour outside the palette
    is an error naming the file.
    """
    require_file(path, "annotation")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("P", "L"):
                return np.asarray(img, dtype=np.uint8).copy()
            if mode in ("I", "I;16"):
                labels = np.asarray(img)
                if labels.max(initial=0) > 255:
                    raise DatasetError(
                        "corrupt image", f"{path}: label values above 255 in a {mode} PNG"
                    )
                return labels.astype(np.uint8)
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError("corrupt image", f"{path} cannot be decoded ({err})") from err
    return _labels_from_colours(rgb, path)


def _labels_from_colours(rgb: np.ndarray, path: Path) -> np.ndarray:
    palette = voc_palette().astype(np.int64)
    codes = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    lookup = {int(code): index for index, code in enumerate(codes)}
    pixels = rgb.astype(np.int64)
    pixel_codes = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    unique, inverse = np.unique(pixel_codes, return_inverse=True)
    unknown = [int(c) for c in unique if int(c) not in lookup]
    if unknown:
        colours = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in unknown[:5]]
        raise DatasetError(
            "corrupt image",
            f"{path} is an RGB PNG with colours outside the VOC palette, e.g. {colours}",
        )
    labels = np.array([lookup[int(c)] for c in unique], dtype=np.uint8)
    return labels[inverse.reshape(pixel_codes.shape)]


def read_id_list(path: Path) -> list[str]:
    """Non-empty stripped lines of a list file (first word of each line)."""
    if not path.is_file():
        raise FileNotFoundError(f"list file {path} does not exist")
    out = []
    for line in path.read_text().splitlines():
        words = line.split()
        if words:
            out.append(words[0])
    return out
