"""An explorer of matches and distances: ipywidgets, in JupyterLab or served as a page by Voila.

:func:`explorer` returns an :class:`Explorer` whose ``widget`` is a two-tab
``ipywidgets.Tab``:

**Matches** -- choose a pair of images (toy pairs, a keypoint dataset, or two of your own
files by path or upload), a model, a layer, a timestep and an ensemble size; click a point
on the source image and the target image shows the cosine map of that point's feature
(DIFT's bilinear upsampling to the original sizes,
:func:`~difflens.correspondence.matching.cosine_map`), the best match (a white ring) and the
other four of the five largest values (magenta rings). Changing the layer, timestep,
ensemble or model redraws the map for the same point. Feature maps are cached per (model,
image, layer, timestep, ensemble): a setting seen before is answered from memory, and the
status line says ``cache hit``.

**Distances** -- choose a prototype table and two of its objects: the pair's distance is
drawn as a line across the violins of the five distance sets (seaborn), next to both
objects' masks on their images.

Clicks reach Python through ``ipyevents`` on an ``ipywidgets.Image``: the picture is a
plain ``<img>`` (PNG bytes), so it renders the same in JupyterLab and Voila, a browser test
can click it at a pixel offset, and ipyevents reports the click in the picture's own
pixels (``dataX``/``dataY``), which :func:`~difflens.viz.explorer_images.display_to_image`
maps back to the original image. What the tabs compute lives in
:mod:`difflens.viz.explorer_logic`; the tab classes here only move values between the
widgets and that logic, so tests can set widget values and call :meth:`MatchTab.on_event`
with a click without a browser.
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import ipywidgets as w
import numpy as np
from ipyevents import Event
from matplotlib.figure import Figure

from difflens.analysis.sets import SETS
from difflens.data.keypoints import KeypointPair
from difflens.data.scene import Scene
from difflens.features.prototypes import PrototypeTable
from difflens.viz.explorer_images import (
    display_to_image,
    heat_picture,
    png_array,
    png_bytes,
    source_picture,
    zoom_for,
)
from difflens.viz.explorer_logic import (
    DistanceExplorer,
    DistanceView,
    MatchExplorer,
    MatchSetting,
    MatchView,
    PairImages,
    extractor_loader,
)
from difflens.viz.plots import SET_COLOURS, plot_distance_among_sets

__all__ = ["Explorer", "MatchTab", "DistanceTab", "explorer", "OWN_FILES", "distance_figure"]

OWN_FILES = "own files"
"""The pair collection that holds the user's two images."""
MASK_COLOURS = ("#ff7f0e", "#17becf")
"""Outline colours of the first and second object's masks."""


def _hidden(widget: w.Widget, hidden: bool) -> None:
    """Show or hide a widget."""
    widget.layout.display = "none" if hidden else None


class MatchTab:
    """The matches tab: a pair, a setting and a clicked point; the cosine map on the target.

    Args:
        logic: the :class:`~difflens.viz.explorer_logic.MatchExplorer` that computes.
        pairs: ``collection name -> pairs`` (any sequence of :class:`KeypointPair` with
            ``len()``: toy pairs, a keypoint dataset); :data:`OWN_FILES` is added.
        models: the model names offered (the first is shown first).
        layer: the layer shown first (when the model has it; else its first layer).
        timestep: the timestep shown first.
        ensemble: the ensemble size shown first.
        display: the side in screen pixels that pictures are enlarged towards.

    Attributes:
        logic: as given.
        pairs: the collections, with :data:`OWN_FILES`.
        view: the last computed :class:`~difflens.viz.explorer_logic.MatchView`, or None.
        zoom: the source picture's enlargement (display pixels per image pixel).
        widget: the tab's root widget.
    """

    def __init__(
        self,
        logic: MatchExplorer,
        pairs: Mapping[str, Sequence[KeypointPair]],
        models: Sequence[str],
        *,
        layer: str | None = None,
        timestep: int = 0,
        ensemble: int = 1,
        display: int = 320,
    ):
        self.logic = logic
        self.pairs = dict(pairs)
        self.view: MatchView | None = None
        self.zoom = 1
        self._display = display
        self._busy = False
        self._build(list(models), timestep, ensemble)
        self.click_events = Event(source=self.source, watched_events=["click"])
        self.click_events.on_dom_event(self.on_event)
        self._layer_options(self.model.value, layer)
        self._pair_options()
        self._observe()
        self.load_pair()

    # ------------------------------------------------------------------ widgets
    def _build(self, models: list[str], timestep: int, ensemble: int) -> None:
        """Create the widgets (no observers yet)."""
        names = [*self.pairs, OWN_FILES]
        self.collection = w.Dropdown(options=names, value=names[0], description="pairs")
        self.index = w.BoundedIntText(value=0, min=0, max=0, description="pair")
        self.source_path = w.Text(placeholder="source image path", description="source")
        self.target_path = w.Text(placeholder="target image path", description="target")
        self.source_upload = w.FileUpload(accept="image/*", description="source image")
        self.target_upload = w.FileUpload(accept="image/*", description="target image")
        self.use_files = w.Button(description="use these images")
        self.files = w.VBox(
            [
                w.HBox([self.source_path, self.source_upload]),
                w.HBox([self.target_path, self.target_upload]),
                self.use_files,
            ]
        )
        self.model = w.Dropdown(options=models, value=models[0], description="model")
        self.layer = w.Dropdown(description="layer")
        self.timestep = w.IntSlider(
            value=timestep, min=0, max=999, description="timestep", continuous_update=False
        )
        self.ensemble = w.BoundedIntText(value=ensemble, min=1, max=64, description="ensemble")
        self.source = w.Image(format="png")
        self.target = w.Image(format="png")
        self.status = w.HTML()
        self.message = w.HTML()
        for widget, name in [
            (self.collection, "collection"),
            (self.index, "index"),
            (self.model, "model"),
            (self.layer, "layer"),
            (self.timestep, "timestep"),
            (self.ensemble, "ensemble"),
            (self.source, "source"),
            (self.target, "target"),
            (self.status, "status"),
            (self.message, "message"),
        ]:
            widget.add_class(f"difflens-{name}")
        self.widget = w.VBox(
            [
                w.HBox([self.collection, self.index]),
                self.files,
                w.HBox([self.model, self.layer]),
                w.HBox([self.timestep, self.ensemble]),
                w.HBox(
                    [
                        w.VBox([w.HTML("<b>source</b>: click a point"), self.source]),
                        w.VBox([w.HTML("<b>target</b>: cosine similarity"), self.target]),
                    ]
                ),
                self.status,
                self.message,
            ]
        )

    def _observe(self) -> None:
        """Connect the widgets to the logic."""
        self.collection.observe(self._on_collection, names="value")
        self.index.observe(lambda _: self.load_pair(), names="value")
        self.use_files.on_click(lambda _: self.load_pair())
        self.model.observe(self._on_model, names="value")
        for widget in (self.layer, self.timestep, self.ensemble):
            widget.observe(lambda _: self.refresh(), names="value")

    def _layer_options(self, model: str, wanted: str | None) -> None:
        """Offer a model's layers and timesteps, keeping the layer shown when it has it."""
        layers = self.logic.layers(model)
        keep = next((name for name in (wanted, self.layer.value) if name in layers), layers[0])
        self._busy = True
        try:
            self.layer.options = layers
            self.layer.value = keep
            self.timestep.max = self.logic.max_timestep(model)
        finally:
            self._busy = False

    def _pair_options(self) -> None:
        """The index range of the chosen collection; the file inputs for own files."""
        own = self.collection.value == OWN_FILES
        _hidden(self.files, not own)
        _hidden(self.index, own)
        if not own:
            self._busy = True
            try:
                self.index.max = max(len(self.pairs[self.collection.value]) - 1, 0)
            finally:
                self._busy = False

    def _on_collection(self, _change: object) -> None:
        self._pair_options()
        if self.collection.value != OWN_FILES:
            self.load_pair()

    def _on_model(self, _change: object) -> None:
        self._layer_options(self.model.value, self.layer.value)
        self.refresh()

    def figure(self) -> Figure:
        """The two pictures shown now, side by side, for saving (no pyplot).

        Returns:
            A matplotlib figure titled with the view's setting, point and best match.

        Raises:
            ValueError: nothing has been computed yet.
        """
        if self.view is None:
            raise ValueError("no view yet: choose a pair first")
        v, s = self.view, self.view.setting
        fig = Figure(figsize=(8, 4.4))
        axes = fig.subplots(1, 2)
        titles = (f"source point {v.point}", f"best match {v.best}, cosine {v.best_score:.3f}")
        for ax, picture, title in zip(axes, (self.source.value, self.target.value), titles):
            ax.imshow(png_array(picture))
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.suptitle(f"{v.pair}: {s.model}, {s.layer}, t = {s.timestep}, ensemble {s.ensemble}")
        fig.tight_layout()
        return fig

    # ------------------------------------------------------------------ actions
    def setting(self) -> MatchSetting:
        """The setting the widgets show.

        Returns:
            model, layer, timestep and ensemble as a :class:`MatchSetting`.
        """
        return MatchSetting(
            self.model.value, self.layer.value, int(self.timestep.value), int(self.ensemble.value)
        )

    def _own_pair(self) -> PairImages | None:
        """The user's two images from the uploads (preferred) or the paths, if both given."""
        sources = []
        for upload, path in (
            (self.source_upload, self.source_path),
            (self.target_upload, self.target_path),
        ):
            if upload.value:
                sources.append(upload.value[-1]["content"])
            elif path.value.strip():
                sources.append(path.value.strip())
        if len(sources) < 2:
            return None
        return PairImages.from_files(sources[0], sources[1])

    def load_pair(self) -> None:
        """Show the pair the widgets choose (a collection's pair, or the own files).

        An error (a missing file, an unreadable upload) is shown in the message line.
        """
        if self._busy:
            return
        try:
            if self.collection.value == OWN_FILES:
                pair = self._own_pair()
                if pair is None:
                    self.message.value = "give a source and a target image (path or upload)"
                    return
            else:
                pair = self.pairs[self.collection.value][int(self.index.value)]
            self.logic.set_pair(pair)
        except (OSError, ValueError, IndexError) as error:
            self.message.value = f"<span style='color:#d62728'>{html.escape(str(error))}</span>"
            return
        self.message.value = ""
        self.zoom = zoom_for(self.logic.pair.source.shape, self._display)
        self.refresh()

    def on_event(self, event: Mapping[str, object]) -> None:
        """An ipyevents click on the source picture: match the pixel under it.

        Args:
            event: the browser event; its ``dataX``/``dataY`` are positions in the
                (enlarged) picture's pixels.
        """
        if event.get("type") != "click" or self.logic.pair is None:
            return
        x, y = display_to_image(
            float(event["dataX"]), float(event["dataY"]), self.zoom, self.logic.pair.source_size
        )
        self.click(x, y)

    def click(self, x: int, y: int) -> MatchView | None:
        """Match the source pixel ``(x, y)`` (original source pixels).

        Args:
            x: column.
            y: row.

        Returns:
            The new view, or None when it could not be computed (the message says why).
        """
        self.logic.point = (int(x), int(y))
        return self.refresh()

    def refresh(self) -> MatchView | None:
        """Compute and draw the view of the current pair, setting and point.

        Returns:
            The view, or None when it could not be computed (the message says why).
        """
        if self._busy or self.logic.pair is None:
            return None
        self.status.value = "computing ..."
        try:
            self.view = self.logic.update(self.setting())
        except (ValueError, RuntimeError) as error:
            self.message.value = f"<span style='color:#d62728'>{html.escape(str(error))}</span>"
            return None
        pair = self.logic.pair
        self.source.value = png_bytes(
            source_picture(pair.source, self.view.point, self.zoom, pair.source_points)
        )
        zoom = zoom_for(pair.target.shape, self._display)
        self.target.value = png_bytes(
            heat_picture(pair.target, self.view.heat, self.view.top, zoom)
        )
        self.status.value = status_html(self.view)
        return self.view


def status_html(view: MatchView) -> str:
    """The status line of a view: pair, setting, point, best match, top five, cache.

    Args:
        view: the view.

    Returns:
        HTML; each number sits in a ``<span class="difflens-...">`` for a browser test.
    """
    s = view.setting
    lookup = view.lookup
    cache = (
        "cache hit"
        if lookup.hit
        else "computed (source: "
        + ("cache" if lookup.source_hit else "U-Net")
        + ", target: "
        + ("cache" if lookup.target_hit else "U-Net")
        + ")"
    )
    top = ", ".join(
        f"({x}, {y}) {score:.3f}" for (x, y), score in zip(view.top.tolist(), view.top_scores)
    )
    return (
        f"<div><b>{html.escape(view.pair)}</b> | model <span class='difflens-s-model'>"
        f"{html.escape(s.model)}</span>, layer <span class='difflens-s-layer'>"
        f"{html.escape(s.layer)}</span>, t = {s.timestep}, ensemble {s.ensemble}</div>"
        f"<div>source point <span class='difflens-s-point'>({view.point[0]}, {view.point[1]})"
        f"</span> -> best match <span class='difflens-s-best'>({view.best[0]}, {view.best[1]})"
        f"</span>, cosine <span class='difflens-s-score'>{view.best_score:.4f}</span></div>"
        f"<div>top {len(view.top)}: {top}</div>"
        f"<div>features: <span class='difflens-s-cache'>{cache}</span> in "
        f"{1000 * lookup.seconds:.0f} ms; view {1000 * view.seconds:.0f} ms</div>"
    )


# ---------------------------------------------------------------------- distances


def _draw_mask(ax, logic: DistanceExplorer, table: str, key: str, colour: str) -> None:
    """One object's mask outlined on its image, or a note when its scene is unknown."""
    found = logic.mask(table, key)
    ax.axis("off")
    if found is None:
        ax.text(0.5, 0.5, f"{key}\n(no image)", ha="center", va="center", transform=ax.transAxes)
        return
    scene, k = found
    ax.imshow(scene.image)
    ax.contour(scene.masks[k], levels=[0.5], colors=[colour], linewidths=2)
    ax.set_title(f"{key} ({scene.class_names[k]})", fontsize=8, color=colour)


def distance_figure(view: DistanceView, logic: DistanceExplorer) -> Figure:
    """The distances tab's picture: the pair's distance across the sets, and both masks.

    Args:
        view: the computed :class:`~difflens.viz.explorer_logic.DistanceView`.
        logic: the :class:`~difflens.viz.explorer_logic.DistanceExplorer` (for the scenes).

    Returns:
        A matplotlib figure (no pyplot): violins with a dashed line, and two images.
    """
    fig = Figure(figsize=(10, 3.4))
    grid = fig.add_gridspec(1, 4)
    ax = fig.add_subplot(grid[0, :2])
    where = ", ".join(view.sets) if view.sets else "no set"
    plot_distance_among_sets(
        view.long,
        view.distance,
        ax=ax,
        sets=logic.sets,
        colours=SET_COLOURS,
        label=f"this pair ({where}): {view.distance:.3g}",
        ylabel=f"{view.metric} distance",
        title=view.table,
    )
    for k, key in enumerate((view.a, view.b)):
        _draw_mask(fig.add_subplot(grid[0, 2 + k]), logic, view.table, key, MASK_COLOURS[k])
    fig.tight_layout()
    return fig


def _figure_png(fig: Figure) -> bytes:
    """A figure as PNG bytes (100 dpi)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


class DistanceTab:
    """The distances tab: a table, a metric and two objects; their distance among the sets.

    Args:
        logic: the :class:`~difflens.viz.explorer_logic.DistanceExplorer`.
        metric: the metric shown first.
        metrics: the metrics offered.

    Attributes:
        logic: as given.
        view: the last :class:`~difflens.viz.explorer_logic.DistanceView`, or None.
        widget: the tab's root widget.
    """

    def __init__(
        self,
        logic: DistanceExplorer,
        metric: str = "cosine",
        metrics: Sequence[str] = ("cosine", "correlation", "euclidean", "manhattan"),
    ):
        self.logic = logic
        self.view: DistanceView | None = None
        self._quiet = False
        names = list(logic.tables)
        self.table = w.Dropdown(options=names, value=names[0], description="table")
        options = list(dict.fromkeys([metric, *metrics]))
        self.metric = w.Dropdown(options=options, value=metric, description="metric")
        self.object_a = w.Dropdown(description="object 1")
        self.object_b = w.Dropdown(description="object 2")
        self.picture = w.Image(format="png")
        self.status = w.HTML()
        for widget, name in [
            (self.table, "table"),
            (self.object_a, "object-a"),
            (self.object_b, "object-b"),
            (self.picture, "distance-picture"),
            (self.status, "distance-status"),
        ]:
            widget.add_class(f"difflens-{name}")
        self.widget = w.VBox(
            [
                w.HBox([self.table, self.metric]),
                w.HBox([self.object_a, self.object_b]),
                self.picture,
                self.status,
            ]
        )
        self._objects()
        self.table.observe(lambda _: (self._objects(), self.refresh()), names="value")
        for widget in (self.metric, self.object_a, self.object_b):
            widget.observe(lambda _: self.refresh(), names="value")
        self.refresh()

    def _objects(self) -> None:
        """Offer the chosen table's objects; the first two are chosen."""
        objects = self.logic.objects(self.table.value)
        self._quiet = True
        try:
            self.object_a.options = objects
            self.object_b.options = objects
            if objects:
                self.object_a.value = objects[0][1]
                self.object_b.value = objects[min(1, len(objects) - 1)][1]
        finally:
            self._quiet = False

    def refresh(self) -> DistanceView | None:
        """Compute and draw the chosen pair.

        Returns:
            The view, or None when the table has no object.
        """
        if self._quiet or self.object_a.value is None:
            return None
        self.view = self.logic.compare(
            self.table.value, self.object_a.value, self.object_b.value, self.metric.value
        )
        self.picture.value = _figure_png(distance_figure(self.view, self.logic))
        self.status.value = distance_status(self.view)
        return self.view


def distance_status(view: DistanceView) -> str:
    """The distances tab's status line.

    Args:
        view: the view.

    Returns:
        HTML: the distance, the pair's sets and, per set, the share of its distances at or
        below the pair's.
    """
    sets = ", ".join(view.sets) if view.sets else "none (an object with itself)"
    shares = ", ".join(
        f"{name} {100 * share:.0f} %" for name, share in view.below.items() if np.isfinite(share)
    )
    return (
        f"<div>{html.escape(view.metric)} distance <span class='difflens-d-distance'>"
        f"{view.distance:.4f}</span>; the pair's sets: <span class='difflens-d-sets'>"
        f"{html.escape(sets)}</span></div><div>share of each set at or below it: {shares}</div>"
    )


# ---------------------------------------------------------------------- the explorer


@dataclass
class Explorer:
    """The explorer's two tabs and the widget that holds them.

    Attributes:
        matches: the :class:`MatchTab`.
        distances: the :class:`DistanceTab`, or None without prototype tables.
        widget: the ``ipywidgets.Tab`` to display.
    """

    matches: MatchTab
    distances: DistanceTab | None
    widget: w.Tab

    def _repr_mimebundle_(self, **kwargs) -> dict:
        return self.widget._repr_mimebundle_(**kwargs)


def explorer(
    pairs: Mapping[str, Sequence[KeypointPair]],
    models: Sequence[str] = ("toy",),
    *,
    image_size: int | Mapping[str, int] = 64,
    device: str = "cpu",
    dtype: str = "fp32",
    layer: str | None = None,
    timestep: int = 0,
    ensemble: int = 1,
    tables: Mapping[str, PrototypeTable] | None = None,
    scenes: Iterable[Scene] = (),
    metric: str = "cosine",
    logic: MatchExplorer | None = None,
) -> Explorer:
    """Build the explorer of matches and distances.

    Args:
        pairs: ``collection name -> pairs`` (toy pairs, a keypoint dataset from
            :func:`~difflens.data.registry.load_pairs`); the user's own files are always
            offered too.
        models: model names for :func:`~difflens.models.backbone.load_backbone` (``"toy"``,
            ``"tiny"``, a folder, a hub id), each opened when first chosen.
        image_size: the side images are resized to, or ``model -> side``.
        device: where the models run.
        dtype: their precision.
        layer: the layer shown first (default: the model's first offered layer).
        timestep: the timestep shown first.
        ensemble: the ensemble size shown first.
        tables: ``name -> PrototypeTable`` for the distances tab (None or empty: no tab).
        scenes: the tables' scenes, to draw the objects' masks.
        metric: the distances tab's first metric.
        logic: the match logic to use (default: a new one with
            :func:`~difflens.viz.explorer_logic.extractor_loader`).

    Returns:
        The :class:`Explorer`; display ``explorer.widget`` (or the explorer itself).
    """
    logic = logic or MatchExplorer(extractor_loader(image_size, device, dtype))
    matches = MatchTab(logic, pairs, models, layer=layer, timestep=timestep, ensemble=ensemble)
    distances = None
    children, titles = [matches.widget], ["Matches"]
    if tables:
        distances = DistanceTab(DistanceExplorer(tables, scenes, SETS), metric)
        children.append(distances.widget)
        titles.append("Distances")
    tab = w.Tab(children=children, titles=titles)
    tab.add_class("difflens-explorer")
    return Explorer(matches, distances, tab)
