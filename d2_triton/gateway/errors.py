"""What a failed request or Triton call becomes for the gateway's client.

Statuses are chosen from error types and status codes, never from message text: 400 for a
refused image or option, 413 for an upload over the limit (decided by the gateway itself,
see ``uploads``), 503 with ``Retry-After`` when the pipeline is at its admission limit
(the gateway's own, see ``admission``, or the front's), 502 when Triton cannot be reached or
fails, 504 when it does not answer in time.
"""

from __future__ import annotations

import aiohttp
from tritonclient.utils import InferenceServerException

from d2_triton.errors import D2TritonError
from d2_triton.gateway.settings import GatewaySettings
from d2_triton.names import RETRY_AFTER_S

# What a Triton call can raise when Triton refuses, fails or cannot be reached (gRPC errors
# arrive as InferenceServerException; HTTP transport errors as aiohttp's or OSError).
UPSTREAM_ERRORS = (InferenceServerException, aiohttp.ClientError, OSError, TimeoutError)
# Triton's "the request is invalid", over HTTP and over gRPC.
INVALID_REQUEST_STATUSES = ("400", "StatusCode.INVALID_ARGUMENT")
# The front's "too many requests in flight" (nginx answers gRPC's with HTTP 503 as well).
OVERLOADED_STATUSES = ("503",)


class GatewayError(D2TritonError):
    """An error answered as ``{"detail": detail}`` with HTTP ``status``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def overloaded(detail: str) -> GatewayError:
    """A 503 asking the client to retry after ``names.RETRY_AFTER_S`` seconds."""
    return GatewayError(
        503, f"overloaded: {detail}; retry later", {"Retry-After": str(RETRY_AFTER_S)}
    )


def upstream_error(error: BaseException, settings: GatewaySettings) -> GatewayError:
    """What a failed Triton call means for the gateway's client."""
    where = f"Triton at {settings.triton_url} ({settings.triton_protocol})"
    if isinstance(error, InferenceServerException):
        status = str(error.status() or "")
        message = error.message() or str(error)
        if status in INVALID_REQUEST_STATUSES:
            return GatewayError(400, message)
        if status in OVERLOADED_STATUSES:
            return overloaded(f"{where}: {message}")
        if status == "StatusCode.DEADLINE_EXCEEDED":
            return GatewayError(504, f"{where} did not answer within {settings.triton_timeout_s}s")
        if status == "StatusCode.UNAVAILABLE":
            return GatewayError(502, f"{where} is unreachable: {message}")
        return GatewayError(502, f"{where} failed ({status}): {message}")
    if isinstance(error, TimeoutError):  # asyncio's and aiohttp's timeouts
        return GatewayError(504, f"{where} did not answer within {settings.triton_timeout_s}s")
    if isinstance(error, (aiohttp.ClientConnectionError, OSError)):
        return GatewayError(502, f"{where} is unreachable: {type(error).__name__}: {error}")
    return GatewayError(502, f"{where} failed: {type(error).__name__}: {error}")
