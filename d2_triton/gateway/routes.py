"""The endpoints: two that detect (JSON, PNG), two that describe (health, models), metrics.

Each router is built for one ``Gateway`` and the dependencies every protected endpoint gets
(the API key check when one is set); ``app.create_app`` mounts them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from d2_triton.client import RequestOptions
from d2_triton.client.render import render_png
from d2_triton.gateway.errors import UPSTREAM_ERRORS
from d2_triton.gateway.interface import (
    IMAGE_BODY,
    DetectionResponse,
    HealthResponse,
    JsonMaskFormat,
    ModelsResponse,
    PipelineEntry,
    PipelineHealth,
    TritonModelEntry,
    TritonState,
)
from d2_triton.gateway.observe import GatewayMetrics
from d2_triton.gateway.service import Gateway
from d2_triton.gateway.uploads import read_upload
from d2_triton.names import triton_mask_format

HEALTH_TIMEOUT_S = 5.0

ScoreThreshold = Annotated[
    float | None, Query(ge=0.0, le=1.0, description="keep detections with score >= this")
]
MaxDetections = Annotated[int | None, Query(ge=0, description="keep the N best detections")]
Model = Annotated[
    str | None,
    Query(
        description="the pipeline to ask (`GET /v1/models` lists them); default: "
        "the gateway's DEFAULT_MODEL"
    ),
]
Classes = Annotated[
    str | None,
    Query(
        min_length=1,
        description="comma-separated class ids and/or names to keep, e.g. `person,17`",
    ),
]
MaskFormat = Annotated[
    JsonMaskFormat, Query(description="masks as COCO RLE, as polygons, or not at all")
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
        """These options, and postprocess's ``mask_format``, as the ensemble's options."""
        return RequestOptions(
            score_threshold=self.score_threshold,
            max_detections=self.max_detections,
            classes=self.classes,
            mask_format=mask_format,
        )


def detection_router(gateway: Gateway, protected: list, errors: dict) -> APIRouter:
    """``POST /v1/detect`` (JSON) and ``POST /v1/detect/render`` (PNG)."""
    router = APIRouter(dependencies=protected)

    @router.post(
        "/v1/detect",
        response_model=DetectionResponse,
        response_model_exclude_none=True,
        responses=errors,
        openapi_extra=IMAGE_BODY,
        summary="Detect objects in an image",
    )
    async def detect(
        request: Request,
        options: Annotated[DetectionOptions, Depends()],
        mask_format: MaskFormat = "rle",
    ) -> dict[str, Any]:
        async with gateway.admitted(options.model) as pipeline:
            image = await read_upload(request, await gateway.byte_limit(pipeline))
            asked = options.request(triton_mask_format(mask_format))
            result = await gateway.detect(image, asked, pipeline)
        document = await run_in_threadpool(result.to_json, mask_format)
        return {"model": pipeline.name, **document}

    @router.post(
        "/v1/detect/render",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "the image with detections"},
            **errors,
        },
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

    return router


def health_router(gateway: Gateway) -> APIRouter:
    """``GET /health``: never behind the API key (load balancers and probes call it)."""
    router = APIRouter()

    @router.get(
        "/health",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "Triton is not ready"}},
        summary="Gateway and Triton readiness",
    )
    async def health() -> JSONResponse:
        try:
            state, pipelines = await asyncio.wait_for(
                asyncio.gather(gateway.client.readiness(), gateway.client.pipeline_health()),
                HEALTH_TIMEOUT_S,
            )
        except TimeoutError:
            state, pipelines = {"live": False, "ready": False, "ensemble_ready": False}, []
        ok = all(state.values())
        settings = gateway.settings
        body = HealthResponse(
            status="ok" if ok else "unavailable",
            gateway="ok",
            triton=TritonState(
                url=settings.triton_url,
                protocol=settings.triton_protocol,
                ensemble=gateway.client.ensemble,
                **state,
                model=gateway.client.ensemble,  # deprecated names of the same two facts
                model_ready=state["ensemble_ready"],
            ),
            pipelines=[PipelineHealth(**pipeline) for pipeline in pipelines],
        )
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    return router


def models_router(gateway: Gateway, protected: list, errors: dict) -> APIRouter:
    """``GET /v1/models``: the pipelines Triton serves, with their classes."""
    router = APIRouter(dependencies=protected)

    @router.get(
        "/v1/models",
        response_model=ModelsResponse,
        responses={code: errors[code] for code in (401, 502, 504) if code in errors},
        summary="The models (pipelines) Triton serves, with their classes",
    )
    async def models() -> ModelsResponse:
        try:
            index = await gateway.client.models()
            pipelines = await gateway.client.pipelines(index)
        except UPSTREAM_ERRORS as error:
            raise gateway.triton_failed(error) from None
        health = {entry["name"]: entry for entry in await gateway.client.pipeline_health()}
        for pipeline in pipelines:
            if pipeline["name"] in health:
                pipeline["health"] = PipelineHealth(**health[pipeline["name"]])
        if gateway.labels is not None:  # LABEL_MAPPING_FILE renames every model's classes
            for pipeline in pipelines:
                pipeline["classes"] = {
                    key: gateway.labels.name(int(key)) for key in pipeline["classes"]
                }
        entries = [triton_model_entry(entry) for entry in index]
        return ModelsResponse(
            triton=gateway.settings.triton_url,
            default_model=gateway.settings.default_model,
            models=[PipelineEntry(**pipeline) for pipeline in pipelines],
            triton_index=entries,
            triton_models=entries,  # deprecated: the same entries
        )

    return router


def triton_model_entry(entry: dict[str, Any]) -> TritonModelEntry:
    """One model of Triton's index as ``/v1/models`` lists it (the fields it knows)."""
    fields = TritonModelEntry.model_fields
    return TritonModelEntry(**{key: str(entry[key]) for key in fields if key in entry})


def metrics_router(metrics: GatewayMetrics) -> APIRouter:
    """``GET /metrics``: never behind the API key (Prometheus scrapes it, as ``/health``)."""
    router = APIRouter()

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus' format"}},
        summary="The gateway's metrics (Prometheus text format)",
    )
    async def metrics_endpoint() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
