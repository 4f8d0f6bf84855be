"""No function of difflens is longer than 60 lines of code (its docstring not counted),
unless it is listed below with the one-line reason it must stay whole."""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib" / "difflens"
MAX_LINES = 60
WHOLE: dict[str, str] = {
    # "module.function": "why it must stay whole",
}


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        docstring_lines = body[0].end_lineno - body[0].lineno + 1
    else:
        docstring_lines = 0
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return node.end_lineno - start + 1 - docstring_lines


def long_functions() -> dict[str, int]:
    out = {}
    for path in sorted(LIB.rglob("*.py")):
        module = ".".join(path.relative_to(LIB.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = code_lines(node)
                if n > MAX_LINES:
                    out[f"{module}.{node.name}"] = n
    return out


def test_functions_are_at_most_60_lines_of_code():
    too_long = {name: n for name, n in long_functions().items() if name not in WHOLE}
    assert not too_long, "split these along their jobs: " + ", ".join(
        f"{name} ({n} lines)" for name, n in sorted(too_long.items())
    )


def test_every_exemption_is_still_needed_and_says_why():
    current = long_functions()
    for name, reason in WHOLE.items():
        assert name in current, f"{name} is no longer long: remove its exemption"
        assert reason.strip(), name
