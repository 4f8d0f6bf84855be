"""difflens: the semantics of pre-trained diffusion U-Net features, measured."""

from difflens.data.scene import Scene

__all__ = ["Scene"]
__version__ = "0.1.0"
