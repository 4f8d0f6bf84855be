"""Scenes -> prototype tables, images -> feature maps: batched over settings, cached, resumable.

Both loops take a :class:`~difflens.store.FeatureStore` (the argument, else the
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
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from difflens.extract import BadInputError, FeatureExtractor, Setting, check_image, concat_layers
from difflens.extract import load_image as read_image
from difflens.layers import UnknownLayerError
from difflens.prototypes import MASK_MODES, META_COLUMNS, PrototypeTable, scene_prototypes
from difflens.report import SkipLog, logger
from difflens.scene import Scene
from difflens.store import FeatureStore, array_digest, image_digest

COUNTS = ("done", "cached", "skipped", "failed")


def parse_layers(layers: str | Sequence[str]) -> list[str]:
    """``"down2.attn0"`` or ``"down0.attn1+down1.attn1"`` or a list -> list of layer names."""
    if isinstance(layers, str):
        return [name.strip() for name in layers.split("+") if name.strip()]
    return list(layers)


def _batches(items: Iterable, size: int) -> Iterator[list]:
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
    """What one prototype table is made of: layers (concatenated), setting and mask mode."""

    layers: tuple[str, ...] | str
    timestep: int = 0
    ensemble: int = 1
    mask_mode: str = "nearest"
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(parse_layers(self.layers)))

    @property
    def setting(self) -> Setting:
        return Setting(self.timestep, self.ensemble)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        label = f"{'+'.join(self.layers)} t={self.timestep}"
        if self.ensemble > 1 and self.timestep > 0:
            label += f" x{self.ensemble}"
        return label + ("" if self.mask_mode == "nearest" else f" {self.mask_mode}")


class PrototypeTables(dict):
    """``label -> PrototypeTable``, plus the run's ``counts`` and its run-level ``skipped``
    log (invalid settings, images that failed)."""

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
    """Everything about a scene that shapes its prototypes and their metadata."""
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
class _Pending:
    scene: Scene
    fields: dict
    prompt: str
    found: dict  # label -> PrototypeTable read from the store
    missing: list  # labels to compute


def _compute_prototypes(
    items: list[_Pending],
    specs: dict[str, PrototypeSpec],
    extractor: FeatureExtractor,
    store: FeatureStore | None,
    config: dict,
) -> list[dict | Exception]:
    """Prototypes of the missing specs of ``items`` from one batched forward pass."""
    labels = list(dict.fromkeys(label for item in items for label in item.missing))
    settings = list(dict.fromkeys(specs[label].setting.normalized() for label in labels))
    order = {name: i for i, name in enumerate(extractor.registry.names)}
    layers = sorted({name for label in labels for name in specs[label].layers}, key=order.get)
    latents = extractor.encode([item.scene.image for item in items], store=store)
    maps = extractor.features_for_settings(
        latents,
        layers,
        settings,
        prompts=[item.prompt for item in items],
        keys=[item.fields["image"] for item in items],
    )
    results: list[dict | Exception] = []
    for row, item in enumerate(items):
        computed = {}
        announced: set[tuple[str, str]] = set()  # one warning per object and reason, not per spec
        try:
            for label in item.missing:
                spec = specs[label]
                per_layer = maps[settings.index(spec.setting.normalized())]
                fmap = concat_layers(
                    {name: per_layer[name][row : row + 1] for name in spec.layers}, spec.layers
                )[0]
                if not torch.isfinite(fmap).all():
                    raise FloatingPointError(
                        f"non-finite features at {'+'.join(spec.layers)} "
                        f"({extractor.backbone.dtype} overflow?)"
                    )
                table = scene_prototypes(
                    fmap, item.scene, mask_mode=spec.mask_mode, skipped=SkipLog(verbose=False)
                )
                for record in table.skipped.records:
                    if record not in announced:
                        announced.add(record)
                        logger.warning("skipped %s: %s", *record)
                if store is not None:
                    fields = _prototype_fields(config, spec, item.fields, item.prompt)
                    store.put("prototypes", fields, *_table_to_entry(table))
                computed[label] = table
        except (FloatingPointError, ValueError) as error:
            results.append(error)
            continue
        results.append(computed)
    return results


def _compute_safely(items, specs, extractor, store, config) -> list[dict | Exception]:
    """As :func:`_compute_prototypes`; a failing batch is retried image by image."""
    try:
        return _compute_prototypes(items, specs, extractor, store, config)
    except Exception as error:  # any error of one image must not end the run
        if len(items) == 1:
            return [error]
        return [
            result
            for item in items
            for result in _compute_safely([item], specs, extractor, store, config)
        ]


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
    """
    store = extractor.store if store is None else store
    run_skips = SkipLog()
    specs = _valid_specs(_as_specs(specs), extractor, run_skips)
    config = extractor.config()
    parts: dict[str, list[PrototypeTable]] = {label: [] for label in specs}
    logs = {label: SkipLog(verbose=False) for label in specs}
    single = Counter()
    desc = f"prototypes {' | '.join(specs)}"
    bar = _Progress(
        scenes, desc if len(desc) < 60 else f"prototypes ({len(specs)} settings)", progress
    )
    try:
        for batch in _batches(scenes, batch_size):
            pending: list[_Pending] = []
            outcomes: list[str | _Pending] = []
            for scene in batch:
                if scene.n_objects == 0:
                    reason = "no objects: the image has no instance masks"
                    run_skips.skip(scene.image_id, reason)
                    for log in logs.values():
                        log.records.append((scene.image_id, reason))
                    outcomes.append("skipped")
                    continue
                fields = scene_fields(scene)
                prompt = extractor.prompt_for(scene.class_names)
                found = {}
                for label, spec in specs.items():
                    entry = None
                    if store is not None:
                        entry = store.get(
                            "prototypes", _prototype_fields(config, spec, fields, prompt)
                        )
                    if entry is not None:
                        found[label] = _table_from_entry(entry.arrays, entry.meta)
                missing = [label for label in specs if label not in found]
                item = _Pending(scene, fields, prompt, found, missing)
                outcomes.append(item)
                if missing:
                    pending.append(item)
            results = _compute_safely(pending, specs, extractor, store, config) if pending else []
            computed = {id(item): result for item, result in zip(pending, results)}
            for outcome in outcomes:
                if isinstance(outcome, str):
                    bar.add(outcome)
                    continue
                result = computed.get(id(outcome), {})
                if isinstance(result, Exception):
                    reason = f"failed: {type(result).__name__}: {result}"
                    run_skips.skip(outcome.scene.image_id, reason)
                    for log in logs.values():
                        log.records.append((outcome.scene.image_id, reason))
                    bar.add("failed")
                    continue
                for label in specs:
                    table = outcome.found[label] if label in outcome.found else result[label]
                    parts[label].append(table)
                    logs[label].extend(table.skipped)
                    single[label] += int(len(table) == 1)
                bar.add("done" if outcome.missing else "cached")
    finally:
        bar.close()
    tables = PrototypeTables(counts=bar.counts, skipped=run_skips)
    for label, spec in specs.items():
        table = _concat(parts[label])
        table.skipped = logs[label]
        table.info.update(
            {
                "label": label,
                "layers": list(spec.layers),
                "timestep": spec.timestep,
                "ensemble": spec.setting.draws,
                "mask_mode": spec.mask_mode,
                "image_size": extractor.image_size,
                "model": extractor.backbone.model_id,
                "fingerprint": config["fingerprint"],
                "dtype": config["dtype"],
                "prompt": extractor.prompt,
                "seed": extractor.seed,
                "noise": extractor.noise,
                "single_object_images": single[label],
                "counts": dict(bar.counts),
            }
        )
        tables[label] = table
    return tables


def _concat(tables: list[PrototypeTable]) -> PrototypeTable:
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
    range) raises at once, before any image is processed. ``store`` (default: the
    extractor's) caches each image's prototypes and makes the run resumable.
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
    """``key -> [ {layer: (C, h, w) tensor} per setting ]``, plus ``settings``, ``counts``
    and a ``skipped`` log naming the images that could not be used."""

    def __init__(self, settings: list[Setting], counts: Counter, skipped: SkipLog):
        super().__init__()
        self.settings = settings
        self.counts = counts
        self.skipped = skipped


def _feature_fields(config: dict, layer: str, setting: Setting, prompt: str, image: str) -> dict:
    setting = setting.normalized()
    return {
        "extractor": config,
        "layer": layer,
        "timestep": setting.timestep,
        "ensemble": setting.ensemble,
        "prompt": prompt,
        "image": image,
    }


def feature_maps(
    images: Sequence[np.ndarray | str | Path],
    extractor: FeatureExtractor,
    layers: str | Sequence[str],
    settings: Sequence[Setting | int] = (0,),
    *,
    keys: Sequence[str] | None = None,
    batch_size: int = 4,
    progress: bool = True,
    store: FeatureStore | None = None,
) -> FeatureMaps:
    """Feature maps of images (arrays or file paths) for several settings, cached per image.

    An unreadable file, a grey or RGBA image (with ``colour="strict"``) or a wrongly shaped
    array is skipped, named and counted; the others go on. ``keys`` name the images in the
    result (default: the path, or ``"image{i}"``).
    """
    store = extractor.store if store is None else store
    names = extractor.registry.check(parse_layers(layers))
    settings = [extractor.check_setting(s) for s in settings]
    if keys is None:
        keys = [str(x) if isinstance(x, (str, Path)) else f"image{i}" for i, x in enumerate(images)]
    if len(keys) != len(images) or len(set(keys)) != len(keys):
        raise ValueError("keys must be unique, one per image")
    config = extractor.config()
    prompt = extractor.prompt_for()
    skipped = SkipLog()
    bar = _Progress(images, f"features {'+'.join(names)}", progress)
    out = FeatureMaps(settings, bar.counts, skipped)
    try:
        for batch in _batches(list(zip(keys, images)), batch_size):
            todo = []
            for key, image in batch:
                try:
                    if isinstance(image, (str, Path)):
                        array = read_image(image, extractor.colour)
                    else:
                        array = check_image(image, key, extractor.colour)
                except BadInputError as error:
                    skipped.skip(key, f"bad image: {error}")
                    bar.add("skipped")
                    continue
                digest = image_digest(array)
                fields = {
                    (s, name): _feature_fields(config, name, s, prompt, digest)
                    for s in settings
                    for name in names
                }
                found = {}
                if store is not None:
                    for pair, f in fields.items():
                        entry = store.get("features", f)
                        if entry is not None:
                            found[pair] = torch.from_numpy(entry.arrays["map"])
                if len(found) == len(fields):
                    out[key] = [{name: found[(s, name)] for name in names} for s in settings]
                    bar.add("cached")
                else:
                    todo.append((key, array, digest, fields))
            if not todo:
                continue
            latents = extractor.encode([t[1] for t in todo], store=store)
            maps = extractor.features_for_settings(
                latents, names, settings, keys=[t[2] for t in todo]
            )
            for row, (key, _, _, fields) in enumerate(todo):
                result = [
                    {name: maps[j][name][row] for name in names} for j in range(len(settings))
                ]
                if not all(torch.isfinite(m).all() for r in result for m in r.values()):
                    skipped.skip(key, "failed: non-finite features")
                    bar.add("failed")
                    continue
                if store is not None:
                    for j, s in enumerate(settings):
                        for name in names:
                            store.put(
                                "features", fields[(s, name)], {"map": result[j][name].numpy()}
                            )
                out[key] = result
                bar.add("done")
    finally:
        bar.close()
    return out
