"""The thin clients: send the raw bytes of an image to the ensemble, get detections back.

All shaping (decode, resize, model, rescale, masks, labels) happens in the server, so a
client is only a Triton infer call plus a readable result.  As a library::

    from d2_triton.client import DetectionClient
    with DetectionClient("localhost:8000") as client:          # or ("localhost:8001", "grpc")
        result = client.detect(open("photo.jpg", "rb").read(), score_threshold=0.5)
    for detection in result.to_json()["detections"]:
        print(detection["label"], detection["score"], detection["box"])

``AsyncDetectionClient`` is the same over asyncio, with one pooled connection (the REST
gateway uses it).  As a command::

    python -m d2_triton.client infer photo.jpg [--json] [--render out.png] [--model NAME]
    python -m d2_triton.client infer photo.jpg --gateway http://localhost:8080

``model`` names the pipeline (``export --name``); without it, the default pipeline answers.

It talks to Triton at ``TRITON_HOST``:``TRITON_PORT`` (default localhost, 8000 for HTTP and
8001 for gRPC) unless ``--url`` is given, or to the REST gateway with ``--gateway``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
from tritonclient.utils import InferenceServerException

from d2_triton import model_config, names
from d2_triton.client.results import DetectionResult
from d2_triton.errors import InvalidArgumentError
from d2_triton.model_config import EnsembleParameters
from d2_triton.names import DEFAULT_PIPELINE, PipelineNames

PROTOCOLS = ("http", "grpc")

__all__ = [
    "AsyncDetectionClient",
    "DetectionClient",
    "DetectionResult",
    "RequestOptions",
    "detect",
]

Parameters = TypeVar("Parameters")


def default_url(protocol: str = "http") -> str:
    host = os.environ.get("TRITON_HOST", "localhost")
    port = os.environ.get("TRITON_PORT", str(names.DEFAULT_PORTS[protocol]))
    return f"{host}:{port}"


@dataclass(frozen=True)
class RequestOptions:
    """The per-request options, sent as Triton request parameters (None: the server's default).

    Attributes:
        score_threshold: keep detections with ``score >= score_threshold``.
        max_detections: keep at most this many, highest scores first.
        classes: class ids and/or names to keep, as a comma-separated string or a list.
        mask_format: one of ``d2_triton.names.MASK_FORMATS``.
    """

    score_threshold: float | None = None
    max_detections: int | None = None
    classes: str | Sequence[str | int] | None = None
    mask_format: str | None = None

    def to_parameters(self) -> dict[str, Any]:
        """Triton request parameters for the options that are set."""
        parameters: dict[str, Any] = {}
        if self.score_threshold is not None:
            parameters["score_threshold"] = float(self.score_threshold)
        if self.max_detections is not None:
            parameters["max_detections"] = int(self.max_detections)
        if self.classes is not None:
            classes = self.classes
            if not isinstance(classes, str):
                classes = ",".join(str(item) for item in classes)
            parameters["classes"] = classes
        if self.mask_format is not None:
            parameters["mask_format"] = self.mask_format
        return parameters


def request_parameters(options: RequestOptions | None = None, **fields: Any) -> dict[str, Any]:
    """Triton request parameters from ``options``, or from RequestOptions' field names."""
    if options is not None and fields:
        raise InvalidArgumentError("pass RequestOptions or its fields, not both")
    return (options or RequestOptions(**fields)).to_parameters()


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise InvalidArgumentError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def _image_input(triton: Any, image_bytes: bytes) -> Any:
    """The ensemble's one input: the file's bytes as UINT8 [n]."""
    payload = np.frombuffer(image_bytes, dtype=np.uint8)
    tensor = triton.InferInput(names.IMAGE_BYTES, [payload.size], "UINT8")
    tensor.set_data_from_numpy(payload)
    return tensor


def _result(response: Any, protocol: str) -> DetectionResult:
    """Every output the server returned (which ones depends on the model and options)."""
    if protocol == "http":
        described = response.get_response()["outputs"]
    else:
        described = response.get_response(as_json=True)["outputs"]
    names = [output["name"] for output in described]
    return DetectionResult.from_outputs({name: response.as_numpy(name) for name in names})


class _EnsembleClient:
    """What the sync and async clients share: where the ensemble is and how to call it.

    Args:
        url: Triton's host:port (default: ``TRITON_HOST``:``TRITON_PORT``).
        protocol: ``http`` or ``grpc``.
        model: the pipeline to call when ``detect`` names none (``export --name``); its
            ensemble is ``PipelineNames(model).ensemble``.  ValueError if not a valid name.
        timeout: seconds to wait for an answer.
    """

    # tritonclient's module for each protocol.
    MODULES: ClassVar[dict[str, str]] = {"http": "tritonclient.http", "grpc": "tritonclient.grpc"}

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "http",
        model: str = DEFAULT_PIPELINE,
        timeout: float = 120.0,
    ):
        _check_protocol(protocol)
        self.protocol = protocol
        self.pipeline = PipelineNames(model)
        self.url = url or default_url(protocol)
        self.timeout = timeout
        self._triton = importlib.import_module(self.MODULES[protocol])
        options = self._http_options() if protocol == "http" else {}
        self._client = self._triton.InferenceServerClient(self.url, **options)

    def _http_options(self) -> dict[str, Any]:
        """What the HTTP client's constructor takes (gRPC's takes nothing more)."""
        return {"connection_timeout": self.timeout, "network_timeout": self.timeout}

    def _timeout(self) -> dict[str, float]:
        """GRPC takes a timeout per call; HTTP clients get theirs when created."""
        return {} if self.protocol == "http" else {"client_timeout": self.timeout}

    @property
    def model_name(self) -> str:
        """The Triton model ``detect`` calls by default: the pipeline's ensemble."""
        return self.pipeline.ensemble

    def _infer_call(
        self,
        image_bytes: bytes,
        options: RequestOptions | None,
        fields: dict[str, Any],
        model: str | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments of the ensemble's infer call (sync and async alike)."""
        pipeline = self.pipeline if model is None else PipelineNames(model)
        return {
            "model_name": pipeline.ensemble,
            "inputs": [_image_input(self._triton, image_bytes)],
            "parameters": request_parameters(options, **fields),
            **self._timeout(),
        }


class DetectionClient(_EnsembleClient):
    """A synchronous Triton client for the ensemble (HTTP or gRPC); arguments as the base's."""

    def detect(
        self,
        image_bytes: bytes,
        options: RequestOptions | None = None,
        *,
        model: str | None = None,
        **fields: Any,
    ) -> DetectionResult:
        """Detections for one encoded image; options as RequestOptions or its field names.

        ``model`` names the pipeline to ask (default: the client's).
        """
        response = self._client.infer(**self._infer_call(image_bytes, options, fields, model))
        return _result(response, self.protocol)

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def __enter__(self) -> DetectionClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncDetectionClient(_EnsembleClient):
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
        return _result(response, self.protocol)

    async def readiness(self) -> dict[str, bool]:
        """Server live/ready and model ready; False for whatever cannot be reached."""
        checks = {
            "live": self._client.is_server_live,
            "ready": self._client.is_server_ready,
            "model_ready": lambda **kw: self._client.is_model_ready(self.model_name, **kw),
        }
        state = {}
        for name, check in checks.items():
            try:
                state[name] = bool(await check(**self._timeout()))
            except Exception:  # unreachable, refused, timed out: not ready
                state[name] = False
        return state

    async def is_served(self, model: str) -> bool:
        """Whether Triton has ``model`` loaded and ready; raises when Triton is unreachable."""
        try:
            return bool(await self._client.is_model_ready(model, **self._timeout()))
        except InferenceServerException as error:  # gRPC answers an unknown model so
            if str(error.status()) in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"):
                raise
            return False

    async def models(self) -> list[dict[str, str]]:
        """name, version and state (READY or UNAVAILABLE) of every model Triton has loaded.

        Read from the statistics and health APIs, not the repository index (the launcher
        keeps that to its stub watchdog); statistics want the admin key (``admin_key``).
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
            models.append({
                "name": entry["name"],
                "version": str(entry.get("version", "")),
                "state": "READY" if ready else "UNAVAILABLE",
            })  # fmt: skip
        return models

    async def pipelines(self, models: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
        """Every pipeline Triton serves: name, ensemble, state, version and class labels.

        A pipeline is an ensemble named as ``names.PipelineNames`` names them; its labels
        come from the ensemble's config (``EnsembleParameters``).  ``models``: what
        :meth:`models` answered, if the caller has it already.
        """
        found = []
        for entry in models if models is not None else await self.models():
            pipeline = PipelineNames.of_ensemble(entry["name"])
            if pipeline is None:
                continue
            labels = await self.model_parameters(pipeline.ensemble, EnsembleParameters)
            found.append({
                "name": pipeline.name,
                "ensemble": pipeline.ensemble,
                "version": entry["version"],
                "state": entry["state"],
                "classes": labels.label_map.to_json(),
            })  # fmt: skip
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


def detect(
    image_bytes: bytes,
    url: str | None = None,
    protocol: str = "http",
    model: str = DEFAULT_PIPELINE,
    **fields: Any,
) -> DetectionResult:
    """One-shot convenience wrapper around ``DetectionClient.detect``."""
    with DetectionClient(url, protocol, model) as client:
        return client.detect(image_bytes, **fields)
