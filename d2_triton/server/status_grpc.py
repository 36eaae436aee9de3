"""The status endpoint's gRPC half: ``ServerReady`` and ``ModelReady`` that tell the truth.

The front passes gRPC through to Triton whole, except these two calls of Triton's
``inference.GRPCInferenceService`` (``front.GRPC_READINESS_CALLS``), which it sends here.
A gRPC client (the gateway with ``TRITON_PROTOCOL=grpc``, ``tritonclient.grpc``'s
``is_model_ready``) then hears what an HTTP client hears from ``d2_triton.server.status``:
not ready while a pipeline is broken or reloading, else Triton's own answer.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from concurrent import futures

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from d2_triton.server.options import LOOPBACK
from d2_triton.server.status import TRITON_TIMEOUT_S, StatusSource


class _Readiness(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Triton's readiness calls, answered from the launcher's knowledge, then Triton's."""

    def __init__(self, source: StatusSource):
        self.source = source

    def ServerReady(self, request, context):  # noqa: N802 (gRPC's method names)
        """Ready only if the launcher knows of nothing broken and Triton says ready."""
        ready = self.source.not_ready() is None and self._triton("/v2/health/ready")
        return service_pb2.ServerReadyResponse(ready=ready)

    def ModelReady(self, request, context):  # noqa: N802
        """Ready only if the model's pipeline is and Triton says the model is."""
        name = urllib.parse.quote(request.name, safe="")
        version = f"/versions/{urllib.parse.quote(request.version)}" if request.version else ""
        ready = self.source.model_not_ready(request.name) is None and self._triton(
            f"/v2/models/{name}{version}/ready"
        )
        return service_pb2.ModelReadyResponse(ready=ready)

    def _triton(self, path: str) -> bool:
        try:
            url = f"http://{self.source.triton_http}{path}"
            with urllib.request.urlopen(url, timeout=TRITON_TIMEOUT_S) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False


class GrpcStatusServer:
    """The gRPC half of the status endpoint on ``127.0.0.1:port``."""

    def __init__(self, port: int, source: StatusSource):
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            _Readiness(source), self._server
        )
        self._server.add_insecure_port(f"{LOOPBACK}:{port}")

    def start(self) -> GrpcStatusServer:
        """Serve in the background."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving (calls in flight get a second to finish)."""
        self._server.stop(grace=1.0).wait()
