"""Free TCP ports on loopback, for servers that tests and benchmarks start side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from d2_triton.server.ports import free_ports

if TYPE_CHECKING:
    from d2_triton.server import ServerOptions

__all__ = ["free_ports", "loopback_server_options"]


def loopback_server_options(repository: Path, **options: Any) -> ServerOptions:
    """ServerOptions for a server (its front) on 127.0.0.1, on three ports free a moment ago."""
    from d2_triton.server import ServerOptions

    http, grpc, metrics = free_ports(3)
    return ServerOptions(repository, http, grpc, metrics, host="127.0.0.1", **options)
