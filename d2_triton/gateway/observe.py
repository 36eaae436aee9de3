"""What the gateway measures: Prometheus metrics, the ``Server-Timing`` header, the request log.

``ObservingMiddleware`` wraps every request.  It opens a ``RequestRecord`` (a context
variable) that the endpoint fills in as it learns things (the pipeline, Triton's share of
the time); when the response starts it adds ``Server-Timing: total;dur=..., triton;dur=...``
(the page shows it), and when the response ends it counts the request and writes its log
line.  Endpoints are labelled by their route's template and unknown paths as ``other``, so a
scan of random URLs cannot grow the metrics without bound.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass

from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from d2_triton.gateway.logs import log_request

# Seconds: from a fraction of a second (a small image, the fast export) to a minute (the
# gateway's default Triton timeout).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UPLOAD_BUCKETS = tuple(2**power for power in range(10, 27, 2))  # 1 KiB .. 64 MiB
# A failed Triton call's kind, by the status the gateway answered it with (errors.py).
TRITON_FAILURE_KINDS = {504: "timeout", 503: "overloaded", 400: "refused"}


@dataclass
class RequestRecord:
    """What one request's endpoint found out, for its metrics and its log line."""

    pipeline: str = ""
    upload_bytes: int | None = None
    triton_s: float | None = None
    # The HTTP status a failed Triton call was answered with (errors.upstream_error).
    triton_failure: int | None = None


CURRENT: ContextVar[RequestRecord | None] = ContextVar("d2t_gateway_request", default=None)


def note(**found) -> None:
    """Set fields of the current request's record (``RequestRecord``'s names).

    Triton seconds add up (a request could make more than one call); outside a request (a
    test calling the service directly) nothing is recorded.
    """
    record = CURRENT.get()
    if record is None:
        return
    if found.get("triton_s") is not None:
        found["triton_s"] += record.triton_s or 0.0
    for name, value in found.items():
        setattr(record, name, value)


class GatewayMetrics:
    """The gateway's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "d2t_gateway_requests", "requests answered, by endpoint, pipeline and HTTP status",
            ("endpoint", "pipeline", "status"), registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "d2t_gateway_request_seconds", "time from request to response, in the gateway",
            ("endpoint",), buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.triton_latency = Histogram(
            "d2t_gateway_triton_seconds", "time of the Triton call of a detection",
            ("pipeline",), buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.upload_bytes = Histogram(
            "d2t_gateway_upload_bytes", "bytes of the images uploaded, by endpoint",
            ("endpoint",), buckets=UPLOAD_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.triton_failures = Counter(
            "d2t_gateway_triton_failures",
            "Triton calls that failed, by pipeline and kind (timeout, overloaded, refused, error)",
            ("pipeline", "kind"), registry=self.registry,
        )  # fmt: skip
        self.unauthorized = Counter(
            "d2t_gateway_unauthorized", "requests refused for a missing or wrong API key",
            registry=self.registry,
        )  # fmt: skip

    def count(self, endpoint: str, record: RequestRecord, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(endpoint, record.pipeline, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if record.upload_bytes is not None:
            self.upload_bytes.labels(endpoint).observe(record.upload_bytes)
        if record.triton_s is not None:
            self.triton_latency.labels(record.pipeline).observe(record.triton_s)
        if record.triton_failure is not None:
            kind = TRITON_FAILURE_KINDS.get(record.triton_failure, "error")
            self.triton_failures.labels(record.pipeline, kind).inc()
        if status == 401:  # only the API key check answers 401
            self.unauthorized.inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class ObservingMiddleware:
    """Times, counts and logs every HTTP request.

    Pure ASGI rather than ``BaseHTTPMiddleware``: the endpoint runs in this task, so it
    fills in the very ``RequestRecord`` set here, and responses pass through unbuffered.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with a fresh ``RequestRecord``; measure it on the way out."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord()
        token = CURRENT.set(record)
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before it answers

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", server_timing(started, record).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            CURRENT.reset(token)
            self.finish(scope, record, status, time.perf_counter() - started)

    def finish(self, scope: Scope, record: RequestRecord, status: int, seconds: float) -> None:
        """Count the request and write its log line."""
        self.metrics.count(endpoint_of(scope), record, status, seconds)
        log_request(
            {
                "method": scope["method"],
                "path": scope["path"],
                "pipeline": record.pipeline or None,
                "status": status,
                "total_ms": round(seconds * 1000, 1),
                "triton_ms": None if record.triton_s is None else round(record.triton_s * 1000, 1),
            }
        )


def endpoint_of(scope: Scope) -> str:
    """The request's route template (Starlette's match) or mount (static files), else other."""
    route = scope.get("route")
    if isinstance(route, APIRoute):
        return route.path
    path = scope["path"]
    for mount in getattr(scope.get("app"), "routes", ()):
        if isinstance(mount, Mount) and path.startswith(f"{mount.path}/"):
            return mount.path
    return "other"


def server_timing(started: float, record: RequestRecord) -> str:
    """``Server-Timing``: the gateway's total so far and, for a detection, Triton's part."""
    value = f"total;dur={(time.perf_counter() - started) * 1000:.1f}"
    if record.triton_s is not None:
        value += f", triton;dur={record.triton_s * 1000:.1f}"
    return value
