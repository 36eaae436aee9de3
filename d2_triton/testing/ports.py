"""Free TCP ports on loopback, for servers that tests and benchmarks start side by side."""

from __future__ import annotations

import socket


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
