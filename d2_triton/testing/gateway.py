"""The REST gateway as a real process, for the tests and the benchmarks."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from d2_triton.cache import CHECKOUT, server_env
from d2_triton.errors import ProcessExitedError
from d2_triton.server.processes import stop_process
from d2_triton.testing.ports import free_ports

REPO_ROOT = CHECKOUT
SERVER_ENV = server_env()


class GatewayProcess:
    """The REST gateway (``python -m d2_triton.gateway``) as a real uvicorn process.

    Args:
        triton_url: host:port of the model server (its front).
        log_path: file for the gateway's output (appended to).
        admin_key: the model server's admin key (``TRITON_ADMIN_KEY``).
        settings: further environment variables (``d2_triton.gateway.settings``).
    """

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
        """The gateway's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GatewayProcess:
        """Start it and wait until it answers (60 s at most)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(SERVER_ENV / "bin" / "python"), "-m", "d2_triton.gateway"],
                cwd=REPO_ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProcessExitedError(f"gateway exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/openapi.json", timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.__exit__()
        raise TimeoutError(f"gateway not up after 60 s: {self.log_path.read_text()[-3000:]}")

    def __exit__(self, *exc_info) -> None:
        """Stop it (SIGTERM, then SIGKILL after 20 s)."""
        if self.process:
            stop_process(self.process, 20)
