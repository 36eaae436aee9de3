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

Triton 2.51's Python backend does not restart a stub that dies (a crash, the OOM killer):
every later request to that model fails with "Stub process ... is not healthy" while the
model still reports READY.  So the launcher keeps a ``StubWatchdog``: tritonserver runs with
explicit model control (the model-repository API restricted to a per-start secret header),
and when a model's stub process is gone the watchdog reloads that model in place, which
starts a new stub.  Requests in flight get errors, never hang; service resumes within the
model's load time (about 10 s for the detector on CPU).

    python -m d2_triton.server --model-repository models            # foreground, Ctrl-C stops
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from d2_triton.processes import live_stubs

# Where the assembled backend directory is kept (a few MB, rebuilt on every start).
DEFAULT_CACHE = Path(os.environ.get("D2T_CACHE", Path.home() / ".cache" / "d2-triton"))

_PROBE = (
    "import importlib.util, json, sys, numpy;"
    "spec = importlib.util.find_spec('pytriton');"
    "print(json.dumps({'numpy': numpy.__version__,"
    " 'python': '%d.%d' % sys.version_info[:2],"
    " 'pytriton': spec.submodule_search_locations[0] if spec else None}))"
)


# Header carrying ServerOptions.admin_key: Triton refuses model-repository calls without it.
ADMIN_HEADER = "d2t-admin-key"


class ServerEnvironmentError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerEnvironment:
    """The Python environment the Python-backend stubs will import packages from, and the
    tritonserver to run: nvidia-pytriton's, or an installed one (NVIDIA's Triton images
    keep theirs in /opt/tritonserver, with the backends beside it)."""

    prefix: Path
    python_version: str
    numpy_version: str
    pytriton_dir: Path | None
    installed_tritonserver: Path | None = None

    @classmethod
    def inspect(
        cls, prefix: Path | str = sys.prefix, tritonserver: Path | None = None
    ) -> ServerEnvironment:
        prefix = Path(prefix).absolute()
        python = prefix / "bin" / "python"
        result = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True)
        if result.returncode != 0:
            raise ServerEnvironmentError(f"cannot inspect {python}: {result.stderr.strip()}")
        facts = json.loads(result.stdout)
        if not facts["pytriton"] and tritonserver is None:
            raise ServerEnvironmentError(
                f"nvidia-pytriton is not installed in {prefix}; it provides tritonserver "
                "(pip install --no-deps nvidia-pytriton==0.7.0), or pass an installed one"
            )
        environment = cls(
            prefix,
            facts["python"],
            facts["numpy"],
            Path(facts["pytriton"]) if facts["pytriton"] else None,
            tritonserver,
        )
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
        if self.installed_tritonserver is not None:
            return self.installed_tritonserver
        return self.pytriton_dir / "tritonserver" / "bin" / "tritonserver"

    @property
    def bundled_libraries(self) -> list[str]:
        if self.installed_tritonserver is not None:
            return []
        return [str(self.pytriton_dir.parent / "nvidia_pytriton.libs")]

    def prepare_backends(self, directory: Path) -> Path:
        """A backend directory holding the Python backend and the matching stub.

        An installed tritonserver comes with its backends (``<root>/bin/tritonserver``,
        ``<root>/backends``), its stub built for the Python it ships with: used as they are.
        """
        if self.installed_tritonserver is not None:
            return self.installed_tritonserver.parent.parent / "backends"
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
        libraries = list(self.bundled_libraries)
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
    # Reload a model whose stub died (see StubWatchdog); needs explicit model control.
    watchdog: bool = True
    admin_key: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

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
        self.watchdog: StubWatchdog | None = None

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

    def wait_ready(self, timeout: float | None = 300.0) -> None:
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
        """Once ready: reload models whose stub dies (if ``options.watchdog``)."""
        if self.options.watchdog and self.watchdog is None:
            self.watchdog = StubWatchdog(self).start()

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
        self.start()
        try:
            self.wait_ready()
            self.start_watchdog()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


@dataclass(frozen=True)
class Reload:
    """One reload by the watchdog; times are ``time.monotonic()``."""

    model: str
    succeeded: bool
    started_at: float
    finished_at: float

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at


class StubWatchdog:
    """Reload any model whose Python-backend stub process died, so service resumes.

    Every ``interval`` seconds it lists the live stubs under tritonserver (/proc); a stub
    seen before and gone now (or a zombie) means its model instance can only fail from now
    on, so the model is reloaded in place through the restricted model-repository API.
    Triton skips a load whose config is unchanged, so the served config goes back with one
    more parameter, ``d2t_reload_generation``; the model stays loaded meanwhile, so the
    ensemble never disappears (an unload would make it answer 404 to every request, bad
    ones included, until the load is done).  A failed reload is retried with back-off.
    Stop it before stopping the server, or the server's own shutdown looks like dying stubs.
    """

    def __init__(self, server: TritonServer, interval: float = 1.0, load_timeout: float = 600.0):
        self.server = server
        self.interval = interval
        self.load_timeout = load_timeout
        self.reloads: list[Reload] = []
        self._generation = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stub-watchdog", daemon=True)

    def start(self) -> StubWatchdog:
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the thread to end (safe in a signal handler: it does not wait)."""
        self._stop.set()

    def stop(self) -> None:
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join()

    def _stubs(self) -> dict[str, set[int]]:
        return live_stubs(self.server.process.pid)

    def _run(self) -> None:
        known = self._stubs()
        pending: dict[str, tuple[int, float]] = {}  # model -> (failed reloads, retry time)
        while not self._stop.wait(self.interval):
            current = self._stubs()
            for model, pids in known.items():
                lost = pids - current.get(model, set())
                if lost and model not in pending:
                    log(f"stub of model {model!r} (pid {', '.join(map(str, sorted(lost)))}) "
                        "died; reloading the model")  # fmt: skip
                    pending[model] = (0, 0.0)
            reloaded = False
            for model, (failures, due) in list(pending.items()):
                if time.monotonic() < due or self._stop.is_set():
                    continue
                if self._reload(model):
                    del pending[model]
                    reloaded = True
                else:
                    retry = time.monotonic() + min(60.0, 5.0 * 2**failures)
                    pending[model] = (failures + 1, retry)
            if reloaded:
                current = self._stubs()  # learn the new stubs
            # A model waiting for its reload is re-learnt once it is back.
            known = {m: pids for m, pids in {**known, **current}.items() if m not in pending}

    def _reload(self, model: str) -> bool:
        started = time.monotonic()
        try:
            self._load_again(model)
        except (urllib.error.URLError, OSError) as error:
            detail = error.read().decode(errors="replace") if hasattr(error, "read") else error
            log(f"reloading {model!r} failed: {detail}")
            self.reloads.append(Reload(model, False, started, time.monotonic()))
            return False
        reload = Reload(model, True, started, time.monotonic())
        log(f"model {model!r} reloaded in {reload.seconds:.1f} s; its new stub serves requests")
        self.reloads.append(reload)
        return True

    def _load_again(self, model: str) -> None:
        """Load ``model`` with its served config plus a new reload generation."""
        base = f"http://{self.server.http_url}/v2"
        name = urllib.parse.quote(model)
        with urllib.request.urlopen(f"{base}/models/{name}/config", timeout=30) as response:
            config = json.load(response)
        self._generation += 1
        parameters = config.setdefault("parameters", {})
        parameters["d2t_reload_generation"] = {"string_value": str(self._generation)}
        request = urllib.request.Request(
            f"{base}/repository/models/{name}/load",
            data=json.dumps({"parameters": {"config": json.dumps(config)}}).encode(),
            headers={ADMIN_HEADER: self.server.options.admin_key},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.load_timeout) as response:
            response.read()


def log(message: str) -> None:
    print(f"[d2_triton.server] {message}", file=sys.stderr, flush=True)


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
    parser.add_argument(
        "--tritonserver",
        type=Path,
        help="an installed tritonserver (e.g. /opt/tritonserver/bin/tritonserver in NVIDIA's "
        "images) instead of nvidia-pytriton's",
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
        "--no-watchdog",
        action="store_true",
        help="do not reload models whose stub died (keeps Triton's default model control)",
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
        watchdog=not args.no_watchdog,
    )
    environment = ServerEnvironment.inspect(args.server_env, args.tritonserver)
    server = TritonServer(options, environment)
    command = options.command(environment, server.backend_directory)
    print("starting:", " ".join(command).replace(options.admin_key, "***"), flush=True)
    return serve_in_foreground(server)


def serve_in_foreground(server: TritonServer) -> int:
    """Run tritonserver until it exits; SIGTERM/SIGINT are passed on for a graceful stop.

    The launcher stays tritonserver's parent (rather than exec'ing it) to run the stub
    watchdog; under docker, use an init (``init: true``) so signals and orphans are handled.
    """
    stopping = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        if server.watchdog is not None:
            server.watchdog.request_stop()
        if server.process is not None and server.process.poll() is None:
            os.killpg(server.process.pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    server.start()
    try:
        server.wait_ready(timeout=None)
        if not stopping.is_set():
            server.start_watchdog()
            log("ready; the stub watchdog is on" if server.watchdog else "ready")
    except RuntimeError as error:  # exited before it was ready
        log(str(error))
    code = server.process.wait()
    if server.watchdog is not None:
        server.watchdog.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
