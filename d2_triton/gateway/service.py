"""What the endpoints share: the pooled Triton client, pipeline lookup, limits and admission.

One ``Gateway`` per app.  It finds the pipeline a request names (asking Triton once), knows
the largest image and the number of requests each pipeline admits (read once from Triton,
with the gateway's settings as the fallback), and turns a failed Triton call into the
``GatewayError`` the client gets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from d2_triton.client import AsyncDetectionClient, RequestOptions
from d2_triton.client.results import DetectionResult
from d2_triton.errors import ModelConfigError
from d2_triton.gateway.admission import Admission
from d2_triton.gateway.errors import UPSTREAM_ERRORS, GatewayError, upstream_error
from d2_triton.gateway.observe import note
from d2_triton.gateway.settings import GatewaySettings
from d2_triton.model_config import DecodeLimits, PreprocessParameters
from d2_triton.names import ADMITTED_PER_INSTANCE, PipelineNames
from d2_triton.vision.labels import LabelMap

LOGGER = logging.getLogger("d2_triton.gateway")


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

    def triton_failed(self, error: BaseException) -> GatewayError:
        """What a failed Triton call answers the client, its kind noted for the metrics."""
        mapped = upstream_error(error, self.settings)
        note(triton_failure=mapped.status)
        return mapped

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
            raise self.triton_failed(error) from None
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

        The derived limit (``names.ADMITTED_PER_INSTANCE`` per detector instance, as the
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
        note(pipeline=pipeline.name)  # a known name: the metrics' labels stay bounded
        limit = await self.admission_limit(pipeline)
        async with self.admission.admit(pipeline.name, limit):
            yield pipeline

    async def detect(
        self, image: bytes, options: RequestOptions, pipeline: PipelineNames
    ) -> DetectionResult:
        """The pipeline's answer, relabelled if a label map is set; GatewayError if none.

        The call's time (and a failure's kind) go to the request's record (``observe``).
        """
        started = time.perf_counter()
        try:
            result = await self.client.detect(image, options, model=pipeline.name)
        except UPSTREAM_ERRORS as error:
            note(triton_s=time.perf_counter() - started)
            mapped = self.triton_failed(error)
            LOGGER.log(
                logging.INFO if mapped.status < 500 else logging.WARNING,
                "triton call failed (%d): %s",
                mapped.status,
                mapped.detail,
            )
            raise mapped from None
        note(triton_s=time.perf_counter() - started)
        return result.relabelled(self.labels) if self.labels else result
