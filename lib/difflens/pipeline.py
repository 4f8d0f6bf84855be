"""Scenes -> prototype table: extraction and pooling over a dataset, with progress and skips."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from difflens.extract import FeatureExtractor, concat_layers
from difflens.prototypes import PrototypeTable, scene_prototypes
from difflens.report import SkipLog
from difflens.scene import Scene


def parse_layers(layers: str | Sequence[str]) -> list[str]:
    """``"down2.attn0"`` or ``"down0.attn1+down1.attn1"`` or a list -> list of layer names."""
    if isinstance(layers, str):
        return [name.strip() for name in layers.split("+") if name.strip()]
    return list(layers)


def _batches(scenes: Iterable[Scene], size: int) -> Iterator[list[Scene]]:
    batch: list[Scene] = []
    for scene in scenes:
        batch.append(scene)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def prototype_table(
    scenes: Iterable[Scene],
    extractor: FeatureExtractor,
    layers: str | Sequence[str],
    timestep: int = 0,
    mask_mode: str = "nearest",
    batch_size: int = 4,
    progress: bool = True,
) -> PrototypeTable:
    """Prototypes of every object of every scene at ``layers`` (concatenated if several).

    Scenes without objects are skipped and counted; objects whose mask vanishes at the
    feature resolution are skipped and counted; an image with a single object is kept (it
    has no same-image pairs but takes part in the different-image sets) and counted in
    ``info["single_object_images"]``.
    """
    names = parse_layers(layers)
    skipped = SkipLog()
    tables: list[PrototypeTable] = []
    single = 0
    total = len(scenes) if hasattr(scenes, "__len__") else None
    bar = tqdm(
        total=total,
        desc=f"prototypes {'+'.join(names)} t={timestep}",
        unit="img",
        disable=not progress,
    )
    for batch in _batches(scenes, batch_size):
        usable = []
        for scene in batch:
            if scene.n_objects == 0:
                skipped.skip(scene.image_id, "no objects: the image has no instance masks")
            else:
                usable.append(scene)
        if usable:
            feats = extractor.features([s.image for s in usable], names, timestep=timestep)
            fmap = concat_layers(feats, names)
            for scene, one in zip(usable, fmap):
                table = scene_prototypes(one, scene, mask_mode=mask_mode, skipped=skipped)
                single += int(len(table) == 1)
                tables.append(table)
        bar.update(len(batch))
        bar.set_postfix(objects=sum(len(t) for t in tables), skipped=len(skipped))
    bar.close()
    if tables:
        out = PrototypeTable.concat(tables)
    else:
        import pandas as pd

        from difflens.prototypes import META_COLUMNS

        out = PrototypeTable(pd.DataFrame(columns=list(META_COLUMNS)), np.zeros((0, 0), np.float32))
    out.skipped = skipped
    out.info.update(
        {
            "layers": names,
            "timestep": timestep,
            "mask_mode": mask_mode,
            "image_size": extractor.image_size,
            "model": extractor.backbone.model_id,
            "single_object_images": single,
        }
    )
    return out
