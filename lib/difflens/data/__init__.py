"""The data stage: scenes and the datasets that yield them, image lists, transforms, downloads.

Every scene dataset yields :class:`~difflens.data.scene.Scene` objects;
``load(name, root, ...)`` (:mod:`difflens.data.registry`) is their one entry point. The
keypoint-pair datasets yield :class:`~difflens.data.keypoints.KeypointPair` objects through
``load_pairs(name, root, ...)``. ``python -m difflens.data`` downloads
the official archives and the authors' image list, resolves image lists and draws seeded
samples. The stage imports only :mod:`difflens.core`.

What it holds, by module:

- types: :mod:`~difflens.data.scene` (``Scene``: an image and its instance masks),
  :mod:`~difflens.data.keypoints` (``InstanceKeypoints``, ``KeypointPair``);
- loaders: :mod:`~difflens.data.base` (``SceneDataset``: reading item by item, bad items
  counted in ``dataset.skipped``), :mod:`~difflens.data.voc` (Pascal-VOC 2012),
  :mod:`~difflens.data.coco` (COCO 2017) with :mod:`~difflens.data.coco_segmentation`
  (checked polygon/RLE decoding), :mod:`~difflens.data.davis` (DAVIS 2017 frames),
  :mod:`~difflens.data.toy` (procedural toy scenes, keypoint pairs and videos),
  :mod:`~difflens.data.registry` (``load``, ``load_pairs``);
- keypoint pairs: :mod:`~difflens.data.pairs` (``PairDataset``: reading pair by pair, bad
  pairs counted), :mod:`~difflens.data.spair` (SPair-71k), :mod:`~difflens.data.pf`
  (PF-PASCAL, PF-WILLOW), :mod:`~difflens.data.cub` (CUB-200-2011);
- file reading: :mod:`~difflens.data.images` (the one image reader, model-input tensors),
  :mod:`~difflens.data.readers` (label PNGs, id lists);
- names: :mod:`~difflens.data.names` (dataset names and aliases),
  :mod:`~difflens.data.vocabulary` (the VOC classes, COCO's names mapped onto them, the
  VOC palette);
- lists: :mod:`~difflens.data.lists` (the ``src,dataset`` image lists, resolved to files),
  :mod:`~difflens.data.selection` (the paper's subset rules, seeded samples);
- :mod:`~difflens.data.transforms`: the paper's image transforms, carrying masks,
  keypoints and boxes;
- :mod:`~difflens.data.video`: frames at offsets from a reference frame, by frame number;
- :mod:`~difflens.data.sources`: what a notebook reads, from a few plain parameters;
- :mod:`~difflens.data.download`: verified, resumable downloads of the datasets and of the
  authors' list.
"""

from difflens.data.names import DATASET_NAMES, canonical_name
from difflens.data.registry import load, load_pairs
from difflens.data.scene import Scene

__all__ = ["DATASET_NAMES", "Scene", "canonical_name", "load", "load_pairs"]
