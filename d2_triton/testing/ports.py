"""Free TCP ports on loopback, for servers that tests and benchmarks start side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from d2_triton.server.ports import free_ports

if TYPE_CHECKING:
    from d2_triton.server import ServerSettings

__all__ = ["free_ports", "loopback_server_settings"]


def loopback_server_settings(repository: Path, **options: Any) -> ServerSettings:
    """ServerSettings for a server (its front) on 127.0.0.1, on three ports free a moment ago."""
    from d2_triton.server import ServerSettings

    http, grpc, metrics = free_ports(3)
    return ServerSettings(repository, http, grpc, metrics, host="127.0.0.1", **options)
