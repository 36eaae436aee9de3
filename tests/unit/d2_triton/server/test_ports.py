"""Ports for tritonserver and the tests' servers: free, distinct, never ephemeral."""

from __future__ import annotations

import socket

from d2_triton.server.ports import EPHEMERAL_RANGE, free_ports


def test_free_ports_are_bindable_distinct_and_never_ephemeral():
    """A port from the ephemeral range could become a client's source port before use."""
    ephemeral_low = int(EPHEMERAL_RANGE.read_text().split()[0])
    ports = free_ports(3) + free_ports(3)
    assert len(set(ports)) == 6  # handed out once per process, even after release
    assert all(1024 <= port < ephemeral_low for port in ports)
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
