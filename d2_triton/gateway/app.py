"""The REST gateway: images in over plain HTTP, detections (or a picture of them) out.

It stays thin on purpose.  The ensemble already decodes, resizes, detects, filters, pastes
masks and names classes, so the gateway forwards the upload's bytes unchanged, passes the
query options through as Triton request parameters, and only reshapes the answer: JSON
(masks as COCO RLE or polygons) or a rendered PNG.

One ``AsyncDetectionClient`` (a pooled HTTP or one gRPC channel) serves every request; each
request awaits its own Triton call, so there is no queue shared between requests.  Errors
are mapped to what an HTTP client expects: 400 for a bad image or option, 413 for an
upload over the limit, 502 when Triton cannot be reached or fails, 504 when it times out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

import aiohttp
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tritonclient.utils import InferenceServerException

import d2_triton
from d2_triton.client import AsyncDetectionClient
from d2_triton.gateway.settings import GatewaySettings
from d2_triton.imaging import BYTE_LIMIT_PARAMETER, DecodeLimits
from d2_triton.labels import LabelMap
from d2_triton.render import render_png
from d2_triton.results import DetectionResult

LOGGER = logging.getLogger("d2_triton.gateway")
HEALTH_TIMEOUT_S = 5.0
# Room for multipart boundaries and headers around the image itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
UPLOAD_FIELD = "image"
# What a Triton call can raise when Triton refuses, fails or cannot be reached (gRPC errors
# arrive as InferenceServerException; HTTP transport errors as aiohttp's or OSError).
UPSTREAM_ERRORS = (InferenceServerException, aiohttp.ClientError, OSError, TimeoutError)


class GatewayError(Exception):
    """An error answered as ``{"detail": message}`` with ``status``."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


# -- response models (they are the OpenAPI schema clients and tests validate against) -------


class ErrorResponse(BaseModel):
    detail: str


class ImageSize(BaseModel):
    height: int
    width: int


class Mask(BaseModel):
    """COCO RLE (``counts``, decodable with ``pycocotools.mask.decode``) or polygons."""

    size: list[int] = Field(description="[height, width] of the original image")
    counts: str | None = Field(None, description="COCO compressed RLE (mask_format=rle)")
    polygons: list[list[float]] | None = Field(
        None, description="outer contours, each [x1, y1, x2, y2, ...] (mask_format=polygon)"
    )


class Detection(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in original-image pixels")
    score: float
    class_id: int
    label: str
    mask: Mask | None = None
    keypoints: list[list[float]] | None = Field(None, description="[x, y, logit] per keypoint")


class DetectionResponse(BaseModel):
    model: str
    image_size: ImageSize
    detections: list[Detection]


class TritonState(BaseModel):
    url: str
    protocol: str
    model: str
    live: bool
    ready: bool
    model_ready: bool


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    gateway: Literal["ok"]
    triton: TritonState


class ModelEntry(BaseModel):
    name: str
    version: str | None = None
    state: str | None = None
    reason: str | None = None


class ModelsResponse(BaseModel):
    triton: str
    ensemble: str
    models: list[ModelEntry]


# -- request handling ------------------------------------------------------------------------

IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The image file (JPEG or PNG): as a multipart upload in the field "
        f"`{UPLOAD_FIELD}`, or as the raw request body.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}},
                    "required": [UPLOAD_FIELD],
                }
            },
            **{
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in ("image/jpeg", "image/png", "application/octet-stream")
            },
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "not an acceptable image, or a bad option"},
    413: {"model": ErrorResponse, "description": "the upload is over the size limit"},
    502: {"model": ErrorResponse, "description": "Triton is unreachable or failed"},
    504: {"model": ErrorResponse, "description": "Triton did not answer in time"},
}

ScoreThreshold = Annotated[
    float | None, Query(ge=0.0, le=1.0, description="keep detections with score >= this")
]
MaxDetections = Annotated[int | None, Query(ge=0, description="keep the N best detections")]
Classes = Annotated[
    str | None,
    Query(
        min_length=1,
        description="comma-separated class ids and/or names to keep, e.g. `person,17`",
    ),
]


@dataclass
class DetectionOptions:
    """The query options both detection endpoints pass on to the ensemble unchanged."""

    score_threshold: ScoreThreshold = None
    max_detections: MaxDetections = None
    classes: Classes = None


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with a 413, without buffering them first.

    A declared Content-Length over the limit is refused before any byte is read; a body that
    grows past it (chunked uploads) is cut off as soon as it does.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": self._message(int(declared))}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise GatewayError(413, self._message(received))
            return message

        await self.app(scope, limited_receive, send)

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes is over the gateway's limit of {self.max_bytes}"


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The image bytes of a multipart upload (field ``image``) or of the raw body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get(UPLOAD_FIELD)
            if upload is None or isinstance(upload, str):
                raise GatewayError(
                    400, f"multipart upload needs a file in the field {UPLOAD_FIELD!r}"
                )
            data = await upload.read()
    else:
        data = await request.body()
    if len(data) > max_bytes:
        raise GatewayError(
            413, f"image is {len(data)} bytes, over the gateway's limit of {max_bytes} bytes"
        )
    return data


def upstream_error(error: BaseException, settings: GatewaySettings) -> GatewayError:
    """What a failed Triton call means for the gateway's client."""
    where = f"Triton at {settings.triton_url} ({settings.triton_protocol})"
    if isinstance(error, InferenceServerException):
        status = str(error.status() or "")
        message = error.message() or str(error)
        if status in ("400", "StatusCode.INVALID_ARGUMENT"):
            return GatewayError(413 if BYTE_LIMIT_PARAMETER in message else 400, message)
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


class Gateway:
    """What the endpoints share: settings, the pooled Triton client, the label override."""

    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self.labels = (
            LabelMap.from_file(settings.label_mapping_file) if settings.label_mapping_file else None
        )
        self.render_limits = DecodeLimits(max_bytes=settings.max_upload_bytes)
        self.client: AsyncDetectionClient | None = None

    async def open(self) -> None:
        self.client = AsyncDetectionClient(
            self.settings.triton_url,
            self.settings.triton_protocol,
            self.settings.triton_model_name,
            timeout=self.settings.triton_timeout_s,
            connections=self.settings.triton_connections,
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def detect(self, image: bytes, **options: Any) -> DetectionResult:
        try:
            result = await self.client.detect(image, **options)
        except UPSTREAM_ERRORS as error:
            mapped = upstream_error(error, self.settings)
            LOGGER.log(
                logging.INFO if mapped.status < 500 else logging.WARNING,
                "triton call failed (%d): %s", mapped.status, mapped.detail,
            )  # fmt: skip
            raise mapped from None
        return result.relabelled(self.labels) if self.labels else result


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The ASGI app; settings default to the environment (see ``GatewaySettings``)."""
    settings = settings or GatewaySettings.from_env()
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gateway.open()
        try:
            yield
        finally:
            await gateway.close()

    docs = settings.docs_enabled
    app = FastAPI(
        title="d2-triton gateway",
        version=d2_triton.__version__,
        description="Detectron2 detections from images, served by a Triton ensemble.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    )

    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, error: GatewayError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status)

    @app.post(
        "/v1/detect",
        response_model=DetectionResponse,
        response_model_exclude_none=True,
        responses=ERRORS,
        openapi_extra=IMAGE_BODY,
        summary="Detect objects in an image",
    )
    async def detect(
        request: Request,
        options: Annotated[DetectionOptions, Depends()],
        mask_format: Annotated[
            Literal["rle", "polygon", "none"],
            Query(description="masks as COCO RLE, as polygons, or not at all"),
        ] = "rle",
    ) -> dict[str, Any]:
        image = await read_upload(request, settings.max_upload_bytes)
        result = await gateway.detect(
            image, mask_format="none" if mask_format == "none" else "rle", **asdict(options)
        )
        document = await run_in_threadpool(result.to_json, mask_format)
        return {"model": settings.triton_model_name, **document}

    @app.post(
        "/v1/detect/render",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "the image with detections"},
            **ERRORS,
        },
        openapi_extra=IMAGE_BODY,
        summary="Draw the detections on the image (PNG)",
    )
    async def detect_render(
        request: Request, options: Annotated[DetectionOptions, Depends()]
    ) -> Response:
        image = await read_upload(request, settings.max_upload_bytes)
        result = await gateway.detect(image, mask_format="rle", **asdict(options))
        png = await run_in_threadpool(render_png, image, result, gateway.render_limits)
        return Response(png, media_type="image/png")

    @app.get(
        "/health",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "Triton is not ready"}},
        summary="Gateway and Triton readiness",
    )
    async def health() -> JSONResponse:
        try:
            state = await asyncio.wait_for(gateway.client.readiness(), HEALTH_TIMEOUT_S)
        except TimeoutError:
            state = {"live": False, "ready": False, "model_ready": False}
        ok = all(state.values())
        body = HealthResponse(
            status="ok" if ok else "unavailable",
            gateway="ok",
            triton=TritonState(
                url=settings.triton_url,
                protocol=settings.triton_protocol,
                model=settings.triton_model_name,
                **state,
            ),
        )
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get(
        "/v1/models",
        response_model=ModelsResponse,
        responses={502: ERRORS[502], 504: ERRORS[504]},
        summary="The models Triton serves",
    )
    async def models() -> ModelsResponse:
        try:
            index = await gateway.client.models()
        except UPSTREAM_ERRORS as error:
            raise upstream_error(error, settings) from None
        return ModelsResponse(
            triton=settings.triton_url,
            ensemble=settings.triton_model_name,
            models=[
                ModelEntry(
                    **{key: str(entry[key]) for key in ModelEntry.model_fields if key in entry}
                )
                for entry in index
            ],
        )

    return app
