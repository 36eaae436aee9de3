"""A tritonserver child process: its command line, start, readiness, stop."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from d2_triton import schema
from d2_triton.processes import live_stubs
from d2_triton.server.environment import ServerEnvironment
from d2_triton.server.watchdog import (
    ADMIN_HEADER,
    ModelReloader,
    StubWatchdog,
    version_folders,
)

# Where the assembled backend directory is kept (a few MB, rebuilt on every start).
DEFAULT_CACHE = Path(os.environ.get("D2T_CACHE", Path.home() / ".cache" / "d2-triton"))


@dataclass
class ServerOptions:
    """How to run tritonserver on a model repository.

    Attributes:
        model_repository: the folder the exporter wrote.
        http_port: Triton's HTTP/REST port.
        grpc_port: Triton's gRPC port.
        metrics_port: Triton's Prometheus metrics port.
        host: the address all three listen on.
        log_verbose: tritonserver's ``--log-verbose``.
        backend_config: ``--backend-config`` values, e.g. ``python,shm-default-byte-size=...``.
        extra_args: further tritonserver arguments, passed as they are.
        watchdog: reload a model whose stub died (see ``watchdog.StubWatchdog``); needs
            explicit model control, which this turns on.
        admin_key: the secret that the model-repository API asks for (a new one per start).
    """

    model_repository: Path
    http_port: int = schema.DEFAULT_PORTS["http"]
    grpc_port: int = schema.DEFAULT_PORTS["grpc"]
    metrics_port: int = schema.DEFAULT_PORTS["metrics"]
    host: str = "0.0.0.0"
    log_verbose: int = 0
    backend_config: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    watchdog: bool = True
    admin_key: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    def command(self, environment: ServerEnvironment, backend_directory: Path) -> list[str]:
        """The tritonserver command line."""
        command = [
            str(environment.tritonserver),
            f"--model-repository={self.model_repository.absolute()}",
            f"--backend-directory={backend_directory}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--log-verbose={self.log_verbose}",
            "--exit-on-error=true",
            "--strict-readiness=true",
        ]
        if self.watchdog:
            restricted = f"model-repository:{ADMIN_HEADER}={self.admin_key}"
            command += [
                "--model-control-mode=explicit",
                "--load-model=*",
                f"--http-restricted-api={restricted}",
                f"--grpc-restricted-protocol={restricted}",
            ]
        command += [f"--backend-config={item}" for item in self.backend_config]
        return command + list(self.extra_args)


class TritonServer:
    """A tritonserver child process; a context manager that waits for readiness.

    Args:
        options: what to serve and how.
        environment: the server environment (default: this interpreter's).
        log_path: file for tritonserver's output (default: inherit stdout and stderr).
        cache_dir: where the backend directory is assembled.
    """

    def __init__(
        self,
        options: ServerOptions,
        environment: ServerEnvironment | None = None,
        log_path: Path | None = None,
        cache_dir: Path = DEFAULT_CACHE,
    ):
        self.options = options
        self.environment = environment or ServerEnvironment.inspect()
        self.backend_directory = self.environment.prepare_backends(
            cache_dir / f"triton-backends-py{self.environment.python_version}"
        )
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.watchdog: StubWatchdog | None = None

    @property
    def http_url(self) -> str:
        """host:port of the HTTP endpoint, on loopback."""
        return f"127.0.0.1:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint, on loopback."""
        return f"127.0.0.1:{self.options.grpc_port}"

    def start(self) -> TritonServer:
        """Start tritonserver in a session of its own; does not wait."""
        stdout = open(self.log_path, "wb") if self.log_path else None  # noqa: SIM115
        self.process = subprocess.Popen(
            self.options.command(self.environment, self.backend_directory),
            env=self.environment.process_environment(),
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout else None,
            start_new_session=True,
        )
        return self

    def is_ready(self) -> bool:
        """Whether the server answers ready (every model loaded)."""
        try:
            url = f"http://{self.http_url}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float | None = 300.0) -> None:
        """Wait until ready; RuntimeError if it exits first, TimeoutError after ``timeout``.

        The default is a hang catcher: the four models load in ~10 s on 2 cores.
        """
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited with code {self.process.returncode} before it was "
                    f"ready{self._log_hint()}"
                )
            if self.is_ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"tritonserver not ready after {timeout:.0f}s{self._log_hint()}")

    def _log_hint(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-30:]
        return f"; last lines of {self.log_path}:\n" + "\n".join(tail)

    def start_watchdog(self) -> None:
        """Once ready: watch stubs and version folders (if ``options.watchdog``)."""
        if self.options.watchdog and self.watchdog is None:
            pid = self.process.pid
            reloader = ModelReloader(self.http_url, self.options.admin_key)
            repository = self.options.model_repository
            self.watchdog = StubWatchdog(
                lambda: live_stubs(pid), reloader, lambda: version_folders(repository)
            ).start()

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL after ``timeout``."""
        if self.watchdog is not None:
            self.watchdog.stop()  # the stubs are about to exit on purpose
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def __enter__(self) -> TritonServer:
        """Start, wait until ready, start the watchdog; stop again if any of it fails."""
        self.start()
        try:
            self.wait_ready()
            self.start_watchdog()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        """Stop the server."""
        self.stop()
