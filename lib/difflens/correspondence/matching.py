"""Nearest-neighbour keypoint matching with diffusion feature maps, exact and cheap.

The reading (DIFT, Tang et al. NeurIPS 2023, ``Tsingularity/dift: eval_spair.py``)
----------------------------------------------------------------------------------
For one image pair with a source feature map ``(C, hs, ws)``, a target map ``(C, ht, wt)`` and
the images' ORIGINAL sizes ``(Hs, Ws)`` and ``(Ht, Wt)``:

1. both maps are bilinearly upsampled to their own image's original size (``nn.Upsample``,
   ``align_corners=False``);
2. the query is the upsampled source feature at the integer pixel ``[y, x]`` of the source
   keypoint. DIFT indexes the upsampled tensor with the keypoint's JSON values as they are
   (``src_ft[0, :, y, x]``); it never rounds. SPair-71k keypoints are integers; a non-integer
   value would raise in that indexing (PyTorch accepts no float index), a negative one would wrap
   around from the far border (Python indexing) and one past the border raises. Here
   ``keypoint_rounding`` says what happens: ``"round"`` (default; half to even, like
   ``np.round`` in Diffusion Hyperfeatures' ``points_to_idxs``), ``"floor"``, or ``"strict"``
   (integers only, DIFT's behaviour, a ``ValueError`` otherwise). A keypoint outside the image
   after rounding is a ``ValueError`` in every case (no wrap-around, no clipping);
3. the query and every target pixel are L2-normalised (``F.normalize``, ``eps=1e-12``) and
   compared by their dot product (cosine);
4. the prediction is the argmax over the whole target image (no mask, no soft-argmax, no
   mutual check), returned as x/y in original target pixels.

The exact and cheap computation
-------------------------------
Upsampling with ``F.interpolate`` (bilinear or bicubic, ``align_corners=False``) is separable
and linear: the upsampled feature at target pixel ``p = (i, j)`` is
``f(p) = sum_{r,s} wy[i, r] wx[j, s] F[:, ay[i, r], ax[j, s]]`` with ``T`` taps per axis
(``T = 2`` for bilinear, ``4`` for bicubic; border taps are clamped exactly as PyTorch clamps
them, so a tap may repeat a cell). Hence, without ever materialising the upsampled map:

* numerator: ``q . f(p) = sum_{r,s} wy wx (q . F[c_rs])``. The dot products of the query with
  every low-resolution cell are one small matrix product ``(N, C) @ (C, ht wt)``; the
  separable interpolation of those ``N`` small maps is then two more small products
  (columns, then a band of rows);
* denominator: ``||f(p)||^2 = sum_{r,s,r',s'} wy_r wy_r' wx_s wx_s' <F[c_rs], F[c_r's']>``.
  Only Gram entries of cells at most ``T - 1`` apart per axis occur, and by symmetry
  (``<F[a, b], F[a + da, b + db]> = <F[a + da, b + db], F[a, b]>``) only the "forward"
  offsets are computed: ``da > 0``, or ``da = 0`` and ``db >= 0``. For bilinear that is five
  offsets -- the cell itself, right ``(0, 1)``, down ``(1, 0)``, down-right ``(1, 1)`` and
  down-left ``(1, -1)``. The last is needed too: the cross term between the top-right and
  bottom-left taps of one pixel is ``<F[a, b + 1], F[a + 1, b]>``. For bicubic it is 25
  offsets (``|da|, |db| <= 3``). Maps up to 96 cells wide take all cell pairs of two rows
  ``a, a + da`` in one batched product (``h w^2 C`` multiply-adds per ``da``, a few
  milliseconds at 48 x 48 x 1280) and read the needed diagonals; wider maps take one
  elementwise product per offset (``C h w`` each). The combination with the tap weights is
  again separable: one product with a sparse ``((2T - 1) w, Wt)`` matrix for the columns,
  one with a sparse ``(Ht, (2T - 1) h)`` matrix for the rows;
* the source query ``f_s(p_s)`` is the same weighted sum of (at most) ``T x T`` source cells;
  the source map is neither upsampled nor copied.

The Gram form of ``||f(p)||^2`` cancels where ``f(p)`` is much shorter than its taps
(neighbouring cells pointing in opposite directions; ``C = 1`` near a sign change). Pixels
where ``||f(p)||^2 < 1e-4 (sum |w| ||F[c]||)^2`` are recomputed from the materialised
``f(p)`` (norm and scores), so the cosine is accurate to about ``1e-12`` everywhere.

The cosine map is then ``(q . f(p)) / (max(||q||, eps) max(||f(p)||, eps))``, the same
formula ``F.normalize`` applies, evaluated band of target rows by band of target rows (and
group of keypoints by group of keypoints) so that at most ``chunk`` scores are held at once;
each band yields its rows' maxima, and the first row reaching the maximum is scored again on
its own for the column. Besides the bands, only per-pixel maps of the target (``(Ht, Wt)``:
the inverse norms and temporaries of their computation) are held. The arithmetic runs in
``compute_dtype`` (float64 by default), which makes it MORE accurate than the straightforward
float32 computation; the two differ only where two target pixels' cosines are within the
float32 rounding of each other (a near-tie), see below.

Bicubic is done by the same exact decomposition (16 taps), not by materialising row bands.

Ties
----
The rule is ``torch.argmax``'s on the flattened ``(Ht, Wt)`` map: the FIRST pixel in row-major
order among the maximal scores. Because the exact method's rounding differs from that of an
explicit upsampling, pixels whose scores are mathematically equal (repeated border rows of
bilinear upsampling, where PyTorch clamps the sampling coordinate; repeated cells; ``C = 1``)
can come out a few ulps apart. ``tie_tol`` therefore treats every score within ``tie_tol`` of
the maximum as tied and takes the first of them (default ``1e-10`` for float64, ``1e-5`` for
float32 arithmetic). :func:`match_reference` applies the same rule with its own ``tie_tol``
(default ``0``: plain ``torch.argmax``, i.e. DIFT). Pixels that are mathematically different
but closer than the reference's rounding error (about ``1e-6`` in float32) may still be
ordered differently by the two: such a disagreement is a near-tie, and the tests check the
scores there, not the indices.

Options (each a named value of an argument)
-------------------------------------------
``upsample="bilinear"``
    DIFT (above); also Diffusion Hyperfeatures' ``find_nn_source_correspondences``
    (``diffusion-hyperfeatures/diffusion_hyperfeatures: archs/correspondence_utils.py``, which
    upsamples to ``load_size`` rather than to the original size).
``upsample="bicubic"``
    the multi-layer matching study (seed 001 in the project notes: "DIFT bicubically
    upsampled", PCK@0.05 39.09 vs 37.26 bilinear on SPair-71k); PyTorch's bicubic
    (``A = -0.75``, ``align_corners=False``, taps clamped at the border).
``upsample="none"``
    matching at feature resolution, as SD-DINO / GeoAware-SC do on their 60 x 60 grids
    (``Junyi42/GeoAware-SC: utils/utils_correspondence.py``): the source keypoint's cell is the
    cell containing the centre of its pixel, ``floor((y + 0.5) hs / Hs)`` (equal to GeoAware's
    ``int(y hs / Hs)`` for an integer pixel and an integer stride); the argmax runs over cells;
    the prediction is the centre of the cell mapped to the original image,
    ``x = (b + 0.5) Wt / wt - 0.5`` in pixel-index coordinates (GeoAware writes
    ``b s + s // 2`` in its own frame, half a pixel to the right/bottom of this).
``mutual=True``
    mutual nearest neighbours ("best buddies", Amir et al. 2021, ``ShirAmir/dino-vit-features``;
    carried into Diffusion Hyperfeatures as ``find_best_buddies_correspondences``): the
    target feature at the (hard) predicted pixel is matched back over the whole source image
    with the same rule; the match is kept (``valid``) iff that back-match lies within
    ``mutual_radius`` source pixels (Euclidean) of the queried source position. The default
    radius is one source feature stride, ``max(Hs / hs, Ws / ws)``, for the upsampled modes and
    ``0`` -- the same cell -- for ``"none"`` (positions are cell centres there). No anchor
    evaluates PCK with this filter; it only reports the validity mask.
``soft_argmax_window=r``
    GeoAware-SC's window soft-argmax (Zhang et al. 2024, "Telling Left from Right";
    ``Junyi42/GeoAware-SC: utils/utils_correspondence.py``, ``get_flow`` / ``soft_argmax``;
    ``--SOFT_EVAL_WINDOW`` is 7 by default and 5 in ``configs/eval_zero_shot_spair.yaml``,
    temperature ``beta = 0.02`` on the cosine of L2-normalised descriptors). Around the hard
    argmax, the ``(2r + 1) x (2r + 1)`` window (cut at the image border) gets weights
    ``softmax(cos / soft_argmax_temperature)`` and the prediction is the weighted mean
    position. ``r`` counts positions of the searched grid: cells for ``"none"`` (GeoAware's
    setting), target pixels otherwise. One difference from GeoAware's code: it multiplies the
    similarity by a 0/1 window mask before a softmax over the WHOLE grid, so every cell outside
    the window enters with score 0 (weight ``exp(-max / beta)`` each, negligible when the best
    cosine is well above 0); here the softmax runs over the window only.

All functions follow the inputs' device (CPU or CUDA) and accept any float dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "UPSAMPLE_MODES",
    "KEYPOINT_ROUNDING",
    "MatchResult",
    "match_keypoints",
    "match_pairs",
    "match_reference",
    "cosine_map",
    "source_positions",
    "cell_centres",
]

UpsampleMode = Literal["bilinear", "bicubic", "none"]
KeypointRounding = Literal["round", "floor", "strict"]

UPSAMPLE_MODES: tuple[str, ...] = ("bilinear", "bicubic", "none")
"""Accepted values of ``upsample``."""
KEYPOINT_ROUNDING: tuple[str, ...] = ("round", "floor", "strict")
"""Accepted values of ``keypoint_rounding``."""

_EPS = 1e-12  # F.normalize's default eps
_CUBIC_A = -0.75  # PyTorch's bicubic coefficient
_CANCEL = 1e-4  # ||f||^2 below this fraction of its bound: recompute f directly
_BMM_MAX_W = 96  # maps up to this width get their neighbour Gram from row-pair products


@dataclass(frozen=True)
class MatchResult:
    """Matches of the keypoints of one image pair.

    Attributes:
        pred: ``(N, 2)`` float32 on the inputs' device, x/y of the predicted points in
            original target pixels (integer-valued for a hard argmax in the upsampled modes).
        score: ``(N,)`` in the arithmetic's dtype (``compute_dtype`` / ``dtype``), the cosine
            at the hard argmax.
        valid: ``(N,)`` bool; all True unless ``mutual=True``, then the mutual check.
        query: ``(N, 2)`` float32, x/y in original source pixels of the position actually
            queried (the rounded keypoint; the source cell's centre for ``"none"``).
        back: ``(N, 2)`` float32, x/y in original source pixels of the back-match of the hard
            prediction, or None unless ``mutual=True``.
    """

    pred: torch.Tensor
    score: torch.Tensor
    valid: torch.Tensor
    query: torch.Tensor
    back: torch.Tensor | None = None


# --------------------------------------------------------------------------- taps


def _taps(
    in_size: int, out_size: int, mode: str, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolation taps of ``F.interpolate(..., align_corners=False)`` along one axis.

    Returns ``(index, weight)``, both ``(out_size, T)``: output position ``i`` is
    ``sum_t weight[i, t] * input[index[i, t]]``. Weights are computed in float64.
    """
    i = torch.arange(out_size, dtype=torch.float64)
    if mode == "none":
        if in_size != out_size:
            raise ValueError("mode 'none' needs equal sizes")
        index = torch.arange(out_size)[:, None]
        weight = torch.ones(out_size, 1, dtype=torch.float64)
    else:
        scale = in_size / out_size
        real = (i + 0.5) * scale - 0.5
        if mode == "bilinear":
            real = real.clamp(min=0.0)  # PyTorch clamps the linear source index at 0
            i0 = real.floor().long().clamp(max=in_size - 1)
            lam = (real - i0).clamp(0.0, 1.0)
            i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
            index = torch.stack([i0, i1], 1)
            weight = torch.stack([1.0 - lam, lam], 1)
        elif mode == "bicubic":
            i0 = real.floor()
            t = real - i0
            index = (i0.long()[:, None] + torch.arange(-1, 3)).clamp(0, in_size - 1)
            a = _CUBIC_A

            def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
                return ((a + 2) * x - (a + 3)) * x * x + 1

            def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
                return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

            weight = torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], 1)
        else:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {mode!r}")
    return index.to(device), weight.to(device=device, dtype=dtype)


def _dense(index: torch.Tensor, weight: torch.Tensor, in_size: int) -> torch.Tensor:
    """``(out, in)`` matrix of the taps (repeated taps summed)."""
    out = torch.zeros(index.shape[0], in_size, dtype=weight.dtype, device=weight.device)
    return out.scatter_add_(1, index, weight)


# --------------------------------------------------------------------------- the grid


class _Grid:
    """One image's feature map and the (virtual) upsampled grid it is searched on."""

    def __init__(
        self, feat: torch.Tensor, out_size: tuple[int, int], mode: str, dtype: torch.dtype
    ) -> None:
        self.c, self.h, self.w = feat.shape
        self.mode = mode
        self.out_h, self.out_w = out_size
        self.dtype, device = dtype, feat.device
        cpu = torch.device("cpu")
        # taps and the small sparse matrices are built on the CPU (deterministic), then moved
        self._iy, self._wy = _taps(self.h, self.out_h, mode, dtype, cpu)
        self._ix, self._wx = _taps(self.w, self.out_w, mode, dtype, cpu)
        self.iy, self.wy = self._iy.to(device), self._wy.to(device)
        self.ix, self.wx = self._ix.to(device), self._wx.to(device)
        self.t = self.iy.shape[1]
        self.raw = feat  # (C, h, w), the caller's dtype
        self._cells: torch.Tensor | None = None
        self.my = _dense(self._iy, self._wy, self.h).to(device)  # (Ho, h)
        self.mxt = _dense(self._ix, self._wx, self.w).T.contiguous().to(device)  # (w, Wo)
        self._inv_norm: torch.Tensor | None = None
        self._fix_id = self._fix_pos = self._fix_vec = None

    def _zeros(self, *shape: int) -> torch.Tensor:
        return torch.zeros(shape, dtype=self.dtype, device=self.raw.device)

    @property
    def cells(self) -> torch.Tensor:
        """``(h w, C)`` channel-last cells in the compute dtype (cast and transposed at once)."""
        if self._cells is None:
            cells = torch.empty(self.h, self.w, self.c, dtype=self.dtype, device=self.raw.device)
            self._cells = cells.copy_(self.raw.permute(1, 2, 0)).view(-1, self.c)
        return self._cells

    # features and dot products --------------------------------------------------
    def features_at(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Upsampled features ``(N, C)`` at grid positions ``rows``, ``cols`` (``(N,)``)."""
        iy, wy = self.iy[rows], self.wy[rows]  # (N, T)
        ix, wx = self.ix[cols], self.wx[cols]
        cell = iy[:, :, None] * self.w + ix[:, None, :]  # (N, T, T)
        weight = wy[:, :, None] * wx[:, None, :]
        if self._cells is not None:
            return (self._cells[cell] * weight[..., None]).sum((1, 2))
        vals = self.raw.reshape(self.c, -1)[:, cell].to(self.dtype)  # (C, N, T, T)
        return (vals * weight).sum((2, 3)).T

    def columns(self, q: torch.Tensor) -> torch.Tensor:
        """``E (N, h, Wo)``: the query's dot products with the cells, interpolated along x."""
        d = (q @ self.cells.T).view(q.shape[0], self.h, self.w)
        return d @ self.mxt

    # norms -------------------------------------------------------------------------
    def _offset_gram(self) -> torch.Tensor:
        """Gram entries of neighbouring cells, ``(2T - 1, 2T - 1, h, w)``.

        ``out[da + T - 1, db + T - 1, a, b] = <F[a, b], F[a + da, b + db]>``, 0 where the
        neighbour is outside the map. Computed for ``da >= 0`` only; ``da < 0`` is a shifted
        copy by symmetry. Narrow maps take all the cell pairs of two rows in one matrix
        product (``w x w`` per row pair: more multiply-adds, far fewer memory passes); wide
        maps take one elementwise product per offset.
        """
        t, h, w = self.t, self.h, self.w
        fl = self.cells.view(h, w, self.c)
        out = self._zeros(2 * t - 1, 2 * t - 1, h, w)
        for da in range(min(t, h)):
            rows_pair = (
                torch.bmm(fl[: h - da], fl[da:].transpose(1, 2)) if w <= _BMM_MAX_W else None
            )
            for db in range(-(t - 1), t):
                if abs(db) >= w:
                    continue
                b0, b1 = max(0, -db), w - max(0, db)  # b range with b + db inside
                if rows_pair is not None:
                    g = torch.diagonal(rows_pair, offset=db, dim1=1, dim2=2)  # (h - da, b1 - b0)
                else:
                    g = (fl[: h - da, b0:b1] * fl[da:, b0 + db : b1 + db]).sum(-1)
                out[da + t - 1, db + t - 1, : h - da, b0:b1] = g
                if da > 0:  # <F[a + da, b + db], F[a, b]> sits at (a + da, b + db), offset -da, -db
                    out[t - 1 - da, t - 1 - db, da:, b0 + db : b1 + db] = g
        return out

    def _column_norms(self) -> torch.Tensor:
        """``K (2T - 1, h, Wo)``: ``K[da + T - 1, a, j] = <g_a(j), g_{a + da}(j)>``.

        ``g_a(j) = sum_s wx[j, s] F[a, ix[j, s]]`` is cell row ``a`` interpolated along x at
        target column ``j``; 0 where row ``a + da`` is outside the map (never used). One
        batched product of the neighbour Gram ``(2T - 1, h, (2T - 1) w)`` with the sparse
        ``((2T - 1) w, Wo)`` matrix of the tap-pair weights.
        """
        t, w = self.t, self.w
        gram = self._offset_gram().permute(0, 2, 1, 3).reshape(2 * t - 1, self.h, -1)
        ix, wx = self._ix, self._wx
        pairs = torch.zeros((2 * t - 1) * w, self.out_w, dtype=self.dtype)
        j = torch.arange(self.out_w)
        for s in range(t):
            for s2 in range(t):
                col = (ix[:, s2] - ix[:, s] + t - 1) * w + ix[:, s]  # (Wo,)
                pairs.index_put_((col, j), wx[:, s] * wx[:, s2], accumulate=True)
        return gram @ pairs.to(gram.device)

    def inv_norm(self) -> torch.Tensor:
        """``(Ho, Wo)``: ``1 / max(||f(p)||, eps)`` of every upsampled feature, exact.

        ``||f(p)||^2 = sum_{r, r'} wy_r wy_r' K[iy_r' - iy_r, iy_r, j]`` (the rows stage of
        the separable sum, one product with a sparse ``(Ho, (2T - 1) h)`` matrix). The Gram
        form cancels where ``f(p)`` is much shorter than its taps (neighbouring cells pointing
        in opposite directions, e.g. ``C = 1`` near a sign change): positions where
        ``||f(p)||^2 < 1e-4 (sum |w| ||F[c]||)^2`` are recomputed from the materialised
        ``f(p)``, whose unit vectors are kept to recompute their scores too.
        """
        if self._inv_norm is None:
            t, h = self.t, self.h
            kf = self._column_norms().reshape((2 * t - 1) * h, self.out_w)
            iy, wy = self._iy, self._wy
            pairs = torch.zeros(self.out_h, (2 * t - 1) * h, dtype=self.dtype)
            i = torch.arange(self.out_h)
            for r in range(t):
                for r2 in range(r, t):
                    col = (iy[:, r2] - iy[:, r] + t - 1) * h + iy[:, r]
                    factor = 1.0 if r == r2 else 2.0  # K is symmetric in (r, r2)
                    pairs.index_put_((i, col), factor * wy[:, r] * wy[:, r2], accumulate=True)
            sq = pairs.to(kf.device) @ kf
            cell_norm = self.cells.norm(dim=1).view(self.h, self.w)
            bound = (self.my.abs() @ cell_norm @ self.mxt.abs()).square_()
            fix = torch.nonzero(sq < bound.mul_(_CANCEL))  # (M, 2) rows/cols
            self._fix_pos = fix
            self._fix_vec = self._zeros(0, self.c)
            if fix.shape[0]:
                vecs = []
                for k0 in range(0, fix.shape[0], 4096):
                    part = fix[k0 : k0 + 4096]
                    f = self.features_at(part[:, 0], part[:, 1])
                    nrm = f.norm(dim=1)
                    sq[part[:, 0], part[:, 1]] = nrm.square()
                    vecs.append(f / nrm.clamp_min(_EPS)[:, None])
                self._fix_vec = torch.cat(vecs)
                self._fix_id = torch.full_like(sq, -1, dtype=torch.long)
                self._fix_id[fix[:, 0], fix[:, 1]] = torch.arange(fix.shape[0], device=fix.device)
            # 1 / max(sqrt(sq), eps) = rsqrt(max(sq, eps^2)) for sq >= 0 (rounding aside)
            self._inv_norm = sq.clamp_min_(_EPS * _EPS).rsqrt_()
        return self._inv_norm

    # scores --------------------------------------------------------------------------
    def scores_at(
        self,
        q: torch.Tensor,
        e: torch.Tensor,
        qn: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
    ) -> torch.Tensor:
        """Cosines ``(n, k)`` at grid positions ``rows``, ``cols`` (``(n, k)``), given ``E``."""
        inv = self.inv_norm()
        flat = e.reshape(e.shape[0], -1)
        num = torch.zeros(rows.shape, dtype=e.dtype, device=e.device)
        for r in range(self.t):
            num += self.wy[rows, r] * flat.gather(1, self.iy[rows, r] * self.out_w + cols)
        s = num * inv[rows, cols]
        if self._fix_id is not None:
            fid = self._fix_id[rows, cols]
            exact = (q[:, None, :] * self._fix_vec[fid.clamp_min(0)]).sum(-1)
            s = torch.where(fid >= 0, exact, s)
        return s / qn[:, None]

    def band_dots(self, q: torch.Tensor, e: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """``q . f(p) / ||f(p)||`` (cosine times ``||q||``), ``(n, r1 - r0, Wo)``, rows r0:r1."""
        s = torch.matmul(self.my[r0:r1], e)  # (n, band, Wo)
        s.mul_(self.inv_norm()[r0:r1])
        pos = self._fix_pos
        if pos.shape[0]:
            inband = (pos[:, 0] >= r0) & (pos[:, 0] < r1)
            if inband.any():
                rows, cols = pos[inband, 0] - r0, pos[inband, 1]
                s[:, rows, cols] = q @ self._fix_vec[inband].T
        return s

    def _plan(self, n: int, chunk: int) -> tuple[int, int]:
        group = max(1, min(n, chunk // max(1, self.h * self.out_w)))
        band = max(1, min(self.out_h, chunk // max(1, group * self.out_w)))
        return group, band

    def search(
        self, q: torch.Tensor, chunk: int, tie_tol: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Argmax of the cosine over the grid for every row of ``q`` ``(N, C)``.

        Returns ``(index (N,) long, score (N,))``, ``index = row * Wo + col``: the first
        position in row-major order whose cosine is within ``tie_tol`` of the maximum. Bands of
        rows give each row's maximum; the first row reaching ``max - tie_tol`` is then scored
        again on its own to find the first such column.
        """
        n_all = q.shape[0]
        index = torch.zeros(n_all, dtype=torch.long, device=q.device)
        score = q.new_zeros(n_all)
        group, band = self._plan(n_all, chunk)
        cols = torch.arange(self.out_w, device=q.device)
        for g0 in range(0, n_all, group):
            qg = q[g0 : g0 + group]
            n = qg.shape[0]
            qn = qg.norm(dim=1).clamp_min(_EPS)
            e = self.columns(qg)
            rowmax = qg.new_empty(n, self.out_h)
            for r0 in range(0, self.out_h, band):
                r1 = min(self.out_h, r0 + band)
                rowmax[:, r0:r1] = self.band_dots(qg, e, r0, r1).amax(dim=2)
            rowmax /= qn[:, None]
            best = rowmax.max(dim=1).values
            row = _first_at_least(rowmax, best - tie_tol)
            srow = self.scores_at(qg, e, qn, row[:, None].expand(n, self.out_w), cols.expand(n, -1))
            threshold = torch.minimum(best - tie_tol, srow.max(dim=1).values)
            col = _first_at_least(srow, threshold)
            index[g0 : g0 + n] = row * self.out_w + col
            score[g0 : g0 + n] = srow.gather(1, col[:, None])[:, 0]
        return index, score

    def soft_argmax(
        self,
        q: torch.Tensor,
        index: torch.Tensor,
        radius: int,
        temperature: float,
        chunk: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Window soft-argmax around ``index``: ``(x, y)`` in grid units, each ``(N,)``."""
        r = torch.arange(-radius, radius + 1, device=q.device)
        dy, dx = torch.meshgrid(r, r, indexing="ij")
        dy, dx = dy.reshape(1, -1), dx.reshape(1, -1)
        xs, ys = [], []
        group, _ = self._plan(q.shape[0], chunk)
        for g0 in range(0, q.shape[0], group):
            qg = q[g0 : g0 + group]
            qn = qg.norm(dim=1).clamp_min(_EPS)
            e = self.columns(qg)
            ig = index[g0 : g0 + group]
            rows = (ig // self.out_w)[:, None] + dy
            cols = (ig % self.out_w)[:, None] + dx
            inside = (rows >= 0) & (rows < self.out_h) & (cols >= 0) & (cols < self.out_w)
            s = self.scores_at(
                qg, e, qn, rows.clamp(0, self.out_h - 1), cols.clamp(0, self.out_w - 1)
            )
            s = torch.where(inside, s / temperature, torch.full_like(s, -math.inf))
            p = torch.softmax(s, dim=1)
            xs.append((p * cols.to(p.dtype)).sum(1))
            ys.append((p * rows.to(p.dtype)).sum(1))
        return torch.cat(xs), torch.cat(ys)


def _first_at_least(s: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Index of the first entry of each row of ``s`` (``(n, L)``) that is ``>= threshold``."""
    return (s >= threshold[:, None]).to(torch.uint8).argmax(dim=1)


# --------------------------------------------------------------------------- helpers


def _as_map(feat: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(feat, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor")
    if feat.dim() == 4 and feat.shape[0] == 1:
        feat = feat[0]
    if feat.dim() != 3:
        raise ValueError(f"{name} must be (C, h, w) or (1, C, h, w), got {tuple(feat.shape)}")
    if not feat.is_floating_point():
        raise ValueError(f"{name} must be a float tensor")
    return feat


def _check_pair(
    src_feat: torch.Tensor, trg_feat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    fs, ft = _as_map(src_feat, "src_feat"), _as_map(trg_feat, "trg_feat")
    if fs.shape[0] != ft.shape[0]:
        raise ValueError(f"channel counts differ: {fs.shape[0]} vs {ft.shape[0]}")
    if fs.device != ft.device:
        raise ValueError(f"feature maps on different devices: {fs.device} vs {ft.device}")
    for name, feat in (("src_feat", fs), ("trg_feat", ft)):
        if not torch.isfinite(feat).all():
            bad = int((~torch.isfinite(feat)).sum())
            raise ValueError(f"{name} holds {bad} non-finite values (NaN or inf): no match")
        if not bool(feat.abs().amax() > 0):
            raise ValueError(f"{name} is all zeros: every cosine is 0 and no match is defined")
    return fs, ft


def _check_size(size: Sequence[int], name: str) -> tuple[int, int]:
    if len(size) != 2 or any(int(v) != v or int(v) < 1 for v in size):
        raise ValueError(f"{name} must be (H, W) positive integers, got {size!r}")
    return int(size[0]), int(size[1])


def _check_mode(upsample: str) -> None:
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"compute dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype


def _default_tol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-5


def _pixels(
    kps: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    size: tuple[int, int],
    rounding: str,
    device: torch.device,
) -> torch.Tensor:
    """Integer pixels ``(N, 2)`` long x/y of keypoints, rounded per ``rounding``."""
    if rounding not in KEYPOINT_ROUNDING:
        raise ValueError(f"keypoint_rounding must be one of {KEYPOINT_ROUNDING}, got {rounding!r}")
    pts = torch.as_tensor(np.asarray(kps.cpu() if isinstance(kps, torch.Tensor) else kps))
    if pts.numel() and (pts.ndim != 2 or pts.shape[1] != 2):
        raise ValueError(f"keypoints must be (N, 2) x/y, got shape {tuple(pts.shape)}")
    pts = pts.to(torch.float64).reshape(-1, 2)
    if not torch.isfinite(pts).all():
        raise ValueError("keypoints must be finite")
    if rounding == "round":
        px = torch.round(pts)
    elif rounding == "floor":
        px = torch.floor(pts)
    else:
        if not torch.equal(pts, torch.round(pts)):
            raise ValueError("keypoint_rounding='strict' needs integer keypoints")
        px = pts
    h, w = size
    bad = (px[:, 0] < 0) | (px[:, 0] > w - 1) | (px[:, 1] < 0) | (px[:, 1] > h - 1)
    if bad.any():
        first = pts[bad][0].tolist()
        raise ValueError(
            f"{int(bad.sum())} keypoint(s) outside the {w}x{h} image after rounding, e.g. {first}"
        )
    return px.long().to(device)


def source_positions(  # noqa: DOC502 (raised by the shared validation helpers)
    kps: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    image_size: Sequence[int],
    feature_size: Sequence[int],
    *,
    upsample: UpsampleMode = "bilinear",
    keypoint_rounding: KeypointRounding = "round",
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid positions queried for keypoints: pixels, or cells for ``upsample="none"``.

    Args:
        kps: ``(N, 2)`` x/y in original image pixels.
        image_size: ``(H, W)`` of the original image.
        feature_size: ``(h, w)`` of the feature map.
        upsample: ``"bilinear"``/``"bicubic"`` give the rounded pixel; ``"none"`` the cell
            containing the centre of that pixel, ``floor((y + 0.5) h / H)`` (clipped to the
            map), as documented in the module docstring.
        keypoint_rounding: ``"round"`` (half to even), ``"floor"`` or ``"strict"`` (DIFT:
            integers only).
        device: device of the returned tensors.

    Returns:
        ``(rows, cols)``, each ``(N,)`` int64 on ``device``: pixel rows/columns, or cell
        rows/columns for ``"none"``.

    Raises:
        ValueError: for an unknown option, a non-integer keypoint with ``"strict"``, or a
            keypoint outside the image after rounding.
    """
    _check_mode(upsample)
    size = _check_size(image_size, "image_size")
    h, w = _check_size(feature_size, "feature_size")
    px = _pixels(kps, size, keypoint_rounding, torch.device(device))
    if upsample != "none":
        return px[:, 1], px[:, 0]
    rows = torch.floor((px[:, 1].double() + 0.5) * h / size[0]).long().clamp(0, h - 1)
    cols = torch.floor((px[:, 0].double() + 0.5) * w / size[1]).long().clamp(0, w - 1)
    return rows, cols


def cell_centres(
    rows: torch.Tensor, cols: torch.Tensor, image_size: Sequence[int], feature_size: Sequence[int]
) -> torch.Tensor:
    """Centres of feature cells in original image pixels (pixel-index coordinates).

    Args:
        rows: ``(N,)`` cell rows (int or fractional, e.g. from a soft-argmax).
        cols: ``(N,)`` cell columns.
        image_size: ``(H, W)`` of the original image.
        feature_size: ``(h, w)`` of the feature map.

    Returns:
        ``(N, 2)`` float32, x/y ``((col + 0.5) W / w - 0.5, (row + 0.5) H / h - 0.5)``, on the
        device of ``rows``.
    """
    big_h, big_w = _check_size(image_size, "image_size")
    h, w = _check_size(feature_size, "feature_size")
    x = (cols.double() + 0.5) * big_w / w - 0.5
    y = (rows.double() + 0.5) * big_h / h - 0.5
    return torch.stack([x, y], 1).float()


def _to_pixels(
    rows: torch.Tensor, cols: torch.Tensor, grid: _Grid, image_size: tuple[int, int]
) -> torch.Tensor:
    """x/y ``(N, 2)`` float32 in original pixels of grid positions (cell centres for 'none')."""
    if grid.mode == "none":
        return cell_centres(rows, cols, image_size, (grid.h, grid.w))
    return torch.stack([cols, rows], 1).float()


# --------------------------------------------------------------------------- public API


def match_keypoints(  # noqa: DOC503 (raised by the shared validation helpers)
    src_feat: torch.Tensor,
    trg_feat: torch.Tensor,
    src_size: Sequence[int],
    trg_size: Sequence[int],
    src_kps: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    *,
    upsample: UpsampleMode = "bilinear",
    mutual: bool = False,
    mutual_radius: float | None = None,
    soft_argmax_window: int | None = None,
    soft_argmax_temperature: float = 0.02,
    keypoint_rounding: KeypointRounding = "round",
    compute_dtype: torch.dtype = torch.float64,
    tie_tol: float | None = None,
    chunk: int = 1 << 22,
) -> MatchResult:
    """Nearest-neighbour matches of source keypoints in the target image, exact and cheap.

    Follows DIFT's SPair-71k evaluation (``Tsingularity/dift: eval_spair.py``) by default:
    bilinear upsampling of both maps to the original image sizes, cosine, argmax over the
    whole target image. The upsampled maps are never materialised (see the module docstring
    for the decomposition); the result equals :func:`match_reference` up to near-ties.

    Args:
        src_feat: source feature map ``(C, hs, ws)`` (or ``(1, C, hs, ws)``), any float dtype,
            CPU or CUDA.
        trg_feat: target feature map ``(C, ht, wt)``, same channels and device.
        src_size: ``(Hs, Ws)`` of the original source image, pixels.
        trg_size: ``(Ht, Wt)`` of the original target image, pixels.
        src_kps: ``(N, 2)`` source keypoints, x/y in original source pixels.
        upsample: ``"bilinear"`` (DIFT), ``"bicubic"`` (the multi-layer matching study) or
            ``"none"`` (argmax over feature cells, prediction at the cell centre; SD-DINO /
            GeoAware grids).
        mutual: also match the prediction back to the source and report in ``valid`` whether
            the back-match lies within ``mutual_radius`` of the query (best buddies).
        mutual_radius: source pixels; default one source stride ``max(Hs/hs, Ws/ws)``, or 0
            (the same cell) for ``"none"``.
        soft_argmax_window: radius ``r`` of GeoAware-SC's window soft-argmax, in grid
            positions (cells for ``"none"``, target pixels otherwise); None for the hard
            argmax.
        soft_argmax_temperature: ``beta`` of the soft-argmax softmax on cosines (GeoAware: 0.02).
        keypoint_rounding: ``"round"`` (half to even), ``"floor"`` or ``"strict"`` (DIFT's
            integer keypoints only).
        compute_dtype: ``torch.float64`` (default) or ``torch.float32`` for the arithmetic.
        tie_tol: scores within ``tie_tol`` of the maximum count as tied and the first in
            row-major order wins; default ``1e-10`` (float64) or ``1e-5`` (float32).
        chunk: at most this many scores (keypoints x target positions) are held at once.

    Returns:
        :class:`MatchResult`; ``pred`` ``(N, 2)`` float32, x/y in original target pixels, on
        the inputs' device.

    Raises:
        ValueError: for mismatched maps, bad sizes or options (a negative window, a
            non-positive temperature), or keypoints outside the source image (see
            ``keypoint_rounding``).
        TypeError: if a feature map is not a tensor.
    """
    _check_mode(upsample)
    if soft_argmax_window is not None and (soft_argmax_window < 0 or soft_argmax_temperature <= 0):
        raise ValueError("soft_argmax_window must be >= 0 and soft_argmax_temperature > 0")
    fs, ft = _check_pair(src_feat, trg_feat)
    dtype = _compute_dtype(compute_dtype)
    tol = _default_tol(dtype) if tie_tol is None else float(tie_tol)
    s_size, t_size = _check_size(src_size, "src_size"), _check_size(trg_size, "trg_size")
    rows, cols = source_positions(
        src_kps,
        s_size,
        fs.shape[1:],
        upsample=upsample,
        keypoint_rounding=keypoint_rounding,
        device=fs.device,
    )
    s_out = s_size if upsample != "none" else tuple(fs.shape[1:])
    t_out = t_size if upsample != "none" else tuple(ft.shape[1:])
    gs, gt = _Grid(fs, s_out, upsample, dtype), _Grid(ft, t_out, upsample, dtype)
    q = gs.features_at(rows, cols)
    index, score = gt.search(q, chunk, tol)
    ti, tj = index // gt.out_w, index % gt.out_w
    if soft_argmax_window is not None:
        ex, ey = gt.soft_argmax(q, index, int(soft_argmax_window), soft_argmax_temperature, chunk)
        pred = _to_pixels(ey, ex, gt, t_size)
    else:
        pred = _to_pixels(ti, tj, gt, t_size)
    query = _to_pixels(rows, cols, gs, s_size)
    valid = torch.ones(q.shape[0], dtype=torch.bool, device=fs.device)
    back = None
    if mutual:
        qb = gt.features_at(ti, tj)
        bindex, _ = gs.search(qb, chunk, tol)
        back = _to_pixels(bindex // gs.out_w, bindex % gs.out_w, gs, s_size)
        radius = _mutual_radius(mutual_radius, upsample, s_size, fs.shape[1:])
        valid = (back.double() - query.double()).norm(dim=1) <= radius
    return MatchResult(pred=pred, score=score, valid=valid, query=query, back=back)


def _mutual_radius(
    radius: float | None, upsample: str, size: tuple[int, int], fsize: Sequence[int]
) -> float:
    if radius is not None:
        return float(radius)
    if upsample == "none":
        return 0.0
    return max(size[0] / fsize[0], size[1] / fsize[1])


def match_pairs(
    src_feats: torch.Tensor | Sequence[torch.Tensor],
    trg_feats: torch.Tensor | Sequence[torch.Tensor],
    src_sizes: Sequence[Sequence[int]],
    trg_sizes: Sequence[Sequence[int]],
    src_kps: Sequence[torch.Tensor | np.ndarray | Sequence[Sequence[float]]],
    **options: object,
) -> list[MatchResult]:
    """:func:`match_keypoints` over a batch of image pairs.

    The pairs may differ in image size and keypoint count; each pair is vectorised over its
    keypoints (and bands of target rows), the batch is a loop.

    Args:
        src_feats: ``(B, C, hs, ws)`` tensor or a sequence of ``B`` maps ``(C, hs, ws)``.
        trg_feats: likewise for the targets.
        src_sizes: ``B`` source image sizes ``(H, W)``.
        trg_sizes: ``B`` target image sizes ``(H, W)``.
        src_kps: ``B`` keypoint arrays ``(N_b, 2)``, x/y in source pixels.
        **options: keyword options of :func:`match_keypoints`.

    Returns:
        ``B`` :class:`MatchResult`, in order.

    Raises:
        ValueError: if the batch lengths differ (and as :func:`match_keypoints`).
    """
    n = len(src_feats)
    if not (len(trg_feats) == len(src_sizes) == len(trg_sizes) == len(src_kps) == n):
        raise ValueError("match_pairs: all batch arguments must have the same length")
    return [
        match_keypoints(
            src_feats[b], trg_feats[b], src_sizes[b], trg_sizes[b], src_kps[b], **options
        )
        for b in range(n)
    ]


def cosine_map(  # noqa: DOC502 (raised by the shared validation helpers)
    src_feat: torch.Tensor,
    trg_feat: torch.Tensor,
    src_size: Sequence[int],
    trg_size: Sequence[int],
    src_point: Sequence[float] | torch.Tensor | np.ndarray,
    *,
    upsample: UpsampleMode = "bilinear",
    keypoint_rounding: KeypointRounding = "round",
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Cosine similarity of one source point with every target position, exact.

    The same decomposition as :func:`match_keypoints` (the upsampled maps are not built).

    Args:
        src_feat: source map ``(C, hs, ws)``.
        trg_feat: target map ``(C, ht, wt)``.
        src_size: ``(Hs, Ws)`` original source size, pixels.
        trg_size: ``(Ht, Wt)`` original target size, pixels.
        src_point: x/y of the source point in original source pixels.
        upsample: ``"bilinear"``, ``"bicubic"`` or ``"none"``.
        keypoint_rounding: as in :func:`match_keypoints`.
        compute_dtype: ``torch.float64`` or ``torch.float32``.

    Returns:
        ``(Ht, Wt)`` in ``compute_dtype`` on the inputs' device, cosines in ``[-1, 1]``; for
        ``upsample="none"`` the ``(ht, wt)`` map over target cells.

    Raises:
        ValueError: as :func:`match_keypoints`.
    """
    _check_mode(upsample)
    fs, ft = _check_pair(src_feat, trg_feat)
    dtype = _compute_dtype(compute_dtype)
    s_size, t_size = _check_size(src_size, "src_size"), _check_size(trg_size, "trg_size")
    point = np.asarray(src_point.cpu() if isinstance(src_point, torch.Tensor) else src_point)
    rows, cols = source_positions(
        point.reshape(1, 2),
        s_size,
        fs.shape[1:],
        upsample=upsample,
        keypoint_rounding=keypoint_rounding,
        device=fs.device,
    )
    s_out = s_size if upsample != "none" else tuple(fs.shape[1:])
    t_out = t_size if upsample != "none" else tuple(ft.shape[1:])
    gs, gt = _Grid(fs, s_out, upsample, dtype), _Grid(ft, t_out, upsample, dtype)
    q = gs.features_at(rows, cols)
    qn = q.norm(dim=1).clamp_min(_EPS)
    return gt.band_dots(q, gt.columns(q), 0, gt.out_h)[0] / qn[0]


# --------------------------------------------------------------------------- reference


def _first_max(s: torch.Tensor, tie_tol: float) -> int:
    if tie_tol == 0:
        return int(torch.argmax(s))
    return int(torch.nonzero(s >= s.max() - tie_tol)[0, 0])


def match_reference(  # noqa: DOC502 (raised by the shared validation helpers)
    src_feat: torch.Tensor,
    trg_feat: torch.Tensor,
    src_size: Sequence[int],
    trg_size: Sequence[int],
    src_kps: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
    *,
    upsample: UpsampleMode = "bilinear",
    mutual: bool = False,
    mutual_radius: float | None = None,
    soft_argmax_window: int | None = None,
    soft_argmax_temperature: float = 0.02,
    keypoint_rounding: KeypointRounding = "round",
    dtype: torch.dtype = torch.float32,
    tie_tol: float = 0.0,
) -> MatchResult:
    """The straightforward matcher: upsample both maps, normalise, loop over keypoints.

    DIFT's procedure as written in ``eval_spair.py``: ``F.interpolate`` (``align_corners=False``)
    of both maps to the original image sizes (no interpolation for ``"none"``), ``F.normalize``
    of every target pixel, for each keypoint the normalised query at its pixel, one
    matrix-vector product and ``torch.argmax``. Memory ``O(C Ht Wt)``. Used by the tests and
    the benchmark as the ground truth for :func:`match_keypoints`; options have the same
    meaning.

    Args:
        src_feat: source map ``(C, hs, ws)``.
        trg_feat: target map ``(C, ht, wt)``.
        src_size: ``(Hs, Ws)`` original source size, pixels.
        trg_size: ``(Ht, Wt)`` original target size, pixels.
        src_kps: ``(N, 2)`` x/y in original source pixels.
        upsample: ``"bilinear"``, ``"bicubic"`` or ``"none"``.
        mutual: back-match check, see :func:`match_keypoints`.
        mutual_radius: see :func:`match_keypoints`.
        soft_argmax_window: see :func:`match_keypoints`.
        soft_argmax_temperature: see :func:`match_keypoints`.
        keypoint_rounding: see :func:`match_keypoints`.
        dtype: arithmetic dtype (float32 as in DIFT's evaluation).
        tie_tol: 0 (default) is ``torch.argmax``; otherwise the first score within ``tie_tol``
            of the maximum.

    Returns:
        :class:`MatchResult` as :func:`match_keypoints`.

    Raises:
        ValueError: as :func:`match_keypoints`.
    """
    _check_mode(upsample)
    fs, ft = _check_pair(src_feat, trg_feat)
    s_size, t_size = _check_size(src_size, "src_size"), _check_size(trg_size, "trg_size")
    fs, ft = fs.to(dtype), ft.to(dtype)
    rows, cols = source_positions(
        src_kps,
        s_size,
        fs.shape[1:],
        upsample=upsample,
        keypoint_rounding=keypoint_rounding,
        device=fs.device,
    )
    if upsample == "none":
        up_s, up_t = fs, ft
    else:
        up_s = F.interpolate(fs[None], size=s_size, mode=upsample, align_corners=False)[0]
        up_t = F.interpolate(ft[None], size=t_size, mode=upsample, align_corners=False)[0]
    window = None if soft_argmax_window is None else int(soft_argmax_window)
    preds, scores, backs = _reference_loop(
        up_s, up_t, rows, cols, mutual, window, soft_argmax_temperature, tie_tol
    )
    return _reference_result(
        preds, scores, backs, rows, cols, fs, ft, s_size, t_size, upsample, mutual, mutual_radius
    )


def _reference_result(
    preds: list,
    scores: list,
    backs: list,
    rows: torch.Tensor,
    cols: torch.Tensor,
    fs: torch.Tensor,
    ft: torch.Tensor,
    s_size: tuple[int, int],
    t_size: tuple[int, int],
    upsample: str,
    mutual: bool,
    mutual_radius: float | None,
) -> MatchResult:
    """The reference's :class:`MatchResult` from its loop's grid positions, in pixels."""
    px = torch.tensor([[float(x), float(y)] for x, y in preds], dtype=torch.float64).reshape(-1, 2)
    if upsample == "none":
        pred = cell_centres(px[:, 1], px[:, 0], t_size, ft.shape[1:])
        query = cell_centres(rows.cpu(), cols.cpu(), s_size, fs.shape[1:])
    else:
        pred, query = px.float(), torch.stack([cols, rows], 1).double().cpu().float()
    device = fs.device
    valid = torch.ones(len(preds), dtype=torch.bool)
    back = None
    if mutual:
        b = torch.tensor(backs, dtype=torch.long).reshape(-1, 2)
        if upsample == "none":
            back = cell_centres(b[:, 0], b[:, 1], s_size, fs.shape[1:])
        else:
            back = torch.stack([b[:, 1], b[:, 0]], 1).float()
        radius = _mutual_radius(mutual_radius, upsample, s_size, fs.shape[1:])
        valid = (back.double() - query.double()).norm(dim=1) <= radius
        back = back.to(device)
    score = torch.stack(scores) if scores else fs.new_zeros(0)
    return MatchResult(
        pred=pred.to(device),
        score=score,
        valid=valid.to(device),
        query=query.to(device),
        back=back,
    )


def _reference_loop(
    up_s: torch.Tensor,
    up_t: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    mutual: bool,
    window: int | None,
    temperature: float,
    tie_tol: float,
) -> tuple[list, list, list]:
    """The reference's keypoint loop on (upsampled) maps ``(C, H, W)``.

    Returns per keypoint the prediction ``(x, y)`` in grid units (soft-argmax: weighted mean
    position), the cosine at the hard argmax and, with ``mutual``, the back-match
    ``(row, col)`` in the source grid.
    """
    c = up_t.shape[0]
    trg_vec = F.normalize(up_t.reshape(c, -1).T, dim=1)  # (HW, C)
    src_vec = F.normalize(up_s.reshape(c, -1).T, dim=1) if mutual else None
    oh, ow = up_t.shape[1:]
    sw = up_s.shape[2]
    preds, scores, backs = [], [], []
    for k in range(rows.shape[0]):
        q = F.normalize(up_s[:, rows[k], cols[k]][None], dim=1)  # (1, C)
        cos = (trg_vec @ q.T)[:, 0]  # (HW,)
        i = _first_max(cos, tie_tol)
        ti, tj = i // ow, i % ow
        scores.append(cos[i])
        if window is not None:
            preds.append(_reference_soft_argmax(cos.view(oh, ow), ti, tj, window, temperature))
        else:
            preds.append((torch.tensor(float(tj)), torch.tensor(float(ti))))
        if mutual:
            qb = F.normalize(up_t[:, ti, tj][None], dim=1)
            j = _first_max((src_vec @ qb.T)[:, 0], tie_tol)
            backs.append((j // sw, j % sw))
    return preds, scores, backs


def _reference_soft_argmax(
    cmap: torch.Tensor, ti: int, tj: int, r: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax-weighted mean ``(x, y)`` over the window of radius ``r`` around ``(ti, tj)``."""
    oh, ow = cmap.shape
    y0, y1 = max(0, ti - r), min(oh, ti + r + 1)
    x0, x1 = max(0, tj - r), min(ow, tj + r + 1)
    p = torch.softmax((cmap[y0:y1, x0:x1] / temperature).reshape(-1), 0)
    p = p.view(y1 - y0, x1 - x0)
    yy = torch.arange(y0, y1, device=p.device, dtype=p.dtype)
    xx = torch.arange(x0, x1, device=p.device, dtype=p.dtype)
    return (p.sum(0) * xx).sum(), (p.sum(1) * yy).sum()
