"""All-pairs distances between prototype vectors, batched in torch.

Metric names: ``euclidean``, ``manhattan`` (scipy's ``cityblock``), ``cosine`` and
``correlation`` (1 - Pearson, scipy's convention).
"""

from __future__ import annotations

import numpy as np
import torch

METRICS = ("euclidean", "manhattan", "cosine", "correlation")
_ALIASES = {"cityblock": "manhattan", "l1": "manhattan", "l2": "euclidean"}


def canonical_metric(metric: str) -> str:
    name = _ALIASES.get(metric, metric)
    if name not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return name


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    norms = x.norm(dim=1, keepdim=True)
    return x / norms.clamp_min(torch.finfo(x.dtype).tiny)


def pairwise(
    X, Y=None, metric: str = "euclidean", dtype: torch.dtype = torch.float64, block: int = 2048
) -> np.ndarray:
    """Distances between the rows of ``X`` and of ``Y`` (``X`` itself when ``Y`` is None)."""
    metric = canonical_metric(metric)
    x = torch.as_tensor(np.asarray(X), dtype=dtype)
    y = x if Y is None else torch.as_tensor(np.asarray(Y), dtype=dtype)
    if metric in ("cosine", "correlation"):
        if metric == "correlation":
            x = x - x.mean(1, keepdim=True)
            y = y - y.mean(1, keepdim=True)
        out = (1.0 - _unit_rows(x) @ _unit_rows(y).T).clamp_(0.0, 2.0)
    elif metric == "euclidean":
        centre = x.mean(0, keepdim=True)
        xc, yc = x - centre, y - centre
        sq = (xc * xc).sum(1)[:, None] + (yc * yc).sum(1)[None, :] - 2.0 * xc @ yc.T
        out = sq.clamp_min_(0.0).sqrt_()
    else:
        out = torch.empty((x.shape[0], y.shape[0]), dtype=dtype)
        for start in range(0, x.shape[0], block):
            out[start : start + block] = torch.cdist(x[start : start + block], y, p=1)
    if Y is None:
        out.fill_diagonal_(0.0)
    return out.numpy()
