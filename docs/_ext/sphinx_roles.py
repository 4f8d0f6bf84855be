"""Griffe extension: Sphinx cross-reference roles in docstrings become links in the API pages.

difflens' docstrings name other objects with Sphinx roles (``:func:`distance_sets```,
``:class:`~difflens.data.scene.Scene```). mkdocstrings renders Markdown, where a role would
show as literal text, so each role is rewritten before the docstrings are parsed: a target
found in the package becomes an optional mkdocs-autorefs reference (a link where the object
is rendered, plain code where it is not, never a warning), anything else becomes inline
code. A leading ``~`` shows the last component only, as in Sphinx. Short names are looked up
from the documented object outwards (the object, its class, its module, the packages above).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(
    r":(?:py:)?(?:mod|class|func|meth|data|attr|exc|obj|const):`(?P<tilde>~)?(?P<target>[^`]+)`"
)


def _lookup(scope: griffe.Object, dotted: str) -> griffe.Object | griffe.Alias | None:
    """The member at ``dotted`` below ``scope``, or ``None``."""
    found: Any = scope
    for part in dotted.split("."):
        try:
            members = found.members
        except Exception:  # an alias that does not resolve, an external object
            return None
        if part not in members:
            return None
        found = members[part]
    return found


def _identifier(obj: griffe.Object, target: str) -> str | None:
    """The full path of ``target`` as seen from ``obj``'s docstring, if it is in the package."""
    root = obj
    while root.parent is not None:
        root = root.parent
    if target.startswith(root.name + "."):
        found = _lookup(root, target[len(root.name) + 1 :])
    else:
        scope: griffe.Object | None = obj
        found = None
        while scope is not None and found is None:
            found = _lookup(scope, target)
            scope = scope.parent
    if found is None:
        return None
    return found.target_path if found.is_alias else found.path


def _rewrite(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match) -> str:
        target = match["target"].strip().lstrip(".").removesuffix("()")
        title = target.rsplit(".", 1)[-1] if match["tilde"] else target
        identifier = _identifier(obj, target)
        if identifier is None:
            return f"`{title}`"
        return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'

    return ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles of every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Walk the package once it is loaded (before any docstring is parsed)."""
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not m.is_alias)
