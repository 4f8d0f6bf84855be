"""Polygon rasterisation and point-in-polygon tests, vectorised with numpy.

Both use one rule, so a mask and a point test never disagree: a point ``(x, y)`` is inside
a polygon when an odd number of its edges cross the horizontal line through ``y`` at or to
the left of ``x`` (even-odd rule); an edge spans the rows ``min(y0, y1) <= y < max(y0, y1)``
(half-open, so a vertex is never counted twice). A pixel is inside when its centre is;
pixel ``(row, col)`` has its centre at ``x = col``, ``y = row``.
"""

from __future__ import annotations

import numpy as np


def _crossings(xy: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each horizontal line ``y = ys[i]`` crosses each edge of the polygon ``xy``.

    Args:
        xy: ``(N, 2)`` float64 vertices.
        ys: ``(L,)`` float64 line heights.

    Returns:
        ``(spans, xc)``: ``(len(ys), N)`` bool, whether edge ``j`` spans line ``i``, and
        ``(len(ys), N)`` float64, the crossing's x (meaningless where it does not span).
    """
    x0, y0 = xy[:, 0], xy[:, 1]
    nxt = np.concatenate([xy[1:], xy[:1]])
    x1, y1 = nxt[:, 0], nxt[:, 1]
    y = ys[:, None]
    spans = (y0 > y) != (y1 > y)
    dy = np.where(y1 == y0, 1.0, y1 - y0)
    xc = x0 + (y - y0) * (x1 - x0) / dy
    return spans, xc


def fill_polygon(xy: np.ndarray, height: int, width: int) -> tuple[int, int, np.ndarray]:
    """The pixels whose centres lie inside a polygon, within its clipped bounding box.

    Args:
        xy: ``(N, 2)`` float vertices, x/y in pixels (``N >= 3``; open ring, the last vertex
            connects to the first).
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        ``(row0, col0, mask)``: ``mask`` is a ``(h, w)`` bool array of the pixels
        ``row0 .. row0 + h - 1``, ``col0 .. col0 + w - 1`` (clipped to the image); ``h`` or
        ``w`` is 0 when the polygon covers no pixel centre of the image.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    row0 = max(0, int(np.ceil(xy[:, 1].min())))
    row1 = min(height - 1, int(np.floor(xy[:, 1].max())))
    col0 = max(0, int(np.ceil(xy[:, 0].min())))
    col1 = min(width - 1, int(np.floor(xy[:, 0].max())))
    if row1 < row0 or col1 < col0:
        return row0, col0, np.zeros((0, 0), dtype=bool)
    n_rows, n_cols = row1 - row0 + 1, col1 - col0 + 1
    spans, xc = _crossings(xy, np.arange(row0, row1 + 1, dtype=np.float64))
    rows = np.nonzero(spans)[0]
    first = np.clip(np.ceil(xc[spans]) - col0, 0, n_cols).astype(np.int64)
    toggles = np.bincount(rows * (n_cols + 1) + first, minlength=n_rows * (n_cols + 1))
    parity = np.cumsum(toggles.reshape(n_rows, n_cols + 1)[:, :n_cols], axis=1) & 1
    return row0, col0, parity.astype(bool)


def polygons_mask(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """The union of several polygons as a full-size mask.

    Args:
        polygons: ``(N_i, 2)`` float vertex arrays, x/y in pixels.
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        ``(height, width)`` bool, True where a pixel centre lies in any of the polygons.
    """
    mask = np.zeros((height, width), dtype=bool)
    for xy in polygons:
        row0, col0, part = fill_polygon(xy, height, width)
        mask[row0 : row0 + part.shape[0], col0 : col0 + part.shape[1]] |= part
    return mask


def points_in_polygons(points: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """Which points lie inside the union of polygons (the rule of :func:`fill_polygon`).

    Args:
        points: ``(M, 2)`` float x/y.
        polygons: ``(N_i, 2)`` float vertex arrays in the same coordinates.

    Returns:
        ``(M,)`` bool.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    inside = np.zeros(len(points), dtype=bool)
    for xy in polygons:
        spans, xc = _crossings(np.asarray(xy, dtype=np.float64), points[:, 1])
        left = spans & (xc <= points[:, :1])
        inside |= (left.sum(axis=1) & 1).astype(bool)
    return inside
