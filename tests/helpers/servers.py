"""Real tritonserver processes for the integration tests, at most one serving at a time.

Starting a server costs ~10 s (the detector imports torch and loads TorchScript); tests of
the same repository share one.  Asking for another repository stops the current server
first, which keeps memory bounded on a 2-core / 24 GB CI machine.  A stopped server finishes
its shutdown in the background (~3 s, nearly all of it Triton polling once a second for its
models to unload) while the next one starts; ``close`` waits for every one of them.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import requests

from d2_triton.server import ServerEnvironment, TritonServer
from d2_triton.server.processes import stop_process
from d2_triton.testing.gateway import REPO_ROOT, SERVER_ENV, GatewayProcess
from d2_triton.testing.ports import free_ports, loopback_server_settings

__all__ = ["CLIENT_CLI", "SERVER_ENV", "GatewayProcess", "LauncherProcess", "ServerPool"]

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
        server_settings = loopback_server_settings(repository, **options)
        server = TritonServer(
            server_settings, self.environment, log_path=self.log_dir / f"tritonserver-{name}.log"
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


class LauncherProcess:
    """``python -m d2_triton.server`` as ``./scripts/serve.sh`` runs it: a process of its own
    that starts tritonserver and the front, watches the stubs and restarts a crashed server.

    Args:
        repository: the model repository to serve.
        log_path: file for the launcher's, tritonserver's and nginx's output.
        arguments: further launcher arguments.
    """

    # A hang catcher: three pipelines load in ~30 s on 2 cores.
    READY_TIMEOUT_S = 300

    def __init__(self, repository: Path, log_path: Path, *arguments: str):
        self.http, self.grpc, self.metrics = free_ports(3)
        self.log_path = log_path
        self.command = [
            *CLIENT_CLI[:1],
            "-m",
            "d2_triton.server",
            "--model-repository",
            str(repository),
            "--host",
            "127.0.0.1",
            *(f"--{name}-port={port}" for name, port in self._ports().items()),
            *arguments,
        ]
        self.process: subprocess.Popen | None = None

    def _ports(self) -> dict[str, int]:
        return {"http": self.http, "grpc": self.grpc, "metrics": self.metrics}

    @property
    def http_url(self) -> str:
        """host:port of the front's HTTP port."""
        return f"127.0.0.1:{self.http}"

    @property
    def pid(self) -> int:
        """The launcher's pid (tritonserver and its stubs are its descendants)."""
        return self.process.pid

    def log(self, tail: int = 3000) -> str:
        """The end of the launcher's output."""
        return self.log_path.read_text(errors="replace")[-tail:]

    def ready(self) -> bool:
        """Whether the front answers ready (the launcher's truth, not Triton's)."""
        try:
            url = f"http://{self.http_url}/v2/health/ready"
            return requests.get(url, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until ready; AssertionError with the log's tail if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the launcher exited:\n{self.log()}"
            if self.ready():
                return
            time.sleep(0.5)
        raise AssertionError(f"not ready after {timeout:.0f} s:\n{self.log()}")

    def __enter__(self) -> LauncherProcess:
        """Start it and wait until it is ready."""
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                self.command, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, as a container runtime stops it; SIGKILL after ``timeout`` (a hang)."""
        return stop_process(self.process, timeout)

    def __exit__(self, *exc_info) -> None:
        """Stop it."""
        if self.process is not None:
            self.stop()
