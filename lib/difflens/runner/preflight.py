"""Before any notebook starts: is every model, dataset and list its parameters name there?

The checks follow the parameters themselves, so they apply to every config: ``model`` (a
built-in name, a local folder in the Stable Diffusion layout, or a hub id found in the local
Hugging Face cache, looked up without network), the dataset roots that ``datasets`` and
``video_dataset`` need (``voc_root``, ``coco_root``, ``davis_root``), ``data_list`` and a CUDA
``device``. Everything missing is gathered into one message saying how to get each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from difflens.data.coco import find_coco_root
from difflens.data.cub import find_cub_root
from difflens.data.davis import find_davis_root
from difflens.data.names import DATASET_NAMES, canonical_name
from difflens.data.pf import find_pf_pascal_root, find_pf_willow_csv
from difflens.data.spair import find_spair_root
from difflens.data.voc import find_voc_root

BUILT_IN_MODELS: tuple[str, ...] = ("toy", "toy-denoiser", "tiny")
"""Model names that need no download."""
SD_PARTS: tuple[str, ...] = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
"""Sub-folders a Stable Diffusion model folder must hold."""
SD_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
AUTHORS_LIST = "data_lists/diffprops_images_and_video_list.csv"
DATASET_ROOTS: dict[str, tuple[str, Callable[[str | Path], Path], str]] = {
    "voc": (
        "voc_root",
        find_voc_root,
        "no Pascal-VOC 2012 tree (JPEGImages/, SegmentationObject/)",
    ),
    "coco": ("coco_root", find_coco_root, "no COCO 2017 tree (annotations/, val2017/)"),
    "davis": ("davis_root", find_davis_root, "no DAVIS 2017 tree (JPEGImages/480p/)"),
}
"""Dataset -> (its root parameter, the function that finds its tree, what is missing)."""
PAIR_ROOTS: dict[str, tuple[Callable[[str | Path], Path], str]] = {
    "spair": (find_spair_root, "no SPair-71k tree (PairAnnotation/, JPEGImages/)"),
    "pf-pascal": (find_pf_pascal_root, "no PF-PASCAL tree (PF-dataset-PASCAL/)"),
    "pf-willow": (find_pf_willow_csv, "no PF-WILLOW tree (PF-dataset/, test_pairs_pf.csv)"),
    "cub": (find_cub_root, "no CUB-200-2011 tree (images/, parts/)"),
}
"""Keypoint dataset (``dataset`` / ``pairs_dataset`` with ``pairs_root``) -> (the function
that finds its tree, what is missing)."""
MAKE_DATA = ("voc", "coco", "davis", "spair")
"""The datasets ``make data`` downloads."""
ORDER: tuple[str, ...] = (
    "model",
    "device",
    "voc_root",
    "coco_root",
    "davis_root",
    "pairs_root",
    "data_list",
)
"""The order missing things are listed in."""


@dataclass
class Missing:
    """One thing a run needs and does not find.

    Attributes:
        key: the parameter that names it (``model``, ``voc_root``, ...).
        value: the parameter's value.
        reason: what is wrong, e.g. ``"not in the local Hugging Face cache"``.
        remedy: how to get it.
        notebooks: the notebooks that need it.
    """

    key: str
    value: object
    reason: str
    remedy: str
    notebooks: list[str] = field(default_factory=list)


def _download_command() -> str:
    """``hf download`` (huggingface_hub 1.0 and later) or ``huggingface-cli download``."""
    import huggingface_hub

    major = int(huggingface_hub.__version__.split(".")[0])
    return "hf download" if major >= 1 else "huggingface-cli download"


def _missing_parts(folder: Path) -> list[str]:
    return [f"{part}/" for part in SD_PARTS if not (folder / part).is_dir()]


def _cached_snapshot(model: str) -> Path | None:
    """The local Hugging Face cache's snapshot of hub id ``model``, without network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "model_index.json")
    return Path(found).parent if isinstance(found, str) else None


def _set(var: str, value: str) -> str:
    """How to set a value: ``set VAR=value`` for a variable, else in the config."""
    return f"set {var}={value}" if var.isupper() else f"set {var}: {value} in the config"


def model_problem(model: str, var: str = "model") -> tuple[str, str] | None:
    """What is wrong with a ``model`` value, if anything.

    Args:
        model: a built-in name, a local folder or a hub id.
        var: where the value is set, for the remedy: an environment variable (upper case)
            or a config key.

    Returns:
        ``(reason, remedy)``, or ``None`` when the model can be loaded offline.
    """
    from huggingface_hub.constants import HF_HUB_CACHE
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    parts = " ".join(f"{part}/" for part in SD_PARTS)
    folder_remedy = f"{_set(var, 'DIR')}, a local folder holding {parts}"
    if model in BUILT_IN_MODELS:
        return None
    path = Path(model).expanduser()
    if path.is_dir():
        missing = _missing_parts(path)
        if not missing:
            return None
        get = f"{_download_command()} {SD_MODEL_ID} --local-dir {path}"
        return f"the folder lacks {' '.join(missing)}", f"{get}, or {folder_remedy}"
    try:
        validate_repo_id(model)
    except HFValidationError:
        return "no such folder, and not a hub id", folder_remedy
    snapshot = _cached_snapshot(model)
    if snapshot is not None and not _missing_parts(snapshot):
        return None
    where = "incomplete in" if snapshot is not None else "not in"
    return (
        f"{where} the local Hugging Face cache ({HF_HUB_CACHE})",
        f"{_download_command()} {model}, or {folder_remedy}",
    )


def _tree_problem(
    dataset: str, find: Callable[[str | Path], Path], reason: str, root: object, var: str
) -> tuple[str, str] | None:
    """``(reason, remedy)`` when ``find`` does not find ``dataset``'s tree at ``root``."""
    if root:
        try:
            find(str(root))
            return None
        except FileNotFoundError:
            pass
    else:
        reason = "not set"
    download = f"python -m difflens.data download {dataset} --root DIR and {_set(var, 'DIR')}"
    if dataset in MAKE_DATA:
        return reason, f"make data (VOC, COCO, DAVIS and SPair-71k into data/), or {download}"
    return reason, download


def _root_problem(dataset: str, root: object, var: str) -> tuple[str, str] | None:
    _, find, reason = DATASET_ROOTS[dataset]
    return _tree_problem(dataset, find, reason, root, var)


def _pairs_problem(dataset: str, root: object, var: str) -> tuple[str, str] | None:
    return _tree_problem(dataset, *PAIR_ROOTS[dataset], root, var)


def _list_problem(data_list: object, var: str) -> tuple[str, str] | None:
    if Path(str(data_list)).is_file():
        return None
    return "no such file", (
        f"python -m difflens.data download authors-list (the authors' list, {AUTHORS_LIST}), "
        f"or {_set(var, 'FILE')} (a src,dataset CSV)"
    )


def _device_problem(device: object, var: str) -> tuple[str, str] | None:
    import torch

    if torch.cuda.is_available():
        return None
    return "torch sees no CUDA device", f"{_set(var, 'cpu')} (slow), or run on a machine with a GPU"


def _datasets(params: Mapping[str, object]) -> Iterator[tuple[str, str | None, str]]:
    """``(parameter, dataset, name)`` for each dataset the parameters name.

    ``dataset`` is the canonical name, ``None`` when ``name`` is unknown; ``parameter`` is the
    dataset's root parameter where it has one.
    """
    datasets = params.get("datasets") or []
    datasets = [datasets] if isinstance(datasets, str) else list(datasets)
    video = params.get("video_dataset")
    for key, names in (("datasets", datasets), ("video_dataset", [video] if video else [])):
        for name in names:
            try:
                dataset = canonical_name(str(name))
            except ValueError:
                yield key, None, str(name)
                continue
            yield DATASET_ROOTS[dataset][0] if dataset in DATASET_ROOTS else key, dataset, name


def _problems_of(
    params: Mapping[str, object], names: Mapping[str, str]
) -> Iterator[tuple[str, object, tuple[str, str]]]:
    """``(parameter, value, (reason, remedy))`` for each thing one notebook lacks."""

    def var(key: str) -> str:
        return names.get(key) or key

    checks: list[tuple[str, object, tuple[str, str] | None]] = []
    if params.get("model"):
        model = str(params["model"])
        checks.append(("model", model, model_problem(model, var("model"))))
    for key, dataset, name in _datasets(params):
        if dataset is None:
            known = ("unknown dataset", f"choose from {', '.join(DATASET_NAMES)}")
            checks.append((key, name, known))
        elif dataset in DATASET_ROOTS:
            checks.append((key, params.get(key), _root_problem(dataset, params.get(key), var(key))))
    pairs = params.get("pairs_dataset") or (
        params.get("dataset") if "pairs_root" in params else None
    )
    root = params.get("pairs_root")  # empty: the notebook uses toy pairs only
    if isinstance(pairs, str) and pairs in PAIR_ROOTS and root:
        checks.append(("pairs_root", root, _pairs_problem(pairs, root, var("pairs_root"))))
    if params.get("data_list"):
        data_list = params["data_list"]
        checks.append(("data_list", data_list, _list_problem(data_list, var("data_list"))))
    device = params.get("device")
    if isinstance(device, str) and device.startswith("cuda"):
        checks.append(("device", device, _device_problem(device, var("device"))))
    for key, value, problem in checks:
        if problem is not None:
            yield key, value, problem


def missing_requirements(
    plans: Mapping[str, Mapping[str, object]], names: Mapping[str, Mapping[str, str]]
) -> list[Missing]:
    """Everything the notebooks' parameters name and this machine lacks.

    Args:
        plans: ``notebook -> parameters`` as each notebook will see them (its defaults
            updated by the config).
        names: ``notebook -> {parameter: environment variable}`` for the values read from the
            environment, to name in the remedies.

    Returns:
        One :class:`Missing` per parameter and value, with the notebooks that need it;
        empty when the run can start.
    """
    found: dict[tuple[str, str], Missing] = {}
    for stem, params in plans.items():
        for key, value, (reason, remedy) in _problems_of(params, names.get(stem, {})):
            item = found.setdefault((key, repr(value)), Missing(key, value, reason, remedy))
            item.notebooks.append(stem)
    order = {key: rank for rank, key in enumerate(ORDER)}
    return sorted(found.values(), key=lambda item: order.get(item.key, len(order)))


def _shown(value: object) -> str:
    path = Path(str(value))
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        return str(path.relative_to(Path.cwd())) or "."
    return str(value)


def format_missing(
    missing: list[Missing], config_name: str, names: Mapping[str, Mapping[str, str]]
) -> str:
    """The one message listing what a run lacks and how to get each.

    Args:
        missing: what :func:`missing_requirements` found.
        config_name: the run config, for the first line.
        names: ``notebook -> {parameter: environment variable}``, to name where each value
            is set.

    Returns:
        A first line, then two lines per missing thing: what and why, then how to get it.
    """
    lines = [f"difflens: config {config_name!r} cannot run; nothing was started. Missing:"]
    for item in missing:
        var = names.get(item.notebooks[0], {}).get(item.key)
        where = ", ".join(
            filter(None, [var, "notebooks " + " ".join(s[:2] for s in item.notebooks)])
        )
        lines.append(f"  - {item.key} {_shown(item.value)} ({where}): {item.reason}")
        lines.append(f"      fix: {item.remedy}")
    return "\n".join(lines)
