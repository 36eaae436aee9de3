"""The launcher's status endpoint: readiness that tells the truth, and the launcher's metrics.

Triton answers READY for a model whose stub is dead, so the front (nginx) sends these calls
here, to a small HTTP server of the launcher on loopback, instead of to Triton:

* ``GET /v2/health/ready``: 503 while a pipeline is broken or reloading or the watchdog has
  stopped looking, else whether Triton is live and each pipeline's ensemble ready (not
  Triton's own server-wide answer: ``StatusSource.server_not_ready`` says why);
* ``GET /v2/models/<model>[/versions/<v>]/ready``: 503 while that model, or for an ensemble
  its pipeline, is not ready, else Triton's own answer;
* ``GET /d2t/pipelines``: each pipeline's state, the model that keeps it from being ready,
  why and since when (JSON; the gateway and its page show it);
* ``GET /metrics`` (on the metrics port): Triton's metrics, then the launcher's
  (``health.HealthCollector``).

Liveness (``/v2/health/live``) stays Triton's: a pod whose stub the watchdog is healing is
not ready, but it is alive.  Without the front, Triton answers all of these itself.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from d2_triton.names import PIPELINE_HEALTH_PATH
from d2_triton.server.health import HealthBoard, HealthCollector
from d2_triton.server.settings import LOOPBACK

MODEL_READY = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/ready$")
# Triton answers its health calls at once; a slower answer is a server that cannot answer.
TRITON_TIMEOUT_S = 5.0
# Why readiness is 503 when Triton does not answer at all.
UNREACHABLE = "the model server is not reachable"


class StatusSource:
    """What the status endpoint reads: the board, the watchdog (once started), Triton.

    Args:
        board: the pipelines' states.
        triton_http: host:port of Triton's own HTTP endpoint (loopback).
        triton_metrics: host:port of Triton's own metrics endpoint (loopback).
    """

    def __init__(
        self, board: HealthBoard, triton_http: str, triton_metrics: str, watched: bool = True
    ):
        self.board = board
        self.triton_http = triton_http
        self.triton_metrics = triton_metrics
        self.watched = watched  # a watchdog will watch the stubs (launcher's --no-watchdog: no)
        self.watchdog = None  # set when it starts, once Triton is ready
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = HealthCollector(board)
        self.registry.register(self.collector)

    def watch(self, watchdog) -> None:
        """From now on readiness and metrics include the watchdog's view."""
        self.collector.watchdog = watchdog
        self.watchdog = watchdog

    def not_ready(self) -> str | None:
        """Why the server is not ready, by the launcher's knowledge (None: ask Triton)."""
        if self.watched and self.watchdog is None:
            return "starting: the reload watchdog does not watch the stubs yet"
        if self.watchdog is not None and self.watchdog.stalled():
            return "the reload watchdog has stopped looking at the stubs"
        broken = self.board.not_ready()
        if not broken:
            return None
        return "; ".join(
            f"pipeline {p.name!r} {p.state.value}: {p.model} {p.detail}" for p in broken
        )

    def server_not_ready(self) -> str | None:
        """Why the server is not ready (None: it is), by the launcher's knowledge, then Triton's.

        Not Triton's own ``/v2/health/ready``: with strict readiness it also counts a new
        version that failed to load while the previous one serves on, which would take every
        replica sharing that repository out of service at once.  Triton live and each
        pipeline's ensemble ready, as Triton answers them, is what serving needs.
        """
        reason = self.not_ready()
        if reason is not None:
            return reason
        paths = ["/v2/health/live"] + [
            f"/v2/models/{urllib.parse.quote(ensemble)}/ready" for ensemble in self.board.ensembles
        ]
        for path in paths:
            status = self.triton_status(path)
            if status != 200:
                return UNREACHABLE if not status else f"{path}: {status}"
        return None

    def triton_status(self, path: str) -> int:
        """The HTTP status Triton answers ``GET path`` with (0: not reachable)."""
        return self.triton_answer(path)[0]

    def triton_answer(self, path: str) -> tuple[int, bytes]:
        """Triton's status and body for ``GET path`` (0 and nothing: not reachable)."""
        try:
            with urllib.request.urlopen(
                f"http://{self.triton_http}{path}", timeout=TRITON_TIMEOUT_S
            ) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:  # Triton's own "not ready", or unknown model
            return error.code, error.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def model_not_ready(self, model: str) -> str | None:
        """Why ``model`` is not ready, by the launcher's knowledge (None: ask Triton)."""
        if self.watched and self.watchdog is None:
            return "starting: the reload watchdog does not watch the stubs yet"
        pipeline = self.board.model_ready(model)
        if pipeline is None:
            return None
        return (
            f"pipeline {pipeline.name!r} {pipeline.state.value}: {pipeline.model} {pipeline.detail}"
        )

    def pipelines(self) -> dict:
        """The ``/d2t/pipelines`` answer."""
        watchdog = "starting" if self.watchdog is None else "on"
        if self.watchdog is not None and self.watchdog.stalled():
            watchdog = "stalled"
        return {
            "watchdog": watchdog,
            "pipelines": [pipeline.to_json() for pipeline in self.board.pipelines()],
        }

    def metrics(self) -> bytes:
        """Triton's metrics (nothing if it cannot be reached), then the launcher's."""
        try:
            url = f"http://{self.triton_metrics}/metrics"
            with urllib.request.urlopen(url, timeout=TRITON_TIMEOUT_S) as response:
                triton = response.read()
        except (urllib.error.URLError, OSError):
            triton = b""
        if triton and not triton.endswith(b"\n"):
            triton += b"\n"
        return triton + generate_latest(self.registry)


class _Handler(BaseHTTPRequestHandler):
    server: _StatusHTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """Route one call (see the module's docstring)."""
        source = self.server.source
        path = urllib.parse.urlsplit(self.path).path
        if path == "/v2/health/ready":
            reason = source.server_not_ready()
            if reason is None:
                self._send(200, b"")
            else:
                self._not_ready(reason)
        elif match := MODEL_READY.match(path):
            self._ready(source.model_not_ready(urllib.parse.unquote(match.group(1))), path)
        elif path == PIPELINE_HEALTH_PATH:
            self._send(200, json.dumps(source.pipelines()).encode())
        elif path == "/metrics":
            self._send(200, source.metrics(), CONTENT_TYPE_LATEST)
        else:
            self._send(404, b'{"error":"not found"}')

    def _ready(self, reason: str | None, path: str) -> None:
        if reason is not None:
            self._not_ready(reason)
            return
        status, body = self.server.source.triton_answer(path)
        if status:
            self._send(status, body)
        else:
            self._not_ready(UNREACHABLE)

    def _not_ready(self, reason: str) -> None:
        self._send(503, json.dumps({"error": f"not ready: {reason}"}).encode())

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        """Probes come every few seconds: not logged."""


class _StatusHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, source: StatusSource):
        self.source = source
        super().__init__((LOOPBACK, port), _Handler)


class StatusServer:
    """The status endpoint on ``127.0.0.1:port``, served by a background thread."""

    def __init__(self, port: int, source: StatusSource):
        self.source = source
        self._http = _StatusHTTPServer(port, source)
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="status-endpoint", daemon=True
        )

    def start(self) -> StatusServer:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._thread.is_alive():
            self._http.shutdown()
        self._http.server_close()
