"""Attention-map figures of prompt-embedding optimisation (Hedlin et al. 2023).

- :func:`plot_source_maps`: per keypoint, the source image with the keypoint, the token map
  of the initial (random) embeddings and that of the optimised embeddings, each with its
  peak;
- :func:`plot_target_maps`: per keypoint, the optimised embeddings' combined map on the
  target image with the ground truth and the match;
- :func:`plot_loss_curves`: the optimisation loss per step, mean and spread over rows.

Maps live in the method's ``image_size`` frame; they are drawn stretched over the original
image (the frame is an anisotropic resize of it), and points are given in original pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_source_maps", "plot_target_maps", "plot_loss_curves"]

POINT_COLOUR = "#00e5ff"
PEAK_COLOUR = "#ff3d00"
GT_COLOUR = "#76ff03"


def _show(ax: Axes, image: np.ndarray, heat: torch.Tensor | np.ndarray | None) -> None:
    """The image, with a heat map stretched over it when given."""
    h, w = image.shape[:2]
    ax.imshow(image, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    if heat is not None:
        heat = np.asarray(heat, dtype=np.float64)
        span = heat.max() - heat.min()
        norm = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
        ax.imshow(norm, cmap="magma", alpha=0.6, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ax.set_axis_off()


def _peak(heat: torch.Tensor | np.ndarray, shape: Sequence[int]) -> tuple[float, float]:
    """The heat map's argmax (+0.5 cell) in the original image's pixels."""
    heat = np.asarray(heat)
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return (col + 0.5) * shape[1] / heat.shape[1], (row + 0.5) * shape[0] / heat.shape[0]


def plot_source_maps(
    image: np.ndarray,
    points: np.ndarray,
    initial: torch.Tensor,
    optimised: torch.Tensor,
    names: Sequence[str] | None = None,
    size: float = 2.4,
) -> tuple[Figure, np.ndarray]:
    """Source maps before and after optimisation, one row per keypoint.

    Args:
        image: ``(H, W, 3)`` uint8 source image.
        points: ``(N, 2)`` keypoints in original pixels.
        initial: ``(N, M, M)`` maps of the initial embeddings.
        optimised: ``(N, M, M)`` maps of the optimised embeddings.
        names: keypoint names for the row titles.
        size: inches per panel.

    Returns:
        ``(fig, axes)`` with ``axes`` of shape ``(N, 3)``.
    """
    import matplotlib.pyplot as plt

    n = len(points)
    fig, axes = plt.subplots(n, 3, figsize=(3 * size, n * size), squeeze=False)
    for i in range(n):
        x, y = points[i]
        label = names[i] if names is not None else f"keypoint {i}"
        for j, (heat, title) in enumerate(
            ((None, label), (initial[i], "initial embeddings"), (optimised[i], "optimised"))
        ):
            ax = axes[i, j]
            _show(ax, image, heat)
            ax.plot([x], [y], "o", mfc="none", mec=POINT_COLOUR, ms=9, mew=2)
            if heat is not None:
                px, py = _peak(heat, image.shape)
                ax.plot([px], [py], "x", color=PEAK_COLOUR, ms=8, mew=2)
            ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig, axes


def plot_target_maps(
    source: np.ndarray,
    target: np.ndarray,
    source_points: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    maps: torch.Tensor,
    names: Sequence[str] | None = None,
    size: float = 2.4,
) -> tuple[Figure, np.ndarray]:
    """The optimised embeddings' maps on the target, one row per keypoint.

    Args:
        source: ``(Hs, Ws, 3)`` uint8 source image.
        target: ``(Ht, Wt, 3)`` uint8 target image.
        source_points: ``(N, 2)`` source keypoints, original pixels.
        gt: ``(N, 2)`` ground-truth target keypoints, original pixels.
        pred: ``(N, 2)`` matches, original target pixels.
        maps: ``(N, S, S)`` combined target maps (embeddings, layers, crops).
        names: keypoint names for the row titles.
        size: inches per panel.

    Returns:
        ``(fig, axes)`` with ``axes`` of shape ``(N, 2)``: source with its keypoint, target
        with the map, the ground truth (circle) and the match (cross).
    """
    import matplotlib.pyplot as plt

    n = len(source_points)
    fig, axes = plt.subplots(n, 2, figsize=(2 * size, n * size), squeeze=False)
    for i in range(n):
        label = names[i] if names is not None else f"keypoint {i}"
        _show(axes[i, 0], source, None)
        axes[i, 0].plot(*source_points[i], "o", mfc="none", mec=POINT_COLOUR, ms=9, mew=2)
        axes[i, 0].set_title(f"source: {label}", fontsize=9)
        _show(axes[i, 1], target, maps[i])
        axes[i, 1].plot(*gt[i], "o", mfc="none", mec=GT_COLOUR, ms=9, mew=2)
        axes[i, 1].plot(*pred[i], "x", color=PEAK_COLOUR, ms=8, mew=2)
        error = float(np.linalg.norm(np.asarray(pred[i]) - np.asarray(gt[i])))
        axes[i, 1].set_title(f"target: match {error:.1f} px from truth", fontsize=9)
    fig.tight_layout()
    return fig, axes


def plot_loss_curves(
    losses: np.ndarray, ax: Axes | None = None, title: str | None = None
) -> tuple[Figure, Axes]:
    """The optimisation loss per step: median and 10-90 % band over rows.

    Args:
        losses: ``(steps, ...)`` losses (every trailing axis is a row).
        ax: draw into this axes (default: a new figure).
        title: the title.

    Returns:
        ``(fig, ax)``.
    """
    import matplotlib.pyplot as plt

    flat = np.asarray(losses, dtype=np.float64).reshape(len(losses), -1)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 3.0))
    else:
        fig = ax.figure
    steps = np.arange(len(flat))
    low, mid, high = np.percentile(flat, [10, 50, 90], axis=1)
    ax.fill_between(steps, low, high, alpha=0.3, lw=0)
    ax.plot(steps, mid, lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("MSE to the Gaussian target")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig, ax
