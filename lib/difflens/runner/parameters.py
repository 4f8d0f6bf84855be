"""Parameter types: what a notebook's ``parameters`` cell declares, and whether a value fits.

A parameter's type is its annotation where the cell has one (``n_images: int = 64``, read by
papermill's ``inspect_notebook`` as ``inferred_type_name``), else the type of its default
(``n_images = 64`` declares an ``int``); a parameter whose default is ``None`` or an
expression, or whose annotation names a type not listed in :data:`CHECKS`, takes anything.
An ``int`` takes an int but not a bool, a ``float`` takes an int or a float, a ``list`` (or
``tuple``) takes a list or a tuple.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping

CHECKS: dict[str, Callable[[object], bool]] = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, (list, tuple)),
    "tuple": lambda v: isinstance(v, (list, tuple)),
    "dict": lambda v: isinstance(v, dict),
    "None": lambda v: v is None,
}
"""Type name -> whether a value is of that type, as a parameter reads it."""
_ALIASES = {
    "List": "list",
    "Tuple": "tuple",
    "Dict": "dict",
    "Sequence": "list",
    "NoneType": "None",
}


def default_value(parameter: Mapping[str, object]) -> object:
    """The default of a parameter as a Python value.

    Args:
        parameter: one entry of ``papermill.inspect_notebook`` (``default`` is source text).

    Returns:
        The literal default, or ``None`` where it is not a literal (an expression).
    """
    try:
        return ast.literal_eval(str(parameter.get("default")))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _names(node: ast.expr) -> set[str] | None:
    """Type names of an annotation node; ``None`` when one of them cannot be checked."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _names(node.left), _names(node.right)
        return None if left is None or right is None else left | right
    if isinstance(node, ast.Constant) and node.value is None:
        return {"None"}
    if isinstance(node, ast.Subscript):
        base = _names(node.value)
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base in ({"Optional"}, {"Union"}):
            parts = [_names(item) for item in inner]
            if any(part is None for part in parts):
                return None
            return set().union(*parts) | ({"None"} if base == {"Optional"} else set())
        return base
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    name = _ALIASES.get(name, name)
    return {name} if name in CHECKS or name in ("Optional", "Union") else None


def declared_types(parameter: Mapping[str, object]) -> tuple[set[str] | None, str]:
    """The types a parameter takes, and how its cell declares them.

    Args:
        parameter: one entry of ``papermill.inspect_notebook``.

    Returns:
        ``(names, declaration)``: the type names of :data:`CHECKS` it takes (``None``: any
        value) and the declaration in words, e.g. ``"int"`` or ``"int (default 64)"``.
    """
    annotation = str(parameter.get("inferred_type_name") or "None")
    if annotation != "None":
        try:
            names = _names(ast.parse(annotation, mode="eval").body)
        except SyntaxError:
            names = None
        return (names if names is not None and names <= set(CHECKS) else None), annotation
    default = default_value(parameter)
    if default is None:
        return None, f"untyped (default {parameter.get('default')})"
    return {type(default).__name__} & set(CHECKS) or None, (
        f"{type(default).__name__} (default {parameter.get('default')})"
    )


def type_problems(
    stem: str, params: Mapping[str, object], declared: Mapping[str, Mapping[str, object]]
) -> list[str]:
    """Parameters whose value is not of the type the notebook declares.

    Args:
        stem: the notebook's name, for the messages.
        params: the values to pass, ``name -> value``.
        declared: ``papermill.inspect_notebook`` of the notebook.

    Returns:
        One line per wrongly typed value naming the notebook, the key, the value and the
        declared type; empty when every value fits. Keys the notebook does not declare are
        not checked.
    """
    problems = []
    for key, value in params.items():
        if key not in declared:
            continue
        names, declaration = declared_types(declared[key])
        if names is None or any(CHECKS[name](value) for name in names):
            continue
        problems.append(
            f"{stem}: {key} = {value!r} is {type(value).__name__}; "
            f"its parameters cell declares {declaration}"
        )
    return problems
