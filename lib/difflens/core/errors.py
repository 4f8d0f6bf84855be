"""Errors shared by every stage: bad input is named and explained, never a bare traceback."""

from __future__ import annotations


class BadInputError(ValueError):
    """An image, file or setting that cannot be used; the message names it and says why.

    A :class:`ValueError`, so callers that already catch ``ValueError`` keep working.
    """


class DatasetError(BadInputError):
    """A dataset item that cannot be read; ``kind`` is a short reason, ``str()`` names the file.

    Loaders catch it, skip the item and count the skip under ``kind`` (see
    :class:`difflens.core.skips.SkipLog`). Kinds raised by the loaders: ``missing file``,
    ``corrupt image``, ``corrupt annotation``, ``size mismatch``, ``empty mask``,
    ``no segmentation``, ``not annotated``, ``inconsistent scene``, ``bad pair``,
    ``keypoint outside image``. Skip logs also count objects and files left out inside an
    item (``unknown class``, ``no class pixels``, ``orphan annotation``,
    ``repeated frame number``, ``unnumbered frame``, ``not in split``, ``no objects``,
    ``missing offset``) and ``unexpected error`` for any other exception of one item.

    Args:
        kind: the short reason, used to count skips (no colon in it).
        detail: what is wrong, naming the file or object.

    Attributes:
        kind: the short reason given.
        detail: the explanation given.
    """

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
