"""The shipped code stays readable in one sitting: modules and functions of bounded length.

ruff's complexity rule (C901, PLR0915 in pyproject.toml) bounds branches and statements;
this bounds lines, which ruff does not: every module of ``d2_triton``, ``export_tools``,
``models`` and ``benchmarks`` (whose figures the docs quote) under 300 lines, every function
under 60.
"""

from __future__ import annotations

import ast

from d2_triton.cache import CHECKOUT

SHIPPED = ("d2_triton", "export_tools", "models", "benchmarks")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def shipped_modules():
    return sorted(path for root in SHIPPED for path in (CHECKOUT / root).rglob("*.py"))


def test_the_shipped_code_is_found():
    assert len(shipped_modules()) > 40


def test_no_module_is_over_the_limit():
    long = {
        str(path.relative_to(CHECKOUT)): lines
        for path in shipped_modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_no_function_is_over_the_limit():
    long = {}
    for path in shipped_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(CHECKOUT)}:{node.name}"] = lines
    assert not long, long
