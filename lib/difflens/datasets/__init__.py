"""Datasets: each yields :class:`difflens.scene.Scene` objects."""

from difflens.datasets.toyworld import TOY_CLASSES, ToyWorld, make_toy_scene

__all__ = ["TOY_CLASSES", "ToyWorld", "make_toy_scene"]
