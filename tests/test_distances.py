import numpy as np
import pytest
from scipy.spatial.distance import cdist

from difflens.distances import pairwise

SCIPY = {
    "euclidean": "euclidean",
    "manhattan": "cityblock",
    "cosine": "cosine",
    "correlation": "correlation",
}


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


def test_unknown_metric_names_choices():
    with pytest.raises(ValueError, match="euclidean"):
        pairwise(np.ones((2, 2)), metric="hamming")
