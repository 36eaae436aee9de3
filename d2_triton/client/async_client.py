"""The asyncio client: one pooled connection shared by every task (the REST gateway's).

Besides detections it reads what the gateway needs to know of the server: readiness, the
pipelines served and their classes, a model's typed parameters and instance count.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from tritonclient.utils import InferenceServerException

from d2_triton import model_config, names
from d2_triton.client.clients import EnsembleClient, ensemble_result
from d2_triton.client.request_options import RequestOptions
from d2_triton.client.results import DetectionResult
from d2_triton.errors import ModelConfigError
from d2_triton.model_config import DetectorParameters, EnsembleParameters
from d2_triton.names import PipelineNames
from d2_triton.vision.labels import LabelMap

Parameters = TypeVar("Parameters")
# Statuses of a failed call that say Triton could not be asked (gRPC's, and the front's own
# HTTP answers when Triton is down or slow), as opposed to an answer about the model.
UNREACHABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "502", "503", "504")


class AsyncDetectionClient(EnsembleClient):
    """The asyncio twin of ``DetectionClient``: one pooled connection, shared by all tasks.

    HTTP keeps up to ``connections`` keep-alive connections (aiohttp); gRPC multiplexes every
    call over one channel.  Create it inside the running event loop.
    """

    MODULES: ClassVar[dict[str, str]] = {
        "http": "tritonclient.http.aio",
        "grpc": "tritonclient.grpc.aio",
    }

    def __init__(
        self,
        *args: Any,
        connections: int = 64,
        admin_key: Callable[[], str | None] | None = None,
        **kwargs: Any,
    ):
        self.connections = connections
        self.admin_key = admin_key
        super().__init__(*args, **kwargs)

    def _admin_headers(self) -> dict[str, str]:
        """The admin key header, for the APIs the launcher restricts (statistics)."""
        key = self.admin_key() if self.admin_key is not None else None
        name = names.ADMIN_HEADER if self.protocol == "http" else names.ADMIN_GRPC_METADATA
        return {name: key} if key else {}

    def _http_options(self) -> dict[str, Any]:
        return {"conn_limit": self.connections, "conn_timeout": self.timeout}

    async def detect(
        self,
        image_bytes: bytes,
        options: RequestOptions | None = None,
        *,
        model: str | None = None,
        **fields: Any,
    ) -> DetectionResult:
        """Detections for one encoded image; options and ``model`` as ``DetectionClient``'s."""
        response = await self._client.infer(**self._infer_call(image_bytes, options, fields, model))
        return ensemble_result(response, self.protocol)

    async def readiness(self) -> dict[str, bool]:
        """Server live/ready and ensemble ready; False for whatever cannot be reached."""
        checks = {
            "live": self._client.is_server_live,
            "ready": self._client.is_server_ready,
            "ensemble_ready": lambda **kw: self._client.is_model_ready(self.ensemble, **kw),
        }
        state = {}
        for name, check in checks.items():
            try:
                state[name] = bool(await check(**self._timeout()))
            except Exception:  # unreachable, refused, timed out: not ready
                state[name] = False
        return state

    async def pipeline_health(self) -> list[dict[str, Any]]:
        """Each pipeline's health from the launcher's status endpoint, through the front.

        Empty where nothing tells it: over gRPC (the endpoint is HTTP) or before a Triton
        without the project's launcher (404).
        """
        if self.protocol != "http":
            return []
        url = f"http://{self.url}{names.PIPELINE_HEALTH_PATH}"
        try:
            answer = await asyncio.to_thread(_read_json, url, min(self.timeout, 5.0))
        except (urllib.error.URLError, OSError, ValueError):
            return []
        return answer.get("pipelines", [])

    async def is_served(self, model: str) -> bool:
        """Whether Triton has ``model`` loaded; raises when Triton is unreachable.

        Its metadata, not its readiness, answers: a model that is loaded but not ready (its
        pipeline is being reloaded after a process died) is served, and soon answers again.
        """
        try:
            await self._client.get_model_metadata(model, **self._timeout())
        except InferenceServerException as error:  # an unknown model is answered so
            if str(error.status()) in UNREACHABLE:
                raise
            return False
        return True

    async def models(self) -> list[dict[str, str]]:
        """name, version and state (READY or UNAVAILABLE) of every model Triton has loaded.

        Read from the statistics and health APIs, not the repository index (the launcher
        keeps that to its reload watchdog); statistics want the admin key (``admin_key``).
        """
        headers = self._admin_headers()
        if self.protocol == "http":
            statistics = await self._client.get_inference_statistics(headers=headers)
        else:
            statistics = await self._client.get_inference_statistics(
                headers=headers, as_json=True, **self._timeout()
            )
        models = []
        for entry in statistics.get("model_stats", []):
            ready = await self._client.is_model_ready(
                entry["name"], entry.get("version", ""), **self._timeout()
            )
            models.append(
                {
                    "name": entry["name"],
                    "version": str(entry.get("version", "")),
                    "state": "READY" if ready else "UNAVAILABLE",
                }
            )
        return models

    async def pipelines(self, models: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
        """Every pipeline Triton serves: name, ensemble, state, version, precision, labels.

        A pipeline is an ensemble named as ``names.PipelineNames`` names them; its labels
        come from the ensemble's config (``EnsembleParameters``); ``weights`` is
        ``checkpoint``, or ``random`` for an export from a fixed-seed random initialisation
        (the detector config's ``weights_source``).  ``models``: what :meth:`models`
        answered, if the caller has it already.
        """
        found = []
        for entry in models if models is not None else await self.models():
            pipeline = PipelineNames.of_ensemble(entry["name"])
            if pipeline is None:
                continue
            about = await self.model_parameters(pipeline.ensemble, EnsembleParameters)
            detector = await self.model_parameters(pipeline.detector, DetectorParameters)
            found.append(
                {
                    "name": pipeline.name,
                    "ensemble": pipeline.ensemble,
                    "version": entry["version"],
                    "state": entry["state"],
                    "precision": about.precision.value,
                    "weights": detector.weights_source,
                    "classes": published_classes(about),
                }
            )
        return sorted(found, key=lambda pipeline: pipeline["name"])

    async def model_config(self, model: str) -> dict[str, Any]:
        """The config (JSON form) of a model Triton serves."""
        if self.protocol == "http":
            return await self._client.get_model_config(model)
        return (await self._client.get_model_config(model, as_json=True))["config"]

    async def model_parameters(self, model: str, parameters: type[Parameters]) -> Parameters:
        """The typed parameters (``d2_triton.model_config``) of a model Triton serves."""
        return model_config.from_model_config(parameters, await self.model_config(model))

    async def instances(self, model: str) -> int:
        """How many instances of ``model`` Triton runs (its config's ``instance_group``)."""
        groups = (await self.model_config(model)).get("instance_group", [])
        return sum(int(group.get("count", 1)) for group in groups) or 1

    async def close(self) -> None:
        """Close the pooled connection."""
        await self._client.close()


def published_classes(about: EnsembleParameters) -> dict[str, str]:
    """The class names an ensemble publishes, as ``{"id": "name"}``.

    ModelConfigError if its ``labels`` parameter is not a label map.
    """
    try:
        return LabelMap.from_json(json.loads(about.labels)).to_json()
    except ValueError as error:
        raise ModelConfigError(f"parameter 'labels': {error}") from None


def _read_json(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)
