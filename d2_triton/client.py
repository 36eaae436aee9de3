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

    python -m d2_triton.client infer photo.jpg [--json] [--render out.png]
    python -m d2_triton.client infer photo.jpg --gateway http://localhost:8080

It talks to Triton at ``TRITON_HOST``:``TRITON_PORT`` (default localhost, 8000 for HTTP and
8001 for gRPC) unless ``--url`` is given, or to the REST gateway with ``--gateway``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from d2_triton import schema
from d2_triton.results import DetectionResult

PROTOCOLS = ("http", "grpc")
MASK_FORMATS = ("rle", "dense", "none")

__all__ = ["AsyncDetectionClient", "DetectionClient", "DetectionResult", "detect"]


def default_url(protocol: str = "http") -> str:
    host = os.environ.get("TRITON_HOST", "localhost")
    port = os.environ.get("TRITON_PORT", str(schema.DEFAULT_PORTS[protocol]))
    return f"{host}:{port}"


def request_parameters(
    score_threshold: float | None = None,
    max_detections: int | None = None,
    classes: str | list[str | int] | None = None,
    mask_format: str | None = None,
) -> dict[str, Any]:
    """Triton request parameters for the postprocess options that are set."""
    parameters: dict[str, Any] = {}
    if score_threshold is not None:
        parameters["score_threshold"] = float(score_threshold)
    if max_detections is not None:
        parameters["max_detections"] = int(max_detections)
    if classes is not None:
        if not isinstance(classes, str):
            classes = ",".join(str(item) for item in classes)
        parameters["classes"] = classes
    if mask_format is not None:
        parameters["mask_format"] = mask_format
    return parameters


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def _image_input(triton: Any, image_bytes: bytes) -> Any:
    """The ensemble's one input: the file's bytes as UINT8 [n]."""
    payload = np.frombuffer(image_bytes, dtype=np.uint8)
    tensor = triton.InferInput(schema.IMAGE_BYTES, [payload.size], "UINT8")
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
    """What the sync and async clients share: where the ensemble is and how long to wait."""

    def __init__(self, url: str | None, protocol: str, model_name: str, timeout: float):
        _check_protocol(protocol)
        self.protocol = protocol
        self.model_name = model_name
        self.url = url or default_url(protocol)
        self.timeout = timeout

    def _timeout(self) -> dict[str, float]:
        """gRPC takes a timeout per call; HTTP clients get theirs when created."""
        return {} if self.protocol == "http" else {"client_timeout": self.timeout}


class DetectionClient(_EnsembleClient):
    """A synchronous Triton client for the ensemble (HTTP or gRPC)."""

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "http",
        model_name: str = schema.ENSEMBLE_MODEL,
        timeout: float = 120.0,
    ):
        super().__init__(url, protocol, model_name, timeout)
        if protocol == "http":
            import tritonclient.http as triton

            self._client = triton.InferenceServerClient(
                self.url, connection_timeout=timeout, network_timeout=timeout
            )
        else:
            import tritonclient.grpc as triton

            self._client = triton.InferenceServerClient(self.url)
        self._triton = triton

    def detect(self, image_bytes: bytes, **options: Any) -> DetectionResult:
        """Detections for one encoded image; ``options`` as in ``request_parameters``."""
        response = self._client.infer(
            self.model_name,
            [_image_input(self._triton, image_bytes)],
            parameters=request_parameters(**options),
            **self._timeout(),
        )
        return _result(response, self.protocol)

    def close(self) -> None:
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

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "http",
        model_name: str = schema.ENSEMBLE_MODEL,
        timeout: float = 120.0,
        connections: int = 64,
    ):
        super().__init__(url, protocol, model_name, timeout)
        if protocol == "http":
            import tritonclient.http.aio as triton

            self._client = triton.InferenceServerClient(
                self.url, conn_limit=connections, conn_timeout=timeout
            )
        else:
            import tritonclient.grpc.aio as triton

            self._client = triton.InferenceServerClient(self.url)
        self._triton = triton

    async def detect(self, image_bytes: bytes, **options: Any) -> DetectionResult:
        response = await self._client.infer(
            self.model_name,
            [_image_input(self._triton, image_bytes)],
            parameters=request_parameters(**options),
            **self._timeout(),
        )
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

    async def models(self) -> list[dict[str, str]]:
        """name, version and state (READY or UNAVAILABLE) of every model Triton has loaded.

        Read from the statistics and health APIs, not the repository index: the launcher
        restricts the model-repository API to its stub watchdog (see d2_triton.server).
        """
        if self.protocol == "http":
            statistics = await self._client.get_inference_statistics()
        else:
            statistics = await self._client.get_inference_statistics(
                as_json=True, **self._timeout()
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

    async def close(self) -> None:
        await self._client.close()


def detect(
    image_bytes: bytes, url: str | None = None, protocol: str = "http", **options: Any
) -> DetectionResult:
    """One-shot convenience wrapper around ``DetectionClient.detect``."""
    with DetectionClient(url, protocol) as client:
        return client.detect(image_bytes, **options)


def detect_via_gateway(
    gateway: str, image_bytes: bytes, timeout: float = 120.0, **options: Any
) -> DetectionResult:
    """The same answer through the REST gateway (``python -m d2_triton.gateway``)."""
    query = {key: str(value) for key, value in request_parameters(**options).items()}
    url = f"{gateway.rstrip('/')}/v1/detect?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(
        url, data=image_bytes, headers={"Content-Type": "application/octet-stream"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return DetectionResult.from_json(json.load(response))
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", errors="replace")
        raise RuntimeError(f"gateway answered {error.code}: {detail}") from None


def summary_lines(result: DetectionResult) -> list[str]:
    height, width = result.image_size
    lines = [f"{len(result)} detections in a {width}x{height} image"]
    for index in range(len(result)):
        x1, y1, x2, y2 = (float(v) for v in result.boxes[index])
        lines.append(
            f"{result.labels[index]:>16s} {float(result.scores[index]):.3f}  "
            f"box ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f})"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m d2_triton.client", description="Send an image to the d2-triton ensemble."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    infer = commands.add_parser("infer", help="detect objects in an image file")
    infer.add_argument("image", type=Path)
    infer.add_argument("--url", default=None, help="Triton host:port (default TRITON_HOST:PORT)")
    infer.add_argument("--protocol", choices=PROTOCOLS, default="http")
    infer.add_argument("--model-name", default=schema.ENSEMBLE_MODEL)
    infer.add_argument("--gateway", help="REST gateway base URL instead of Triton, e.g. "
                       "http://localhost:8080")  # fmt: skip
    infer.add_argument("--score-threshold", type=float)
    infer.add_argument("--max-detections", type=int)
    infer.add_argument("--classes", help="comma-separated class ids or names")
    infer.add_argument("--mask-format", choices=MASK_FORMATS)
    infer.add_argument("--json", action="store_true", help="print the detections as JSON")
    infer.add_argument("--render", type=Path, help="write a PNG with the detections drawn")
    args = parser.parse_args(argv)
    payload = args.image.read_bytes()
    options = {
        "score_threshold": args.score_threshold,
        "max_detections": args.max_detections,
        "classes": args.classes,
        "mask_format": args.mask_format,
    }
    if args.gateway:
        result = detect_via_gateway(args.gateway, payload, **options)
    else:
        with DetectionClient(args.url, args.protocol, args.model_name) as client:
            result = client.detect(payload, **options)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(summary_lines(result)))
    if args.render:
        from d2_triton.render import render_png

        args.render.write_bytes(render_png(payload, result))
        print(f"wrote {args.render}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
