"""The status endpoint's gRPC half: ``ServerReady`` and ``ModelReady`` that tell the truth.

The front passes gRPC through to Triton whole, except these two calls of Triton's
``inference.GRPCInferenceService`` (``front.GRPC_READINESS_CALLS``), which it sends here.
A gRPC client (the gateway with ``TRITON_PROTOCOL=grpc``, ``tritonclient.grpc``'s
``is_model_ready``) then hears what an HTTP client hears from ``d2_triton.server.status``:
not ready while a pipeline is broken or reloading, else Triton's own answer.
"""

from __future__ import annotations

import urllib.parse
from concurrent import futures

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from d2_triton.server.settings import LOOPBACK
from d2_triton.server.status import StatusSource


class _Readiness(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Triton's readiness calls, answered from the launcher's knowledge, then Triton's."""

    def __init__(self, source: StatusSource):
        self.source = source

    def ServerReady(self, request, context):  # noqa: N802 (gRPC's method names)
        """Ready as ``/v2/health/ready`` through the front answers."""
        return service_pb2.ServerReadyResponse(ready=self.source.server_not_ready() is None)

    def ModelReady(self, request, context):  # noqa: N802
        """Ready only if the model's pipeline is and Triton says the model is."""
        name = urllib.parse.quote(request.name, safe="")
        version = f"/versions/{urllib.parse.quote(request.version)}" if request.version else ""
        ready = (
            self.source.model_not_ready(request.name) is None
            and self.source.triton_status(f"/v2/models/{name}{version}/ready") == 200
        )
        return service_pb2.ModelReadyResponse(ready=ready)


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
