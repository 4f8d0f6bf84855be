"""Pictures of the explorer: images as PNG bytes, a cosine map over an image, point marks.

The explorer shows every picture as an ``ipywidgets.Image`` holding PNG bytes. Small images
are enlarged by an integer ``zoom`` (nearest neighbour) so that a click lands on one pixel and
the marks stay sharp; a position in the enlarged picture maps back to original pixels with
:func:`display_to_image`. Positions are x/y in ORIGINAL image pixels, a pixel's centre at
integer coordinates, as everywhere in difflens.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw

BEST_COLOUR = (255, 255, 255)
"""The best match: a white ring with a black outline."""
TOP_COLOUR = (255, 0, 255)
"""The other top-k positions: magenta rings."""
QUERY_COLOUR = (255, 64, 64)
"""The clicked source point: a red cross in a ring."""
KEYPOINT_COLOUR = (255, 230, 0)
"""A pair's annotated source keypoints: small yellow dots."""


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB image encoded as PNG.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.

    Returns:
        The PNG file's bytes.
    """
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_array(data: bytes) -> np.ndarray:
    """Decode PNG bytes (as :func:`png_bytes` writes them) to an RGB array.

    Args:
        data: the PNG file's bytes.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    with Image.open(io.BytesIO(bytes(data))) as pil:
        return np.asarray(pil.convert("RGB"))


def zoom_for(shape: Sequence[int], display: int) -> int:
    """The integer enlargement that brings an image's longer side closest to ``display``.

    Args:
        shape: ``(H, W, ...)`` of the image.
        display: the wanted side on screen, pixels.

    Returns:
        ``max(1, round(display / max(H, W)))``.
    """
    return max(1, int(round(display / max(int(shape[0]), int(shape[1])))))


def enlarge(image: np.ndarray, zoom: int) -> np.ndarray:
    """Every pixel repeated ``zoom`` times along both axes (nearest neighbour).

    Args:
        image: ``(H, W, 3)`` image.
        zoom: the integer factor.

    Returns:
        ``(zoom H, zoom W, 3)`` image of the same dtype.
    """
    if zoom == 1:
        return np.asarray(image)
    return np.repeat(np.repeat(np.asarray(image), zoom, axis=0), zoom, axis=1)


def display_to_image(x: float, y: float, zoom: int, size: Sequence[int]) -> tuple[int, int]:
    """The original pixel under a position of the enlarged picture.

    Args:
        x: column in the enlarged picture's pixels (ipyevents' ``dataX``).
        y: row in the enlarged picture's pixels (``dataY``).
        zoom: the picture's enlargement.
        size: ``(H, W)`` of the original image.

    Returns:
        ``(x, y)`` of the original pixel, clamped into the image.
    """
    col = min(max(int(np.floor(x / zoom)), 0), int(size[1]) - 1)
    row = min(max(int(np.floor(y / zoom)), 0), int(size[0]) - 1)
    return col, row


def heat_colours(heat: np.ndarray, cmap: str = "turbo") -> np.ndarray:
    """A map's values as colours, its minimum to its maximum over the whole colour map.

    Args:
        heat: ``(H, W)`` values (a constant map is drawn in the colour map's middle).
        cmap: a matplotlib colour map name.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    values = np.asarray(heat, dtype=np.float64)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    scaled = (values - low) / (high - low) if high > low else np.full_like(values, 0.5)
    rgba = matplotlib.colormaps[cmap](np.nan_to_num(scaled, nan=0.0))
    return np.rint(255 * rgba[..., :3]).astype(np.uint8)


def blend(image: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) image + alpha colours``, rounded.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        colours: ``(H, W, 3)`` uint8 RGB of the same size.
        alpha: the colours' weight in ``[0, 1]``.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    mixed = (1 - alpha) * np.asarray(image, np.float64) + alpha * np.asarray(colours, np.float64)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _centre(point: Sequence[float], zoom: int) -> tuple[float, float]:
    """The enlarged picture's position of an original pixel centre."""
    return (float(point[0]) + 0.5) * zoom - 0.5, (float(point[1]) + 0.5) * zoom - 0.5


def _ring(draw: ImageDraw.ImageDraw, centre, radius: float, colour, width: int) -> None:
    """A ring with a thin black outline, visible on any background."""
    x, y = centre
    box = [x - radius, y - radius, x + radius, y + radius]
    draw.ellipse(box, outline=(0, 0, 0), width=width + 2)
    draw.ellipse(box, outline=colour, width=width)


def source_picture(
    image: np.ndarray,
    point: Sequence[float] | None,
    zoom: int,
    keypoints: np.ndarray | None = None,
) -> np.ndarray:
    """The source image, enlarged, with its keypoints and the clicked point marked.

    Args:
        image: ``(H, W, 3)`` uint8 RGB source image.
        point: x/y of the clicked point in original pixels, or None.
        zoom: the enlargement.
        keypoints: ``(N, 2)`` x/y of annotated keypoints (small dots), or None.

    Returns:
        ``(zoom H, zoom W, 3)`` uint8 RGB.
    """
    picture = Image.fromarray(enlarge(image, zoom))
    draw = ImageDraw.Draw(picture)
    radius = max(2.0, 1.5 * zoom)
    for kp in [] if keypoints is None else np.asarray(keypoints).reshape(-1, 2):
        if np.all(np.isfinite(kp)):
            x, y = _centre(kp, zoom)
            draw.ellipse(
                [x - radius / 2, y - radius / 2, x + radius / 2, y + radius / 2],
                fill=KEYPOINT_COLOUR,
                outline=(0, 0, 0),
            )
    if point is not None:
        x, y = _centre(point, zoom)
        size = 3 * radius
        draw.line([x - size, y, x + size, y], fill=QUERY_COLOUR, width=2)
        draw.line([x, y - size, x, y + size], fill=QUERY_COLOUR, width=2)
        _ring(draw, (x, y), 2 * radius, QUERY_COLOUR, 2)
    return np.asarray(picture)


def heat_picture(
    target: np.ndarray,
    heat: np.ndarray,
    top: np.ndarray,
    zoom: int,
    alpha: float = 0.6,
    cmap: str = "turbo",
) -> np.ndarray:
    """The target image under a cosine map, enlarged, with the top positions marked.

    The first of ``top`` (the best match) gets a large white ring, the others smaller
    magenta rings, drawn last to first so that the best stays on top.

    Args:
        target: ``(H, W, 3)`` uint8 RGB target image.
        heat: ``(H, W)`` cosine map over the target's pixels.
        top: ``(k, 2)`` x/y of the top positions, best first, original pixels.
        zoom: the enlargement.
        alpha: the colours' weight over the image.
        cmap: a matplotlib colour map name.

    Returns:
        ``(zoom H, zoom W, 3)`` uint8 RGB.

    Raises:
        ValueError: ``heat`` is not the target's size.
    """
    if np.shape(heat) != tuple(target.shape[:2]):
        raise ValueError(f"heat map {np.shape(heat)} is not the target's size {target.shape[:2]}")
    picture = Image.fromarray(enlarge(blend(target, heat_colours(heat, cmap), alpha), zoom))
    draw = ImageDraw.Draw(picture)
    radius = max(3.0, 1.5 * zoom)
    points = np.asarray(top).reshape(-1, 2)
    for rank in range(len(points) - 1, -1, -1):
        best = rank == 0
        colour = BEST_COLOUR if best else TOP_COLOUR
        _ring(draw, _centre(points[rank], zoom), 2.5 * radius if best else radius, colour, 2)
    return np.asarray(picture)
