"""Real tritonserver processes for the integration tests, at most one serving at a time.

Starting a server costs ~10 s (the detector imports torch and loads TorchScript); tests of
the same repository share one.  Asking for another repository stops the current server
first, which keeps memory bounded on a 2-core / 24 GB CI machine.  A stopped server finishes
its shutdown in the background (~3 s, nearly all of it Triton polling once a second for its
models to unload) while the next one starts; ``close`` waits for every one of them.
"""

from __future__ import annotations

import threading
from pathlib import Path

from d2_triton.server import ServerEnvironment, TritonServer
from d2_triton.testing.gateway import SERVER_ENV, GatewayProcess
from d2_triton.testing.ports import loopback_server_options

__all__ = ["CLIENT_CLI", "SERVER_ENV", "GatewayProcess", "ServerPool"]

# The thin client's command line, run as a user runs it: by the server environment's Python.
CLIENT_CLI = (str(SERVER_ENV / "bin" / "python"), "-m", "d2_triton.client")


class ServerPool:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.environment = ServerEnvironment.inspect(SERVER_ENV)
        self.current: tuple[Path, TritonServer] | None = None
        self._stopping: list[threading.Thread] = []
        self._stop_errors: list[BaseException] = []

    def get(self, repository: Path, name: str) -> TritonServer:
        if self.current and self.current[0] == repository and self.current[1].is_ready():
            return self.current[1]
        self.stop()
        server = self.start(repository, name)
        self.current = (repository, server)
        return server

    def start(self, repository: Path, name: str, **options) -> TritonServer:
        """A fresh server outside the pool (the caller hands it to ``retire``)."""
        server_options = loopback_server_options(repository, **options)
        server = TritonServer(
            server_options, self.environment, log_path=self.log_dir / f"tritonserver-{name}.log"
        )
        return server.__enter__()

    def stop(self) -> None:
        """Retire the pool's server, if it has one."""
        if self.current:
            self.retire(self.current[1])
            self.current = None

    def retire(self, server: TritonServer) -> None:
        """Stop ``server`` without waiting for it to exit; its ports stay taken until then."""

        def stop() -> None:
            try:
                server.stop()
            except BaseException as error:  # reported by close()
                self._stop_errors.append(error)

        thread = threading.Thread(target=stop, name="retire-tritonserver")
        thread.start()
        self._stopping.append(thread)

    def close(self) -> None:
        """Stop the pool's server and wait until every retired server has exited."""
        self.stop()
        for thread in self._stopping:
            thread.join()
        if self._stop_errors:
            raise RuntimeError(f"stopping a server failed: {self._stop_errors[0]!r}")
