"""The REST gateway: images in over plain HTTP, detections (or a picture of them) out.

It stays thin on purpose.  The ensemble already decodes, resizes, detects, filters, pastes
masks and names classes, so the gateway forwards the upload's bytes unchanged, passes the
query options through as Triton request parameters, and only reshapes the answer: JSON
(masks as COCO RLE or polygons) or a rendered PNG.

One ``AsyncDetectionClient`` (a pooled HTTP or one gRPC channel) serves every request; each
request awaits its own Triton call, so there is no queue shared between requests.  The
interface is in ``schema``, the error mapping in ``errors``, upload reading in ``uploads``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

import d2_triton
from d2_triton.client import AsyncDetectionClient, RequestOptions
from d2_triton.client.render import render_png
from d2_triton.client.results import DetectionResult
from d2_triton.errors import ModelConfigError
from d2_triton.gateway.admission import Admission
from d2_triton.gateway.errors import UPSTREAM_ERRORS, GatewayError, upstream_error
from d2_triton.gateway.interface import (
    API_KEY_HEADER,
    ERRORS,
    IMAGE_BODY,
    UNAUTHORIZED,
    DetectionResponse,
    HealthResponse,
    JsonMaskFormat,
    ModelEntry,
    ModelsResponse,
    PipelineEntry,
    TritonState,
)
from d2_triton.gateway.settings import GatewaySettings
from d2_triton.gateway.uploads import MULTIPART_OVERHEAD_BYTES, BodySizeLimit, read_upload
from d2_triton.model_config import PreprocessParameters
from d2_triton.names import ADMITTED_PER_INSTANCE, PipelineNames, triton_mask_format
from d2_triton.vision.imaging import DecodeLimits
from d2_triton.vision.labels import LabelMap

LOGGER = logging.getLogger("d2_triton.gateway")
HEALTH_TIMEOUT_S = 5.0

ScoreThreshold = Annotated[
    float | None, Query(ge=0.0, le=1.0, description="keep detections with score >= this")
]
MaxDetections = Annotated[int | None, Query(ge=0, description="keep the N best detections")]
Model = Annotated[
    str | None,
    Query(description="the pipeline to ask (`GET /v1/models` lists them); default: "
          "the gateway's DEFAULT_MODEL"),
]  # fmt: skip
Classes = Annotated[
    str | None,
    Query(
        min_length=1,
        description="comma-separated class ids and/or names to keep, e.g. `person,17`",
    ),
]


@dataclass
class DetectionOptions:
    """The query options of both detection endpoints: which pipeline, and what it returns.

    ``model`` picks the pipeline; the rest go to its ensemble unchanged.
    """

    model: Model = None
    score_threshold: ScoreThreshold = None
    max_detections: MaxDetections = None
    classes: Classes = None

    def request(self, mask_format: str) -> RequestOptions:
        """These options, and ``mask_format``, as the ensemble's request options."""
        return RequestOptions(
            score_threshold=self.score_threshold,
            max_detections=self.max_detections,
            classes=self.classes,
            mask_format=mask_format,
        )


class Gateway:
    """What the endpoints share: settings, the pooled Triton client, the label override."""

    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self.labels = (
            LabelMap.from_file(settings.label_mapping_file) if settings.label_mapping_file else None
        )
        self.render_limits = DecodeLimits(max_bytes=settings.max_upload_bytes)
        self.client: AsyncDetectionClient | None = None
        self._server_byte_limits: dict[str, int] = {}
        self._admission_limits: dict[str, int] = {}
        self._pipelines: set[str] = set()
        self.admission = Admission()

    async def open(self) -> None:
        """Create the pooled Triton client (inside the running event loop)."""
        self.client = AsyncDetectionClient(
            self.settings.triton_url,
            self.settings.triton_protocol,
            self.settings.default_model,
            timeout=self.settings.triton_timeout_s,
            connections=self.settings.triton_connections,
            admin_key=self.settings.admin_key,
        )

    async def close(self) -> None:
        """Close the Triton client."""
        if self.client is not None:
            await self.client.close()

    async def pipeline(self, model: str | None) -> PipelineNames:
        """The pipeline ``model`` names (None: the default); GatewayError 404 if Triton has none.

        Names already seen are trusted; an unknown one is asked of Triton (is its ensemble
        ready? a question that needs no admin key), so a pipeline loaded since is found.  A
        refusal names the pipelines there are, when the admin key lets the gateway list them.
        """
        name = model if model is not None else self.settings.default_model
        if name in self._pipelines:
            return PipelineNames(name)
        try:
            pipeline = PipelineNames(name)
        except ValueError:
            pipeline = None
        try:
            served = pipeline is not None and await self.client.is_served(pipeline.ensemble)
        except UPSTREAM_ERRORS as error:
            raise upstream_error(error, self.settings) from None
        if not served:
            raise GatewayError(404, f"no model {name!r} here; models: {await self._listing()}")
        self._pipelines.add(name)
        return pipeline

    async def _listing(self) -> str:
        """The pipelines Triton serves, for a refusal (Triton's statistics: the admin key)."""
        try:
            served = [
                PipelineNames.of_ensemble(entry["name"]) for entry in await self.client.models()
            ]
        except UPSTREAM_ERRORS:
            return "(not listed: the gateway cannot read Triton's statistics; TRITON_ADMIN_KEY)"
        return ", ".join(sorted(p.name for p in served if p is not None)) or "none"

    async def byte_limit(self, pipeline: PipelineNames) -> int:
        """The largest image to forward: the gateway's limit or preprocess's, the lower.

        preprocess's ``max_image_bytes`` is read once per pipeline from Triton; until Triton
        has answered, the gateway's own limit applies (and Triton still refuses what is over
        its own).
        """
        if pipeline.name not in self._server_byte_limits:
            try:
                parameters = await self.client.model_parameters(
                    pipeline.preprocess, PreprocessParameters
                )
            except (*UPSTREAM_ERRORS, ModelConfigError, KeyError):
                return self.settings.max_upload_bytes
            self._server_byte_limits[pipeline.name] = parameters.max_image_bytes
        return min(self.settings.max_upload_bytes, self._server_byte_limits[pipeline.name])

    async def admission_limit(self, pipeline: PipelineNames) -> int:
        """Detections admitted in flight for ``pipeline``: MAX_IN_FLIGHT, else derived.

        The derived limit (``schema.ADMITTED_PER_INSTANCE`` per detector instance, as the
        front's) is read once per pipeline from Triton; until Triton has answered, one
        instance is assumed.
        """
        if self.settings.max_in_flight is not None:
            return self.settings.max_in_flight
        if pipeline.name not in self._admission_limits:
            try:
                instances = await self.client.instances(pipeline.detector)
            except UPSTREAM_ERRORS:
                return ADMITTED_PER_INSTANCE
            self._admission_limits[pipeline.name] = ADMITTED_PER_INSTANCE * instances
        return self._admission_limits[pipeline.name]

    @asynccontextmanager
    async def admitted(self, model: str | None) -> AsyncIterator[PipelineNames]:
        """The pipeline ``model`` names, holding one of its places (503 when none is free)."""
        pipeline = await self.pipeline(model)
        limit = await self.admission_limit(pipeline)
        async with self.admission.admit(pipeline.name, limit):
            yield pipeline

    async def detect(
        self, image: bytes, options: RequestOptions, pipeline: PipelineNames
    ) -> DetectionResult:
        """The pipeline's answer, relabelled if a label map is set; GatewayError if none."""
        try:
            result = await self.client.detect(image, options, model=pipeline.name)
        except UPSTREAM_ERRORS as error:
            mapped = upstream_error(error, self.settings)
            LOGGER.log(
                logging.INFO if mapped.status < 500 else logging.WARNING,
                "triton call failed (%d): %s", mapped.status, mapped.detail,
            )  # fmt: skip
            raise mapped from None
        return result.relabelled(self.labels) if self.labels else result


API_KEY_SCHEME = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="the gateway's API key (API_KEY)"
)


def api_key_checker(expected: str):
    """A dependency refusing requests without the API key (401); compared in constant time."""

    async def check(key: str | None = Security(API_KEY_SCHEME)) -> None:
        if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
            raise GatewayError(
                401, f"missing or wrong API key (header {API_KEY_HEADER})",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )  # fmt: skip

    return check


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
        return JSONResponse(
            {"detail": error.detail}, status_code=error.status, headers=error.headers
        )

    # Every endpoint but /health, when an API key is set (documented in OpenAPI only then).
    protected = [Security(api_key_checker(settings.api_key))] if settings.api_key else []
    errors = {**ERRORS, **({401: UNAUTHORIZED} if settings.api_key else {})}

    @app.post(
        "/v1/detect",
        response_model=DetectionResponse,
        response_model_exclude_none=True,
        responses=errors,
        dependencies=protected,
        openapi_extra=IMAGE_BODY,
        summary="Detect objects in an image",
    )
    async def detect(
        request: Request,
        options: Annotated[DetectionOptions, Depends()],
        mask_format: Annotated[
            JsonMaskFormat, Query(description="masks as COCO RLE, as polygons, or not at all")
        ] = "rle",
    ) -> dict[str, Any]:
        async with gateway.admitted(options.model) as pipeline:
            image = await read_upload(request, await gateway.byte_limit(pipeline))
            result = await gateway.detect(
                image, options.request(triton_mask_format(mask_format)), pipeline
            )
        document = await run_in_threadpool(result.to_json, mask_format)
        return {"model": pipeline.name, **document}

    @app.post(
        "/v1/detect/render",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "the image with detections"},
            **errors,
        },
        dependencies=protected,
        openapi_extra=IMAGE_BODY,
        summary="Draw the detections on the image (PNG)",
    )
    async def detect_render(
        request: Request, options: Annotated[DetectionOptions, Depends()]
    ) -> Response:
        async with gateway.admitted(options.model) as pipeline:
            image = await read_upload(request, await gateway.byte_limit(pipeline))
            result = await gateway.detect(image, options.request("rle"), pipeline)
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
                model=gateway.client.model_name,
                **state,
            ),
        )
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get(
        "/v1/models",
        response_model=ModelsResponse,
        responses={code: errors[code] for code in (401, 502, 504) if code in errors},
        dependencies=protected,
        summary="The models (pipelines) Triton serves, with their classes",
    )
    async def models() -> ModelsResponse:
        try:
            index = await gateway.client.models()
            pipelines = await gateway.client.pipelines(index)
        except UPSTREAM_ERRORS as error:
            raise upstream_error(error, settings) from None
        if gateway.labels is not None:  # LABEL_MAPPING_FILE renames every model's classes
            for pipeline in pipelines:
                pipeline["classes"] = {
                    key: gateway.labels.name(int(key)) for key in pipeline["classes"]
                }
        return ModelsResponse(
            triton=settings.triton_url,
            default_model=settings.default_model,
            models=[PipelineEntry(**pipeline) for pipeline in pipelines],
            triton_models=[
                ModelEntry(
                    **{key: str(entry[key]) for key in ModelEntry.model_fields if key in entry}
                )
                for entry in index
            ],
        )

    return app
