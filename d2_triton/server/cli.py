"""``python -m d2_triton.server``: run tritonserver in the foreground, with the watchdog.

    python -m d2_triton.server --model-repository models            # Ctrl-C stops

Clients connect to the front (nginx, ``d2_triton.server.front``) on ``--host`` and the
ports ``HTTP_PORT``, ``GRPC_PORT`` and ``METRICS_PORT`` from the environment, else 8000,
8001 and 8002; tritonserver itself listens on loopback only.  ``--no-front`` makes Triton
listen on those ports itself, for a trusted network only (docs/security.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from d2_triton import names
from d2_triton.commands import Parser, command
from d2_triton.errors import ServerEnvironmentError
from d2_triton.server.environment import ServerEnvironment
from d2_triton.server.logs import log
from d2_triton.server.repository import repository_problems
from d2_triton.server.settings import ServerSettings
from d2_triton.server.tritonserver import TritonServer

# Seconds before starting a crashed server again; doubled while it keeps crashing (30 at most).
FIRST_RESTART_DELAY_S = 1.0
# The exit status when the reload watchdog stopped looking: nothing would heal a dead stub, so
# the launcher ends and its supervisor (a container's restart policy) starts it again.
WATCHDOG_STALLED_EXIT = 3
# Seconds between two looks at a repository that cannot be served yet (--wait-for-repository).
REPOSITORY_POLL_S = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The launcher's command line."""
    parser = Parser(
        prog="python -m d2_triton.server",
        description=__doc__,
    )
    add_serving_arguments(parser)
    add_port_arguments(parser)
    add_process_arguments(parser)
    args = parser.parse_args(argv)
    if args.max_in_flight is not None and args.max_in_flight < 1:
        parser.error("--max-in-flight must be at least 1")
    problems = repository_problems(args.model_repository)
    if problems and not args.wait_for_repository:
        parser.error(
            f"{problems[0]}; run python -m export_tools.export --repository "
            f"{args.model_repository} first, or pass --wait-for-repository"
        )
    return args


def add_serving_arguments(parser: argparse.ArgumentParser) -> None:
    """What to serve, with which tritonserver and environment, behind which front."""
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
    parser.add_argument(
        "--host",
        default="0.0.0.0",
        help="the address clients connect to (the front's; Triton's own with --no-front)",
    )
    parser.add_argument(
        "--no-front",
        action="store_true",
        help="no nginx in front: Triton 2.51 itself listens on --host (trusted networks only)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        help="inference requests admitted per pipeline at once, the rest answered 503 "
        f"(default: {names.ADMITTED_PER_INSTANCE} per detector instance)",
    )
    parser.add_argument(
        "--wait-for-repository",
        action="store_true",
        help="wait (not ready) until the repository can be served, e.g. while an export job "
        "writes it, saying what is missing, instead of exiting",
    )
    parser.add_argument(
        "--admin-key-file",
        type=Path,
        help="write the admin key (restricted APIs; $D2T_ADMIN_KEY, else new per start) "
        "here, mode 0600",
    )


def add_port_arguments(parser: argparse.ArgumentParser) -> None:
    """The public ports, from the environment by default."""
    for protocol in ("http", "grpc", "metrics"):
        variable = f"{protocol.upper()}_PORT"
        parser.add_argument(
            f"--{protocol}-port",
            type=int,
            default=int(os.environ.get(variable, names.DEFAULT_PORTS[protocol])),
            help=f"default: ${variable}, else {names.DEFAULT_PORTS[protocol]}",
        )


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    """Logging, backend settings, the watchdog and restarts, tritonserver's own arguments."""
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
        "--no-restart",
        action="store_true",
        help="exit when tritonserver or the front dies (default: start both again)",
    )
    parser.add_argument(
        "extra", nargs=argparse.REMAINDER, help="further tritonserver arguments, after '--'"
    )


def settings_from(args: argparse.Namespace) -> ServerSettings:
    """The launcher's command line as ServerSettings."""
    return ServerSettings(
        model_repository=args.model_repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        host=args.host,
        front=not args.no_front,
        max_in_flight=args.max_in_flight,
        admin_key_file=args.admin_key_file,
        log_verbose=args.log_verbose,
        backend_config=args.backend_config,
        extra_args=[item for item in args.extra if item != "--"],
        watchdog=not args.no_watchdog,
    )


@command("python -m d2_triton.server")
def main(argv: list[str] | None = None) -> int:
    """Run the server until it is stopped, starting it again after a crash."""
    args = parse_args(argv)
    settings = settings_from(args)
    stopping = threading.Event()
    running: list[TritonServer] = []
    install_signal_handlers(stopping, running)
    delay = FIRST_RESTART_DELAY_S
    try:
        environment = ServerEnvironment.inspect(args.server_env, args.tritonserver)
    except ServerEnvironmentError as error:
        print(f"d2_triton.server: {error}", file=sys.stderr)
        return 2
    if not wait_for_repository(args.model_repository, stopping):
        return 0  # stopped while waiting
    while True:
        try:
            server = TritonServer(settings, environment)  # new loopback ports for Triton
        except ServerEnvironmentError as error:
            print(f"d2_triton.server: {error}", file=sys.stderr)
            return 2
        announce(server)
        running[:] = [server]
        started = time.monotonic()
        code = serve_in_foreground(server, stopping)
        if stopping.is_set() or args.no_restart or code == WATCHDOG_STALLED_EXIT:
            return code
        # The same admin key again (the gateway keeps working); back off while it keeps dying.
        delay = FIRST_RESTART_DELAY_S if time.monotonic() - started > 60 else min(delay * 2, 30)
        log(f"starting the server again in {delay:.0f} s")
        if stopping.wait(delay):
            return code


def wait_for_repository(repository: Path, stopping: threading.Event) -> bool:
    """Wait until ``repository`` can be served (False: stopped first).

    Says what is missing in one line, again only when that changes; nothing listens
    meanwhile, so every probe finds the replica not ready.
    """
    told = None
    while problems := repository_problems(repository):
        if problems != told:
            log(f"not serving yet: {'; '.join(problems)}")
            told = problems
        if stopping.wait(REPOSITORY_POLL_S):
            return False
    if told is not None:
        log(f"{repository} can be served now")
    return True


def announce(server: TritonServer) -> None:
    """Print the command line (key masked) and where the front and Triton listen."""
    key = server.settings.admin_key
    print("starting:", " ".join(server.command()).replace(key, "***"), flush=True)
    if server.front is not None:
        ports, limits = server.ports, server.front.limits
        admitted = ", ".join(f"{item.pipeline.name}: {item.max_in_flight}" for item in limits)
        print(
            f"front (nginx) on {ports.host}:{ports.http} (HTTP), {ports.grpc} (gRPC), "
            f"{ports.metrics} (metrics); Triton on loopback {ports.triton_http}, "
            f"{ports.triton_grpc}, {ports.triton_metrics}; admitted per pipeline: "
            f"{admitted}",
            flush=True,
        )


def install_signal_handlers(stopping: threading.Event, running: list[TritonServer]) -> None:
    """SIGTERM/SIGINT stop the running server gracefully (and every restart)."""

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        for server in running:
            # nginx stops gracefully on SIGQUIT (SIGTERM would drop requests in flight).
            signals = [(server.front_process, signal.SIGQUIT)]
            if server.watchdog is None:  # starting: end tritonserver's wait for ready now
                signals.append((server.process, signum))
            else:
                # Watched, ``server.stop()`` (the main loop's, within half a second) lets a
                # reload in flight end before it signals tritonserver's group: a signal now
                # kills the stub a load is starting, and Triton 2.51 then waits on that load
                # for ever (the chaos test's stop, seen in a fresh-clone run).
                server.watchdog.request_stop()
            for process, sent in signals:
                if process is not None and process.poll() is None:
                    os.killpg(process.pid, sent)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)


def serve_in_foreground(server: TritonServer, stopping: threading.Event) -> int:
    """Run tritonserver and its front until either exits or ``stopping`` is set.

    The launcher stays tritonserver's parent (rather than exec'ing it) to run the stub
    watchdog; under docker, use an init (``init: true``) so signals and orphans are handled.
    """
    server.start()
    try:
        server.wait_ready(timeout=None)
        if not stopping.is_set():
            server.start_watchdog()
            log("ready; the reload watchdog is on" if server.watchdog else "ready")
    except RuntimeError as error:  # exited before it was ready
        log(str(error))
    # Either process ending ends both: a Triton nobody can reach, or a front to a dead Triton,
    # serves no one.  main() starts them again (as would a container's restart policy).
    while server.exited() is None and not stopping.is_set():
        if server.watchdog is not None and server.watchdog.stalled():
            log(
                "the reload watchdog has stopped looking at the stubs "
                f"({server.watchdog.seconds_since_tick():.0f} s since its last look); exiting "
                "rather than serving unwatched"
            )
            server.stop()
            return WATCHDOG_STALLED_EXIT
        time.sleep(0.5)
    if stopping.is_set():
        return server.stop() or 0
    log(f"{server.exited()}; stopping the rest")
    return server.stop() or 1
