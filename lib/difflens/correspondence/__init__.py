"""Semantic correspondence and video label propagation with diffusion features.

Matching (:mod:`~difflens.correspondence.matching`), PCK (:mod:`~difflens.correspondence.pck`),
feature presets (:mod:`~difflens.correspondence.presets`), dense features of pair images
(:mod:`~difflens.correspondence.dense`), the evaluation of keypoint pairs and the layer x
timestep search (:mod:`~difflens.correspondence.evaluate`), video label propagation
(:mod:`~difflens.correspondence.propagation`) and the DAVIS 2017 J&F
(:mod:`~difflens.correspondence.davis_eval`), hand-set fusion of several layers, timesteps and
prompts (:mod:`~difflens.correspondence.fusion`) and the learned aggregation of Diffusion
Hyperfeatures (:mod:`~difflens.correspondence.hyperfeatures`).
"""
