"""Figures of a training run: the loss curve and a grid of samples, written to files.

Both draw on a bare :class:`matplotlib.figure.Figure` (no pyplot, no backend switch), so
they run headless and leave a notebook's plotting backend alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def plot_loss_curve(log: dict, path: Path) -> None:
    """The training loss per step, its running mean and the validation loss, on a log scale.

    Args:
        log: ``{"loss": per-step losses, "validation": [(step, loss), ...]}`` (epsilon MSE).
        path: the image file to write (110 dpi).
    """
    loss = np.asarray(log["loss"])
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(np.arange(1, len(loss) + 1), loss, color="#bbbbbb", lw=0.6, label="training batch")
    window = min(50, len(loss))
    if window > 1:
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(
            np.arange(window, len(loss) + 1),
            smooth,
            color="#1f77b4",
            label=f"mean of {window} steps",
        )
    if log["validation"]:
        v = np.asarray(log["validation"])
        ax.plot(v[:, 0], v[:, 1], "o-", color="#d62728", ms=3, label="fixed validation batch")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("epsilon MSE")
    ax.set_title("toy U-Net training loss")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def save_sample_grid(images: np.ndarray, labels: list[str], path: Path, cols: int = 8) -> None:
    """A grid of generated images, each titled with its prompt.

    Args:
        images: ``(N, H, W, 3)`` images (uint8, or floats in ``[0, 1]``).
        labels: the prompt of each image (``""`` is shown as ``'""'``).
        path: the image file to write (110 dpi).
        cols: images per row.
    """
    rows = math.ceil(len(images) / cols)
    fig = Figure(figsize=(cols * 1.1, rows * 1.25))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, image, label in zip(np.ravel(axes), images, labels):
        ax.imshow(image)
        ax.set_title(label or '""', fontsize=6)
    for ax in np.ravel(axes):
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
