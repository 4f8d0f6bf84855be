"""Every public function, method and class of difflens documents its arguments, return value
and raised errors (Google style), and every module says what it is for.

pydoclint (``make lint``) checks that documented sections match the signatures; this test
checks that the sections are there at all for the public API.
"""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib" / "difflens"


def _params(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    names = [n for n in names if n not in ("self", "cls")]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return names


def _raises(node: ast.AST) -> bool:
    """True when the function body itself raises (nested functions and classes excluded)."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(child, ast.Raise) and child.exc is not None:
            return True
        stack.extend(ast.iter_child_nodes(child))
    return False


def _returns_value(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    returns = node.returns
    if returns is None:
        return False
    return not (isinstance(returns, ast.Constant) and returns.value is None)


def _decorators(node) -> set[str]:
    out = set()
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        out.add(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
    return out


def _check_function(node, where: str, problems: list[str]) -> None:
    doc = ast.get_docstring(node)
    if not doc:
        problems.append(f"{where}: no docstring")
        return
    if "property" in _decorators(node) or "cached_property" in _decorators(node):
        return
    if "overload" in _decorators(node):
        return
    if _params(node) and "Args:" not in doc:
        problems.append(f"{where}: no Args section for {_params(node)}")
    if _returns_value(node) and "Returns:" not in doc and "Yields:" not in doc:
        problems.append(f"{where}: no Returns section")
    if _raises(node) and "Raises:" not in doc:
        problems.append(f"{where}: raises without a Raises section")


def _check_class(node: ast.ClassDef, where: str, problems: list[str]) -> None:
    doc = ast.get_docstring(node)
    if not doc:
        problems.append(f"{where}: no docstring")
        return
    init = next(
        (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None
    )
    if init is not None and _params(init) and "Args:" not in doc:
        init_doc = ast.get_docstring(init) or ""
        if "Args:" not in init_doc:
            problems.append(f"{where}: __init__ arguments not documented (Args)")
    is_dataclass = "dataclass" in _decorators(node)
    fields = [n for n in node.body if isinstance(n, ast.AnnAssign)]
    if is_dataclass and fields and not ("Attributes:" in doc or "Args:" in doc):
        problems.append(f"{where}: dataclass fields not documented (Attributes or Args)")
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if item.name.startswith("_"):
                continue
            _check_function(item, f"{where}.{item.name}", problems)


def public_api_problems() -> list[str]:
    problems: list[str] = []
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(LIB.parent).with_suffix("")
        module = ".".join(rel.parts)
        tree = ast.parse(path.read_text())
        if not ast.get_docstring(tree):
            problems.append(f"{module}: no module docstring")
        if path.name == "__main__.py":
            continue
        for node in tree.body:
            if getattr(node, "name", "_").startswith("_"):
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                _check_function(node, f"{module}.{node.name}", problems)
            elif isinstance(node, ast.ClassDef):
                _check_class(node, f"{module}.{node.name}", problems)
    return problems


def test_every_public_function_and_class_documents_args_returns_and_raises():
    problems = public_api_problems()
    assert not problems, f"{len(problems)} docstring problems:\n" + "\n".join(problems)
