"""Which exported repositories are stale: a fingerprint of what an export is made from.

Tests, benchmarks and the accuracy run cache the repositories they export; a cached one is
reused only while the exporter, the model templates it copies and every d2_triton module the
exporter imports are unchanged.  Those modules are found by following the import statements
(``ast``, lazy imports inside functions included) from ``export_tools``, so the list cannot
fall behind the code.  (What the templates import is not followed: the server imports
d2_triton from the checkout, so a change to served code alone needs no re-export.)
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from pathlib import Path

from d2_triton.cache import CHECKOUT

# Where an export's own files come from; the d2_triton modules the exporter imports are added.
EXPORT_ROOTS = ("export_tools", "models")
EXPORTER = "export_tools"
FIRST_PARTY = ("d2_triton", "export_tools")


def _module_file(module: str) -> Path | None:
    """The file of a first-party module or package, if there is one."""
    base = CHECKOUT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> Iterator[str]:
    """First-party modules ``path`` imports (``from pkg import mod`` yields ``pkg.mod`` too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def export_sources() -> list[Path]:
    """Every file an export is made from: the roots' files and the modules they import."""
    files = {
        path
        for root in EXPORT_ROOTS
        for path in (CHECKOUT / root).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    pending = [
        path for path in files if path.suffix == ".py" and path.is_relative_to(CHECKOUT / EXPORTER)
    ]
    while pending:
        for module in _imported_modules(pending.pop()):
            if not module.startswith(FIRST_PARTY):
                continue
            parts = module.split(".")
            # a package's __init__ runs before any of its modules: include each parent
            for depth in range(1, len(parts) + 1):
                found = _module_file(".".join(parts[:depth]))
                if found is not None and found not in files:
                    files.add(found)
                    pending.append(found)
    return sorted(files)


def export_fingerprint(*extra: str) -> str:
    """16 hex digits over every export source file (path and bytes) and ``extra``."""
    digest = hashlib.sha256()
    for path in export_sources():
        digest.update(str(path.relative_to(CHECKOUT)).encode())
        digest.update(path.read_bytes())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()[:16]
