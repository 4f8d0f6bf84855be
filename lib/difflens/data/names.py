"""Dataset names: the one table of names, accepted aliases and image-list tags.

A scene dataset has one canonical name (``voc``, ``coco``, ``davis``, ``toyworld``,
``toyvideos``); aliases such as ``pascal`` or ``VOC2012`` are accepted wherever a name is.
The keypoint-pair datasets have their own names (``spair``, ``pf-pascal``, ``pf-willow``,
``cub``; :func:`canonical_pair_name`).
Image lists (the authors' ``src,dataset`` CSV) tag their rows ``pascal``, ``coco`` and
``davis``; :func:`list_tag` and :func:`canonical_name` convert between the two.
"""

from __future__ import annotations

DATASET_NAMES: tuple[str, ...] = ("voc", "coco", "davis", "toyworld", "toyvideos")
"""Canonical dataset names."""
ALIASES: dict[str, str] = {
    "pascal": "voc",
    "voc2012": "voc",
    "coco2017": "coco",
    "davis2017": "davis",
    "toy": "toyworld",
    "toyvideo": "toyvideos",
}
"""Other spellings accepted for a canonical name (compared in lower case)."""
PAIR_DATASET_NAMES: tuple[str, ...] = ("spair", "pf-pascal", "pf-willow", "cub")
"""Canonical names of the keypoint-pair datasets (``load_pairs``)."""
PAIR_ALIASES: dict[str, str] = {
    "spair-71k": "spair",
    "spair71k": "spair",
    "pfpascal": "pf-pascal",
    "pf_pascal": "pf-pascal",
    "pfwillow": "pf-willow",
    "pf_willow": "pf-willow",
    "cub-200-2011": "cub",
    "cub_200_2011": "cub",
    "cub200": "cub",
    "cub2011": "cub",
    "cubs": "cub",
}
"""Other spellings accepted for a pair dataset's name (compared in lower case)."""
LIST_TAGS: dict[str, str] = {"voc": "pascal", "coco": "coco", "davis": "davis"}
"""The ``dataset`` column of an image list for each dataset that lists can name."""


def canonical_name(name: str) -> str:
    """The canonical name of a dataset.

    Args:
        name: a canonical name or an alias, in any case (``"VOC2012"``, ``"pascal"``).

    Returns:
        One of :data:`DATASET_NAMES`.

    Raises:
        ValueError: the name is not known; the message lists the known names.
    """
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASET_NAMES:
        hint = ""
        if PAIR_ALIASES.get(key, key) in PAIR_DATASET_NAMES:
            hint = " (a keypoint-pair dataset: read it with load_pairs)"
        raise ValueError(f"unknown dataset {name!r}{hint}; known: {', '.join(DATASET_NAMES)}")
    return key


def canonical_pair_name(name: str) -> str:
    """The canonical name of a keypoint-pair dataset.

    Args:
        name: a canonical name or an alias, in any case (``"SPair-71k"``, ``"pfwillow"``).

    Returns:
        One of :data:`PAIR_DATASET_NAMES`.

    Raises:
        ValueError: the name is not known; the message lists the known names.
    """
    key = str(name).strip().lower()
    key = PAIR_ALIASES.get(key, key)
    if key not in PAIR_DATASET_NAMES:
        raise ValueError(
            f"unknown keypoint-pair dataset {name!r}; known: {', '.join(PAIR_DATASET_NAMES)}"
        )
    return key


def list_tag(name: str) -> str:
    """The image-list tag of a dataset (``"pascal"`` for VOC).

    Args:
        name: a dataset name or alias.

    Returns:
        The value its rows carry in an image list's ``dataset`` column.

    Raises:
        ValueError: the dataset is unknown or cannot appear in an image list.
    """
    key = canonical_name(name)
    if key not in LIST_TAGS:
        raise ValueError(f"dataset {name!r} has no image-list tag; lists name {sorted(LIST_TAGS)}")
    return LIST_TAGS[key]
