"""The one cache folder: environments, Detectron2's sources, exports, the trained model.

``D2T_CACHE`` when set (the Docker image sets it), else ``.cache`` in this checkout, the
folder ``scripts/setup.sh`` fills.  Standard library only: the Docker image's first layer
and ``export_tools.detectron2_setup`` read it before anything else is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """``D2T_CACHE``, else ``<checkout>/.cache`` (read at each call: tests may set it)."""
    return Path(os.environ.get("D2T_CACHE", CHECKOUT / ".cache"))


def server_env() -> Path:
    """The server environment ``scripts/setup.sh`` makes (tritonserver, numpy < 2)."""
    return cache_dir() / "venv"
