"""Geometric correspondence on real photographs, offline: known homographies, exact ground truth.

HPatches (Balntas et al., CVPR 2017) pairs a reference image with views related to it by a
known homography ("v" sequences, viewpoint) or by an illumination change ("i" sequences,
no motion). This module builds the same kind of pairs from the photographs that ship with
scikit-image (``skimage.data``: astronaut, coffee, chelsea, rocket, ...), so geometric
matching is measured on natural images without any download:

- the source image is the photograph, optionally resized so that its longer side is
  ``max_side`` (``skimage.transform.resize`` with anti-aliasing);
- the target is the source warped by a homography ``H`` built from a :class:`Warp`
  (rotation, isotropic scale, perspective and translation about the image centre) with
  ``skimage.transform.warp`` (bilinear, outside filled with ``fill``), then given an
  illumination change (gain and gamma on [0, 1] intensities);
- source keypoints are Harris corners (``skimage.feature.corner_harris`` of the grey image,
  ``corner_peaks`` with ``min_distance`` and at most ``n_keypoints``) at least ``margin``
  pixels inside the image, or a regular grid (``keypoints="grid"``);
- target keypoints are ``H`` applied to the source keypoints (exact: the ground truth IS the
  homography); only points landing at least ``margin`` pixels inside the target are kept.

Coordinates follow :mod:`difflens.data.keypoints`: x (column), y (row), pixel centres at
integers, which is also ``skimage.transform.ProjectiveTransform``'s convention. Boxes are
the whole images (``(0, 0, W - 1, H - 1)``); evaluate these pairs with a pixel threshold
(:mod:`difflens.correspondence.pck`'s ``"pixels"`` reading: PCK at 1, 3, 5 px).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from difflens.core.skips import SkipLog
from difflens.data.keypoints import KeypointPair

__all__ = [
    "PHOTOS",
    "WARPS",
    "Warp",
    "load_photo",
    "source_keypoints",
    "warp_pair",
    "WarpedPhotos",
]

PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket")
"""Default ``skimage.data`` photographs (colour, bundled with scikit-image)."""


@dataclass(frozen=True)
class Warp:
    """A homography about the image centre plus an illumination change.

    In pixel coordinates ``p`` (x, y) the geometric part is
    ``H = T(c + t) R(angle) S(scale) P(px, py) T(-c)``, with ``c`` the image centre
    ``((W - 1) / 2, (H - 1) / 2)``, ``t = (tx W, ty H)``, ``R`` turning clockwise on screen for
    a positive angle (y points down), and ``P = [[1, 0, 0], [0, 1, 0], [px / W, py / H, 1]]``
    (perspective; ``px``, ``py`` are per image side). The photometric part maps intensities
    ``v`` in [0, 1] to ``clip(gain * v ** gamma, 0, 1)``.

    Attributes:
        name: short name, e.g. ``"rot30"``.
        angle: rotation in degrees.
        scale: isotropic scale.
        px: perspective along x, per image width.
        py: perspective along y, per image height.
        tx: translation in x, fraction of the width.
        ty: translation in y, fraction of the height.
        gain: illumination gain.
        gamma: illumination gamma.
    """

    name: str
    angle: float = 0.0
    scale: float = 1.0
    px: float = 0.0
    py: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    gain: float = 1.0
    gamma: float = 1.0

    def homography(self, size: Sequence[int]) -> np.ndarray:
        """The geometric part in pixels of an image of ``size``.

        Args:
            size: ``(H, W)`` of the image.

        Returns:
            ``(3, 3)`` float64, source pixels to target pixels (x, y, 1).
        """
        h, w = int(size[0]), int(size[1])
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        a = np.deg2rad(self.angle)
        centre = np.array([[1.0, 0, -cx], [0, 1.0, -cy], [0, 0, 1.0]])
        perspective = np.array([[1.0, 0, 0], [0, 1.0, 0], [self.px / w, self.py / h, 1.0]])
        scale = np.diag([self.scale, self.scale, 1.0])
        rotate = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
        back = np.array([[1.0, 0, cx + self.tx * w], [0, 1.0, cy + self.ty * h], [0, 0, 1.0]])
        return back @ rotate @ scale @ perspective @ centre

    @property
    def geometric(self) -> bool:
        """Whether the warp moves pixels (False for a pure illumination change)."""
        return (self.angle, self.scale, self.px, self.py, self.tx, self.ty) != (0, 1, 0, 0, 0, 0)


WARPS: tuple[Warp, ...] = (
    Warp("rot15", angle=15.0),
    Warp("rot45", angle=45.0),
    Warp("scale0.7", scale=0.7),
    Warp("scale1.4", scale=1.4),
    Warp("persp", px=0.3, py=0.15),
    Warp("rot20+scale1.2+persp", angle=20.0, scale=1.2, px=-0.2, py=0.2),
    Warp("illum-dark", gain=0.7, gamma=1.6),
    Warp("illum-bright+rot10", angle=10.0, gain=1.3, gamma=0.6),
)
"""Default warps: viewpoint-like (rotation, scale, perspective, a mix) and illumination."""


def load_photo(name: str, max_side: int | None = 256) -> np.ndarray:
    """A photograph of ``skimage.data`` as RGB uint8, optionally made smaller.

    Args:
        name: a function of ``skimage.data`` returning an image (``"astronaut"``, ...);
            grey images are replicated to three channels, alpha is dropped.
        max_side: resize (anti-aliased, aspect kept) so that the longer side is this many
            pixels; ``None`` keeps the original size. Never enlarges.

    Returns:
        ``(H, W, 3)`` uint8.

    Raises:
        ValueError: ``name`` is not an image of ``skimage.data``.
    """
    import skimage.data
    from skimage.transform import resize

    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader):
        raise ValueError(f"skimage.data has no image {name!r}")
    image = np.asarray(loader())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    if image.dtype != np.uint8:
        image = (np.clip(image.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    h, w = image.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        f = max_side / max(h, w)
        size = (max(1, round(h * f)), max(1, round(w * f)))
        image = resize(image, size, order=1, anti_aliasing=True, preserve_range=True)
        image = np.clip(image, 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(image)


def source_keypoints(
    image: np.ndarray,
    n_keypoints: int = 50,
    *,
    method: str = "harris",
    margin: int = 8,
    min_distance: int = 6,
) -> np.ndarray:
    """Keypoints of the source image: Harris corners or a regular grid, inside a margin.

    Args:
        image: ``(H, W, 3)`` uint8.
        n_keypoints: at most this many points (the strongest corners; a grid of about
            this many points).
        method: ``"harris"`` (``corner_peaks(corner_harris(grey))``) or ``"grid"``.
        margin: least distance in pixels from the image border.
        min_distance: least distance between two corners (``corner_peaks``).

    Returns:
        ``(N, 2)`` float32 x/y, integer-valued, sorted by strength (Harris) or row-major.

    Raises:
        ValueError: an unknown method.
    """
    h, w = image.shape[:2]
    if method == "grid":
        k = max(1, round(np.sqrt(n_keypoints)))
        xs = np.linspace(margin, w - 1 - margin, k).round()
        ys = np.linspace(margin, h - 1 - margin, k).round()
        gx, gy = np.meshgrid(xs, ys)
        return np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    if method != "harris":
        raise ValueError(f"method must be 'harris' or 'grid', got {method!r}")
    from skimage.color import rgb2gray
    from skimage.feature import corner_harris, corner_peaks

    response = corner_harris(rgb2gray(image))
    peaks = corner_peaks(
        response,
        min_distance=min_distance,
        exclude_border=max(1, margin),
        num_peaks=n_keypoints,
        threshold_rel=0.01,
    )
    order = np.argsort(-response[peaks[:, 0], peaks[:, 1]], kind="stable")
    peaks = peaks[order]
    return peaks[:, ::-1].astype(np.float32)  # (row, col) -> (x, y)


def _apply(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    p = np.c_[np.asarray(xy, dtype=np.float64), np.ones(len(xy))] @ h.T
    return p[:, :2] / p[:, 2:3]


def _warp_image(image: np.ndarray, warp: Warp, fill: int) -> np.ndarray:
    """The target image: warped by the homography, then given the illumination change."""
    from skimage.transform import ProjectiveTransform
    from skimage.transform import warp as sk_warp

    values = image.astype(np.float64) / 255.0
    if warp.geometric:
        transform = ProjectiveTransform(matrix=warp.homography(image.shape[:2]))
        values = sk_warp(values, transform.inverse, order=1, mode="constant", cval=fill / 255.0)
    values = np.clip(warp.gain * values**warp.gamma, 0.0, 1.0)
    return (values * 255.0).round().astype(np.uint8)


def warp_pair(
    name: str,
    warp: Warp,
    *,
    max_side: int | None = 256,
    n_keypoints: int = 50,
    keypoints: str = "harris",
    margin: int = 8,
    fill: int = 0,
    image: np.ndarray | None = None,
) -> KeypointPair:
    """One geometric pair: a photograph and its warped copy, with exact correspondences.

    Args:
        name: the ``skimage.data`` photograph (also the pair's category).
        warp: the homography and illumination change.
        max_side: the source's longer side in pixels (``None``: original size).
        n_keypoints: at most this many source keypoints.
        keypoints: ``"harris"`` or ``"grid"``.
        margin: keypoints lie at least this many pixels inside both images.
        fill: grey level of target pixels that come from outside the source.
        image: use this ``(H, W, 3)`` uint8 image instead of loading ``name``.

    Returns:
        The :class:`~difflens.data.keypoints.KeypointPair` (``pair_id`` ``"<name>/<warp>"``);
        ``meta["homography"]`` is the ``(3, 3)`` source-to-target map, ``meta["warp"]`` the
        :class:`Warp` and ``meta["dropped"]`` the number of source keypoints that left the
        target. Boxes are the whole images.
    """
    source = load_photo(name, max_side) if image is None else np.asarray(image)
    h, w = source.shape[:2]
    hom = warp.homography((h, w)) if warp.geometric else np.eye(3)
    src = source_keypoints(source, n_keypoints, method=keypoints, margin=margin)
    trg = _apply(hom, src)
    inside = (
        (trg[:, 0] >= margin)
        & (trg[:, 0] <= w - 1 - margin)
        & (trg[:, 1] >= margin)
        & (trg[:, 1] <= h - 1 - margin)
    )
    box = np.array([0.0, 0.0, w - 1.0, h - 1.0])
    return KeypointPair(
        pair_id=f"{name}/{warp.name}",
        category=name,
        source_image=source,
        target_image=_warp_image(source, warp, fill),
        source_points=src[inside],
        target_points=trg[inside],
        keypoint_ids=[f"kp{i}" for i in np.flatnonzero(inside)],
        source_box=box,
        target_box=box,
        source_name=name,
        target_name=f"{name}/{warp.name}",
        meta={
            "dataset": "warped-photos",
            "homography": hom,
            "warp": warp,
            "dropped": int((~inside).sum()),
        },
    )


@dataclass(frozen=True)
class WarpedPhotos:
    """Every (photograph, warp) pair: HPatches-style geometric pairs from ``skimage.data``.

    Attributes:
        photos: ``skimage.data`` image names.
        warps: the warps applied to each photograph.
        max_side: the photographs' longer side in pixels.
        n_keypoints: at most this many keypoints per pair.
        keypoints: ``"harris"`` or ``"grid"``.
        margin: keypoints lie at least this many pixels inside both images.
        skipped: one record per pair left without a keypoint (not yielded).
    """

    photos: tuple[str, ...] = PHOTOS
    warps: tuple[Warp, ...] = WARPS
    max_side: int | None = 256
    n_keypoints: int = 50
    keypoints: str = "harris"
    margin: int = 8
    skipped: SkipLog = field(
        default_factory=lambda: SkipLog(verbose=False), init=False, compare=False, repr=False
    )

    def __len__(self) -> int:
        return len(self.photos) * len(self.warps)

    def __iter__(self) -> Iterator[KeypointPair]:
        for name in self.photos:
            source = load_photo(name, self.max_side)
            for warp in self.warps:
                pair = warp_pair(
                    name,
                    warp,
                    n_keypoints=self.n_keypoints,
                    keypoints=self.keypoints,
                    margin=self.margin,
                    image=source,
                )
                if len(pair) == 0:
                    self.skipped.skip(pair.pair_id, "no keypoint lands inside the target")
                    continue
                yield pair

    def with_(self, **changes: object) -> WarpedPhotos:
        """A copy with some fields changed.

        Args:
            **changes: new field values.

        Returns:
            The new dataset.
        """
        return replace(self, **changes)
