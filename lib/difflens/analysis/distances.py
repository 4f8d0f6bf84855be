"""All-pairs distances between prototype vectors, batched.

Metric names (``canonical_metric`` also accepts scipy's and a few common aliases):

``euclidean``
    ``||x - y||_2`` (Eq. 4). Computed from a Gram matrix of column-centred rows (one matrix
    multiply per block); pairs whose squared distance is small next to the squared norms,
    where the Gram form cancels, are recomputed directly from ``x - y`` in float64. Exact
    to rounding even for near-duplicates (``torch.cdist``'s matrix-multiply path is not).
``manhattan`` (``cityblock``)
    ``sum |x - y|`` (Eq. 8), a numba kernel (parallel over groups of four rows that share
    each load of the other row, SIMD over features). ``torch.cdist(p=1)`` is ~30x slower.
``cosine``
    ``1 - x.y / (|x| |y|)`` (Eq. 9), scipy's convention, clipped to ``[0, 2]``.
``correlation``
    ``1 - Pearson(x, y)`` (scipy's ``correlation``): the cosine distance of the rows after
    subtracting each row's own mean. The reading of the paper's "correlation" (its choice
    for Figs. 4-10); ``FIGURE_METRIC`` names it.
``distance_correlation``
    ``1 - dCor(x, y)`` with Székely's distance correlation of the components of the two
    vectors taken as ``d`` paired scalar samples, exactly as the paper's Eq. 5 prints it
    (the square root of ``dCov^2 / sqrt(dVar^2 dVar^2)``, V-statistics of Eq. 7; ``dcor``'s
    ``distance_correlation``). See :func:`distance_correlation_matrix`.

Precision: with ``dtype=torch.float64`` (the default) every metric agrees with
``scipy.spatial.distance.cdist`` to a relative error below ``1e-6`` (measured: ~1e-15 for
the Gram-based metrics; ~1e-7 for manhattan on float32 prototypes, whose float32
differences are summed in float64, 64 terms at a time in float32). With
``dtype=torch.float32`` the products and sums run in float32: relative error up to about
``1e-4`` for euclidean (near-duplicates are still recomputed exactly), an absolute error
of about ``1e-6`` for cosine and correlation (as for any ``1 - cos`` form) and about
``1e-6`` relative for manhattan; two to three times faster.

Degenerate vectors: a zero vector has no cosine distance and a constant vector (a zero
vector included) no correlation distance. ``degenerate="nan"`` (default, scipy's
convention) returns NaN for their pairs and warns with a :class:`DegenerateVectorWarning`
naming how many rows; ``distance_sets`` leaves such pairs out of every set and counts them.
``degenerate="orthogonal"`` treats them as orthogonal to everything (distance 1). The
distance correlation of a constant vector is 0 by Székely's own definition, so its
distance is 1 (as ``dcor`` gives), no warning needed. A vector's distance to itself
(the diagonal of ``pairwise(X)``) is always 0.
"""

from __future__ import annotations

import math
import warnings

import numba
import numpy as np
import torch

METRICS = ("euclidean", "manhattan", "cosine", "correlation", "distance_correlation")
#: The metrics of the paper's Table 1 / Fig. 3, with the name scipy's ``cdist`` uses.
SCIPY_NAMES = {
    "euclidean": "euclidean",
    "manhattan": "cityblock",
    "cosine": "cosine",
    "correlation": "correlation",
}
#: The metric the figures use for the paper's "correlation" (see the module docstring).
FIGURE_METRIC = "correlation"
DEGENERATE_POLICIES = ("nan", "orthogonal")
_ALIASES = {
    "cityblock": "manhattan",
    "l1": "manhattan",
    "l2": "euclidean",
    "pearson": "correlation",
    "dcor": "distance_correlation",
    "distance-correlation": "distance_correlation",
}
# Relative size of a squared distance next to |x|^2 + |y|^2 below which the Gram form is
# recomputed directly (see _refine): rounding in the Gram product is ~sqrt(d) * eps.
_REFINE_BELOW = {torch.float64: 1e-6, torch.float32: 2e-2}
_REFINE_CHUNK = 4096


#: Rows of prototype vectors: a numpy array or a torch tensor.
Matrix = np.ndarray | torch.Tensor


class DegenerateVectorWarning(UserWarning):
    """Some rows are zero or constant, so a metric is undefined for their pairs."""


def canonical_metric(metric: str) -> str:
    """The canonical name of ``metric`` (``cityblock`` -> ``manhattan``, ...).

    Args:
        metric: a metric name or alias (case-insensitive).

    Returns:
        One of :data:`METRICS`.

    Raises:
        ValueError: the name is not a metric (the message lists them).
    """
    name = _ALIASES.get(str(metric).lower(), str(metric).lower())
    if name not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return name


def _as_matrix(values, name: str) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (rows x features) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.flatnonzero(bad.any(1))
        raise ValueError(
            f"{name} has {int(bad.sum())} non-finite values in {len(rows)} rows "
            f"(first rows: {rows[:5].tolist()}); distances need finite features"
        )
    return array


def degenerate_rows(X: Matrix, metric: str) -> np.ndarray:
    """Boolean mask of the rows of ``X`` for which ``metric`` is undefined.

    Zero rows for ``cosine``; constant rows (zero rows included) for ``correlation``;
    constant rows for ``distance_correlation`` (defined as distance 1 by Székely's
    convention, reported here for information); nothing for the others.

    Args:
        X: ``(N, D)`` rows.
        metric: a metric name or alias.

    Returns:
        bool ``(N,)``.
    """
    metric = canonical_metric(metric)
    x = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        return ~np.any(x != 0, axis=1)
    if metric in ("correlation", "distance_correlation"):
        return np.all(x == x[:, :1], axis=1) if x.shape[1] else np.ones(len(x), bool)
    return np.zeros(len(x), bool)


# ----------------------------------------------------------------------------- manhattan


_CHUNK = 64


@numba.njit(fastmath=True, cache=True)
def _four_rows(x, y, i, out):  # pragma: no cover - compiled
    """Rows ``i..i+3`` of ``out`` in the precision of ``out``.

    Four rows of ``x`` share each row of ``y`` (one load of ``y`` for four pairs).
    """
    d = x.shape[1]
    zero = out.dtype.type(0)
    for j in range(y.shape[0]):
        s0 = zero
        s1 = zero
        s2 = zero
        s3 = zero
        for k in range(d):
            b = y[j, k]
            s0 += abs(x[i, k] - b)
            s1 += abs(x[i + 1, k] - b)
            s2 += abs(x[i + 2, k] - b)
            s3 += abs(x[i + 3, k] - b)
        out[i, j] = s0
        out[i + 1, j] = s1
        out[i + 2, j] = s2
        out[i + 3, j] = s3


@numba.njit(fastmath=True, cache=True)
def _four_rows_f32_f64(x, y, i, out):  # pragma: no cover - compiled
    """As :func:`_four_rows` for float32 rows and float64 sums.

    Partial sums of 64 terms in float32 (SIMD), added in float64; all terms are positive,
    so the relative error stays near 1e-7.
    """
    d = x.shape[1]
    full = d - d % _CHUNK
    for j in range(y.shape[0]):
        t0 = 0.0
        t1 = 0.0
        t2 = 0.0
        t3 = 0.0
        for k0 in range(0, full, _CHUNK):
            s0 = np.float32(0)
            s1 = np.float32(0)
            s2 = np.float32(0)
            s3 = np.float32(0)
            for kk in range(_CHUNK):
                k = k0 + kk
                b = y[j, k]
                s0 += abs(x[i, k] - b)
                s1 += abs(x[i + 1, k] - b)
                s2 += abs(x[i + 2, k] - b)
                s3 += abs(x[i + 3, k] - b)
            t0 += s0
            t1 += s1
            t2 += s2
            t3 += s3
        for k in range(full, d):
            b = y[j, k]
            t0 += abs(x[i, k] - b)
            t1 += abs(x[i + 1, k] - b)
            t2 += abs(x[i + 2, k] - b)
            t3 += abs(x[i + 3, k] - b)
        out[i, j] = t0
        out[i + 1, j] = t1
        out[i + 2, j] = t2
        out[i + 3, j] = t3


@numba.njit(fastmath=True, cache=True)
def _one_row(x, y, r, out):  # pragma: no cover - compiled
    zero = out.dtype.type(0)
    for j in range(y.shape[0]):
        s = zero
        for k in range(x.shape[1]):
            s += abs(out.dtype.type(x[r, k]) - out.dtype.type(y[j, k]))
        out[r, j] = s


@numba.njit(parallel=True, cache=True)
def _manhattan_kernel(x, y, out):  # pragma: no cover - compiled
    """``out[i, j] = sum_k |x[i, k] - y[j, k]|``, in parallel over groups of four rows."""
    n = x.shape[0]
    for g in numba.prange(n // 4):
        _four_rows(x, y, 4 * g, out)
    for r in range(n - n % 4, n):
        _one_row(x, y, r, out)


@numba.njit(parallel=True, cache=True)
def _manhattan_kernel_f32_f64(x, y, out):  # pragma: no cover - compiled
    """As :func:`_manhattan_kernel`, float32 rows summed into float64."""
    n = x.shape[0]
    for g in numba.prange(n // 4):
        _four_rows_f32_f64(x, y, 4 * g, out)
    for r in range(n - n % 4, n):
        _one_row(x, y, r, out)


def _np_dtype(dtype: torch.dtype) -> type:
    return np.float64 if dtype == torch.float64 else np.float32


def _mirror_block(out: np.ndarray, start: int, stop: int) -> None:
    """Copy the computed rows ``start:stop`` (columns ``start:``) below the diagonal.

    The diagonal block becomes the mean of itself and its transpose (exactly symmetric).
    """
    t = torch.from_numpy(out)
    diag = t[start:stop, start:stop]
    diag.copy_((diag + diag.T) * 0.5)
    t[stop:, start:stop].copy_(t[start:stop, stop:].T)


def manhattan(
    X: Matrix, Y: Matrix | None = None, dtype: torch.dtype = torch.float64, block: int = 2048
) -> np.ndarray:
    """All-pairs Manhattan (cityblock) distances; only the upper triangle when ``Y`` is None.

    ``dtype=torch.float64`` on float32 rows (prototype tables hold float32) takes float32
    differences -- exact to half an ulp -- and sums them in float64 (64 terms at a time in
    float32): relative error about 1e-7. Float64 rows are summed in float64 throughout.
    ``torch.float32`` sums in float32 (relative error about 1e-6), about twice as fast.

    Args:
        X: ``(N, D)`` rows (numpy or torch).
        Y: ``(M, D)`` rows, or None for ``X`` against itself.
        dtype: the precision of the sums.
        block: rows per block.

    Returns:
        ``(N, M)`` (or ``(N, N)``, symmetric, zero diagonal) distances, float64 for
        ``torch.float64`` and float32 otherwise.
    """
    x = _as_matrix(X, "X")
    y = None if Y is None else _as_matrix(Y, "Y")
    if y is not None:
        _check_same_width(x, y)
    both_f32 = x.dtype == np.float32 and (y is None or y.dtype == np.float32)
    if dtype == torch.float64 and both_f32:
        kernel, in_dtype, out_dtype = _manhattan_kernel_f32_f64, np.float32, np.float64
    else:
        in_dtype = out_dtype = _np_dtype(dtype)
        kernel = _manhattan_kernel
    x = np.ascontiguousarray(x, dtype=in_dtype)
    if y is None:
        n = len(x)
        out = np.empty((n, n), out_dtype)
        for start in range(0, n, block):
            stop = min(n, start + block)
            kernel(x[start:stop], x[start:], out[start:stop, start:])
            _mirror_block(out, start, stop)
        np.fill_diagonal(out, 0)
        return out
    y = np.ascontiguousarray(y, dtype=in_dtype)
    out = np.empty((len(x), len(y)), out_dtype)
    for start in range(0, len(x), block):
        kernel(x[start : start + block], y, out[start : start + block])
    return out


# ------------------------------------------------------------------- Gram-based metrics


def _check_same_width(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X has {x.shape[1]} features but Y has {y.shape[1]}")


def _prepare(x64: torch.Tensor, metric: str, centre: torch.Tensor | None) -> torch.Tensor:
    """Rows in the space where the metric is a function of the Gram matrix (float64)."""
    if metric == "euclidean":
        return x64 - centre
    if metric == "correlation":
        x64 = x64 - x64.mean(1, keepdim=True)
    norms = x64.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, x64 / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0)


def _refine(out: torch.Tensor, xp: torch.Tensor, yp: torch.Tensor, small: torch.Tensor, half: bool):
    """Recompute ``out[small]`` from the difference of the rows: ``|x - y|^2`` (or half of it)."""
    ii, jj = torch.nonzero(small, as_tuple=True)
    for start in range(0, len(ii), _REFINE_CHUNK):
        i = ii[start : start + _REFINE_CHUNK]
        j = jj[start : start + _REFINE_CHUNK]
        diff = xp[i] - yp[j]
        sq = (diff * diff).sum(1)
        out[i, j] = 0.5 * sq if half else sq


def _gram_block(
    xp: torch.Tensor, yp: torch.Tensor, xl: torch.Tensor, yl: torch.Tensor, metric: str
) -> torch.Tensor:
    """Distances (float64) between prepared rows ``xp``, ``yp`` (float64) of one block.

    ``xl``, ``yl`` are the same rows in the precision of the product. Pairs where the Gram
    form cancels (a squared distance below ``tau`` times its scale) are recomputed directly.
    """
    g = (xl @ yl.T).to(torch.float64)
    tau = _REFINE_BELOW.get(xl.dtype, 1e-6)
    if metric == "euclidean":
        scale = (xp * xp).sum(1)[:, None] + (yp * yp).sum(1)[None, :]
        sq = (scale - 2.0 * g).clamp_min_(0.0)
        _refine(sq, xp, yp, sq <= tau * scale, half=False)
        return sq.sqrt_()
    out = (1.0 - g).clamp_(0.0, 2.0)
    # unit rows: 1 - cos = |u - v|^2 / 2, exact where 1 - cos is small
    _refine(out, xp, yp, out <= tau, half=True)
    return out


def _gram_metric(
    x: np.ndarray, y: np.ndarray | None, metric: str, dtype: torch.dtype, block: int
) -> np.ndarray:
    x64 = torch.from_numpy(np.asarray(x, np.float64))
    y64 = x64 if y is None else torch.from_numpy(np.asarray(y, np.float64))
    centre = None
    if metric == "euclidean":
        centre = torch.cat([x64, y64]).mean(0, keepdim=True) if y is not None else x64.mean(0)
    xp = _prepare(x64, metric, centre)
    yp = xp if y is None else _prepare(y64, metric, centre)
    xl = xp.to(dtype)
    yl = xl if y is None else yp.to(dtype)
    n, m = len(xp), len(yp)
    result = np.empty((n, m), dtype=np.float64)
    for start in range(0, n, block):
        stop = min(n, start + block)
        first = start if y is None else 0  # symmetric: the upper triangle only
        blk = _gram_block(xp[start:stop], yp[first:], xl[start:stop], yl[first:], metric)
        result[start:stop, first:] = blk.numpy()
        if y is None:
            _mirror_block(result, start, stop)
    if y is None:
        np.fill_diagonal(result, 0.0)
    return result.astype(_np_dtype(dtype), copy=False)


# ------------------------------------------------------------------ distance correlation


def _row_distance_sums(x: torch.Tensor) -> torch.Tensor:
    """``sum_c |x[p, r] - x[p, c]|`` for every row ``p`` and component ``r``, O(d log d)."""
    values, order = torch.sort(x, dim=1)
    d = x.shape[1]
    before = torch.cumsum(values, dim=1) - values  # sum of the smaller values
    total = values.sum(1, keepdim=True)
    rank = torch.arange(d, dtype=x.dtype)
    sums = values * rank - before + (total - before - values) - values * (d - 1 - rank)
    return torch.empty_like(sums).scatter_(1, order, sums)


@numba.njit(parallel=True, fastmath=True, cache=True)
def _centred_chunk_kernel(x, u, r0, r1, w, out):  # pragma: no cover - compiled
    """Rows ``r0 <= r < r1`` (columns ``c >= r0``) of every row's weighted centred matrix."""
    n, d = x.shape
    width = d - r0
    for p in numba.prange(n):
        for r in range(r0, r1):
            base = (r - r0) * width - r0
            xr = x[p, r]
            ur = u[p, r]
            for c in range(r0, r):
                out[p, base + c] = 0
            out[p, base + r] = -2 * ur
            for c in range(r + 1, d):
                out[p, base + c] = w * (abs(xr - x[p, c]) - ur - u[p, c])


class _CentredDistances:
    """Double-centred distance matrices of the components of each row, row chunk by chunk.

    For a row ``x`` (``d`` scalars), ``A[r, c] = |x_r - x_c| - abar_r - abar_c + abar``,
    written ``|x_r - x_c| - u_r - u_c`` with ``u = abar_r - abar / 2``. ``chunk(r0, r1)``
    gives the entries with ``r0 <= r < r1`` and ``c >= r0`` of every row, weighted so that
    inner products over them equal those over the full matrix (``sqrt 2`` above the
    diagonal, 0 below it). On the CPU a numba kernel writes them in one pass; elsewhere
    torch builds them.
    """

    def __init__(self, x: torch.Tensor, use_kernel: bool | None = None):
        self.x = x
        self.d = x.shape[1]
        row_means = _row_distance_sums(x) / self.d
        self.u = row_means - row_means.mean(1, keepdim=True) / 2
        self.use_kernel = x.device.type == "cpu" if use_kernel is None else use_kernel
        if self.use_kernel:
            self._x_np = np.ascontiguousarray(x.numpy())
            self._u_np = np.ascontiguousarray(self.u.numpy())

    def chunk(self, r0: int, r1: int) -> torch.Tensor:
        n, d, x = len(self.x), self.d, self.x
        if self.use_kernel:
            out = np.empty((n, (r1 - r0) * (d - r0)), dtype=self._x_np.dtype)
            weight = self._x_np.dtype.type(math.sqrt(2.0))
            _centred_chunk_kernel(self._x_np, self._u_np, r0, r1, weight, out)
            return torch.from_numpy(out)
        a = (x[:, r0:r1, None] - x[:, None, r0:]).abs_()
        a -= self.u[:, r0:r1, None]
        a -= self.u[:, None, r0:]
        r = torch.arange(r0, r1, device=x.device)[:, None]
        c = torch.arange(r0, d, device=x.device)[None, :]
        weight = (c > r).to(x.dtype) * math.sqrt(2.0) + (c == r).to(x.dtype)
        a *= weight
        return a.reshape(n, -1)


def distance_correlation_matrix(
    X: Matrix,
    Y: Matrix | None = None,
    squared: bool = False,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    memory_mb: float = 512,
    block: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Székely's distance correlation between the rows of ``X`` and ``Y``, all pairs.

    Each row is a sample of ``d`` scalars and two rows are paired component by component
    (the paper's Eq. 5). ``dCor^2(p, q)`` is the cosine similarity of the flattened
    double-centred distance matrices of ``p`` and ``q``, so every pair comes out of one Gram
    product, accumulated in float64 over chunks of matrix rows (only the upper triangle of
    each symmetric ``d x d`` matrix is used, off-diagonal entries weighted by ``sqrt 2``;
    for ``X`` alone only the blocks on or above the diagonal of the ``N x N`` product).
    Memory stays near ``memory_mb`` for the chunk plus the ``N x M`` result. The cost is
    about ``N^2 d^2 / 4`` multiply-adds for ``X`` alone (``N = 2,000``, ``d = 1,280``:
    under a minute on 2 CPU cores; ``device="cuda"`` runs it on a GPU).

    ``dtype=torch.float32`` (default) agrees with ``dcor.distance_correlation`` to about
    1e-6 absolute; ``torch.float64`` to about 1e-12, at twice the time.

    Args:
        X: ``(N, D)`` rows (numpy or torch).
        Y: ``(M, D)`` rows, or None for ``X`` against itself.
        squared: give dCor^2 instead of dCor.
        dtype: the precision of the chunks (the Gram product accumulates in float64).
        device: where the products run.
        memory_mb: about how much memory a chunk may take.
        block: rows per block of the ``N x N`` product (``X`` alone).
        progress: show a progress bar over the chunks.

    Returns:
        float64 ``(N, M)`` (or ``(N, N)``) dCor (dCor^2 with ``squared=True``) in
        ``[0, 1]``; a constant row gets 0, as in Székely's definition and ``dcor``.

    Raises:
        ValueError: ``X`` and ``Y`` differ in width.
    """
    device = torch.device(device)
    x = torch.from_numpy(np.asarray(_as_matrix(X, "X"), np.float64)).to(dtype)
    y = x if Y is None else torch.from_numpy(np.asarray(_as_matrix(Y, "Y"), np.float64)).to(dtype)
    if Y is not None and x.shape[1] != y.shape[1]:
        raise ValueError(f"X has {x.shape[1]} features but Y has {y.shape[1]}")
    n, m, d = len(x), len(y), x.shape[1]
    cx = _CentredDistances(x.to(device))
    cy = cx if Y is None else _CentredDistances(y.to(device))
    per_row = (n + (0 if Y is None else m)) * d * x.element_size()
    rows = max(1, min(d, int(memory_mb * 2**20 / max(per_row, 1))))
    gram = torch.zeros((n, m), dtype=torch.float64, device=device)
    norm_x = torch.zeros(n, dtype=torch.float64, device=device)
    norm_y = torch.zeros(m, dtype=torch.float64, device=device)
    starts = range(0, d, rows)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="distance correlation", unit="chunk")
    for r0 in starts:
        r1 = min(d, r0 + rows)
        ex = cx.chunk(r0, r1).to(device)
        if Y is None:
            _upper_gram_accumulate(gram, ex, block)
        else:
            ey = cy.chunk(r0, r1).to(device)
            norm_x += torch.linalg.vector_norm(ex, dim=1, dtype=torch.float64) ** 2
            norm_y += torch.linalg.vector_norm(ey, dim=1, dtype=torch.float64) ** 2
            gram += (ex @ ey.T).double()
        del ex
    if Y is None:
        gram = torch.triu(gram) + torch.triu(gram, 1).T
        norm_x = norm_y = gram.diagonal().clone()
    denom = torch.sqrt(norm_x[:, None] * norm_y[None, :])
    positive = denom > 0
    dcor2 = torch.where(positive, gram / torch.where(positive, denom, 1.0), 0.0)
    dcor2 = dcor2.clamp_(0.0, 1.0)
    if Y is None:
        dcor2.diagonal().copy_((norm_x > 0).to(torch.float64))
    out = dcor2 if squared else dcor2.sqrt()
    return out.cpu().numpy()


def _upper_gram_accumulate(gram: torch.Tensor, e: torch.Tensor, block: int) -> None:
    """``gram[i, j] += e[i] . e[j]`` for the blocks on or above the diagonal."""
    n = len(e)
    for start in range(0, n, block):
        stop = min(n, start + block)
        gram[start:stop, start:] += (e[start:stop] @ e[start:].T).double()


# ------------------------------------------------------------------------------ entry


def pairwise(
    X: Matrix,
    Y: Matrix | None = None,
    metric: str = "euclidean",
    dtype: torch.dtype = torch.float64,
    block: int = 2048,
    degenerate: str = "nan",
) -> np.ndarray:
    """Distances between the rows of ``X`` and of ``Y`` (``X`` itself when ``Y`` is None).

    ``dtype`` is the precision of the products (see the module docstring); the result is a
    float64 array for ``torch.float64`` and float32 otherwise. ``degenerate`` says what a
    zero (cosine) or constant (correlation) row gets: ``"nan"`` with a warning, or
    ``"orthogonal"`` (distance 1). For ``X`` alone only the upper triangle is computed.

    Args:
        X: ``(N, D)`` finite rows (numpy or torch).
        Y: ``(M, D)`` finite rows, or None for ``X`` against itself.
        metric: one of :data:`METRICS` or an alias (see the module docstring).
        dtype: the precision of the products.
        block: rows per block.
        degenerate: ``"nan"`` or ``"orthogonal"``.

    Returns:
        ``(N, M)`` (or ``(N, N)``, symmetric, zero diagonal) distances in the metric's
        units, float64 for ``torch.float64`` and float32 otherwise.

    Raises:
        ValueError: an unknown metric or policy (from the name checks), rows that are not a
            finite 2-D array, or ``X`` and ``Y`` of different widths.
    """
    metric = canonical_metric(metric)
    if degenerate not in DEGENERATE_POLICIES:
        raise ValueError(f"degenerate must be one of {DEGENERATE_POLICIES}, got {degenerate!r}")
    x = _as_matrix(X, "X")
    y = None if Y is None else _as_matrix(Y, "Y")
    if y is not None:
        _check_same_width(x, y)
    if metric == "distance_correlation":
        out = 1.0 - distance_correlation_matrix(x, y, dtype=dtype)
        if y is None:
            np.fill_diagonal(out, 0.0)
        return out.astype(_np_dtype(dtype), copy=False)
    if metric == "manhattan":
        return manhattan(x, y, dtype=dtype, block=block)
    out = _gram_metric(x, y, metric, dtype, block)
    _apply_degenerate(out, x, y, metric, degenerate)
    return out


def _apply_degenerate(
    out: np.ndarray, x: np.ndarray, y: np.ndarray | None, metric: str, policy: str
) -> None:
    if metric not in ("cosine", "correlation"):
        return
    bad_x = degenerate_rows(x, metric)
    bad_y = bad_x if y is None else degenerate_rows(y, metric)
    if not (bad_x.any() or bad_y.any()):
        return
    what = "zero" if metric == "cosine" else "constant"
    value = np.nan if policy == "nan" else 1.0
    if policy == "nan":
        count = int(bad_x.sum()) + (0 if y is None else int(bad_y.sum()))
        warnings.warn(
            f"{count} {what} rows have no {metric} distance; their pairs are NaN "
            "(pass degenerate='orthogonal' for distance 1)",
            DegenerateVectorWarning,
            stacklevel=3,
        )
    out[bad_x, :] = value
    out[:, bad_y] = value
    if y is None:
        np.fill_diagonal(out, 0.0)


def paired(X: Matrix, Y: Matrix, metric: str = "euclidean") -> np.ndarray:
    """Distances between corresponding vectors of two broadcastable arrays, in float64.

    ``paired(x[:, None, :], centroids)`` with ``centroids`` of shape ``(N, K, D)`` gives the
    ``(N, K)`` distances of each row to its own ``K`` centroids (the leave-one-image-out
    nearest-centroid classifier of :mod:`difflens.analysis.controls`), where
    :func:`pairwise` would compare every row with every centroid. Conventions as
    :func:`pairwise` (scipy's): cosine and correlation clipped to ``[0, 2]``, NaN where a
    vector is zero (cosine) or constant (correlation).

    Args:
        X: array ``(..., D)``.
        Y: array ``(..., D)`` broadcastable against ``X``.
        metric: ``euclidean``, ``manhattan``, ``cosine`` or ``correlation`` (or an alias).

    Returns:
        float64 array of the broadcast shape without the last axis.

    Raises:
        ValueError: ``distance_correlation`` or an unknown metric, or different widths.
    """
    metric = canonical_metric(metric)
    x = np.asarray(X, dtype=np.float64)
    y = np.asarray(Y, dtype=np.float64)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"paired: vectors of width {x.shape[-1]} and {y.shape[-1]}")
    if metric == "euclidean":
        return np.sqrt(((x - y) ** 2).sum(-1))
    if metric == "manhattan":
        return np.abs(x - y).sum(-1)
    if metric in ("cosine", "correlation"):
        if metric == "correlation":
            x = x - x.mean(-1, keepdims=True)
            y = y - y.mean(-1, keepdims=True)
        norms = np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (x * y).sum(-1) / norms
        return np.where(norms > 0, np.clip(1.0 - cos, 0.0, 2.0), np.nan)
    raise ValueError(
        f"paired supports euclidean, manhattan, cosine and correlation, not {metric!r}"
    )
