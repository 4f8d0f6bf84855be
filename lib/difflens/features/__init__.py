"""Features: capture U-Net layers, cache them, and average them into object prototypes.

Hooks and settings, the :class:`~difflens.features.extractor.FeatureExtractor`, the
content-addressed store, prototypes, and batched, resumable extraction over many images;
many layers at many timesteps (batched rows, DDIM inversion, stacks on a common grid) in
:mod:`~difflens.features.trajectory`.
"""
