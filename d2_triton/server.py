"""Start the real ``tritonserver`` that nvidia-pytriton ships, on a model repository.

nvidia-pytriton==0.7.0 bundles Triton 2.51 (``pytriton/tritonserver/bin/tritonserver``), its
Python backend (``backends/python/libtriton_python.so``) and one Python-backend stub per
Python version (``python_backend_stubs/3.X/``).  Triton looks for the stub next to the
backend library, so we assemble a writable backend directory with the stub matching the
server environment's Python, and point ``--backend-directory`` at it.

The stub embeds the system ``libpython3.X.so`` and imports packages from the environment
whose ``bin/`` is first on ``PATH``; we put the server environment's ``bin/`` there.  The
libraries the copied stub needs (libcudart etc., found through an ``$ORIGIN`` rpath at its
original place) are added with ``LD_LIBRARY_PATH``.

    python -m d2_triton.server --model-repository models            # foreground, Ctrl-C stops
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Where the assembled backend directory is kept (a few MB, rebuilt on every start).
DEFAULT_CACHE = Path(os.environ.get("D2T_CACHE", Path.home() / ".cache" / "d2-triton"))

_PROBE = (
    "import importlib.util, json, sys, numpy;"
    "spec = importlib.util.find_spec('pytriton');"
    "print(json.dumps({'numpy': numpy.__version__,"
    " 'python': '%d.%d' % sys.version_info[:2],"
    " 'pytriton': spec.submodule_search_locations[0] if spec else None}))"
)


class ServerEnvironmentError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerEnvironment:
    """The Python environment the Python-backend stubs will import packages from."""

    prefix: Path
    python_version: str
    numpy_version: str
    pytriton_dir: Path

    @classmethod
    def inspect(cls, prefix: Path | str = sys.prefix) -> ServerEnvironment:
        prefix = Path(prefix).absolute()
        python = prefix / "bin" / "python"
        result = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True)
        if result.returncode != 0:
            raise ServerEnvironmentError(f"cannot inspect {python}: {result.stderr.strip()}")
        facts = json.loads(result.stdout)
        if not facts["pytriton"]:
            raise ServerEnvironmentError(
                f"nvidia-pytriton is not installed in {prefix}; it provides tritonserver "
                "(pip install --no-deps nvidia-pytriton==0.7.0)"
            )
        environment = cls(prefix, facts["python"], facts["numpy"], Path(facts["pytriton"]))
        environment.check_numpy()
        return environment

    def check_numpy(self) -> None:
        major = int(self.numpy_version.split(".")[0])
        if major >= 2:
            raise ServerEnvironmentError(
                f"numpy {self.numpy_version} in {self.prefix}: Triton 2.51's Python backend "
                "stub returns empty output tensors under numpy 2; install numpy<2"
            )

    @property
    def tritonserver(self) -> Path:
        return self.pytriton_dir / "tritonserver" / "bin" / "tritonserver"

    @property
    def bundled_libraries(self) -> Path:
        return self.pytriton_dir.parent / "nvidia_pytriton.libs"

    def prepare_backends(self, directory: Path) -> Path:
        """A backend directory holding the Python backend and the matching stub."""
        source = self.pytriton_dir / "tritonserver" / "backends" / "python"
        stub = (
            self.pytriton_dir
            / "tritonserver"
            / "python_backend_stubs"
            / self.python_version
            / "triton_python_backend_stub"
        )
        if not stub.is_file():
            raise ServerEnvironmentError(f"no Python-backend stub for Python {self.python_version}")
        target = directory / "python"
        target.mkdir(parents=True, exist_ok=True)
        for item in [*source.iterdir(), stub]:
            if item.is_file():
                _install_file(item, target / item.name)
        return directory

    def process_environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{self.prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        libraries = [str(self.bundled_libraries)]
        if env.get("LD_LIBRARY_PATH"):
            libraries.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libraries)
        env.pop("PYTHONHOME", None)
        return env


def _install_file(source: Path, target: Path) -> None:
    """Copy unless identical; replace atomically, as a running server may be using it."""
    if target.is_file() and filecmp.cmp(source, target, shallow=False):
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.copy2(source, partial)
    os.replace(partial, target)


@dataclass
class ServerOptions:
    model_repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "0.0.0.0"
    log_verbose: int = 0
    backend_config: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)

    def command(self, environment: ServerEnvironment, backend_directory: Path) -> list[str]:
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
        command += [f"--backend-config={item}" for item in self.backend_config]
        return command + list(self.extra_args)


class TritonServer:
    """A tritonserver child process; a context manager that waits for readiness."""

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

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.options.metrics_port}/metrics"

    def start(self) -> TritonServer:
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
        try:
            url = f"http://{self.http_url}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
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

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def __enter__(self) -> TritonServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def free_ports(count: int) -> list[int]:
    """TCP ports that were free a moment ago (tests run servers side by side)."""
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m d2_triton.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model-repository", type=Path, default=Path(os.environ.get("TRT_MODEL_DIR", "models"))
    )
    parser.add_argument(
        "--server-env",
        type=Path,
        default=Path(sys.prefix),
        help="Python environment the backend stubs use (default: this one)",
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument(
        "--backend-config",
        action="append",
        default=[],
        help="passed to tritonserver, e.g. python,shm-default-byte-size=...",
    )
    parser.add_argument(
        "extra", nargs=argparse.REMAINDER, help="further tritonserver arguments, after '--'"
    )
    args = parser.parse_args(argv)
    if not (args.model_repository / "ensemble" / "config.pbtxt").is_file():
        parser.error(
            f"{args.model_repository} has no exported model; run "
            "python -m export_tools.export --repository "
            f"{args.model_repository} first"
        )
    options = ServerOptions(
        model_repository=args.model_repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        host=args.host,
        log_verbose=args.log_verbose,
        backend_config=args.backend_config,
        extra_args=[item for item in args.extra if item != "--"],
    )
    environment = ServerEnvironment.inspect(args.server_env)
    server = TritonServer(options, environment)
    command = options.command(environment, server.backend_directory)
    print("starting:", " ".join(command), flush=True)
    # Replace this process so signals (docker stop, Ctrl-C) reach tritonserver directly.
    os.execve(command[0], command, environment.process_environment())
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
