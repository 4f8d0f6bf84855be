"""Scenes -> prototype tables, images -> feature maps: batched over settings, cached, resumable.

Both loops take a :class:`~difflens.features.store.FeatureStore` (the argument, else the
extractor's). Each image's result is written to it as soon as it is computed, so a run that
is interrupted at any point is resumed by running it again: finished images are read back,
only the rest is computed, and the result equals that of an uninterrupted run, with nothing
duplicated. A tqdm bar counts images ``done`` (computed), ``cached`` (read back),
``skipped`` (bad input: no objects, unreadable, grey/RGBA) and ``failed`` (an error while
computing them, e.g. non-finite features in fp16); skipped and failed items are named in the
returned ``skipped`` log and are computed again on the next run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from difflens.core.errors import BadInputError
from difflens.core.skips import SkipLog, logger
from difflens.data.images import check_image, read_image
from difflens.data.scene import Scene
from difflens.features.distributed import current_shard, sum_counts, wait_for_everyone
from difflens.features.extractor import FeatureExtractor, concat_layers
from difflens.features.prototypes import MASK_MODES, META_COLUMNS, PrototypeTable, scene_prototypes
from difflens.features.settings import Setting
from difflens.features.store import FeatureStore, array_digest, get_or_compute, image_digest
from difflens.models.layers import UnknownLayerError

COUNTS = ("done", "cached", "skipped", "failed")


def parse_layers(layers: str | Sequence[str]) -> list[str]:
    """Layer names from a ``+``-joined spec or a list.

    Args:
        layers: ``"down2.attn0"``, ``"down0.attn1+down1.attn1"`` or a list of names.

    Returns:
        The names, blanks dropped.
    """
    if isinstance(layers, str):
        return [name.strip() for name in layers.split("+") if name.strip()]
    return list(layers)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class PrototypeSpec:
    """What one prototype table is made of: layers (concatenated), setting and mask mode.

    Attributes:
        layers: layer names whose maps are concatenated (a ``+``-joined string is split).
        timestep: scheduler index 0..T-1.
        ensemble: noise draws averaged.
        mask_mode: ``"nearest"`` or ``"area"``.
        name: the table's label (default: made from the other fields).
    """

    layers: tuple[str, ...] | str
    timestep: int = 0
    ensemble: int = 1
    mask_mode: str = "nearest"
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(parse_layers(self.layers)))

    @property
    def setting(self) -> Setting:
        """The spec's timestep and ensemble as a :class:`~difflens.features.settings.Setting`."""
        return Setting(self.timestep, self.ensemble)

    @property
    def label(self) -> str:
        """``name``, or e.g. ``"down2.attn0 t=50 x4 area"`` made from the fields."""
        if self.name:
            return self.name
        label = f"{'+'.join(self.layers)} t={self.timestep}"
        if self.ensemble > 1 and self.timestep > 0:
            label += f" x{self.ensemble}"
        return label + ("" if self.mask_mode == "nearest" else f" {self.mask_mode}")


class PrototypeTables(dict):
    """``label -> PrototypeTable``, plus the run's counts and its run-level skip log.

    Args:
        *args: what ``dict`` takes.
        counts: images ``done``, ``cached``, ``skipped`` and ``failed``.
        skipped: the run-level skips (invalid settings, images that failed).

    Attributes:
        counts: as given (empty by default).
        skipped: as given (empty by default).
    """

    def __init__(self, *args, counts: Counter | None = None, skipped: SkipLog | None = None):
        super().__init__(*args)
        self.counts = Counter() if counts is None else counts
        self.skipped = SkipLog(verbose=False) if skipped is None else skipped


class _Progress:
    """A tqdm bar over items whose postfix shows done / cached / skipped / failed."""

    def __init__(self, items, desc: str, enabled: bool):
        total = len(items) if hasattr(items, "__len__") else None
        self.counts: Counter = Counter({name: 0 for name in COUNTS})
        self.bar = tqdm(total=total, desc=desc, unit="img", disable=not enabled)

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1
        self.bar.update(1)
        self.bar.set_postfix({name: self.counts[name] for name in COUNTS}, refresh=False)

    def close(self) -> None:
        self.bar.close()


def scene_fields(scene: Scene) -> dict:
    """Everything about a scene that shapes its prototypes and their metadata.

    Args:
        scene: the scene.

    Returns:
        JSON-able key fields: content hashes of image and masks, ids, source, class names
        and instance ids.
    """
    return {
        "image": image_digest(scene.image),
        "masks": array_digest(np.packbits(scene.masks, axis=-1)) + f"{scene.masks.shape}",
        "image_id": scene.image_id,
        "source_image": scene.source_image,
        "source": scene.source,
        "class_names": list(scene.class_names),
        "instance_ids": list(scene.instance_ids),
    }


def _valid_specs(
    specs: Mapping[str, PrototypeSpec], extractor: FeatureExtractor, skipped: SkipLog
) -> dict[str, PrototypeSpec]:
    valid = {}
    problems = []
    for label, spec in specs.items():
        try:
            if not spec.layers:
                raise BadInputError("no layers given")
            extractor.registry.check(spec.layers)
            extractor.check_setting(spec.setting)
            if spec.mask_mode not in MASK_MODES:
                raise BadInputError(
                    f"mask mode must be one of {MASK_MODES}, got {spec.mask_mode!r}"
                )
        except (BadInputError, UnknownLayerError) as error:
            skipped.skip(f"setting {label!r}", f"invalid setting: {error}")
            problems.append(f"{label!r}: {error}")
            continue
        valid[label] = spec
    if not valid:
        raise BadInputError("no valid settings: " + "; ".join(problems))
    return valid


def _as_specs(specs) -> dict[str, PrototypeSpec]:
    if isinstance(specs, PrototypeSpec):
        specs = [specs]
    if isinstance(specs, Mapping):
        return dict(specs)
    out: dict[str, PrototypeSpec] = {}
    for spec in specs:
        if spec.label in out:
            raise ValueError(f"two settings share the label {spec.label!r}; give them names")
        out[spec.label] = spec
    return out


def _prototype_fields(config: dict, spec: PrototypeSpec, scene: dict, prompt: str) -> dict:
    setting = spec.setting.normalized()
    return {
        "extractor": config,
        "layers": list(spec.layers),
        "timestep": setting.timestep,
        "ensemble": setting.ensemble,
        "mask_mode": spec.mask_mode,
        "prompt": prompt,
        "scene": scene,
    }


def _table_to_entry(table: PrototypeTable) -> tuple[dict, dict]:
    arrays = {"features": table.features.astype(np.float32)}
    meta = {
        "rows": table.meta.to_dict(orient="records"),
        "skipped": [list(record) for record in table.skipped.records],
    }
    return arrays, meta


def _table_from_entry(arrays: dict, meta: dict) -> PrototypeTable:
    skipped = SkipLog(verbose=False)
    skipped.records.extend(tuple(record) for record in meta["skipped"])
    frame = pd.DataFrame(meta["rows"], columns=list(META_COLUMNS))
    return PrototypeTable(frame, arrays["features"], skipped)


@dataclass
class _Item:
    """One usable scene of a batch: its key fields and its prompt."""

    scene: Scene
    fields: dict
    prompt: str


def _compute_prototypes(
    work: list[tuple[_Item, list[str]]],
    specs: dict[str, PrototypeSpec],
    extractor: FeatureExtractor,
    store: FeatureStore | None,
) -> list[dict[str, PrototypeTable] | Exception]:
    """Prototype tables of ``(scene, labels)`` pairs from one batched forward pass.

    Returns, per scene, ``label -> table`` or the exception that prevented it.
    """
    labels = list(dict.fromkeys(label for _, wanted in work for label in wanted))
    settings = list(dict.fromkeys(specs[label].setting.normalized() for label in labels))
    order = {name: i for i, name in enumerate(extractor.registry.names)}
    layers = sorted({name for label in labels for name in specs[label].layers}, key=order.get)
    latents = extractor.encode([item.scene.image for item, _ in work], store=store)
    maps = extractor.features_for_settings(
        latents,
        layers,
        settings,
        prompts=[item.prompt for item, _ in work],
        keys=[item.fields["image"] for item, _ in work],
    )
    results: list[dict[str, PrototypeTable] | Exception] = []
    for row, (item, wanted) in enumerate(work):
        try:
            results.append(
                {
                    label: _scene_table(
                        item.scene,
                        specs[label],
                        maps[settings.index(specs[label].setting.normalized())],
                        row,
                        extractor,
                    )
                    for label in wanted
                }
            )
        except (FloatingPointError, ValueError) as error:
            results.append(error)
    _announce_skips(results)
    return results


def _scene_table(
    scene: Scene, spec: PrototypeSpec, per_layer: dict, row: int, extractor: FeatureExtractor
) -> PrototypeTable:
    """The prototypes of one scene under one spec, from the batch's maps."""
    fmap = concat_layers(
        {name: per_layer[name][row : row + 1] for name in spec.layers}, spec.layers
    )[0]
    if not torch.isfinite(fmap).all():
        raise FloatingPointError(
            f"non-finite features at {'+'.join(spec.layers)} ({extractor.backbone.dtype} overflow?)"
        )
    return scene_prototypes(fmap, scene, mask_mode=spec.mask_mode, skipped=SkipLog(verbose=False))


def _announce_skips(results: list) -> None:
    """Log each skipped object once per reason, not once per spec."""
    announced: set[tuple[str, str]] = set()
    for result in results:
        if isinstance(result, Exception):
            continue
        for table in result.values():
            for record in table.skipped.records:
                if record not in announced:
                    announced.add(record)
                    logger.warning("skipped %s: %s", *record)


def _compute_safely(work, specs, extractor, store) -> list[dict | Exception]:
    """As :func:`_compute_prototypes`; a failing batch is retried image by image."""
    try:
        return _compute_prototypes(work, specs, extractor, store)
    except Exception as error:  # any error of one image must not end the run
        if len(work) == 1:
            return [error]
        return [
            result for one in work for result in _compute_safely([one], specs, extractor, store)
        ]


class _PrototypeRun:
    """The state of one :func:`prototype_tables` call: specs, store and collected parts.

    ``keep=False`` only fills the store (no table is kept); ``verbose=False`` does not log
    the run-level skips again (the read-back pass of a sharded run).
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        specs: dict,
        store: FeatureStore | None,
        *,
        keep: bool = True,
        verbose: bool = True,
    ):
        self.extractor = extractor
        self.store = store
        self.keep = keep
        self.skipped = SkipLog(verbose=verbose)
        self.specs = _valid_specs(specs, extractor, self.skipped)
        self.config = extractor.config()
        self.parts: dict[str, list[PrototypeTable]] = {label: [] for label in self.specs}
        self.logs = {label: SkipLog(verbose=False) for label in self.specs}
        self.single: Counter = Counter()

    def _skip_everywhere(self, image_id: str, reason: str) -> None:
        self.skipped.skip(image_id, reason)
        for log in self.logs.values():
            log.records.append((image_id, reason))

    def process(self, batch: list[Scene]) -> list[str]:
        """Prototypes of one batch of scenes; returns each scene's outcome (see COUNTS)."""
        outcomes: dict[int, str] = {}
        items: list[tuple[int, _Item]] = []
        for position, scene in enumerate(batch):
            if scene.n_objects == 0:
                self._skip_everywhere(scene.image_id, "no objects: the image has no instance masks")
                outcomes[position] = "skipped"
                continue
            prompt = self.extractor.prompt_for(scene.class_names)
            items.append((position, _Item(scene, scene_fields(scene), prompt)))
        pairs = [(item, label) for _, item in items for label in self.specs]
        fields = [
            _prototype_fields(self.config, self.specs[label], item.fields, item.prompt)
            for item, label in pairs
        ]
        entries = get_or_compute(
            self.store,
            "prototypes",
            fields,
            lambda missing: self._compute([pairs[i] for i in missing]),
        )
        n_specs = len(self.specs)
        for k, (position, item) in enumerate(items):
            mine = entries[k * n_specs : (k + 1) * n_specs]
            outcomes[position] = self._collect(item, mine)
        return [outcomes[i] for i in range(len(batch))]

    def _compute(self, pairs: list[tuple[_Item, str]]) -> list:
        wanted: dict[int, tuple[_Item, list[str]]] = {}
        for item, label in pairs:
            wanted.setdefault(id(item), (item, []))[1].append(label)
        work = list(wanted.values())
        results = _compute_safely(work, self.specs, self.extractor, self.store)
        by_item = {id(item): result for (item, _), result in zip(work, results)}
        out = []
        for item, label in pairs:
            result = by_item[id(item)]
            out.append(result if isinstance(result, Exception) else _table_to_entry(result[label]))
        return out

    def _collect(self, item: _Item, entries: list) -> str:
        failure = next((e for e in entries if isinstance(e, Exception)), None)
        if failure is not None:
            self._skip_everywhere(
                item.scene.image_id, f"failed: {type(failure).__name__}: {failure}"
            )
            return "failed"
        for label, entry in zip(self.specs, entries if self.keep else ()):
            table = _table_from_entry(entry.arrays, entry.meta)
            self.parts[label].append(table)
            self.logs[label].extend(table.skipped)
            self.single[label] += int(len(table) == 1)
        return "cached" if all(entry.cached for entry in entries) else "done"

    def tables(self, counts: Counter) -> PrototypeTables:
        """The finished tables with their run information."""
        tables = PrototypeTables(counts=counts, skipped=self.skipped)
        for label, spec in self.specs.items():
            table = _concat(self.parts[label])
            table.skipped = self.logs[label]
            table.info.update(self._info(label, spec, counts))
            tables[label] = table
        return tables

    def _info(self, label: str, spec: PrototypeSpec, counts: Counter) -> dict:
        extractor = self.extractor
        return {
            "label": label,
            "layers": list(spec.layers),
            "timestep": spec.timestep,
            "ensemble": spec.setting.draws,
            "mask_mode": spec.mask_mode,
            "image_size": extractor.image_size,
            "model": extractor.backbone.model_id,
            "fingerprint": self.config["fingerprint"],
            "dtype": self.config["dtype"],
            "prompt": extractor.prompt,
            "seed": extractor.seed,
            "noise": extractor.noise,
            "single_object_images": self.single[label],
            "counts": dict(counts),
        }


def prototype_tables(
    scenes: Iterable[Scene],
    extractor: FeatureExtractor,
    specs: Sequence[PrototypeSpec] | Mapping[str, PrototypeSpec] | PrototypeSpec,
    *,
    batch_size: int = 4,
    progress: bool = True,
    store: FeatureStore | None = None,
) -> PrototypeTables:
    """Prototype tables for several settings from one pass over the scenes.

    Per batch of ``batch_size`` scenes, one U-Net forward (see
    :meth:`FeatureExtractor.features_for_settings`) serves every timestep and noise draw
    the specs need, and captures the union of their layers, stopping after the deepest.
    With a store, each (scene, spec) prototype set is cached; a scene whose specs are all
    cached costs no forward pass. A spec with an unknown layer, a timestep outside the
    scheduler's range or an unknown mask mode is skipped, named and counted in the
    result's ``skipped`` log; the others go on.

    Args:
        scenes: the scenes (any iterable; a tqdm bar counts them).
        extractor: the feature extractor (model, size, prompt, noise).
        specs: one spec, a list (labelled by ``spec.label``) or a ``label -> spec`` mapping.
        batch_size: scenes per U-Net batch.
        progress: show the progress bar.
        store: the cache (default: the extractor's; ``None`` there too means no cache).

    Returns:
        ``label -> PrototypeTable`` with the run's ``counts`` (done, cached, skipped,
        failed) and its ``skipped`` log; each table's ``info`` records its settings.
        When no spec is valid a :class:`~difflens.core.errors.BadInputError` names every
        problem; two specs that share a label raise ``ValueError``.
    """
    store = extractor.store if store is None else store
    specs = _as_specs(specs)
    if current_shard().count > 1 and store is not None:
        scenes = scenes if isinstance(scenes, Sequence) else list(scenes)
        counts = fill_prototype_store(
            scenes, extractor, specs, store, batch_size=batch_size, progress=progress
        )
        run = _PrototypeRun(extractor, specs, store, verbose=False)
        _prototype_pass(run, scenes, batch_size, progress=False)  # every entry reads back
        return run.tables(counts)
    run = _PrototypeRun(extractor, specs, store)
    return run.tables(_prototype_pass(run, scenes, batch_size, progress))


def _prototype_pass(
    run: _PrototypeRun, scenes: Iterable[Scene], batch_size: int, progress: bool, prefix: str = ""
) -> Counter:
    """Run every batch of ``scenes`` through ``run``; the per-image outcome counts."""
    desc = f"prototypes {' | '.join(run.specs)}"
    desc = desc if len(desc) < 60 else f"prototypes ({len(run.specs)} settings)"
    bar = _Progress(scenes, prefix + desc, progress)
    try:
        for batch in _batches(scenes, batch_size):
            for outcome in run.process(batch):
                bar.add(outcome)
    finally:
        bar.close()
    return bar.counts


def fill_prototype_store(
    scenes: Iterable[Scene],
    extractor: FeatureExtractor,
    specs: Sequence[PrototypeSpec] | Mapping[str, PrototypeSpec] | PrototypeSpec,
    store: FeatureStore,
    *,
    batch_size: int = 4,
    progress: bool = True,
) -> Counter:
    """Compute and store this process's share of the prototype entries; wait for the others.

    Under ``accelerate launch`` each process takes its :class:`~difflens.features.distributed.Shard`
    of the scenes (whole batches of ``batch_size``, batch ``b`` to process ``b mod N``),
    computes what the store lacks and writes it, then waits for every process; the store
    then holds exactly the entries one process would have written. A single process fills
    the store with every scene. Nothing is kept in memory: read the tables afterwards with
    :func:`prototype_tables` (every entry is then read back).

    Args:
        scenes: the scenes (the same list, in the same order, in every process).
        extractor: the feature extractor.
        specs: one spec, a list or a ``label -> spec`` mapping (as :func:`prototype_tables`).
        store: the store every process writes to.
        batch_size: scenes per U-Net batch (also the unit of the shares).
        progress: show the main process's progress bar.

    Returns:
        Images ``done``, ``cached``, ``skipped`` and ``failed``, summed over the processes
        (each image is counted once, by the process that owns it).

    Raises:
        ValueError: ``store`` is ``None`` (a share computed without a store would be lost).
    """
    if store is None:
        raise ValueError("filling the store needs a store")
    shard = current_shard()
    run = _PrototypeRun(extractor, _as_specs(specs), store, keep=False)
    prefix = f"[{shard.index + 1}/{shard.count}] " if shard.count > 1 else ""
    mine = shard.take(scenes, batch_size)
    counts = _prototype_pass(run, mine, batch_size, progress and shard.is_main, prefix)
    total = sum_counts(counts)
    wait_for_everyone()
    return total


def _concat(tables: list[PrototypeTable]) -> PrototypeTable:
    """One table of all ``tables``; an empty table with the metadata columns for none."""
    if tables:
        return PrototypeTable.concat(tables)
    return PrototypeTable(pd.DataFrame(columns=list(META_COLUMNS)), np.zeros((0, 0), np.float32))


def prototype_table(
    scenes: Iterable[Scene],
    extractor: FeatureExtractor,
    layers: str | Sequence[str],
    timestep: int = 0,
    mask_mode: str = "nearest",
    batch_size: int = 4,
    progress: bool = True,
    *,
    ensemble: int = 1,
    store: FeatureStore | None = None,
) -> PrototypeTable:
    """Prototypes of every object of every scene at ``layers`` (concatenated if several).

    Scenes without objects are skipped and counted; objects whose mask vanishes at the
    feature resolution are skipped and counted; an image with a single object is kept (it
    has no same-image pairs but takes part in the different-image sets) and counted in
    ``info["single_object_images"]``. An invalid setting (unknown layer, timestep out of
    range) raises at once, before any image is processed.

    Args:
        scenes: the scenes.
        extractor: the feature extractor.
        layers: a layer name, ``"a+b"`` or a list of names (maps concatenated).
        timestep: scheduler index 0..T-1.
        mask_mode: ``"nearest"`` or ``"area"``.
        batch_size: scenes per U-Net batch.
        progress: show a progress bar.
        ensemble: noise draws averaged.
        store: caches each image's prototypes and makes the run resumable (default: the
            extractor's).

    Returns:
        The :class:`~difflens.features.prototypes.PrototypeTable`; ``info`` records the
        settings and counts.

    Raises:
        ValueError: ``mask_mode`` is not one of :data:`MASK_MODES`.
    """
    spec = PrototypeSpec(tuple(parse_layers(layers)), timestep, ensemble, mask_mode)
    extractor.registry.check(spec.layers)
    extractor.check_setting(spec.setting)
    if mask_mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mask_mode!r}")
    tables = prototype_tables(
        scenes, extractor, [spec], batch_size=batch_size, progress=progress, store=store
    )
    return tables[spec.label]


class FeatureMaps(dict):
    """``key -> [{layer: (C, h, w) tensor} per setting]``, with the run's information.

    Args:
        settings: the settings, in the order of each value's list.
        counts: images ``done``, ``cached``, ``skipped`` and ``failed``.
        skipped: names the images that could not be used.

    Attributes:
        settings: as given.
        counts: as given.
        skipped: as given.
    """

    def __init__(self, settings: list[Setting], counts: Counter, skipped: SkipLog):
        super().__init__()
        self.settings = settings
        self.counts = counts
        self.skipped = skipped


def _feature_fields(config: dict, layer: str, setting: Setting, prompt: str, image: str) -> dict:
    """Key fields of one map; ``setting`` as :meth:`FeatureExtractor.key_setting` gives it."""
    return {
        "extractor": config,
        "layer": layer,
        "timestep": setting.timestep,
        "ensemble": setting.ensemble,
        "prompt": prompt,
        "image": image,
    }


def _readable(key: str, image, extractor: FeatureExtractor) -> np.ndarray:
    """The image as an RGB array, read from its file when it is a path."""
    if isinstance(image, (str, Path)):
        return read_image(image, extractor.colour)
    return check_image(image, key, extractor.colour)


def _compute_maps(
    todo: list[tuple[str, np.ndarray, str, str]],
    wanted: list[tuple[int, Setting, str]],
    extractor: FeatureExtractor,
    names: list[str],
    settings: list[Setting],
    store: FeatureStore | None,
) -> list:
    """Maps of the images of ``todo`` that ``wanted`` asks for, one batched forward."""
    rows = sorted({image for image, _, _ in wanted})
    latents = extractor.encode([todo[i][1] for i in rows], store=store)
    maps = extractor.features_for_settings(
        latents,
        names,
        settings,
        keys=[todo[i][2] for i in rows],
        prompts=[todo[i][3] for i in rows],
    )
    finite = {
        image: all(bool(torch.isfinite(m[name][r]).all()) for m in maps for name in names)
        for r, image in enumerate(rows)
    }
    out = []
    for image, setting, name in wanted:
        if not finite[image]:
            out.append(FloatingPointError("non-finite features"))
            continue
        out.append(({"map": maps[settings.index(setting)][name][rows.index(image)].numpy()}, {}))
    return out


def _image_prompts(prompts: Sequence[str] | None, n: int, extractor: FeatureExtractor) -> list[str]:
    """One prompt per image: as given (checked), or the extractor's for every image."""
    if prompts is None:
        return [extractor.prompt_for()] * n
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts for {n} images")
    return list(prompts)


def _compute_missing_maps(todo, wanted, extractor, names, settings, store, missing):
    return _compute_maps(todo, [wanted[m] for m in missing], extractor, names, settings, store)


@dataclass
class _MapsJob:
    """What one :func:`feature_maps` call computes: checked layers, settings and items."""

    extractor: FeatureExtractor
    names: list[str]
    settings: list[Setting]
    items: list[tuple[str, object, str]]
    store: FeatureStore | None
    config: dict


def _image_keys(images: Sequence, keys: Sequence[str] | None) -> list[str]:
    """The given keys, or the path (``"image{i}"`` for an array) of each image."""
    if keys is None:
        return [str(x) if isinstance(x, (str, Path)) else f"image{i}" for i, x in enumerate(images)]
    return list(keys)


def _maps_job(images, extractor, layers, settings, keys, prompts, store) -> _MapsJob:
    """Check the arguments of :func:`feature_maps` and pair each image with its key and prompt."""
    names = extractor.registry.check(parse_layers(layers))
    settings = [extractor.check_setting(s) for s in settings]
    prompts = _image_prompts(prompts, len(images), extractor)
    items = list(zip(keys, images, prompts))
    return _MapsJob(extractor, names, settings, items, store, extractor.config())


def _maps_batch(
    job: _MapsJob, batch: list, out: FeatureMaps | None, bar: _Progress, skipped
) -> None:
    """Read or compute the maps of one batch of ``(key, image, prompt)``; keep them in ``out``."""
    extractor, names, settings = job.extractor, job.names, job.settings
    todo = []
    for key, image, prompt in batch:
        try:
            array = _readable(key, image, extractor)
        except BadInputError as error:
            skipped.skip(key, f"bad image: {error}")
            bar.add("skipped")
            continue
        todo.append((key, array, image_digest(array), prompt))
    wanted = [(i, s, name) for i in range(len(todo)) for s in settings for name in names]
    fields = [
        _feature_fields(job.config, n, extractor.key_setting(s), todo[i][3], todo[i][2])
        for i, s, n in wanted
    ]
    compute = partial(_compute_missing_maps, todo, wanted, extractor, names, settings, job.store)
    entries = get_or_compute(job.store, "features", fields, compute)
    per_image = len(settings) * len(names)
    for i, (key, *_) in enumerate(todo):
        mine = entries[i * per_image : (i + 1) * per_image]
        if any(isinstance(e, Exception) for e in mine):
            skipped.skip(key, "failed: non-finite features")
            bar.add("failed")
            continue
        if out is not None:
            maps = iter(torch.from_numpy(e.arrays["map"]) for e in mine)
            out[key] = [{name: next(maps) for name in names} for _ in settings]
        bar.add("cached" if all(e.cached for e in mine) else "done")


def _maps_pass(
    job: _MapsJob, items: list, batch_size: int, progress: bool, keep: bool = True, prefix: str = ""
) -> FeatureMaps:
    """Every batch of ``items``; the maps (none kept with ``keep=False``) and the counts."""
    skipped = SkipLog()
    bar = _Progress(items, f"{prefix}features {'+'.join(job.names)}", progress)
    out = FeatureMaps(job.settings, bar.counts, skipped)
    try:
        for batch in _batches(items, batch_size):
            _maps_batch(job, batch, out if keep else None, bar, skipped)
    finally:
        bar.close()
    return out


def feature_maps(
    images: Sequence[np.ndarray | str | Path],
    extractor: FeatureExtractor,
    layers: str | Sequence[str],
    settings: Sequence[Setting | int] = (0,),
    *,
    keys: Sequence[str] | None = None,
    prompts: Sequence[str] | None = None,
    batch_size: int = 4,
    progress: bool = True,
    store: FeatureStore | None = None,
) -> FeatureMaps:
    """Feature maps of images (arrays or file paths) for several settings, cached per image.

    An unreadable file, a grey or RGBA image (with ``colour="strict"``) or a wrongly shaped
    array is skipped, named and counted; the others go on. Under ``accelerate launch`` (and
    with a store) each process first computes its share (:func:`fill_feature_store`), then
    every process reads all maps back from the store.

    Args:
        images: RGB uint8 arrays or image file paths.
        extractor: the feature extractor.
        layers: a layer name, ``"a+b"`` or a list of names.
        settings: timesteps or :class:`~difflens.features.settings.Setting` s.
        keys: the names of the images in the result (default: the path, or ``"image{i}"``).
        prompts: one prompt per image (e.g. ``extractor.prompt_for([category])``), part of
            each map's cache key; default: the extractor's prompt for every image.
        batch_size: images per U-Net batch.
        progress: show a progress bar.
        store: the cache (default: the extractor's).

    Returns:
        ``key -> [{layer: (C, h, w) float32 CPU tensor} per setting]`` with ``settings``,
        ``counts`` and the ``skipped`` log.

    Raises:
        ValueError: ``keys`` are not unique or not one per image, or ``prompts`` not one
            per image.
    """
    store = extractor.store if store is None else store
    keys = _image_keys(images, keys)
    if len(keys) != len(images) or len(set(keys)) != len(keys):
        raise ValueError("keys must be unique, one per image")
    job = _maps_job(images, extractor, layers, settings, keys, prompts, store)
    if current_shard().count > 1 and store is not None:
        counts = _fill_maps(job, batch_size, progress)
        out = _maps_pass(job, job.items, batch_size, progress=False)  # every entry reads back
        out.counts = counts
        return out
    return _maps_pass(job, job.items, batch_size, progress)


def _fill_maps(job: _MapsJob, batch_size: int, progress: bool) -> Counter:
    """This process's share of ``job`` into the store; counts summed over the processes."""
    shard = current_shard()
    prefix = f"[{shard.index + 1}/{shard.count}] " if shard.count > 1 else ""
    mine = shard.take(job.items, batch_size)
    done = _maps_pass(job, mine, batch_size, progress and shard.is_main, keep=False, prefix=prefix)
    total = sum_counts(done.counts)
    wait_for_everyone()
    return total


def fill_feature_store(
    images: Sequence[np.ndarray | str | Path],
    extractor: FeatureExtractor,
    layers: str | Sequence[str],
    settings: Sequence[Setting | int] = (0,),
    *,
    store: FeatureStore,
    keys: Sequence[str] | None = None,
    prompts: Sequence[str] | None = None,
    batch_size: int = 4,
    progress: bool = True,
) -> Counter:
    """Compute and store this process's share of the feature maps; wait for the others.

    The store-filling half of :func:`feature_maps` (same arguments, same entries): under
    ``accelerate launch`` each process takes its
    :class:`~difflens.features.distributed.Shard` of the images (whole batches), computes
    what the store lacks, writes it and waits for every process. No map is kept in memory.

    Args:
        images: RGB uint8 arrays or image file paths (the same list in every process).
        extractor: the feature extractor.
        layers: a layer name, ``"a+b"`` or a list of names.
        settings: timesteps or :class:`~difflens.features.settings.Setting` s.
        store: the store every process writes to.
        keys: the names of the images (as :func:`feature_maps`).
        prompts: one prompt per image (as :func:`feature_maps`).
        batch_size: images per U-Net batch (also the unit of the shares).
        progress: show the main process's progress bar.

    Returns:
        Images ``done``, ``cached``, ``skipped`` and ``failed``, summed over the processes.

    Raises:
        ValueError: ``store`` is ``None``, or the keys or prompts do not fit the images.
    """
    if store is None:
        raise ValueError("filling the store needs a store")
    keys = _image_keys(images, keys)
    if len(keys) != len(images) or len(set(keys)) != len(keys):
        raise ValueError("keys must be unique, one per image")
    job = _maps_job(images, extractor, layers, settings, keys, prompts, store)
    return _fill_maps(job, batch_size, progress)
