"""All-pairs distances against scipy's cdist and dcor's distance correlation."""

import dcor
import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from difflens.analysis.distances import (
    DegenerateVectorWarning,
    _CentredDistances,
    canonical_metric,
    degenerate_rows,
    distance_correlation_matrix,
    pairwise,
)

SCIPY = {
    "euclidean": "euclidean",
    "manhattan": "cityblock",
    "cosine": "cosine",
    "correlation": "correlation",
}


def off_diagonal_rel_err(ours, ref):
    off = ~np.eye(*ref.shape, dtype=bool)
    return np.max(np.abs(ours[off] - ref[off]) / np.abs(ref[off]))


@pytest.mark.parametrize("metric", list(SCIPY))
def test_pairwise_matches_scipy_float64(metric):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 17)) * 5 + 3
    y = rng.normal(size=(11, 17))
    np.testing.assert_allclose(
        pairwise(x, y, metric), cdist(x, y, SCIPY[metric]), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(
        pairwise(x, metric=metric), cdist(x, x, SCIPY[metric]), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("metric", list(SCIPY))
@pytest.mark.parametrize("block", [1, 7, 2048])
def test_blocks_and_symmetry_match_scipy(metric, block):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(23, 40)) + 0.5).astype(np.float32)
    ours = pairwise(x, metric=metric, block=block)
    ref = cdist(x.astype(np.float64), x.astype(np.float64), SCIPY[metric])
    assert off_diagonal_rel_err(ours, ref) < 1e-6
    assert np.array_equal(ours, ours.T)
    assert np.all(np.diag(ours) == 0)


@pytest.mark.parametrize(
    "metric, rtol, atol",
    [("euclidean", 1e-4, 0), ("manhattan", 1e-5, 0), ("cosine", 0, 2e-6), ("correlation", 0, 2e-6)],
)
def test_float32_products_within_documented_tolerance(metric, rtol, atol):
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(60, 1280)) + 0.3).astype(np.float32)
    ours = pairwise(x, metric=metric, dtype=torch.float32)
    assert ours.dtype == np.float32
    ref = cdist(x.astype(np.float64), x.astype(np.float64), SCIPY[metric])
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_euclidean_precise_for_near_duplicates(dtype):
    # large norms, tiny differences: the plain Gram / cdist-mm form loses these
    rng = np.random.default_rng(3)
    base = rng.normal(size=(1, 1280)) * 5 + 100
    x = base + rng.normal(size=(40, 1280)) * 1e-3  # > 25 rows: cdist takes its mm path
    x = np.vstack([x, x[:1]])  # an exact duplicate too
    ours = pairwise(x, metric="euclidean", dtype=dtype)
    ref = cdist(x, x)
    assert ours[0, -1] == 0.0
    off = ref > 0
    assert np.max(np.abs(ours[off] - ref[off]) / ref[off]) < 1e-6
    # torch.cdist's default (matrix-multiply) path is far off here: the reason for the care
    naive = torch.cdist(torch.tensor(x, dtype=torch.float32), torch.tensor(x, dtype=torch.float32))
    assert np.max(np.abs(naive.numpy()[off] - ref[off]) / ref[off]) > 1e-2


def test_cosine_precise_for_near_parallel_vectors():
    rng = np.random.default_rng(4)
    u = rng.normal(size=(1, 64))
    x = u + rng.normal(size=(5, 64)) * 1e-6
    ours = pairwise(x, metric="cosine", dtype=torch.float32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    # 1 - cos = |u - v|^2 / 2 for unit vectors: no cancellation in this form
    ref = 0.5 * ((unit[:, None] - unit[None]) ** 2).sum(-1)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-15)


def test_aliases_and_unknown_metric():
    assert canonical_metric("cityblock") == "manhattan"
    assert canonical_metric("Pearson") == "correlation"
    assert canonical_metric("dcor") == "distance_correlation"
    with pytest.raises(ValueError, match="euclidean"):
        pairwise(np.ones((2, 2)), metric="hamming")


def test_bad_input_is_named():
    x = np.ones((4, 3))
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="X has 1 non-finite values in 1 rows"):
        pairwise(x)
    with pytest.raises(ValueError, match="3 features but Y has 2"):
        pairwise(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        pairwise(np.ones(3))


def test_zero_and_constant_vectors():
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [2.0, 2.0, 2.0], [3.0, 1.0, 0.0]])
    assert degenerate_rows(x, "cosine").tolist() == [False, True, False, False]
    assert degenerate_rows(x, "correlation").tolist() == [False, True, True, False]
    with pytest.warns(DegenerateVectorWarning, match="1 zero rows"):
        cos = pairwise(x, metric="cosine")
    ref = cdist(x, x, "cosine")  # scipy: NaN for the zero vector
    assert np.isnan(cos[1, [0, 2, 3]]).all() and np.isnan(ref[1, [0, 2, 3]]).all()
    assert cos[1, 1] == 0.0
    np.testing.assert_allclose(
        cos[[0, 2, 3]][:, [0, 2, 3]], ref[[0, 2, 3]][:, [0, 2, 3]], atol=1e-12
    )
    with pytest.warns(DegenerateVectorWarning, match="2 constant rows"):
        corr = pairwise(x, metric="correlation")
    assert np.isnan(corr[2, 0]) and np.isnan(corr[1, 3])
    orth = pairwise(x, metric="correlation", degenerate="orthogonal")
    assert orth[2, 0] == 1.0 and orth[1, 2] == 1.0 and orth[2, 2] == 0.0
    # distance correlation: a constant vector has dCor 0 (Székely, dcor), distance 1
    dc = pairwise(x, metric="distance_correlation", dtype=torch.float64)
    assert dc[2, 0] == pytest.approx(1 - dcor.distance_correlation(x[2], x[0]))
    assert dc[2, 0] == 1.0
    # euclidean and manhattan are defined everywhere
    np.testing.assert_allclose(pairwise(x, metric="manhattan"), cdist(x, x, "cityblock"))


def dcor_reference(x, y=None, squared=False):
    y = x if y is None else y
    fn = dcor.distance_correlation_sqr if squared else dcor.distance_correlation
    return np.array([[fn(a, b) for b in y] for a in x])


def test_distance_correlation_matches_dcor_float64():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(7, 50))
    x[2] = x[1] ** 2  # nonlinear dependence
    x[3] = -x[0]  # dCor ignores sign
    x[4] = 3 * x[0] + 1  # and affine maps
    ours = distance_correlation_matrix(x, dtype=torch.float64)
    ref = dcor_reference(x)
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    assert ours[0, 3] == pytest.approx(1.0) and ours[0, 4] == pytest.approx(1.0)
    sq = distance_correlation_matrix(x[:3], x[3:], squared=True, dtype=torch.float64)
    np.testing.assert_allclose(sq, dcor_reference(x[:3], x[3:], squared=True), atol=1e-10)


@pytest.mark.parametrize("memory_mb", [1e-4, 512])
def test_distance_correlation_float32_chunks_match_dcor(memory_mb):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(9, 200)).astype(np.float32)
    y = rng.normal(size=(4, 200)).astype(np.float32)
    ref = dcor_reference(x.astype(np.float64))
    ours = distance_correlation_matrix(x, memory_mb=memory_mb, block=4)
    np.testing.assert_allclose(ours, ref, atol=2e-6)
    cross = distance_correlation_matrix(x, y, memory_mb=memory_mb)
    np.testing.assert_allclose(
        cross, dcor_reference(x.astype(np.float64), y.astype(np.float64)), atol=2e-6
    )
    dist = pairwise(x, metric="distance_correlation", dtype=torch.float32)
    np.testing.assert_allclose(dist, 1 - ref, atol=2e-6)
    assert np.all(np.diag(dist) == 0)


@pytest.mark.parametrize("use_kernel", [True, False])
def test_centred_chunks_give_dcor_squared(use_kernel):
    # the CPU kernel and the torch build (used on GPUs) against dcor, chunk by chunk
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.normal(size=(3, 30)))
    centred = _CentredDistances(x, use_kernel=use_kernel)
    parts = [centred.chunk(r0, min(30, r0 + 7)) for r0 in range(0, 30, 7)]
    e = torch.cat(parts, dim=1).numpy()
    gram = e @ e.T
    ours = gram[0, 1] / np.sqrt(gram[0, 0] * gram[1, 1])
    assert ours == pytest.approx(
        dcor.distance_correlation_sqr(x[0].numpy(), x[1].numpy()), abs=1e-12
    )
    # dCov^2 itself (V-statistic, Eq. 7): <A, B> / d^2
    assert gram[0, 2] / 30**2 == pytest.approx(
        dcor.distance_covariance_sqr(x[0].numpy(), x[2].numpy()), abs=1e-12
    )


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine", "correlation"])
def test_paired_distances_to_per_row_centroids_match_scipy(metric):
    from difflens.analysis.distances import SCIPY_NAMES, paired

    rng = np.random.default_rng(5)
    x = rng.normal(size=(7, 12))
    centroids = rng.normal(size=(7, 4, 12))
    got = paired(x[:, None, :], centroids, metric)
    expected = np.stack(
        [cdist(x[n : n + 1], centroids[n], SCIPY_NAMES[metric])[0] for n in range(7)]
    )
    assert got.shape == (7, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_paired_gives_nan_for_a_zero_vector_and_names_unsupported_metrics():
    from difflens.analysis.distances import paired

    assert np.isnan(paired(np.zeros(3), np.ones(3), "cosine"))
    assert np.isnan(paired(np.full(3, 2.0), np.arange(3.0), "correlation"))
    with pytest.raises(ValueError, match="paired supports"):
        paired(np.ones(3), np.ones(3), "distance_correlation")
