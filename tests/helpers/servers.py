"""Real tritonserver processes for the integration tests, at most one running at a time.

Starting a server costs ~10 s (the detector imports torch and loads TorchScript); tests of
the same repository share one.  Asking for another repository stops the current server
first, which keeps memory bounded on a 2-core / 24 GB CI machine.
"""

from __future__ import annotations

from pathlib import Path

from d2_triton.server import ServerEnvironment, TritonServer
from d2_triton.testing.gateway import SERVER_ENV, GatewayProcess
from d2_triton.testing.ports import loopback_server_options

__all__ = ["SERVER_ENV", "GatewayProcess", "ServerPool"]


class ServerPool:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.environment = ServerEnvironment.inspect(SERVER_ENV)
        self.current: tuple[Path, TritonServer] | None = None

    def get(self, repository: Path, name: str) -> TritonServer:
        if self.current and self.current[0] == repository and self.current[1].is_ready():
            return self.current[1]
        self.stop()
        server = self.start(repository, name)
        self.current = (repository, server)
        return server

    def start(self, repository: Path, name: str, **options) -> TritonServer:
        """A fresh server outside the pool (the caller stops it)."""
        server_options = loopback_server_options(repository, **options)
        server = TritonServer(
            server_options, self.environment, log_path=self.log_dir / f"tritonserver-{name}.log"
        )
        return server.__enter__()

    def stop(self) -> None:
        if self.current:
            self.current[1].stop()
            self.current = None
