"""The REST gateway, run for real (uvicorn) in front of the real Triton server, on loopback.

Its answers must be the ensemble's own (same tensors, exact floats), its pictures must show
the detections, bad uploads must get 400/413, and a Triton outage must be a 502 that ends
by itself when Triton is back.
"""

from __future__ import annotations

import io
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import requests
from PIL import Image

from d2_triton.client import DetectionClient
from d2_triton.client.results import DetectionResult
from d2_triton.server import ServerOptions, TritonServer
from d2_triton.testing.load import same_answer
from d2_triton.testing.ports import free_ports
from d2_triton.vision.imaging import decode_image
from helpers.servers import SERVER_ENV, GatewayProcess

TIMEOUT_S = 180


def post(gateway, path: str, payload: bytes, multipart: bool = False, **params):
    url = f"{gateway.url}{path}"
    if multipart:
        files = {"image": ("upload.jpg", payload, "image/jpeg")}
        return requests.post(url, files=files, params=params, timeout=TIMEOUT_S)
    headers = {"Content-Type": "application/octet-stream"}
    return requests.post(url, data=payload, params=params, headers=headers, timeout=TIMEOUT_S)


def detected(gateway, payload: bytes, **params) -> DetectionResult:
    response = post(gateway, "/v1/detect", payload, **params)
    assert response.status_code == 200, response.text
    return DetectionResult.from_json(response.json())


@pytest.fixture(scope="module")
def direct(fast_server):
    with DetectionClient(fast_server.http_url) as client:
        yield client


@pytest.mark.parametrize("multipart", [False, True], ids=["raw-body", "multipart"])
def test_detection_json_equals_the_ensemble_tensors(gateway, direct, photos, multipart):
    payload = photos["astronaut.jpg"].read_bytes()
    expected = direct.detect(payload)
    response = post(gateway, "/v1/detect", payload, multipart=multipart)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["model"] == "default"
    assert document["image_size"] == {"height": 512, "width": 512}
    detections = document["detections"]
    assert len(detections) == len(expected) > 20
    # Floats travel as the shortest decimal of the float32: parsed back, they are bit-equal.
    np.testing.assert_array_equal(np.float32([d["box"] for d in detections]), expected.boxes)
    np.testing.assert_array_equal(np.float32([d["score"] for d in detections]), expected.scores)
    assert [d["class_id"] for d in detections] == expected.classes.tolist()
    assert [d["label"] for d in detections] == expected.labels
    assert [d["mask"]["counts"].encode() for d in detections] == expected.masks_rle
    assert all(d["mask"]["size"] == [512, 512] for d in detections)
    assert same_answer(DetectionResult.from_json(document), expected)


def test_options_are_passed_through_to_the_ensemble(gateway, direct, photos):
    payload = photos["coffee.jpg"].read_bytes()
    everything = direct.detect(payload)
    median = float(np.median(everything.scores))
    for options in (
        {"score_threshold": median},
        {"max_detections": 3},
        {"classes": f"{everything.labels[0]},{int(everything.classes[1])}"},
    ):
        through_gateway = detected(gateway, payload, **options)
        assert same_answer(through_gateway, direct.detect(payload, **options)), options
        assert 0 < len(through_gateway) < len(everything), options
    bare = post(gateway, "/v1/detect", payload, mask_format="none").json()["detections"]
    assert len(bare) == len(everything) and not any("mask" in d for d in bare)


def outside_of(mask: np.ndarray) -> np.ndarray:
    """Background pixels connected to the image border (not in a hole of the mask)."""
    padded = np.ascontiguousarray(np.pad((~mask).astype(np.uint8), 1))  # RLE decodes F-order
    cv2.floodFill(padded, None, (0, 0), 2)
    return padded[1:-1, 1:-1] == 2


def without_specks(mask: np.ndarray, largest_speck: int = 3) -> np.ndarray:
    """The mask less its pieces of 1-3 pixels, which have no polygon of 3 points (COCO's and
    Detectron2's minimum) and are left out of the polygons."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] > largest_speck]
    return np.isin(labels, keep)


def test_polygons_outline_the_masks(gateway, photos):
    """Rasterised again, the polygons cover each mask (bar specks) and, beyond its holes
    (which COCO polygons cannot express), spill over its outline by only a few pixels."""
    payload = photos["coffee.jpg"].read_bytes()
    rle = detected(gateway, payload, max_detections=10)
    document = post(gateway, "/v1/detect", payload, max_detections=10, mask_format="polygon").json()
    height, width = rle.image_size
    compared = 0
    for index, detection in enumerate(document["detections"]):
        mask = rle.mask(index)
        drawn = np.zeros((height, width), np.uint8)
        for polygon in detection["mask"]["polygons"]:
            points = np.rint(np.array(polygon).reshape(-1, 2) - 0.5).astype(np.int32)
            cv2.fillPoly(drawn, [points], 1)
        drawn = drawn.astype(bool)
        solid = without_specks(mask)
        if solid.sum() < 100:  # a few pixels: all outline, ratios mean little
            continue
        assert (solid & drawn).sum() / solid.sum() > 0.99, index
        assert (drawn & outside_of(mask)).sum() / mask.sum() < 0.05, index
        compared += 1
    assert compared >= 3


def test_rendered_png_shows_the_detections_and_nothing_else(gateway, photos):
    payload = photos["rocket.jpg"].read_bytes()
    response = post(gateway, "/v1/detect/render", payload, max_detections=3)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    rendered = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    original = decode_image(payload)[..., ::-1]
    assert rendered.shape == original.shape
    changed = np.any(rendered != original, axis=-1)
    result = detected(gateway, payload, max_detections=3)
    touched = np.zeros_like(changed)
    masks_seen = 0
    for index, (x1, y1, x2, y2) in enumerate(np.rint(result.boxes).astype(int)):
        assert changed[y1:y2, x1:x2].mean() > 0.01, index
        edge = changed[max(y1 - 1, 0) : y1 + 2, x1 + 3 : x2 - 3]  # the box's top outline
        assert edge.any(axis=0).mean() > 0.9, index
        mask = result.mask(index)
        if mask.any():  # a small box can have an empty mask: nothing of it to draw
            masks_seen += 1
            assert changed[mask].mean() > 0.9, index  # the translucent mask
        touched[max(y1 - 20, 0) : y2 + 3, max(x1 - 3, 0) : max(x2, x1 + 160) + 3] = True
    assert masks_seen >= 1 and changed.any() and not changed[~touched].any()


def test_bad_uploads_get_400_or_413_and_the_gateway_carries_on(gateway, photos):
    jpeg = photos["chelsea.jpg"].read_bytes()
    cases = [
        (b"this is not an image", {}, False, 400, "unrecognised image format"),
        (b"", {}, False, 400, "empty request"),
        (jpeg[: len(jpeg) // 2], {}, False, 400, "truncated"),
        (jpeg, {"classes": "unicorn"}, False, 400, "unknown class 'unicorn'"),
        (jpeg, {"score_threshold": 7}, False, 422, "less than or equal to 1"),
        (b"\xff\xd8\xff" + bytes(33 * 1024 * 1024), {}, False, 413, "limit"),
        (b"\xff\xd8\xff" + bytes(33 * 1024 * 1024), {}, True, 413, "limit"),
    ]
    for payload, params, multipart, status, text in cases:
        response = post(gateway, "/v1/detect", payload, multipart=multipart, **params)
        assert response.status_code == status, (status, response.text[:300])
        assert text in response.text, response.text[:300]
    missing_field = requests.post(
        f"{gateway.url}/v1/detect", files={"photo": ("a.jpg", jpeg)}, timeout=TIMEOUT_S
    )
    assert missing_field.status_code == 400 and "'image'" in missing_field.json()["detail"]
    assert requests.get(f"{gateway.url}/health", timeout=10).status_code == 200
    assert len(detected(gateway, jpeg)) > 0


def test_health_and_models_report_what_triton_serves(gateway):
    health = requests.get(f"{gateway.url}/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["triton"] | {"url": None} == {
        "url": None,
        "protocol": "http",
        "model": "ensemble",
        "live": True,
        "ready": True,
        "model_ready": True,
    }
    models = requests.get(f"{gateway.url}/v1/models", timeout=10).json()
    states = {model["name"]: model["state"] for model in models["triton_models"]}
    assert states == dict.fromkeys(("ensemble", "preprocess", "detector", "postprocess"), "READY")
    assert [(model["name"], model["state"]) for model in models["models"]] == [("default", "READY")]
    assert models["default_model"] == "default"


def test_concurrent_requests_get_their_own_answers(gateway, direct, photos):
    names = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    payloads = {name: photos[name].read_bytes() for name in names}
    references = {name: direct.detect(payload) for name, payload in payloads.items()}
    order = [names[i % len(names)] for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda name: detected(gateway, payloads[name]), order))
    for name, answer in zip(order, answers, strict=True):
        assert same_answer(answer, references[name]), name


def test_grpc_and_a_label_mapping_file(fast_server, direct, photos, tmp_path):
    """TRITON_PROTOCOL=grpc gives the same answer; LABEL_MAPPING_FILE renames the classes."""
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({str(i): f"thing-{i}" for i in range(80)}))
    payload = photos["coffee.jpg"].read_bytes()
    expected = direct.detect(payload)
    with GatewayProcess(
        fast_server.grpc_url,
        tmp_path / "gateway.log",
        fast_server.options.admin_key,
        TRITON_PROTOCOL="grpc",
        LABEL_MAPPING_FILE=str(labels),
    ) as gateway:
        answer = detected(gateway, payload)
        assert requests.get(f"{gateway.url}/health", timeout=10).json()["triton"]["ready"]
    assert answer.labels == [f"thing-{i}" for i in expected.classes]
    answer.labels = expected.labels
    assert same_answer(answer, expected)


def test_triton_down_is_a_502_and_the_gateway_recovers(
    fast_repository, server_pool, photos, tmp_path
):
    """A server of its own, on ports chosen before it starts (the pool's keeps serving)."""
    payload = photos["chelsea.jpg"].read_bytes()
    http, grpc, metrics = free_ports(3)
    with GatewayProcess(f"127.0.0.1:{http}", tmp_path / "gateway.log") as gateway:
        assert requests.get(f"{gateway.url}/health", timeout=10).status_code == 503
        down = post(gateway, "/v1/detect", payload)
        assert down.status_code == 502 and "unreachable" in down.json()["detail"]
        assert requests.get(f"{gateway.url}/v1/models", timeout=10).status_code == 502
        options = ServerOptions(fast_repository, http, grpc, metrics, host="127.0.0.1")
        with TritonServer(options, server_pool.environment, log_path=tmp_path / "triton.log"):
            assert requests.get(f"{gateway.url}/health", timeout=10).status_code == 200
            assert len(detected(gateway, payload)) > 0
        assert post(gateway, "/v1/detect", payload).status_code == 502
        assert requests.get(f"{gateway.url}/health", timeout=10).status_code == 503


def test_cli_through_the_gateway_prints_json_and_renders(gateway, photos, tmp_path):
    picture = tmp_path / "out.png"
    run = subprocess.run(
        [
            str(SERVER_ENV / "bin" / "python"),
            "-m",
            "d2_triton.client",
            "infer",
            str(photos["coffee.jpg"]),
            "--gateway",
            gateway.url,
            "--max-detections",
            "4",
            "--json",
            "--render",
            str(picture),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    printed = json.loads(run.stdout)
    served = post(gateway, "/v1/detect", photos["coffee.jpg"].read_bytes(), max_detections=4)
    assert printed == {key: served.json()[key] for key in ("image_size", "detections")}
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.size == (600, 400)


def test_an_api_key_guards_every_endpoint_but_health(fast_server, direct, photos, tmp_path):
    """API_KEY set: 401 without the X-API-Key header, the ensemble's answer with it."""
    payload = photos["chelsea.jpg"].read_bytes()
    key = "k3y-for-this-test-only"
    with GatewayProcess(
        fast_server.http_url,
        tmp_path / "gateway.log",
        fast_server.options.admin_key,
        API_KEY=key,
    ) as gw:
        refused = post(gw, "/v1/detect", payload)
        assert refused.status_code == 401 and "X-API-Key" in refused.json()["detail"]
        assert requests.get(f"{gw.url}/v1/models", timeout=10).status_code == 401
        assert requests.get(f"{gw.url}/health", timeout=10).status_code == 200
        response = requests.post(
            f"{gw.url}/v1/detect",
            data=payload,
            timeout=TIMEOUT_S,
            headers={"Content-Type": "application/octet-stream", "X-API-Key": key},
        )
    assert response.status_code == 200, response.text
    assert same_answer(DetectionResult.from_json(response.json()), direct.detect(payload))
