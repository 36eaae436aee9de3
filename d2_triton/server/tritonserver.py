"""A tritonserver child process behind its front: command line, start, readiness, stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from d2_triton import cache, names
from d2_triton.errors import ProcessExitedError
from d2_triton.server.environment import ServerEnvironment
from d2_triton.server.front import Front, pipeline_limits
from d2_triton.server.health import HealthBoard
from d2_triton.server.logs import log
from d2_triton.server.processes import live_stubs, stop_process
from d2_triton.server.reloader import ModelReloader, version_folders
from d2_triton.server.settings import LOOPBACK, ServerSettings
from d2_triton.server.status import StatusServer, StatusSource
from d2_triton.server.status_grpc import GrpcStatusServer
from d2_triton.server.watchdog import ReloadWatchdog

# How long the server may take to load every model before it counts as failed to start.
READY_TIMEOUT_S = 300.0


class TritonServer:
    """A tritonserver child process and its front; a context manager that waits for readiness.

    Args:
        settings: what to serve and how.
        environment: the server environment (default: this interpreter's).
        log_path: file for tritonserver's and nginx's output (default: inherit stdout/stderr).
        cache_dir: where the backend directory is kept (default: ``d2_triton.cache``).
        ready_timeout: seconds the context manager waits for every model to load.
    """

    def __init__(
        self,
        settings: ServerSettings,
        environment: ServerEnvironment | None = None,
        log_path: Path | None = None,
        cache_dir: Path | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
    ):
        self.settings = settings
        self.ready_timeout = ready_timeout
        self.environment = environment or ServerEnvironment.inspect()
        self.backend_directory = self.environment.prepare_backends(
            (cache_dir or cache.cache_dir())
            / f"triton-backends-py{self.environment.python_version}"
        )
        self.ports = settings.ports()
        self.board = HealthBoard(
            names.PipelineNames.in_repository(settings.model_repository), log=log
        )
        self.front = self.status = None
        if settings.front:
            limits = pipeline_limits(settings.model_repository, settings.max_in_flight)
            self.front = Front(self.ports, limits)
            self.status = StatusSource(
                self.board,
                self.triton_http_url,
                f"{LOOPBACK}:{self.ports.triton_metrics}",
                watched=settings.watchdog,
            )
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.watchdog: ReloadWatchdog | None = None
        self._status_servers: list[StatusServer | GrpcStatusServer] = []

    def command(self) -> list[str]:
        """The tritonserver command line."""
        return self.settings.command(self.environment, self.backend_directory, self.ports)

    @property
    def http_url(self) -> str:
        """host:port of the HTTP endpoint clients use (the front's), on loopback."""
        return f"{LOOPBACK}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint clients use (the front's), on loopback."""
        return f"{LOOPBACK}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        """host:port of the metrics endpoint clients use (the front's), on loopback."""
        return f"{LOOPBACK}:{self.ports.metrics}"

    @property
    def triton_http_url(self) -> str:
        """host:port of Triton's own HTTP endpoint (behind the front: loopback only)."""
        return f"{LOOPBACK}:{self.ports.triton_http}"

    def start(self) -> TritonServer:
        """Start the front and tritonserver, each in a session of its own; does not wait."""
        self._write_admin_key()
        stdout = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        if self.front is not None:
            self._status_servers = [
                StatusServer(self.ports.status, self.status).start(),
                GrpcStatusServer(self.ports.status_grpc, self.status).start(),
            ]
            self.front.start(stdout)
        self.process = subprocess.Popen(
            self.command(),
            env=self.environment.process_environment(),
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout else None,
            start_new_session=True,
        )
        return self

    def is_ready(self, through_front: bool = True) -> bool:
        """Whether the server answers ready, through the front or directly.

        Through the front it is the launcher's account (``d2_triton.server.status``);
        directly, Triton's own (every model loaded).
        """
        return self._answers("/v2/health/ready", through_front)

    def _answers(self, path: str, through_front: bool) -> bool:
        try:
            where = self.http_url if through_front else self.triton_http_url
            with urllib.request.urlopen(f"http://{where}{path}", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def model_statistics(self, model: str) -> dict:
        """Triton's statistics of ``model`` (a restricted API: asked with the admin key)."""
        request = urllib.request.Request(
            f"http://{self.http_url}/v2/models/{urllib.parse.quote(model)}/stats",
            headers={names.ADMIN_HEADER: self.settings.admin_key},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["model_stats"][0]

    def executions(self, model: str) -> int:
        """How many requests ``model`` has executed or failed since the server started."""
        inference = self.model_statistics(model)["inference_stats"]
        return int(inference["success"]["count"]) + int(inference["fail"]["count"])

    def wait_ready(self, timeout: float | None = READY_TIMEOUT_S) -> None:
        """Wait until ready; RuntimeError if it exits first, TimeoutError after ``timeout``.

        The default is a hang catcher: the four models load in ~10 s on 2 cores.  Triton is
        asked directly until it is ready (it opens its port only then, and the front would
        log every refused probe), then whether the front passes calls on (liveness: its
        readiness waits for the watchdog, which starts after this).
        """
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        through_front = False
        while time.monotonic() < deadline:
            exited = self.exited()
            if exited:
                raise ProcessExitedError(f"{exited} before it was ready{self._log_hint()}")
            path = "/v2/health/live" if through_front else "/v2/health/ready"
            if self._answers(path, through_front):
                if through_front or self.front is None:
                    return
                through_front = True
                continue
            time.sleep(0.5)
        raise TimeoutError(f"tritonserver not ready after {timeout:.0f}s{self._log_hint()}")

    def exited(self) -> str | None:
        """Which of tritonserver and the front has exited, with its code (None: neither)."""
        for name, process in (
            ("tritonserver", self.process),
            ("the front (nginx)", self.front_process),
        ):
            if process is not None and process.poll() is not None:
                return f"{name} exited with code {process.returncode}"
        return None

    @property
    def front_process(self) -> subprocess.Popen | None:
        """The front's nginx process (None: no front, or not started)."""
        return self.front.process if self.front is not None else None

    def _write_admin_key(self) -> None:
        path = self.settings.admin_key_file
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(self.settings.admin_key + "\n")

    def _log_hint(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-30:]
        return f"; last lines of {self.log_path}:\n" + "\n".join(tail)

    def start_watchdog(self) -> None:
        """Once ready: watch stubs and version folders (if ``settings.watchdog``)."""
        if self.settings.watchdog and self.watchdog is None:
            pid = self.process.pid
            reloader = ModelReloader(
                f"{LOOPBACK}:{self.ports.triton_grpc}", self.settings.admin_key
            )
            repository = self.settings.model_repository
            self.watchdog = ReloadWatchdog(
                lambda: live_stubs(pid), reloader, self.board, lambda: version_folders(repository)
            ).start()
            if self.status is not None:
                self.status.watch(self.watchdog)

    def stop(self, timeout: float = 60.0) -> int | None:
        """Stop the front and tritonserver; returns tritonserver's exit code.

        The front stops gracefully, then tritonserver gets SIGTERM (it drains requests in
        flight) and SIGKILL after ``timeout``, or as soon as only dead instances are left
        (Triton 2.51 waits its whole exit timeout, 30 s, for an instance whose stub died,
        even one the watchdog has replaced).  A reload in flight may end first (up to
        ``timeout``): Triton unloads nothing while it loads.  What is left of a tritonserver
        that died is killed: its stubs serve no one.
        """
        dead = []
        if self.watchdog is not None:
            self.watchdog.stop(reloads_timeout=timeout)  # the stubs are to exit on purpose
            dead = self.watchdog.models_with_dead_instances()
        if self.front is not None:
            self.front.stop()
        for status_server in self._status_servers:
            status_server.stop()
        if self.process is None:
            return None
        if dead and self.process.poll() is None:
            return self._stop_with_dead_instances(dead, timeout)
        code = stop_process(self.process, timeout, group=True)
        with contextlib.suppress(ProcessLookupError):  # orphaned stubs of a crashed server
            os.killpg(self.process.pid, signal.SIGKILL)
        return code

    def _stop_with_dead_instances(self, dead: list[str], timeout: float) -> int:
        """SIGTERM; once every live stub has exited, SIGKILL what is left of tritonserver.

        Returns 0 for that deliberate kill, else tritonserver's exit code.
        """
        os.killpg(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            if not live_stubs(self.process.pid):
                log(f"stopping: only dead instances ({', '.join(dead)}) are left; not waiting")
                stop_process(self.process, 0, signal.SIGKILL, group=True)
                return 0
            time.sleep(0.2)
        return stop_process(self.process, 0, signal.SIGKILL, group=True)

    def __enter__(self) -> TritonServer:
        """Start, wait until ready, start the watchdog; stop again if any of it fails."""
        self.start()
        try:
            self.wait_ready(self.ready_timeout)
            self.start_watchdog()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        """Stop the server."""
        self.stop()
