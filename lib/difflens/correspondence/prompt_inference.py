"""Correspondence by prompt-embedding optimisation (Hedlin et al., NeurIPS 2023): inference and PCK.

The embeddings learnt on the source keypoint (:mod:`~difflens.correspondence.prompt_optimisation`)
are run on the TARGET image (``ubc-vision/LDM_correspondences: utils/optimize_token.py``,
``run_image_with_tokens_cropped``; ``utils/optimize.py``, ``validate_epoch``):

1. per embedding, ``inference_crops`` crops of the target (same size and border rule as in
   the optimisation): the first four around the corners ``(0, 0), (0, S), (S, 0), (S, S)``
   (x, y), each later one around the argmax (+0.5 px) of the embedding's current canvas
   (mean over layers; pixels no crop has covered count 0);
2. each crop is encoded (VAE mean), noised to ``inference_timestep`` and run once; each
   layer's map (token ``token_index``, mean over the chosen heads) is upsampled bilinearly to
   the crop's side and pasted into a canvas of the image's size; the canvas is the mean over
   the crops that covered each pixel. All embeddings' crops share each U-Net pass;
3. the canvases are averaged over the embeddings; ``pixel_softmax="per_layer"`` (Hedlin)
   takes a softmax over each layer's ``S x S`` pixels; the layers are averaged; the argmax
   plus 0.5 px is the match in the ``image_size`` frame, scaled back to original target
   pixels (``x * Wt / S``, ``y * Ht / S``).

PCK then goes through :func:`~difflens.correspondence.pck.evaluate_pck`; Hedlin's own reading
is ``"source_bbox_512"`` (the source box in the 512 frame, distances in the target's 512 frame,
mean over pairs).

The source images' maps are measured too (:func:`source_peaks`): one uncropped pass at the
optimisation timestep with the initial and with the optimised embeddings (the same noise),
mean over embeddings, layers and heads; :class:`PromptRun` counts how often each map's peak
lies within ``sigma`` of the keypoint.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.correspondence.evaluate import (
    PREDICTION_COLUMNS,
    CorrespondenceRun,
    _prediction_rows,
    pair_keypoints,
)
from difflens.correspondence.matching import MatchResult
from difflens.correspondence.pck import DEFAULT_ALPHAS, evaluate_pck
from difflens.correspondence.prompt_optimisation import (
    OptimisedEmbeddings,
    PromptModel,
    crop_box,
    crop_resize,
    optimise_embeddings,
)
from difflens.data.keypoints import KeypointPair, check_pair
from difflens.features.settings import draw_seed

__all__ = [
    "CORNERS",
    "argmax_xy",
    "attention_canvas",
    "combine_maps",
    "predict_points",
    "source_peaks",
    "PairPrediction",
    "predict_pair",
    "PROMPT_COLUMNS",
    "PromptRun",
    "evaluate_prompt_pairs",
]

CORNERS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (1, 0), (1, 1))
"""Hedlin's first four crop centres, x/y in units of the image side."""


def argmax_xy(maps: torch.Tensor) -> torch.Tensor:
    """Column and row of each map's maximum (the first in row-major order).

    Args:
        maps: ``(..., H, W)``.

    Returns:
        ``(..., 2)`` float64 ``x, y`` (pixel indices, without the half-pixel shift).
    """
    flat = maps.flatten(-2).argmax(dim=-1)
    width = maps.shape[-1]
    return torch.stack([flat % width, torch.div(flat, width, rounding_mode="floor")], -1).double()


def _centres(step: int, sums: torch.Tensor, counts: torch.Tensor, size: int) -> list[list[float]]:
    """Crop centres of one inference step: a corner, else each row's current argmax + 0.5."""
    rows = sums.shape[0]
    if step < len(CORNERS):
        x, y = CORNERS[step]
        return [[float(x * size), float(y * size)]] * rows
    current = torch.nan_to_num(sums / counts, nan=0.0).mean(1)  # (R, S, S), mean over layers
    return (argmax_xy(current) + 0.5).tolist()


@torch.no_grad()
def attention_canvas(
    model: PromptModel,
    image: np.ndarray,
    contexts: torch.Tensor,
    generator: torch.Generator,
    crops: int | None = None,
    timestep: int | None = None,
) -> torch.Tensor:
    """Each context's per-layer map over an image, averaged over crops (Hedlin's inference).

    Args:
        model: the :class:`~difflens.correspondence.prompt_optimisation.PromptModel`.
        image: ``(H, W, 3)`` uint8 RGB.
        contexts: ``(R, T, D)`` embeddings; all rows share every U-Net pass.
        generator: the random stream of crops and noise.
        crops: number of crops (default: the preset's ``inference_crops``).
        timestep: the timestep (default: the preset's inference timestep).

    Returns:
        ``(R, L, S, S)`` float32 canvases (0 where no crop reached).
    """
    preset, size = model.preset, model.size
    crops = preset.inference_crops if crops is None else crops
    t = preset.inference_t if timestep is None else timestep
    pixels = model.pixels(image)
    rows = contexts.shape[0]
    side = int(size * preset.crop_fraction)
    sums = torch.zeros(rows, len(model.layers), size, size, device=pixels.device)
    counts = torch.zeros(rows, 1, size, size, device=pixels.device)
    for step in range(crops):
        centres = _centres(step, sums, counts, size)
        boxes = [
            crop_box(c, size, preset.crop_fraction, preset.crop_margin, generator) for c in centres
        ]
        latents = model.latents(crop_resize(pixels, boxes, size))
        maps = model.maps(model.noised(latents, t, generator), t, contexts, size=side)
        for r, (x0, y0, s) in enumerate(boxes):
            sums[r, :, y0 : y0 + s, x0 : x0 + s] += maps[r].to(sums.device)
            counts[r, :, y0 : y0 + s, x0 : x0 + s] += 1
    return torch.nan_to_num(sums / counts, nan=0.0)


def combine_maps(canvas: torch.Tensor, pixel_softmax: str) -> torch.Tensor:
    """One map per keypoint: mean over embeddings, optional per-layer softmax, mean over layers.

    Args:
        canvas: ``(N, k, L, S, S)`` canvases.
        pixel_softmax: ``"per_layer"`` (softmax over each layer's ``S * S`` pixels after
            the embedding mean, Hedlin) or ``"none"``.

    Returns:
        ``(N, S, S)``.

    Raises:
        ValueError: an unknown ``pixel_softmax``.
    """
    maps = canvas.mean(1)
    if pixel_softmax == "per_layer":
        maps = torch.softmax(maps.flatten(2), dim=-1).reshape(maps.shape)
    elif pixel_softmax != "none":
        raise ValueError(f"pixel_softmax must be 'per_layer' or 'none', got {pixel_softmax!r}")
    return maps.mean(1)


def predict_points(
    model: PromptModel, image: np.ndarray, embeddings: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matches of the embeddings' keypoints in an image, in the ``image_size`` frame.

    Args:
        model: the :class:`~difflens.correspondence.prompt_optimisation.PromptModel`.
        image: ``(H, W, 3)`` uint8 RGB target image.
        embeddings: ``(N, k, T, D)`` optimised contexts of ``N`` keypoints.
        generator: the random stream of crops and noise.

    Returns:
        ``(N, 2)`` float64 argmax + 0.5 (x, y) in the ``S`` frame, and the ``(N, S, S)``
        combined maps.
    """
    n, k = embeddings.shape[:2]
    contexts = embeddings.flatten(0, 1).to(model.backbone.device)
    canvas = attention_canvas(model, image, contexts, generator)
    combined = combine_maps(canvas.reshape(n, k, *canvas.shape[1:]), model.preset.pixel_softmax)
    return argmax_xy(combined).cpu() + 0.5, combined.cpu()


@torch.no_grad()
def source_peaks(
    model: PromptModel, image: np.ndarray, embeddings: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Peaks of the embeddings' maps on the uncropped image at the optimisation timestep.

    Args:
        model: the :class:`~difflens.correspondence.prompt_optimisation.PromptModel`.
        image: ``(H, W, 3)`` uint8 RGB (the source image).
        embeddings: ``(N, k, T, D)`` contexts.
        generator: the random stream of the noise (seed it alike to compare embeddings).

    Returns:
        ``(N, 2)`` float64 argmax + 0.5 in the ``S`` frame and the ``(N, M, M)`` maps (mean
        over embeddings, layers and chosen heads; ``M`` = the preset's map side).
    """
    n, k = embeddings.shape[:2]
    side = model.preset.map_side
    latents = model.latents(model.pixels(image)).expand(n * k, -1, -1, -1)
    t = model.preset.timestep
    noisy = model.noised(latents, t, generator)
    maps = model.maps(noisy, t, embeddings.flatten(0, 1).to(noisy.device), size=side)
    mean = maps.reshape(n, k, *maps.shape[1:]).mean(dim=(1, 2)).cpu()
    return (argmax_xy(mean) + 0.5) * model.size / side, mean


@dataclass
class PairPrediction:
    """The method's output on one pair.

    Attributes:
        pred: ``(N, 2)`` matches in original target pixels.
        pred_frame: ``(N, 2)`` the same in the ``image_size`` frame.
        score: ``(N,)`` the combined target map's value at the match.
        points: ``(N, 2)`` source keypoints in the ``image_size`` frame.
        initial_peaks: ``(N, 2)`` source-map peaks of the initial embeddings (``S`` frame).
        optimised_peaks: ``(N, 2)`` those of the optimised embeddings.
        seconds_optimise: wall time of the optimisation.
        seconds_inference: wall time of the target inference.
        losses: ``(steps, N, k)`` loss curves.
        memory: bytes in use after each optimisation step (if tracked).
        maps: when kept: ``"source_initial"``, ``"source_optimised"`` ``(N, M, M)`` and
            ``"target"`` ``(N, S, S)``.
    """

    pred: np.ndarray
    pred_frame: np.ndarray
    score: np.ndarray
    points: np.ndarray
    initial_peaks: np.ndarray
    optimised_peaks: np.ndarray
    seconds_optimise: float
    seconds_inference: float
    losses: np.ndarray
    memory: list = field(default_factory=list)
    maps: dict[str, torch.Tensor] = field(default_factory=dict)


def _predict_chunk(
    model: PromptModel,
    pair: KeypointPair,
    index: np.ndarray,
    seed: int,
    track_memory: bool,
) -> tuple[OptimisedEmbeddings, dict[str, torch.Tensor], float]:
    """Optimise on the source, peaks before/after, inference on the target for some keypoints."""
    found = optimise_embeddings(
        model, pair.source_image, pair.source_points[index], seed=seed, track_memory=track_memory
    )
    out: dict[str, torch.Tensor] = {}
    for name, emb in (("initial", found.initial), ("optimised", found.contexts)):
        peaks, maps = source_peaks(
            model, pair.source_image, emb, torch.Generator().manual_seed(seed + 1)
        )
        out[f"{name}_peaks"], out[f"source_{name}"] = peaks, maps
    start = time.perf_counter()
    out["pred_frame"], out["target"] = predict_points(
        model, pair.target_image, found.contexts, torch.Generator().manual_seed(seed + 2)
    )
    return found, out, time.perf_counter() - start


def predict_pair(
    model: PromptModel,
    pair: KeypointPair,
    *,
    seed: int = 0,
    keypoints_per_pass: int | None = None,
    keep_maps: bool = False,
    track_memory: bool = False,
) -> PairPrediction:
    """Optimise embeddings on the pair's source keypoints and match them in its target.

    Args:
        model: the :class:`~difflens.correspondence.prompt_optimisation.PromptModel`.
        pair: the keypoint pair.
        seed: seed of this pair's random streams (one per chunk of keypoints).
        keypoints_per_pass: keypoints whose embeddings share each U-Net pass (``None``:
            all of the pair's; ``1``: the paper's ``k`` rows per pass).
        keep_maps: keep the source and target maps (:attr:`PairPrediction.maps`).
        track_memory: record memory after every optimisation step.

    Returns:
        The :class:`PairPrediction`.
    """
    n = len(pair.source_points)
    step = keypoints_per_pass or n
    parts, seconds = [], [0.0, 0.0]
    for start in range(0, n, step):
        index = np.arange(start, min(n, start + step))
        chunk_seed = draw_seed(seed, start, pair.pair_id)
        found, out, inference = _predict_chunk(model, pair, index, chunk_seed, track_memory)
        seconds[0] += found.seconds
        seconds[1] += inference
        parts.append((found, out))

    def cat(key: str) -> torch.Tensor:
        return torch.cat([out[key] for _, out in parts])

    frame = cat("pred_frame").numpy()
    h, w = pair.target_size
    return PairPrediction(
        pred=frame * np.array([w / model.size, h / model.size]),
        pred_frame=frame,
        score=cat("target").flatten(1).amax(1).double().numpy(),
        points=torch.cat([f.points for f, _ in parts]).numpy(),
        initial_peaks=cat("initial_peaks").numpy(),
        optimised_peaks=cat("optimised_peaks").numpy(),
        seconds_optimise=seconds[0],
        seconds_inference=seconds[1],
        losses=np.concatenate([f.losses for f, _ in parts], axis=1),
        memory=[m for f, _ in parts for m in f.memory],
        maps={k: cat(k) for k in ("source_initial", "source_optimised", "target")}
        if keep_maps
        else {},
    )


PROMPT_COLUMNS: tuple[str, ...] = (
    *PREDICTION_COLUMNS,
    "initial_peak_px",
    "optimised_peak_px",
    "seconds",
)
"""Columns of :attr:`PromptRun.predictions`: those of the feature-matching evaluation
(:data:`~difflens.correspondence.evaluate.PREDICTION_COLUMNS`; ``score`` is the combined target
map's value at the match, ``valid`` always True) and the method's own."""


@dataclass
class PromptRun(CorrespondenceRun):
    """The result of :func:`evaluate_prompt_pairs`: a correspondence run with the method's extras.

    :meth:`~difflens.correspondence.evaluate.CorrespondenceRun.pck` and
    :meth:`~difflens.correspondence.evaluate.CorrespondenceRun.summary` read its PCK table (the
    latter with intervals), as for feature matching.

    Attributes:
        table: :func:`~difflens.correspondence.pck.evaluate_pck`'s tidy table.
        predictions: one row per keypoint, :data:`PROMPT_COLUMNS`: source, ground truth and
            match in original pixels, the error in target pixels, the distances
            (``image_size`` frame) of the source map's peak from the keypoint before and after
            optimisation, and the pair's seconds per keypoint.
        pairs: the matched pairs as :class:`~difflens.correspondence.pck.PairKeypoints`.
        skipped: pairs that failed :func:`~difflens.data.keypoints.check_pair`, with reasons.
        counts: ``pairs_matched`` and ``pairs_skipped``.
        info: preset, model, layers, sigma in the frame, seconds per keypoint.
        examples: ``pair_id -> (pair, PairPrediction)`` of the first pairs, kept with their
            maps and memory trace.
    """

    examples: dict[str, tuple[KeypointPair, PairPrediction]] = field(default_factory=dict)

    def source_hits(self) -> dict[str, float]:
        """How often the source map's peak lies within ``sigma`` of the keypoint.

        Returns:
            ``initial`` and ``optimised`` fractions, ``n`` keypoints and ``sigma`` (pixels of
            the ``image_size`` frame).
        """
        sigma = float(self.info["sigma"])
        p = self.predictions
        return {
            "initial": float((p.initial_peak_px <= sigma).mean()),
            "optimised": float((p.optimised_peak_px <= sigma).mean()),
            "n": int(len(p)),
            "sigma": sigma,
        }


def _rows(pair: KeypointPair, result: PairPrediction) -> dict[str, np.ndarray]:
    """Prediction rows of one pair: the feature-matching columns plus the method's own."""
    n = len(pair.target_points)
    match = MatchResult(
        pred=torch.as_tensor(result.pred),
        score=torch.as_tensor(result.score),
        valid=torch.ones(n, dtype=torch.bool),
        query=torch.as_tensor(pair.source_points, dtype=torch.float64),
    )
    seconds = (result.seconds_optimise + result.seconds_inference) / max(n, 1)
    return {
        **_prediction_rows(pair, match),
        "initial_peak_px": np.linalg.norm(result.initial_peaks - result.points, axis=1),
        "optimised_peak_px": np.linalg.norm(result.optimised_peaks - result.points, axis=1),
        "seconds": np.repeat(seconds, n),
    }


def evaluate_prompt_pairs(
    pairs: Iterable[KeypointPair],
    model: PromptModel,
    *,
    readings: Sequence[str] = ("target_bbox", "source_bbox_512"),
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_boot: int = 1000,
    seed: int = 0,
    keypoints_per_pass: int | None = None,
    examples: int = 0,
    progress: bool = True,
) -> PromptRun:
    """Run the method on every pair and score it with PCK.

    Args:
        pairs: keypoint pairs (consumed once).
        model: the :class:`~difflens.correspondence.prompt_optimisation.PromptModel`.
        readings: PCK threshold readings (Hedlin's is ``"source_bbox_512"``).
        alphas: PCK alphas.
        n_boot: bootstrap resamples of the intervals (0: none).
        seed: seed of the random streams (pair ``i`` derives its own from it) and of the
            bootstrap.
        keypoints_per_pass: keypoints sharing each U-Net pass (see :func:`predict_pair`).
        examples: keep maps and memory traces of the first this many pairs
            (:attr:`PromptRun.examples`).
        progress: show a progress bar.

    Returns:
        The :class:`PromptRun`.
    """
    rows, records, skipped, kept = [], [], SkipLog(verbose=False), {}
    total = len(pairs) if hasattr(pairs, "__len__") else None
    for i, pair in enumerate(tqdm(pairs, total=total, disable=not progress, unit="pair")):
        try:
            check_pair(pair)
        except DatasetError as error:
            skipped.skip(f"pair {pair.pair_id}", f"{error.kind}: {error.detail}")
            continue
        keep = len(kept) < examples
        result = predict_pair(
            model,
            pair,
            seed=seed + i,
            keypoints_per_pass=keypoints_per_pass,
            keep_maps=keep,
            track_memory=keep,
        )
        if keep:
            kept[pair.pair_id] = (pair, result)
        rows.append(_rows(pair, result))
        records.append(pair_keypoints(pair, result.pred))
    table = evaluate_pck(records, readings=readings, alphas=alphas, n_boot=n_boot, seed=seed)
    frame = pd.DataFrame(
        {c: np.concatenate([r[c] for r in rows]) for c in PROMPT_COLUMNS} if rows else {},
        columns=list(PROMPT_COLUMNS),
    )
    info = {
        "preset": model.preset.name,
        "model": model.backbone.model_id,
        "layers": list(model.layers),
        "sigma": model.preset.sigma,
        "seconds_per_keypoint": float(frame.seconds.mean()) if len(frame) else float("nan"),
        "dataset_skipped": getattr(getattr(pairs, "skipped", None), "summary", lambda: None)(),
    }
    counts = {"pairs_matched": len(records), "pairs_skipped": len(skipped.records)}
    return PromptRun(table, frame, records, skipped, counts, info, kept)
