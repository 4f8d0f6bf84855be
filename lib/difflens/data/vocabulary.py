"""One class vocabulary: the 20 Pascal-VOC classes, with COCO's names mapped onto them."""

from __future__ import annotations

import numpy as np

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""VOC class names in the order of their label values 1..20 (0 is background)."""

VOC_BACKGROUND = 0
"""Label of background in VOC (and DAVIS) PNGs."""
VOC_VOID = 255
"""Label of void / object boundaries in VOC (and DAVIS) PNGs: it belongs to no object."""

COCO_RENAMES: dict[str, str] = {
    "airplane": "aeroplane",
    "motorcycle": "motorbike",
    "couch": "sofa",
    "dining table": "diningtable",
    "potted plant": "pottedplant",
    "tv": "tvmonitor",
}
"""COCO class names spelt differently in VOC; the other 14 VOC classes share COCO's name."""

COCO_TO_VOC: dict[str, str] = {
    **{name: name for name in VOC_CLASSES if name not in COCO_RENAMES.values()},
    **COCO_RENAMES,
}
"""COCO class name -> VOC class name, for the 20 COCO classes that VOC has."""


def voc_class_of_coco(coco_name: str) -> str | None:
    """The VOC class of a COCO class.

    Args:
        coco_name: a COCO category name (``"airplane"``, ``"dining table"``, ...).

    Returns:
        Its VOC name (``"aeroplane"``, ``"diningtable"``), or ``None`` when VOC has no such
        class.
    """
    return COCO_TO_VOC.get(coco_name)


def voc_class_of_label(label: int) -> str | None:
    """The VOC class of a label value in a SegmentationClass PNG.

    Args:
        label: the pixel value.

    Returns:
        The class name for 1..20 (:data:`VOC_CLASSES` order); ``None`` for background (0),
        void (255) or any other value.
    """
    if 1 <= label <= len(VOC_CLASSES):
        return VOC_CLASSES[label - 1]
    return None


def voc_palette(n_colours: int = 256) -> np.ndarray:
    """The VOC colour map: label ``i`` is drawn as ``palette[i]``.

    VOC and DAVIS store their labels as indexed ("P" mode) PNGs with this palette (the
    bit-interleaving map of the VOC development kit's ``VOClabelcolormap.m``).

    Args:
        n_colours: how many labels to give colours to.

    Returns:
        ``(n_colours, 3)`` uint8 RGB.
    """
    palette = np.zeros((n_colours, 3), dtype=np.uint8)
    for index in range(n_colours):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (r, g, b)
    return palette
