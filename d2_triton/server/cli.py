"""``python -m d2_triton.server``: run tritonserver in the foreground, with the watchdog.

    python -m d2_triton.server --model-repository models            # Ctrl-C stops

Ports default to ``HTTP_PORT``, ``GRPC_PORT`` and ``METRICS_PORT`` from the environment, else
8000, 8001 and 8002.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from d2_triton import schema
from d2_triton.server.environment import ServerEnvironment
from d2_triton.server.process import ServerOptions, TritonServer
from d2_triton.server.watchdog import log


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The launcher's command line."""
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
    for protocol in ("http", "grpc", "metrics"):
        variable = f"{protocol.upper()}_PORT"
        parser.add_argument(
            f"--{protocol}-port",
            type=int,
            default=int(os.environ.get(variable, schema.DEFAULT_PORTS[protocol])),
            help=f"default: ${variable}, else {schema.DEFAULT_PORTS[protocol]}",
        )
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
    if not schema.PipelineNames.in_repository(args.model_repository):
        parser.error(
            f"{args.model_repository} has no exported model; run "
            f"python -m export_tools.export --repository {args.model_repository} first"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the server until it exits; returns its exit code."""
    args = parse_args(argv)
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
