"""Image reading and checking, and resizing to model input: the one image reader of difflens."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from difflens.core.errors import BadInputError, DatasetError

COLOUR_MODES = ("strict", "convert")


def image_list(images: object) -> list:
    """A batch of images as a list, or a :class:`BadInputError` saying what was given.

    Args:
        images: a sequence of images, or a ``(B, H, W, C)`` array.

    Returns:
        The images as a list (each still to be checked by :func:`check_image`).

    Raises:
        BadInputError: one ``(H, W, C)`` image instead of a list, a single path, or no images.
    """
    if isinstance(images, (str, os.PathLike)):
        raise BadInputError(f"images: got the single path {str(images)!r}; pass a list of images")
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            raise BadInputError(
                f"images: got one array of shape {images.shape}; pass a list of images: [image]"
            )
        images = list(images)
    images = list(images)
    if not images:
        raise BadInputError("images: the list is empty")
    return images


def check_image(image: object, name: str = "image", colour: str = "strict") -> np.ndarray:
    """An image as an ``(H, W, 3)`` uint8 RGB array, checked.

    Args:
        image: an array-like image.
        name: names it in messages (a file path, ``"image 3"``).
        colour: ``"strict"`` rejects grey and RGBA images; ``"convert"`` repeats a grey
            channel and drops alpha.

    Returns:
        ``(H, W, 3)`` uint8, C-contiguous.

    Raises:
        BadInputError: not uint8, grey/RGBA under ``"strict"``, another shape, or empty.
    """
    if isinstance(image, (str, os.PathLike)):
        raise BadInputError(
            f"{name}: {str(image)!r} is a file path, not pixels; read it with "
            "difflens.data.images.read_image (or give paths to feature_maps)"
        )
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise BadInputError(f"{name}: expected uint8 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 4):
        what = "a grey image" if array.ndim == 2 else "an RGBA image"
        if colour != "convert":
            raise BadInputError(
                f"{name}: {what} of shape {array.shape}; convert it to RGB first "
                "(PIL: image.convert('RGB')) or use colour='convert'"
            )
        array = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]
    if array.ndim != 3 or array.shape[2] != 3:
        raise BadInputError(f"{name}: expected an (H, W, 3) RGB image, got shape {array.shape}")
    if min(array.shape[:2]) < 1:
        raise BadInputError(f"{name}: empty image of shape {array.shape}")
    return np.ascontiguousarray(array)


def read_image(path: str | Path, colour: str = "strict") -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array: the one image reader.

    The pixels are kept as stored (no EXIF rotation): the annotations of VOC, COCO and
    DAVIS refer to the stored pixel grid.

    Args:
        path: the image file.
        colour: ``"strict"`` rejects grey, palette, RGBA and 16-bit images with a message;
            ``"convert"`` converts them to RGB (dataset loaders use it: COCO holds grey
            photos).

    Returns:
        ``(H, W, 3)`` uint8 RGB array.

    Raises:
        DatasetError: ``missing file`` when ``path`` is not a file, ``corrupt image`` when
            it cannot be decoded, ``not RGB`` when ``colour="strict"`` and it is not RGB.
            A :class:`~difflens.core.errors.BadInputError`, so callers may catch either.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError("missing file", f"image {path} does not exist")
    try:
        with Image.open(path) as pil:
            pil.load()
            if pil.mode in ("L", "RGBA", "RGB"):
                array = np.asarray(pil)
            elif colour != "convert":
                raise DatasetError(
                    "not RGB", f"{path}: image mode {pil.mode}, not RGB; use colour='convert'"
                )
            else:
                array = np.asarray(pil.convert("RGB"))
    except DatasetError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DatasetError("corrupt image", f"{path} cannot be decoded ({error})") from error
    try:
        return check_image(array, str(path), colour)
    except DatasetError:
        raise
    except BadInputError as error:
        raise DatasetError("not RGB", str(error)) from error


def images_to_tensor(
    images: Sequence[np.ndarray], image_size: int | tuple[int, int], colour: str = "convert"
) -> torch.Tensor:
    """Resize RGB images to the model's input size and scale them to [-1, 1].

    Args:
        images: ``(H, W, 3)`` uint8 images (grey and RGBA converted under ``"convert"``).
        image_size: the output side in pixels, or ``(height, width)``.
        colour: as :func:`check_image`.

    Returns:
        ``(N, 3, height, width)`` float32 CPU tensor, PIL bilinear resize, values
        ``pixel / 127.5 - 1``. A bad image raises :class:`BadInputError` naming its index.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    batch = []
    for index, image in enumerate(images):
        array = check_image(image, f"image {index}", colour)
        pil = Image.fromarray(array).resize((width, height), Image.BILINEAR)
        batch.append(np.asarray(pil, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()
