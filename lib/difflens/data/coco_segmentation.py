"""One COCO ``segmentation`` field checked, then decoded into a mask by pycocotools.

The COCO format (cocodataset.org, "Data format") stores an object's segmentation as

- polygons: a list of parts, each a flat list ``[x1, y1, x2, y2, ...]`` in pixels;
- uncompressed RLE: ``{"counts": [run, run, ...], "size": [h, w]}``, runs of 0s and 1s
  alternating (starting with 0s) over the column-major pixel order;
- compressed RLE: the same runs as pycocotools' string code (``counts`` a string).

pycocotools does not check what it decodes: runs that stop short of ``h * w`` pixels leave
the rest of the mask as uninitialised memory (random 1s), runs that overshoot are an error
only sometimes, a polygon part of 4 numbers is read as a box, an odd number of coordinates
loses the last one. So everything is checked here first, and a segmentation that cannot be
decoded faithfully is an error naming the annotation, never a mask:

- RLE (either encoding): ``size`` must be the image's, runs must be non-negative integers
  summing to exactly ``h * w``; a compressed string must use pycocotools' alphabet and
  end on a complete run;
- polygons: a part with an odd number of coordinates, fewer than 3 points, a coordinate
  that is not a finite number, or zero area is dropped (as detectron2's COCO loader does);
  the object is kept with its other parts, and is an error when no part is left;
- an empty or missing segmentation (a bbox-only annotation) and any other type are errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np
from pycocotools import mask as mask_utils

from difflens.core.errors import DatasetError

Size = tuple[int, int]


def rle_string_runs(counts: str | bytes) -> list[int]:
    """The run lengths coded in a compressed COCO RLE string.

    The code is pycocotools' ``rleFrString`` (``maskApi.c``): each run is a signed
    LEB128-like number in 5-bit groups offset by 48 (characters ``'0'`` to ``'o'``), and from
    the third run on the coded value is the difference to the run two places back.

    Args:
        counts: the ``counts`` string of a compressed RLE.

    Returns:
        The run lengths, in order (they may be negative when the string is corrupt).

    Raises:
        ValueError: a character outside the code's alphabet, or a string that ends inside a
            run.
    """
    text = counts.decode("ascii", "replace") if isinstance(counts, bytes) else str(counts)
    runs: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError(f"the string ends inside run {len(runs) + 1}")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise ValueError(f"character {text[position]!r} at {position} is not RLE code")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _check_runs(runs: Sequence[int], size: Size, where: str) -> None:
    """Raise unless ``runs`` are non-negative and cover exactly ``size``'s pixels."""
    bad = [r for r in runs if r < 0]
    if bad:
        raise DatasetError("corrupt annotation", f"{where}: negative run lengths {bad[:5]}")
    total, pixels = int(sum(runs)), size[0] * size[1]
    if total != pixels:
        raise DatasetError(
            "corrupt annotation",
            f"{where}: RLE run lengths sum to {total}, not {pixels} pixels "
            f"({size[0]} x {size[1]}); pycocotools would fill the rest with garbage",
        )


def check_rle(segmentation: dict, size: Size, where: str) -> dict:
    """Check an RLE segmentation against the image size; return it compressed.

    Args:
        segmentation: ``{"counts": list or string, "size": [h, w]}``.
        size: ``(height, width)`` of the image, in pixels.
        where: names the annotation and file in messages.

    Returns:
        The RLE as pycocotools decodes it: ``{"counts": bytes, "size": [h, w]}``.

    Raises:
        DatasetError: ``size mismatch`` when ``size`` differs from the image's;
            ``corrupt annotation`` when ``counts`` is missing, of another type, not
            decodable, negative or not summing to ``h * w``.
    """
    rle_size = segmentation.get("size")
    if not _is_int_pair(rle_size) or [int(v) for v in rle_size] != list(size):
        raise DatasetError(
            "size mismatch", f"{where}: RLE size {rle_size} differs from the image's {list(size)}"
        )
    counts = segmentation.get("counts")
    if isinstance(counts, list):
        if not all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in counts):
            raise DatasetError("corrupt annotation", f"{where}: RLE counts are not all integers")
        _check_runs(counts, size, where)
        return mask_utils.frPyObjects({"counts": counts, "size": list(size)}, *size)
    if isinstance(counts, str | bytes):
        try:
            runs = rle_string_runs(counts)
        except ValueError as err:
            raise DatasetError("corrupt annotation", f"{where}: compressed RLE: {err}") from err
        _check_runs(runs, size, where)
        code = counts.encode("ascii") if isinstance(counts, str) else counts
        return {"counts": code, "size": list(size)}
    raise DatasetError(
        "corrupt annotation",
        f"{where}: RLE counts must be a list of runs or a compressed string, got "
        f"{type(counts).__name__}",
    )


def _is_int_pair(value: object) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value)
    )


def polygon_problem(part: object) -> str | None:
    """Why a polygon part cannot be drawn faithfully, or ``None`` when it can.

    Args:
        part: one polygon part, a flat list ``[x1, y1, x2, y2, ...]``.

    Returns:
        ``None`` for a part of at least 3 points, with an even number of finite
        coordinates and a non-zero (shoelace) area; else a short description.
    """
    if not isinstance(part, list | tuple):
        return f"is a {type(part).__name__}, not a list of coordinates"
    if not all(isinstance(v, Real) and not isinstance(v, bool) for v in part):
        return "holds values that are not numbers"
    if not all(math.isfinite(float(v)) for v in part):
        return "holds a coordinate that is not finite"
    if len(part) % 2:
        return f"has an odd number of coordinates ({len(part)})"
    if len(part) < 6:
        return f"has {len(part) // 2} points (a polygon needs 3)"
    xy = np.asarray(part, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    if area == 0:
        return "has zero area (its points are collinear)"
    return None


def decode_polygons(parts: list, size: Size, where: str) -> tuple[np.ndarray, list[str]]:
    """Draw the drawable parts of a polygon segmentation.

    Args:
        parts: the ``segmentation`` list of an annotation.
        size: ``(height, width)`` of the image, in pixels.
        where: names the annotation and file in messages.

    Returns:
        ``(mask, dropped)``: the ``(H, W)`` bool union of the good parts, as
        ``pycocotools.mask.frPyObjects`` and ``merge`` draw them; one note per dropped part.

    Raises:
        DatasetError: ``corrupt annotation`` when no part can be drawn.
    """
    good, dropped = [], []
    for index, part in enumerate(parts):
        problem = polygon_problem(part)
        if problem is None:
            good.append([float(v) for v in part])
        else:
            dropped.append(f"{where}: polygon part {index + 1} of {len(parts)} {problem}")
    if not good:
        raise DatasetError(
            "corrupt annotation", f"{where}: no drawable polygon part ({'; '.join(dropped)})"
        )
    rle = mask_utils.merge(mask_utils.frPyObjects(good, *size))
    return mask_utils.decode(rle).astype(bool), dropped


def decode_segmentation(
    segmentation: object, size: Size, where: str
) -> tuple[np.ndarray, list[str]]:
    """The mask of one COCO annotation, checked first (see the module docstring).

    Args:
        segmentation: the annotation's ``segmentation`` value.
        size: ``(height, width)`` of the image, in pixels.
        where: names the annotation and file in messages.

    Returns:
        ``(mask, dropped)``: ``(H, W)`` bool mask and one note per dropped polygon part.

    Raises:
        DatasetError: ``no segmentation`` for an empty or missing segmentation (a bbox-only
            annotation); ``size mismatch``/``corrupt annotation`` for a bad RLE or polygon;
            ``corrupt annotation`` for a value of another type or one pycocotools cannot
            decode.
    """
    if segmentation is None or (isinstance(segmentation, list | dict) and not segmentation):
        raise DatasetError("no segmentation", f"{where}: no mask, only a box or nothing")
    try:
        if isinstance(segmentation, dict):
            rle = check_rle(segmentation, size, where)
            return mask_utils.decode(rle).astype(bool), []
        if isinstance(segmentation, list):
            return decode_polygons(segmentation, size, where)
    except DatasetError:
        raise
    except Exception as err:  # pycocotools raises TypeError, ValueError, OverflowError, ...
        raise DatasetError(
            "corrupt annotation", f"{where}: pycocotools cannot decode it ({err})"
        ) from err
    raise DatasetError(
        "corrupt annotation",
        f"{where}: segmentation is a {type(segmentation).__name__}; COCO has polygons "
        "(a list) and RLE (a dict)",
    )
