"""``python -m d2_triton.client``: detect objects in an image from the command line.

python -m d2_triton.client infer photo.jpg [--json] [--render out.png] [--model NAME]
python -m d2_triton.client infer photo.jpg --gateway http://localhost:8080 [--model NAME]
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tritonclient.utils import InferenceServerException

from d2_triton.client import PROTOCOLS, DetectionClient, build_request_parameters
from d2_triton.client.results import DetectionResult
from d2_triton.commands import Parser, command
from d2_triton.errors import UpstreamError
from d2_triton.names import DEFAULT_PIPELINE, MASK_FORMATS, pipeline_name


def detect_via_gateway(
    gateway: str,
    image_bytes: bytes,
    timeout: float = 120.0,
    model: str | None = None,
    **fields: Any,
) -> DetectionResult:
    """The same answer through the REST gateway (``python -m d2_triton.gateway``).

    ``model`` names the pipeline (default: the gateway's ``DEFAULT_MODEL``).
    """
    query = {key: str(value) for key, value in build_request_parameters(**fields).items()}
    if model is not None:
        query["model"] = model
    url = f"{gateway.rstrip('/')}/v1/detect?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(
        url, data=image_bytes, headers={"Content-Type": "application/octet-stream"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return DetectionResult.from_json(json.load(response))
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", errors="replace")
        raise UpstreamError(f"gateway answered {error.code}: {detail}") from None


def summary_lines(result: DetectionResult) -> list[str]:
    """One line per detection (label, score, box), then per segment (label, kind, area)."""
    height, width = result.image_size
    lines = [f"{len(result)} detections in a {width}x{height} image"]
    for index in range(len(result)):
        x1, y1, x2, y2 = (float(v) for v in result.boxes[index])
        lines.append(
            f"{result.labels[index]:>16s} {float(result.scores[index]):.3f}  "
            f"box ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f})"
        )
    segments = result.segments
    if segments is not None:
        lines.append(f"{len(segments)} segments")
        for index in range(len(segments)):
            kind = "thing" if segments.is_thing[index] else "stuff"
            lines.append(f"{segments.labels[index]:>16s} {kind}  {int(segments.areas[index])} px")
    return lines


@command("python -m d2_triton.client", expected=(InferenceServerException,))
def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = Parser(
        prog="python -m d2_triton.client", description="Send an image to the d2-triton ensemble."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    infer = commands.add_parser("infer", help="detect objects in an image file")
    infer.add_argument("image", type=Path)
    infer.add_argument("--url", default=None, help="Triton host:port (default TRITON_HOST:PORT)")
    infer.add_argument("--protocol", choices=PROTOCOLS, default="http")
    infer.add_argument(
        "--model",
        type=pipeline_name,
        help="the pipeline to ask (export --name; default: the default pipeline, or the "
        "gateway's DEFAULT_MODEL)",
    )
    infer.add_argument(
        "--gateway", help="REST gateway base URL instead of Triton, e.g. http://localhost:8080"
    )
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
        result = detect_via_gateway(args.gateway, payload, model=args.model, **options)
    else:
        model = args.model or DEFAULT_PIPELINE
        with DetectionClient(args.url, args.protocol, model) as client:
            result = client.detect(payload, **options)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(summary_lines(result)))
    if args.render:
        from d2_triton.client.render import render_png

        args.render.write_bytes(render_png(payload, result))
        print(f"wrote {args.render}", file=sys.stderr)
    return 0
