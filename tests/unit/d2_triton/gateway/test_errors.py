"""What a failed Triton call becomes: chosen by error type and status code."""

from __future__ import annotations

import aiohttp
import pytest
from tritonclient.utils import InferenceServerException

from d2_triton.gateway.errors import UPSTREAM_ERRORS, upstream_error
from d2_triton.gateway.settings import GatewaySettings

SETTINGS = GatewaySettings()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InferenceServerException("preprocess: not an image", status="400"), 400),
        (InferenceServerException("postprocess: bad option", "StatusCode.INVALID_ARGUMENT"), 400),
        # A refusal is a 400 whatever it says; 413 is the gateway's own decision (uploads).
        (InferenceServerException("9 bytes (model parameter max_image_bytes)", "400"), 400),
        (InferenceServerException("connection refused", "StatusCode.UNAVAILABLE"), 502),
        (InferenceServerException("too slow", "StatusCode.DEADLINE_EXCEEDED"), 504),
        (InferenceServerException("detector: internal error", status="500"), 502),
        # The front's admission limit: the client is told to come back, not that it failed.
        (InferenceServerException("overloaded: too many requests", status="503"), 503),
        (TimeoutError(), 504),
        (ConnectionRefusedError(111, "Connection refused"), 502),
        (aiohttp.ServerDisconnectedError(), 502),
        (aiohttp.ClientPayloadError("cut short"), 502),
    ],
)
def test_triton_failures_map_to_http_statuses(error, status):
    mapped = upstream_error(error, SETTINGS)
    assert mapped.status == status
    assert isinstance(error, UPSTREAM_ERRORS)  # what the endpoints catch
    if status == 502 and isinstance(error, (OSError, aiohttp.ClientConnectionError)):
        assert "unreachable" in mapped.detail
    if status == 400:
        assert mapped.detail == error.message()  # the model's own words reach the client
    if status == 503:
        assert mapped.headers == {"Retry-After": "2"}
