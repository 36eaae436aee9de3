"""Free TCP ports on loopback, for tritonserver behind its front and for tests' servers."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Ports are drawn below the kernel's ephemeral range: a port picked there and released can
# be taken as the source port of any outgoing connection (a readiness probe, a client) in
# the seconds before tritonserver, which opens its ports only once its models are loaded,
# binds it; tritonserver then exits with "address already in use".
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000
_handed_out: set[int] = set()  # never the same port twice from one process


def _below_ephemeral() -> range:
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return range(LOWEST_PORT, low) if low - LOWEST_PORT >= 1000 else range(1024, low)


def free_ports(count: int) -> list[int]:
    """TCP ports that were free on 127.0.0.1 a moment ago, none of them ephemeral.

    Random ones below the kernel's ephemeral range, each checked by binding it; a port is
    handed out at most once per process, so two servers started in turn never share one.
    """
    candidates = _below_ephemeral()
    ports: list[int] = []
    for port in random.sample(candidates, len(candidates)):
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        ports.append(port)
        if len(ports) == count:
            return ports
    raise OSError(f"no {count} free TCP ports on 127.0.0.1 below {candidates.stop}")
