"""Free TCP ports on loopback, for servers that tests and benchmarks start side by side."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from d2_triton.server import ServerOptions


def free_ports(count: int) -> list[int]:
    """TCP ports that were free on 127.0.0.1 a moment ago."""
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def loopback_server_options(repository: Path, **options: Any) -> ServerOptions:
    """ServerOptions for a tritonserver on 127.0.0.1, on three ports free a moment ago."""
    from d2_triton.server import ServerOptions

    http, grpc, metrics = free_ports(3)
    return ServerOptions(repository, http, grpc, metrics, host="127.0.0.1", **options)
