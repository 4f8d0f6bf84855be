"""Warped photographs: ground truth against scikit-image's own transforms, the images against
numpy rotations, keypoints inside both images, illumination changes by hand."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import EuclideanTransform, ProjectiveTransform, SimilarityTransform

from difflens.data.keypoints import check_pair
from difflens.data.warps import (
    PHOTOS,
    WARPS,
    Warp,
    WarpedPhotos,
    load_photo,
    source_keypoints,
    warp_pair,
)


def _centred(transform, h, w):
    """``transform`` about the image centre, composed with scikit-image's own classes."""
    cx, cy = (w - 1) / 2, (h - 1) / 2
    to_centre = EuclideanTransform(translation=(-cx, -cy)).params
    back = EuclideanTransform(translation=(cx, cy)).params
    return back @ transform.params @ to_centre


@pytest.mark.parametrize("angle,scale", [(30.0, 1.0), (-45.0, 0.8), (10.0, 1.3)])
def test_target_points_are_the_homography_of_the_source_points(angle, scale):
    pair = warp_pair("astronaut", Warp("w", angle=angle, scale=scale), max_side=128)
    h, w = pair.source_size
    reference = _centred(SimilarityTransform(scale=scale, rotation=np.deg2rad(angle)), h, w)
    np.testing.assert_allclose(pair.meta["homography"], reference, atol=1e-12)
    expected = ProjectiveTransform(matrix=reference)(pair.source_points.astype(np.float64))
    np.testing.assert_allclose(pair.target_points, expected, atol=1e-4)
    assert len(pair) > 5
    check_pair(pair)


def test_perspective_by_hand():
    warp = Warp("p", px=0.5, py=0.25)
    h, w = 9, 21
    hom = warp.homography((h, w))
    # centred coordinates q = p - c; P q = (qx, qy, 1 + 0.5 qx / w + 0.25 qy / h)
    p = np.array([20.0, 8.0])  # bottom-right corner: q = (10, 4)
    denominator = 1 + 0.5 * 10 / 21 + 0.25 * 4 / 9
    expected = np.array([10.0, 4.0]) / denominator + [10.0, 4.0]
    got = ProjectiveTransform(matrix=hom)(p[None])[0]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_a_quarter_turn_is_numpy_s_clockwise_rotation():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (33, 33, 3), dtype=np.uint8)
    pair = warp_pair("square", Warp("r90", angle=90.0), image=image, keypoints="grid", margin=2)
    # positive angles turn clockwise on screen (y points down): np.rot90 with k=-1
    np.testing.assert_array_equal(pair.target_image, np.rot90(image, k=-1))
    xs, ys = pair.target_points.T.round().astype(int)
    sx, sy = pair.source_points.T.astype(int)
    np.testing.assert_array_equal(pair.target_image[ys, xs], image[sy, sx])


def test_keypoints_stay_inside_both_images_and_dropped_ones_are_counted():
    pair = warp_pair("coffee", Warp("zoom", scale=1.6), max_side=128, margin=6)
    h, w = pair.target_size
    for pts in (pair.source_points, pair.target_points):
        assert (pts[:, 0] >= 6).all() and (pts[:, 0] <= w - 7).all()
        assert (pts[:, 1] >= 6).all() and (pts[:, 1] <= h - 7).all()
    assert pair.meta["dropped"] > 0  # a zoom pushes border corners out
    all_points = source_keypoints(pair.source_image, 50, margin=6)
    assert len(pair) + pair.meta["dropped"] == len(all_points)


def test_illumination_change_by_hand():
    image = np.array([[[0, 64, 255], [128, 200, 10]]], dtype=np.uint8)
    pair = warp_pair(
        "tiny", Warp("dark", gain=0.7, gamma=1.6), image=image, keypoints="grid", margin=0
    )
    expected = np.clip(0.7 * (image / 255.0) ** 1.6, 0, 1) * 255
    np.testing.assert_array_equal(pair.target_image, expected.round().astype(np.uint8))
    np.testing.assert_array_equal(pair.meta["homography"], np.eye(3))
    np.testing.assert_array_equal(pair.target_points, pair.source_points)


def test_harris_corners_are_local_maxima_of_the_response():
    from skimage.color import rgb2gray
    from skimage.feature import corner_harris

    image = load_photo("chelsea", 128)
    pts = source_keypoints(image, 20, margin=8, min_distance=4)
    response = corner_harris(rgb2gray(image))
    for x, y in pts.astype(int):
        window = response[y - 4 : y + 5, x - 4 : x + 5]
        assert response[y, x] == window.max()
    assert len(pts) <= 20


def test_dataset_of_every_photo_and_warp():
    ds = WarpedPhotos(photos=PHOTOS[:2], warps=WARPS[:3], max_side=96)
    pairs = list(ds)
    assert len(ds) == 6 and len(pairs) <= 6
    assert {p.category for p in pairs} == set(PHOTOS[:2])
    assert len(pairs) + len(ds.skipped) == 6
    with pytest.raises(ValueError, match="skimage.data"):
        load_photo("no_such_photo")
