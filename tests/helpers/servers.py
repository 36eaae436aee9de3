"""Real tritonserver processes for the integration tests, at most one running at a time.

Starting a server costs ~10 s (the detector imports torch and loads TorchScript); tests of
the same repository share one.  Asking for another repository stops the current server
first, which keeps memory bounded on a 2-core / 24 GB CI machine.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from d2_triton.server import ServerEnvironment, TritonServer
from d2_triton.testing.ports import free_ports, loopback_server_options

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_ENV = Path(os.environ.get("D2T_CACHE", REPO_ROOT / ".cache")) / "venv"


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


class GatewayProcess:
    """The REST gateway (``python -m d2_triton.gateway``) as a real uvicorn process."""

    def __init__(self, triton_url: str, log_path: Path, admin_key: str = "", **settings: str):
        self.port = free_ports(1)[0]
        host, triton_port = triton_url.rsplit(":", 1)
        self.environment = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "mode": "debug",  # docs on, no reloader process
            "TRITON_HOST": host,
            "TRITON_PORT": triton_port,
            "TRITON_ADMIN_KEY": admin_key,  # the launcher restricts statistics (pipelines)
            **settings,
        }
        self.environment.pop("PYTHONPATH", None)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GatewayProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(SERVER_ENV / "bin" / "python"), "-m", "d2_triton.gateway"],
                cwd=REPO_ROOT, env=self.environment, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/openapi.json", timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.__exit__()
        raise TimeoutError(f"gateway not up after 60 s: {self.log_path.read_text()[-3000:]}")

    def __exit__(self, *exc_info) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
