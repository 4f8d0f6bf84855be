"""Pictures of scenes: mask overlays with class labels and object-size histograms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from difflens.data.scene import Scene


def overlay(scene: Scene, alpha: float = 0.45, seed: int = 0) -> np.ndarray:
    """The image with each instance mask tinted in its own colour.

    Args:
        scene: the scene.
        alpha: the tint's opacity.
        seed: seed of the colours.

    Returns:
        uint8 ``(H, W, 3)`` RGB image.
    """
    rng = np.random.default_rng(seed)
    out = scene.image.astype(np.float32).copy()
    for mask in scene.masks:
        colour = rng.integers(40, 256, size=3).astype(np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return out.clip(0, 255).astype(np.uint8)


def show_scene(
    scene: Scene, ax: Axes | None = None, labels: bool = True, title: str | None = None
) -> Axes:
    """Draw a scene with its masks overlaid and each object labelled ``class#id``.

    Args:
        scene: the scene.
        ax: the axes to draw on; a new figure when None.
        labels: write ``class#id`` at each object's centre.
        title: the title; default the image id.

    Returns:
        The axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.imshow(overlay(scene))
    if labels:
        for k in range(scene.n_objects):
            ys, xs = np.nonzero(scene.masks[k])
            ax.text(
                xs.mean(),
                ys.mean(),
                f"{scene.class_names[k]}#{scene.instance_ids[k]}",
                fontsize=7,
                ha="center",
                va="center",
                color="white",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "edgecolor": "none"},
            )
    ax.set_title(title or scene.image_id, fontsize=9)
    ax.axis("off")
    return ax


def show_scenes(scenes: Sequence[Scene], columns: int = 4, size: float = 3.0) -> Figure:
    """A grid of :func:`show_scene` panels.

    Args:
        scenes: the scenes.
        columns: panels per row.
        size: a panel's side in inches.

    Returns:
        The figure.
    """
    rows = max(1, -(-len(scenes) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, scene in zip(axes.ravel(), scenes):
        show_scene(scene, ax)
    fig.tight_layout()
    return fig


def object_table(scenes: Iterable[Scene]) -> pd.DataFrame:
    """One row per object: image, instance, class and the fraction of the image it covers.

    Args:
        scenes: the scenes.

    Returns:
        Columns ``image_id``, ``instance_id``, ``class_name``, ``area_fraction`` (float in
        ``[0, 1]``).
    """
    rows = []
    for scene in scenes:
        for k, fraction in enumerate(scene.area_fractions()):
            rows.append(
                {
                    "image_id": scene.image_id,
                    "instance_id": scene.instance_ids[k],
                    "class_name": scene.class_names[k],
                    "area_fraction": float(fraction),
                }
            )
    return pd.DataFrame(rows, columns=["image_id", "instance_id", "class_name", "area_fraction"])


def object_size_histogram(
    objects: pd.DataFrame, ax: Axes | None = None, threshold: float = 0.01
) -> Axes:
    """Histogram of object areas (log scale, seaborn) with the paper's 1 % threshold marked.

    Args:
        objects: a table with ``area_fraction`` (see :func:`object_table`); zero areas
            are left out of the log scale.
        ax: the axes to draw on; a new figure when None.
        threshold: the selection threshold, a fraction of the image.

    Returns:
        The axes.
    """
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    fractions = objects["area_fraction"].to_numpy(np.float64)
    fractions = fractions[fractions > 0]
    if len(fractions):
        # seaborn's log-scale histogram: 30 bins even in log10 from the smallest object to 1
        low = min(np.log10(fractions.min()), -1e-9)
        sns.histplot(
            x=fractions, bins=30, binrange=(low, 0.0), log_scale=True, color="#1f77b4", ax=ax
        )
    ax.set_xscale("log")
    ax.axvline(
        threshold, color="#d62728", linestyle="--", label=f"{100 * threshold:g} % of the image"
    )
    ax.set_xlabel("object area / image area")
    ax.set_ylabel("objects")
    ax.legend(frameon=False)
    return ax
