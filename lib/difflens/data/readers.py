"""Reading dataset label PNGs and id lists, with messages that name the file and the fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from difflens.core.errors import DatasetError
from difflens.data.vocabulary import voc_palette


def require_file(path: Path, what: str) -> Path:
    """A file that must exist.

    Args:
        path: the file.
        what: what it is, for the message (``"annotation"``).

    Returns:
        ``path``.

    Raises:
        DatasetError: ``missing file`` naming ``what`` and ``path``.
    """
    if not path.is_file():
        raise DatasetError("missing file", f"{what} {path} does not exist")
    return path


def read_label_png(path: Path) -> np.ndarray:
    """The label value of each pixel of an indexed PNG (VOC or DAVIS).

    A "P" (palette) or "L" (grey) PNG holds the labels directly; a 16-bit one is accepted
    when its values fit in 8 bits. An RGB PNG (a palette PNG re-saved as colours) is mapped
    back through the VOC palette. A missing file is a ``missing file``
    :class:`DatasetError`.

    Args:
        path: the PNG.

    Returns:
        ``(H, W)`` uint8 label values.

    Raises:
        DatasetError: ``corrupt image`` when the file does not decode, holds values above
            255 or colours outside the VOC palette.
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
    """The ids listed in a text file, one per line (VOC ``ImageSets``, DAVIS ``ImageSets``).

    Args:
        path: the list file.

    Returns:
        The first word of each non-empty line, in file order.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    if not path.is_file():
        raise FileNotFoundError(f"list file {path} does not exist")
    out = []
    for line in path.read_text().splitlines():
        words = line.split()
        if words:
            out.append(words[0])
    return out
