"""The gateway's parts without a server: settings, error mapping, body limits, JSON, drawing.

The integration tests run the same code against real Triton and uvicorn processes; here
each decision is pinned down where it is made.
"""

from __future__ import annotations

import json

import aiohttp
import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from d2_triton.detections import decode_rle, mask_to_polygons
from d2_triton.gateway.app import UPSTREAM_ERRORS, BodySizeLimit, GatewayError, upstream_error
from d2_triton.gateway.settings import GatewaySettings, SettingsError
from d2_triton.render import colour_of, draw_detections
from d2_triton.results import DetectionResult, exact_float

# -- settings ---------------------------------------------------------------------------------


def test_settings_come_from_the_environment():
    settings = GatewaySettings.from_env(
        {"HOST": "127.0.0.1", "PORT": "9000", "mode": "develop", "TRITON_HOST": "triton",
         "TRITON_PROTOCOL": "grpc", "TRITON_MODEL_NAME": "my_ensemble"}
    )  # fmt: skip
    assert (settings.host, settings.port, settings.triton_url) == ("127.0.0.1", 9000, "triton:8001")
    assert settings.triton_model_name == "my_ensemble"
    assert settings.reload and settings.docs_enabled and settings.log_level == "info"
    production = GatewaySettings.from_env({})
    assert production.triton_url == "localhost:8000"
    assert not production.reload and not production.docs_enabled
    assert GatewaySettings.from_env({"MODE": "Debug"}).log_level == "debug"


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"mode": "fast"}, "mode must be one of"),
        ({"TRITON_PROTOCOL": "ws"}, "TRITON_PROTOCOL"),
        ({"PORT": "eighty"}, "invalid gateway setting"),
        ({"LABEL_MAPPING_FILE": "/nowhere/labels.json"}, "does not exist"),
        ({"MAX_UPLOAD_BYTES": "0"}, "MAX_UPLOAD_BYTES must be positive"),
    ],
)
def test_bad_settings_name_the_variable(environment, message):
    with pytest.raises(SettingsError, match=message):
        GatewaySettings.from_env(environment)


# -- what a failed Triton call becomes ---------------------------------------------------------

SETTINGS = GatewaySettings()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InferenceServerException("preprocess: not an image", status="400"), 400),
        (InferenceServerException("postprocess: bad option", "StatusCode.INVALID_ARGUMENT"), 400),
        (InferenceServerException("9 bytes (model parameter max_image_bytes)", "400"), 413),
        (InferenceServerException("connection refused", "StatusCode.UNAVAILABLE"), 502),
        (InferenceServerException("too slow", "StatusCode.DEADLINE_EXCEEDED"), 504),
        (InferenceServerException("detector: internal error", status="500"), 502),
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


# -- request body limit ------------------------------------------------------------------------


def limited_app(max_bytes: int) -> TestClient:
    app = FastAPI()
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes)

    @app.exception_handler(GatewayError)
    async def handle(_, error: GatewayError):
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": error.detail}, status_code=error.status)

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"size": len(await request.body())}

    return TestClient(app)


def test_bodies_over_the_limit_are_refused_declared_or_streamed():
    client = limited_app(max_bytes=100)
    assert client.post("/echo", content=b"x" * 100).json() == {"size": 100}
    declared = client.post("/echo", content=b"x" * 101)
    assert declared.status_code == 413 and "limit of 100" in declared.json()["detail"]
    streamed = client.post("/echo", content=(b"x" * 40 for _ in range(3)))  # chunked, no length
    assert streamed.status_code == 413


# -- JSON --------------------------------------------------------------------------------------


def square_result() -> DetectionResult:
    from d2_triton.detections import compress_rle_counts, region_to_rle_counts

    mask = np.zeros((40, 60), bool)
    mask[10:30, 20:50] = True
    counts = region_to_rle_counts(mask[10:30, 20:50], (20, 10, 50, 30), (40, 60))
    return DetectionResult(
        image_size=(40, 60),
        boxes=np.array([[20.1, 10.2, 49.7, 29.9]], np.float32),
        scores=np.array([0.9], np.float32),
        classes=np.array([3], np.int32),
        labels=["motorcycle"],
        masks_rle=[compress_rle_counts(counts, (40, 60))],
    )


def test_json_floats_are_short_and_exact():
    assert exact_float(np.float32(0.9)) == 0.9
    assert np.float32(exact_float(np.float32(1 / 3))) == np.float32(1 / 3)
    document = square_result().to_json()
    assert json.dumps(document["detections"][0]["score"]) == "0.9"
    assert document["detections"][0]["box"] == [20.1, 10.2, 49.7, 29.9]
    round_trip = DetectionResult.from_json(json.loads(json.dumps(document)))
    np.testing.assert_array_equal(round_trip.boxes, square_result().boxes)
    assert round_trip.masks_rle == square_result().masks_rle


def test_polygons_trace_the_mask_at_pixel_centres():
    result = square_result()
    polygons = result.to_json("polygon")["detections"][0]["mask"]["polygons"]
    assert len(polygons) == 1
    corners = np.array(polygons[0]).reshape(-1, 2)
    assert corners.min(axis=0).tolist() == [20.5, 10.5]
    assert corners.max(axis=0).tolist() == [49.5, 29.5]
    assert mask_to_polygons(np.zeros((5, 5), bool)) == []
    assert "mask" not in result.to_json("none")["detections"][0]
    with pytest.raises(ValueError, match="mask_format"):
        result.to_json("png")


# -- drawing -----------------------------------------------------------------------------------


def test_drawing_touches_the_detection_and_nothing_far_from_it():
    result = square_result()
    image = np.full((40, 60, 3), 200, np.uint8)
    drawn = np.asarray(draw_detections(image, result))
    changed = np.any(drawn != image, axis=-1)
    mask = decode_rle(result.masks_rle[0], (40, 60))
    assert changed[mask].all()
    assert not changed[35:, :].any() and not changed[:, :15].any()
    assert tuple(drawn[20, 21]) == colour_of(3)  # the box outline
    with pytest.raises(ValueError, match="detections are for 60x40"):
        draw_detections(np.zeros((10, 10, 3), np.uint8), result)
