"""Which exported repositories are stale: a fingerprint of what an export is made from.

Tests, benchmarks and the accuracy run cache the repositories they export; a cached one is
reused only while the exporter, the model templates it copies and the d2_triton modules it
imports are unchanged.  (The served code itself is not copied: the server imports
d2_triton from the checkout, so a change to it needs no re-export.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPORT_SOURCES = (
    "export_tools",
    "models",
    "d2_triton/names.py",
    "d2_triton/vision/imaging.py",
    "d2_triton/vision/labels.py",
    "d2_triton/errors.py",
    "d2_triton/model_config.py",
    "d2_triton/serving/options.py",
    "d2_triton/serving/stages.py",
)


def export_fingerprint(*extra: str) -> str:
    """16 hex digits over every export source file (path and bytes) and ``extra``."""
    digest = hashlib.sha256()
    for source in EXPORT_SOURCES:
        root = REPO_ROOT / source
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO_ROOT)).encode())
                digest.update(path.read_bytes())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()[:16]
