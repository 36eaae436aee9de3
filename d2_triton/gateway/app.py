"""The REST gateway: images in over plain HTTP, detections (or a picture of them) out.

It stays thin on purpose.  The ensemble already decodes, resizes, detects, filters, pastes
masks and names classes, so the gateway forwards the upload's bytes unchanged, passes the
query options through as Triton request parameters, and only reshapes the answer: JSON
(masks as COCO RLE or polygons) or a rendered PNG.

One ``AsyncDetectionClient`` (a pooled HTTP or one gRPC channel) serves every request; each
request awaits its own Triton call, so there is no queue shared between requests.  Here the
app is wired: the endpoints are in ``routes``, what they share in ``service``, the interface
in ``interface``, the error mapping in ``errors``, upload reading in ``uploads``, the
metrics and request log in ``observe``, the docs and the page to try a model in ``pages``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Security
from fastapi.responses import JSONResponse

import d2_triton
from d2_triton.gateway.api_key import api_key_checker
from d2_triton.gateway.errors import GatewayError
from d2_triton.gateway.interface import ERRORS, UNAUTHORIZED
from d2_triton.gateway.observe import GatewayMetrics, ObservingMiddleware
from d2_triton.gateway.pages import add_docs, add_page
from d2_triton.gateway.routes import (
    detection_router,
    health_router,
    metrics_router,
    models_router,
)
from d2_triton.gateway.service import Gateway
from d2_triton.gateway.settings import GatewaySettings
from d2_triton.gateway.uploads import MULTIPART_OVERHEAD_BYTES, BodySizeLimit


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

    metrics = GatewayMetrics()
    app = FastAPI(
        title="d2-triton gateway",
        version=d2_triton.__version__,
        description="Detectron2 detections from images, served by a Triton ensemble.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own load Swagger UI and ReDoc from a CDN: see pages
        redoc_url=None,
    )
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    )
    # Outermost: it also times and counts what the size limit refuses.
    app.add_middleware(ObservingMiddleware, metrics=metrics)
    app.add_exception_handler(GatewayError, gateway_error_response)
    # Every endpoint but /health, when an API key is set (documented in OpenAPI only then).
    protected = [Security(api_key_checker(settings.api_key))] if settings.api_key else []
    errors = {**ERRORS, **({401: UNAUTHORIZED} if settings.api_key else {})}
    app.include_router(detection_router(gateway, protected, errors))
    app.include_router(health_router(gateway))
    app.include_router(models_router(gateway, protected, errors))
    app.include_router(metrics_router(metrics))
    if settings.docs_enabled:
        add_docs(app)
    if settings.ui_enabled:
        add_page(app)
    return app


async def gateway_error_response(_: Request, error: GatewayError) -> JSONResponse:
    """A ``GatewayError`` as ``{"detail": ...}`` with its status and headers."""
    return JSONResponse({"detail": error.detail}, status_code=error.status, headers=error.headers)
