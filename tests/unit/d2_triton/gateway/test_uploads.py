"""Upload limits: the body guard, and the server's own byte limit learnt from Triton."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from d2_triton.gateway.errors import GatewayError
from d2_triton.gateway.service import Gateway
from d2_triton.gateway.settings import GatewaySettings
from d2_triton.gateway.uploads import BodySizeLimit
from d2_triton.model_config import PreprocessParameters
from d2_triton.names import PipelineNames


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


class FakeTriton:
    """Answers each preprocess's parameters, or fails as an unreachable Triton does."""

    def __init__(self, max_image_bytes: dict[str, int] | None):
        self.max_image_bytes = max_image_bytes
        self.asked: list[str] = []

    async def model_parameters(self, model, parameters):
        self.asked.append(model)
        if self.max_image_bytes is None:
            raise InferenceServerException("connection refused", "StatusCode.UNAVAILABLE")
        return PreprocessParameters(
            min_size_test=800,
            max_size_test=1333,
            input_format="BGR",
            label_map="labels.json",
            max_image_bytes=self.max_image_bytes[model],
        )


def byte_limits(gateway_limit: int, server_limits: dict[str, int] | None, *pipelines: str):
    """The limit for each pipeline (asked twice each), and the models Triton was asked for."""
    gateway = Gateway(GatewaySettings(max_upload_bytes=gateway_limit))
    gateway.client = FakeTriton(server_limits)
    limits = [asyncio.run(_twice(gateway, PipelineNames(name))) for name in pipelines]
    return limits, gateway.client.asked


async def _twice(gateway: Gateway, pipeline: PipelineNames) -> int:
    first = await gateway.byte_limit(pipeline)
    assert await gateway.byte_limit(pipeline) == first
    return first


def test_the_lower_of_the_gateway_and_server_byte_limits_applies():
    """An image over preprocess's max_image_bytes is the gateway's 413, not Triton's 400."""
    assert byte_limits(1000, {"preprocess": 9}, "default") == ([9], ["preprocess"])  # kept
    assert byte_limits(1000, {"preprocess": 5000}, "default") == ([1000], ["preprocess"])


def test_each_pipeline_has_its_own_server_byte_limit():
    limits = {"preprocess": 9, "big_preprocess": 500}
    assert byte_limits(1000, limits, "default", "big") == (
        [9, 500],
        ["preprocess", "big_preprocess"],
    )


def test_until_triton_answers_the_gateway_limit_applies_and_it_asks_again():
    assert byte_limits(1000, None, "default") == ([1000], ["preprocess", "preprocess"])
