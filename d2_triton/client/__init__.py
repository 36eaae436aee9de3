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

from d2_triton.client.async_client import AsyncDetectionClient
from d2_triton.client.clients import PROTOCOLS, DetectionClient, default_url, detect
from d2_triton.client.request_options import RequestOptions, build_request_parameters
from d2_triton.client.results import DetectionResult

__all__ = [
    "PROTOCOLS",
    "AsyncDetectionClient",
    "DetectionClient",
    "DetectionResult",
    "RequestOptions",
    "build_request_parameters",
    "default_url",
    "detect",
]
