"""Models: backbone loading, text encoding, the layer registry and the built-in models.

Loads a diffusion backbone (a hub id, a local folder, the built-in ``"tiny"`` or ``"toy"``
model) and names its capturable U-Net layers; the toy model's trainer lives in
:mod:`difflens.models.toy_training`.
"""
