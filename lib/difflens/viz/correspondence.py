"""Correspondence figures: matches drawn as the papers draw them, PCK bars and heat maps.

- :func:`plot_matches`: source and target side by side, one line per keypoint from its
  source position to its prediction, correct and wrong matches in two colours, the ground
  truth marked where a match is wrong (as DIFT's and SD-DINO's qualitative figures);
- :func:`plot_pck_bars`: PCK per category with bootstrap intervals, one bar per arm
  (seaborn's bars; the intervals are the table's own, drawn as error bars);
- :func:`plot_search_heatmap`: a layer x timestep PCK heat map (DIFT's ablation; seaborn's
  annotated heat map), the chosen cell outlined;
- :func:`record_table`: published numbers beside ours, with the averaging and threshold of
  each row named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from difflens.correspondence.pck import correct_keypoints
from difflens.data.keypoints import KeypointPair, box_side

__all__ = [
    "CORRECT_COLOUR",
    "WRONG_COLOUR",
    "PUBLISHED",
    "plot_matches",
    "plot_pck_bars",
    "plot_search_heatmap",
    "record_table",
]

CORRECT_COLOUR = "#2ca02c"
"""Lines of correct matches (green)."""
WRONG_COLOUR = "#d62728"
"""Lines of wrong matches (red)."""
ARM_COLOURS = ("#1f77b4", "#7f7f7f", "#ff7f0e", "#9467bd", "#8c564b")

PUBLISHED: tuple[dict[str, object], ...] = (
    {
        "method": "DIFT_sd (SD 2.1)",
        "dataset": "SPair-71k test",
        "pck": 52.9,
        "alpha": 0.1,
        "threshold": "target bbox",
        "averaging": "per image",
        "source": "DIFT paper, Tab. 1",
    },
    {
        "method": "DIFT_sd (SD 2.1)",
        "dataset": "SPair-71k test",
        "pck": 59.5,
        "alpha": 0.1,
        "threshold": "target bbox",
        "averaging": "per point",
        "source": "DIFT paper as quoted (unverified); CleanDIFT's re-run: 59.57",
    },
    {
        "method": "DIFT_adm",
        "dataset": "SPair-71k test",
        "pck": 46.3,
        "alpha": 0.1,
        "threshold": "target bbox",
        "averaging": "per image",
        "source": "DIFT paper, Tab. 1 (quoted)",
    },
    {
        "method": "DINO ViT-B/8",
        "dataset": "SPair-71k test",
        "pck": 33.9,
        "alpha": 0.1,
        "threshold": "target bbox",
        "averaging": "per image",
        "source": "DIFT paper, Tab. 1",
    },
    {
        "method": "OpenCLIP",
        "dataset": "SPair-71k test",
        "pck": 38.4,
        "alpha": 0.1,
        "threshold": "target bbox",
        "averaging": "per image",
        "source": "DIFT paper, Tab. 1",
    },
    {
        "method": "SD 1.5 layers (SD-DINO)",
        "dataset": "SPair-71k test",
        "pck": 57.2,
        "alpha": 0.1,
        "threshold": "target bbox (padded square frame, strict <)",
        "averaging": "per point",
        "source": "SD-DINO, Tab. 3",
    },
    {
        "method": "SD + DINOv2 zero-shot (SD-DINO)",
        "dataset": "SPair-71k test",
        "pck": 64.0,
        "alpha": 0.1,
        "threshold": "target bbox (padded square frame, strict <)",
        "averaging": "per point",
        "source": "SD-DINO, Tab. 3",
    },
    {
        "method": "Hedlin et al.",
        "dataset": "SPair-71k test",
        "pck": 45.4,
        "alpha": 0.1,
        "threshold": "source bbox in the 512 x 512 frame",
        "averaging": "per image",
        "source": "ubc-vision/LDM_correspondences: docs/qualitative_performance.png",
    },
    {
        "method": "Diffusion Hyperfeatures (SD 1.5)",
        "dataset": "SPair-71k (360-pair subset)",
        "pck": 64.61,
        "alpha": 0.1,
        "threshold": "target bbox",
        "averaging": "per point",
        "source": "Diffusion Hyperfeatures paper (quoted)",
    },
    {
        "method": "DIFT_sd (SD 2.1)",
        "dataset": "PF-WILLOW",
        "pck": 81.2,
        "alpha": 0.1,
        "threshold": "not stated in the quote (PF-WILLOW usually: keypoint extent)",
        "averaging": "per image",
        "source": "DIFT paper (quoted)",
    },
)
"""Published PCK numbers (percent) with their averaging and threshold; several are quoted by
third parties and not re-checked against the papers (see the project's correspondence notes,
section 7)."""


def _correct(pair: KeypointPair, pred: np.ndarray, alpha: float, reading: str) -> np.ndarray:
    gt = pair.target_points.astype(np.float64)
    if reading == "pixels":
        base = 1.0
    elif reading == "target_image":
        base = float(max(pair.target_size))
    else:
        base = box_side(pair.target_box)
    return correct_keypoints(pred, gt, base, alpha)


def plot_matches(
    pair: KeypointPair,
    pred: np.ndarray,
    *,
    alpha: float = 0.1,
    reading: str = "target_bbox",
    correct: np.ndarray | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    show_gt: bool = True,
    linewidth: float = 1.0,
) -> tuple[Figure, Axes]:
    """Source and target side by side with a line per match, correct and wrong coloured.

    Args:
        pair: the pair (images and ground truth in original pixels).
        pred: ``(N, 2)`` predicted x/y in original target pixels.
        alpha: PCK alpha that decides correctness (pixels for ``reading="pixels"``).
        reading: ``"target_bbox"`` (default), ``"target_image"`` or ``"pixels"``.
        correct: ``(N,)`` bool to use instead of computing it.
        ax: draw into this axes (default: a new figure).
        title: the title (default: the pair id and the count of correct matches).
        show_gt: mark the ground truth of wrong matches with a cross.
        linewidth: width of the match lines.

    Returns:
        ``(fig, ax)``.
    """
    import matplotlib.pyplot as plt

    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    ok = _correct(pair, pred, alpha, reading) if correct is None else np.asarray(correct, bool)
    src, trg = pair.source_image, pair.target_image
    height = max(src.shape[0], trg.shape[0])
    canvas = np.full((height, src.shape[1] + trg.shape[1], 3), 255, dtype=np.uint8)
    canvas[: src.shape[0], : src.shape[1]] = src
    canvas[: trg.shape[0], src.shape[1] :] = trg
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 8 * height / canvas.shape[1] + 0.6))
    else:
        fig = ax.figure
    ax.imshow(canvas)
    dx = src.shape[1]
    for (sx, sy), (px, py), good, (gx, gy) in zip(pair.source_points, pred, ok, pair.target_points):
        colour = CORRECT_COLOUR if good else WRONG_COLOUR
        ax.plot([sx, px + dx], [sy, py], color=colour, lw=linewidth)
        ax.plot([sx, px + dx], [sy, py], "o", color=colour, ms=3)
        if show_gt and not good:
            ax.plot(gx + dx, gy, "x", color="yellow", ms=5, mew=1.5)
    unit = "px" if reading == "pixels" else reading.replace("_", " ")
    ax.set_title(title or f"{pair.pair_id}: {int(ok.sum())}/{len(ok)} correct (@{alpha:g} {unit})")
    ax.set_axis_off()
    return fig, ax


def _pck_frame(
    tables: Mapping[str, pd.DataFrame], alpha: float, reading: str, averaging: str
) -> tuple[list[str], pd.DataFrame]:
    """The categories (the first table's order) and one row per arm and category, in %."""
    rows = {
        arm: t[
            np.isclose(t.alpha, alpha) & (t.reading == reading) & (t.averaging == averaging)
        ].set_index("category")
        for arm, t in tables.items()
    }
    categories = [str(c) for c in next(iter(rows.values())).index] if rows else []
    parts = []
    for arm, table in rows.items():
        sub = table.reindex(categories)
        parts.append(
            pd.DataFrame(
                {
                    "arm": arm,
                    "category": categories,
                    "pck": 100 * sub.pck.to_numpy(float),
                    "low": 100 * sub.low.to_numpy(float),
                    "high": 100 * sub.high.to_numpy(float),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return categories, frame


def _interval_bars(ax: Axes, frame: pd.DataFrame, arms: Sequence[str], categories) -> None:
    """Each bar's bootstrap interval, read from the table at the bar's category."""
    from matplotlib.container import BarContainer

    containers = [c for c in ax.containers if isinstance(c, BarContainer)]  # one per arm
    for container, arm in zip(containers, arms):
        rows = frame[frame.arm == arm].set_index("category")
        for bar in container:
            centre = bar.get_x() + bar.get_width() / 2
            row = rows.loc[categories[int(round(centre))]]
            value, low, high = float(row.pck), float(row.low), float(row.high)
            if np.isfinite(value) and np.isfinite(low) and np.isfinite(high):
                err = [[max(value - low, 0.0)], [max(high - value, 0.0)]]
                ax.errorbar([centre], [value], yerr=err, fmt="none", ecolor="black", capsize=3)


def plot_pck_bars(
    tables: Mapping[str, pd.DataFrame],
    *,
    alpha: float = 0.1,
    reading: str = "target_bbox",
    averaging: str = "per_image",
    ax: Axes | None = None,
    title: str | None = None,
    chance: float | None = None,
) -> tuple[Figure, Axes]:
    """PCK per category (and all) with bootstrap intervals, one bar per arm (seaborn bars).

    Args:
        tables: ``arm -> evaluate_pck table`` (e.g. ``{"trained": ..., "random weights": ...}``).
        alpha: the alpha shown.
        reading: the threshold reading shown.
        averaging: ``"per_image"`` or ``"per_point"``.
        ax: draw into this axes (default: a new figure).
        title: the title.
        chance: draw a dashed line at this PCK (e.g. a guessing baseline).

    Returns:
        ``(fig, ax)``; categories in the first table's order, ``"all"`` first; the bars of
        one arm after another in ``ax.patches``.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    categories, frame = _pck_frame(tables, alpha, reading, averaging)
    arms = list(tables)
    if ax is None:
        width = min(12.0, max(5.0, 0.4 * len(categories) * len(arms) + 2))
        fig, ax = plt.subplots(figsize=(width, 3.6))
    else:
        fig = ax.figure
    if len(frame):
        sns.barplot(
            frame,
            x="category",
            y="pck",
            hue="arm",
            order=categories,
            hue_order=arms,
            palette={arm: ARM_COLOURS[k % len(ARM_COLOURS)] for k, arm in enumerate(arms)},
            saturation=1,
            errorbar=None,
            ax=ax,
        )
        _interval_bars(ax, frame, arms, categories)
    if chance is not None:
        ax.axhline(100 * chance, color="black", lw=0.8, ls="--")
    if len(categories) > 6:
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    unit = "px" if reading == "pixels" else reading.replace("_", " ")
    ax.set_xlabel("")
    ax.set_ylabel(f"PCK@{alpha:g} ({unit}, {averaging.replace('_', ' ')}), %")
    if ax.get_legend() is not None:
        ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig, ax


def plot_search_heatmap(
    search: pd.DataFrame,
    *,
    chosen: tuple[str, int] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> tuple[Figure, Axes]:
    """Layer x timestep PCK heat map of a layer-timestep search (a seaborn heat map).

    Every cell is annotated with its PCK in percent (seaborn picks a readable text colour);
    undefined cells are left blank.

    Args:
        search: the table of
            :func:`~difflens.correspondence.evaluate.layer_timestep_search` (``layer``,
            ``timestep``, ``pck``).
        chosen: ``(layer, timestep)`` of the cell to outline (default: the best).
        ax: draw into this axes (default: a new figure).
        title: the title.

    Returns:
        ``(fig, ax)``; layers in the search's (forward) order, top to bottom; cell
        ``(layer i, timestep j)`` spans ``[j, j + 1] x [i, i + 1]``.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.patches import Rectangle

    layers = list(dict.fromkeys(search.layer))
    timesteps = sorted(set(int(t) for t in search.timestep))
    grid = 100 * search.pivot(index="layer", columns="timestep", values="pck").reindex(
        index=layers, columns=timesteps
    ).astype(float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 * len(timesteps) + 3, 0.28 * len(layers) + 1.5))
    else:
        fig = ax.figure
    unit = search.attrs.get("reading", "target_bbox").replace("_", " ")
    sns.heatmap(
        grid,
        annot=True,
        fmt=".0f",
        annot_kws={"fontsize": 7},
        cmap="viridis",
        cbar_kws={"label": f"PCK@{search.attrs.get('alpha', 0.1):g} ({unit}), %"},
        ax=ax,
    )
    ax.set_xlabel("timestep t")
    ax.set_ylabel("")
    ax.tick_params(axis="y", labelrotation=0)
    if chosen is None and len(search):
        best = search.loc[search.pck.astype(float).idxmax()]
        chosen = (str(best.layer), int(best.timestep))
    if chosen is not None and chosen[0] in layers and int(chosen[1]) in timesteps:
        i, j = layers.index(chosen[0]), timesteps.index(int(chosen[1]))
        ax.add_patch(Rectangle((j, i), 1, 1, fill=False, ec="red", lw=2))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig, ax


def record_table(ours: Sequence[Mapping[str, object]] = ()) -> pd.DataFrame:
    """Published numbers (:data:`PUBLISHED`) with our rows appended, in one table.

    Args:
        ours: rows with the same keys as :data:`PUBLISHED` (``method``, ``dataset``,
            ``pck`` in percent, ``alpha``, ``threshold``, ``averaging``, ``source``).

    Returns:
        The table; ``pck`` in percent. Numbers from rows with another dataset, threshold or
        averaging are not comparable.
    """
    return pd.DataFrame([*PUBLISHED, *ours])
