"""Where the trained toy models live and the constants that their training and controls share.

Two models are committed as package data of ``difflens`` (found with
:mod:`importlib.resources`, so moving this module cannot silently break the paths):

``"toy"`` (``assets/toy-model``)
    the positive control: a pixel-space U-Net trained as a denoiser AND, through auxiliary
    dense class and part heads, made to hold the toy world's shapes and parts. It shows
    that the suite finds semantics a network holds, not that denoising alone creates them.
``"toy-denoiser"`` (``assets/toy-denoiser``)
    the same architecture trained as a denoiser only: what denoising alone learns here.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# the toy split seeds are defined by the data stage and re-exported here
from difflens.data.toy.seeds import TRAIN_SEED_START as TRAIN_SEED_START
from difflens.data.toy.seeds import VALIDATION_SEED_START as VALIDATION_SEED_START

TOY_VERSION = "toy-v2"
"""Version tag written into the model folders' ``model_index.json``."""
TOY_IMAGE_SIZE = 64
"""Side in pixels of the images the toy models are trained on and extracted at."""
VALIDATION_LOSS_SEED_START = 900_000
"""Seeds of the fixed batch whose loss is tracked during training (validation split)."""
MAX_WEIGHTS_MB = 20.0
"""Largest size of the committed weights of one model folder, in megabytes."""
ASSET_PACKAGE = "difflens"
TOY_MODELS: dict[str, str] = {"toy": "toy-model", "toy-denoiser": "toy-denoiser"}
"""Built-in model name -> its folder under ``difflens/assets``."""
SHAPE_CLASSIFIER_FOLDER = "toy-shape-classifier"
"""Folder under ``difflens/assets`` of the shape classifier that labels samples."""


def assets_path(folder: str = TOY_MODELS["toy"]) -> Path:
    """A model folder inside the installed package.

    Args:
        folder: the folder's name under ``difflens/assets`` (default: the positive control's).

    Returns:
        The folder (it may not exist yet before ``make toy-model`` has run).

    Raises:
        RuntimeError: the package is installed in a form that has no file-system folder
            (e.g. a zip archive), which ``from_pretrained`` cannot read.
    """
    resource = files(ASSET_PACKAGE).joinpath("assets", folder)
    path = Path(str(resource))
    if not path.parent.parent.is_dir():
        raise RuntimeError(
            f"difflens is installed without a file-system folder ({resource!r}); install it "
            "from a source tree (pip install -e .) to use the built-in toy models"
        )
    return path


def toy_model_path(model: str = "toy") -> Path:
    """The pipeline folder of a built-in trained toy model (committed with the package).

    Args:
        model: ``"toy"`` (the positive control) or ``"toy-denoiser"`` (denoising only).

    Returns:
        The folder holding ``unet/``, ``scheduler/``, ``text_encoder/`` and ``tokenizer/``.

    Raises:
        ValueError: ``model`` is not a built-in toy model.
        FileNotFoundError: the weights are missing, with the command that trains them.
    """
    if model not in TOY_MODELS:
        raise ValueError(f"unknown toy model {model!r}; built in: {', '.join(TOY_MODELS)}")
    folder = assets_path(TOY_MODELS[model])
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"The trained toy model {model!r} is missing: {weights} does not exist. Train it "
            "with `make toy-model` or load another model."
        )
    return folder
