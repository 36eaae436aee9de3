"""The synchronous Triton client of a pipeline's ensemble, and what the async one shares.

A detection is one infer call on the ensemble with the image file's bytes as its only input
and the request options as Triton request parameters; every output the server returns
becomes a ``DetectionResult``.
"""

from __future__ import annotations

import importlib
import os
import warnings
from typing import Any, ClassVar

import numpy as np

from d2_triton import names
from d2_triton.client.request_options import RequestOptions, build_request_parameters
from d2_triton.client.results import DetectionResult
from d2_triton.errors import InvalidArgumentError
from d2_triton.names import DEFAULT_PIPELINE, PipelineNames

PROTOCOLS = ("http", "grpc")


def default_url(protocol: str = "http") -> str:
    """``TRITON_HOST``:``TRITON_PORT`` (default: localhost and Triton's port for ``protocol``)."""
    host = os.environ.get("TRITON_HOST", "localhost")
    port = os.environ.get("TRITON_PORT", str(names.DEFAULT_PORTS[protocol]))
    return f"{host}:{port}"


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise InvalidArgumentError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def _image_input(triton: Any, image_bytes: bytes) -> Any:
    """The ensemble's one input: the file's bytes as UINT8 [n]."""
    payload = np.frombuffer(image_bytes, dtype=np.uint8)
    tensor = triton.InferInput(names.IMAGE_BYTES, [payload.size], "UINT8")
    tensor.set_data_from_numpy(payload)
    return tensor


def ensemble_result(response: Any, protocol: str) -> DetectionResult:
    """Every output the server returned (which ones depends on the model and options)."""
    if protocol == "http":
        described = response.get_response()["outputs"]
    else:
        described = response.get_response(as_json=True)["outputs"]
    names = [output["name"] for output in described]
    return DetectionResult.from_outputs({name: response.as_numpy(name) for name in names})


class EnsembleClient:
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
    def ensemble(self) -> str:
        """The Triton ensemble ``detect`` calls by default: the pipeline's."""
        return self.pipeline.ensemble

    @property
    def model_name(self) -> str:
        """Deprecated: use ``ensemble``.

        "Model" names a pipeline in this project's interfaces (``model=``, ``?model=``); this
        property named the Triton model, which is the ensemble.
        """
        warnings.warn(
            "DetectionClient.model_name is deprecated: use .ensemble (the Triton ensemble) or "
            ".pipeline.name (the pipeline, what model= chose)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.ensemble

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
            "parameters": build_request_parameters(options, **fields),
            **self._timeout(),
        }


class DetectionClient(EnsembleClient):
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
        return ensemble_result(response, self.protocol)

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def __enter__(self) -> DetectionClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


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
