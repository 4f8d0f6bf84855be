"""The toy world: procedural scenes, keypoint pairs and videos of shapes with named parts.

Offline and deterministic by seed, the toy world stands in for the real datasets:

- :mod:`~difflens.data.toy.shapes`: the shape classes (:data:`TOY_CLASSES`), polygon
  templates with named keypoints, global part ids and drawing colours;
- :mod:`~difflens.data.toy.scenes`: still scenes (:func:`make_toy_scene`,
  :class:`ToyWorld`) with masks, keypoints and boxes, and training examples with dense
  class and part maps (:func:`make_toy_example`, :func:`dense_targets`);
- :mod:`~difflens.data.toy.pairs`: semantic and geometric keypoint pairs
  (:class:`ToyPairs`), the stand-in for SPair-71k;
- :mod:`~difflens.data.toy.videos`: videos of moving, occluding shapes
  (:func:`toy_video`, :class:`ToyVideos`), the stand-in for DAVIS;
- :mod:`~difflens.data.toy.seeds`: the disjoint seed ranges of the ``train``,
  ``validation`` and ``test`` splits;
- :mod:`~difflens.data.toy.render` and :mod:`~difflens.data.toy.raster`: painting.
"""

from difflens.data.toy.pairs import ToyPairs, geometric_pair, semantic_pair
from difflens.data.toy.render import DenseTargets, ToyLayout, ToyObject, dense_targets
from difflens.data.toy.scenes import ToyConfig, ToyWorld, make_toy_example, make_toy_scene
from difflens.data.toy.seeds import (
    SPLITS,
    TRAIN_SEED_START,
    VALIDATION_SEED_START,
    absolute_seed,
    locate_seed,
)
from difflens.data.toy.shapes import PART_NAMES, TOY_CLASSES, part_palette
from difflens.data.toy.videos import ToyVideos, toy_sequence_name, toy_video

__all__ = [
    "PART_NAMES",
    "SPLITS",
    "TOY_CLASSES",
    "TRAIN_SEED_START",
    "VALIDATION_SEED_START",
    "DenseTargets",
    "ToyConfig",
    "ToyLayout",
    "ToyObject",
    "ToyPairs",
    "ToyVideos",
    "ToyWorld",
    "absolute_seed",
    "dense_targets",
    "geometric_pair",
    "locate_seed",
    "make_toy_example",
    "make_toy_scene",
    "part_palette",
    "semantic_pair",
    "toy_sequence_name",
    "toy_video",
]
