"""The thin client: send the raw bytes of an image to the ensemble, get detections back.

All shaping (decode, resize, model, rescale, masks, labels) happens in the server, so this
is only a Triton infer call plus a readable result.  As a library::

    from d2_triton.client import DetectionClient
    result = DetectionClient("localhost:8000").detect(open("photo.jpg", "rb").read())
    for detection in result.to_json()["detections"]:
        print(detection["label"], detection["score"], detection["box"])

As a command (prints JSON)::

    python -m d2_triton.client infer photo.jpg --score-threshold 0.5

The server is ``TRITON_HOST``:``TRITON_PORT`` (default localhost, 8000 for HTTP and 8001 for
gRPC) unless ``--url`` is given.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from d2_triton import schema

PROTOCOLS = ("http", "grpc")
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}


def default_url(protocol: str = "http") -> str:
    host = os.environ.get("TRITON_HOST", "localhost")
    port = os.environ.get("TRITON_PORT", str(DEFAULT_PORTS[protocol]))
    return f"{host}:{port}"


@dataclass
class DetectionResult:
    """The ensemble's outputs for one image, as numpy arrays (original-image pixels)."""

    image_size: tuple[int, int]  # (height, width)
    boxes: np.ndarray  # float32 [N, 4] x1, y1, x2, y2
    scores: np.ndarray  # float32 [N]
    classes: np.ndarray  # int32 [N]
    labels: list[str]
    masks_rle: list[bytes] | None = None  # COCO compressed RLE counts per instance
    masks: np.ndarray | None = None  # uint8 [N, H, W] when mask_format="dense"
    keypoints: np.ndarray | None = None  # float32 [N, K, 3] x, y, score

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_outputs(cls, outputs: dict[str, np.ndarray]) -> DetectionResult:
        def optional(name: str) -> np.ndarray | None:
            return outputs.get(name)

        rle = optional(schema.MASKS_RLE)
        return cls(
            image_size=tuple(int(v) for v in outputs[schema.IMAGE_SIZE]),
            boxes=outputs[schema.BOXES].reshape(-1, 4),
            scores=outputs[schema.SCORES],
            classes=outputs[schema.CLASSES],
            labels=[_text(label) for label in outputs[schema.LABELS]],
            masks_rle=None if rle is None else [bytes(item) for item in rle],
            masks=optional(schema.MASKS),
            keypoints=optional(schema.KEYPOINTS),
        )

    def mask(self, index: int) -> np.ndarray | None:
        """Instance ``index``'s binary mask (H x W bool), whichever format was returned."""
        if self.masks is not None:
            return self.masks[index].astype(bool)
        if self.masks_rle is not None:
            from d2_triton.detections import decode_rle

            return decode_rle(self.masks_rle[index], self.image_size)
        return None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: one object per detection; masks as COCO RLE ``{"size", "counts"}``."""
        height, width = self.image_size
        detections = []
        for index in range(len(self)):
            detection: dict[str, Any] = {
                "box": [round(float(v), 3) for v in self.boxes[index]],
                "score": round(float(self.scores[index]), 6),
                "class_id": int(self.classes[index]),
                "label": self.labels[index],
            }
            if self.masks_rle is not None:
                detection["mask"] = {
                    "size": [height, width],
                    "counts": self.masks_rle[index].decode("ascii"),
                }
            elif self.masks is not None:
                packed = np.packbits(self.masks[index].astype(bool), axis=None)
                detection["mask"] = {
                    "size": [height, width],
                    "packbits": base64.b64encode(packed.tobytes()).decode("ascii"),
                }
            if self.keypoints is not None:
                detection["keypoints"] = [
                    [round(float(v), 3) for v in point] for point in self.keypoints[index]
                ]
            detections.append(detection)
        return {"image_size": {"height": height, "width": width}, "detections": detections}


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


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


class DetectionClient:
    """A synchronous Triton client for the ensemble (HTTP or gRPC)."""

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "http",
        model_name: str = schema.ENSEMBLE_MODEL,
        timeout: float = 120.0,
    ):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.protocol = protocol
        self.model_name = model_name
        self.url = url or default_url(protocol)
        self.timeout = timeout
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
        payload = np.frombuffer(image_bytes, dtype=np.uint8)
        tensor = self._triton.InferInput(schema.IMAGE_BYTES, [payload.size], "UINT8")
        tensor.set_data_from_numpy(payload)
        extra = {} if self.protocol == "http" else {"client_timeout": self.timeout}
        response = self._client.infer(
            self.model_name, [tensor], parameters=request_parameters(**options), **extra
        )
        names = [output["name"] for output in self._output_descriptions(response)]
        return DetectionResult.from_outputs({name: response.as_numpy(name) for name in names})

    def _output_descriptions(self, response: Any) -> list[dict[str, Any]]:
        if self.protocol == "http":
            return response.get_response()["outputs"]
        return response.get_response(as_json=True)["outputs"]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DetectionClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def detect(
    image_bytes: bytes, url: str | None = None, protocol: str = "http", **options: Any
) -> DetectionResult:
    """One-shot convenience wrapper around ``DetectionClient.detect``."""
    with DetectionClient(url, protocol) as client:
        return client.detect(image_bytes, **options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m d2_triton.client", description="Send an image to the d2-triton ensemble."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    infer = commands.add_parser("infer", help="detect objects in an image file, print JSON")
    infer.add_argument("image", type=Path)
    infer.add_argument("--url", default=None, help="host:port (default TRITON_HOST:TRITON_PORT)")
    infer.add_argument("--protocol", choices=PROTOCOLS, default="http")
    infer.add_argument("--model-name", default=schema.ENSEMBLE_MODEL)
    infer.add_argument("--score-threshold", type=float)
    infer.add_argument("--max-detections", type=int)
    infer.add_argument("--classes", help="comma-separated class ids or names")
    infer.add_argument("--mask-format", choices=("rle", "dense", "none"))
    args = parser.parse_args(argv)
    with DetectionClient(args.url, args.protocol, args.model_name) as client:
        result = client.detect(
            args.image.read_bytes(),
            score_threshold=args.score_threshold,
            max_detections=args.max_detections,
            classes=args.classes,
            mask_format=args.mask_format,
        )
    json.dump(result.to_json(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
