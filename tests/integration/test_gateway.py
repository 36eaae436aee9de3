"""The REST gateway, run for real (uvicorn) in front of the real Triton server, on loopback.

Its answers must be the ensemble's own (same tensors, exact floats), its pictures must show
the detections, bad uploads must get 400/413, and a Triton outage must be a 502 that ends
by itself when Triton is back.
"""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

from d2_triton.client import DetectionClient
from d2_triton.client.results import DetectionResult
from d2_triton.server import ServerSettings, TritonServer
from d2_triton.testing.load import same_answer
from d2_triton.testing.ports import free_ports
from helpers.metrics import metric_samples
from helpers.servers import CLIENT_CLI, GatewayProcess

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
        "ensemble": "ensemble",
        "live": True,
        "ready": True,
        "ensemble_ready": True,
        "model": "ensemble",  # deprecated names, kept until 0.3
        "model_ready": True,
    }
    models = requests.get(f"{gateway.url}/v1/models", timeout=10).json()
    states = {model["name"]: model["state"] for model in models["triton_index"]}
    assert states == dict.fromkeys(("ensemble", "preprocess", "detector", "postprocess"), "READY")
    assert models["triton_models"] == models["triton_index"]  # deprecated, kept until 0.3
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
        fast_server.settings.admin_key,
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
        options = ServerSettings(fast_repository, http, grpc, metrics, host="127.0.0.1")
        with TritonServer(options, server_pool.environment, log_path=tmp_path / "triton.log"):
            assert requests.get(f"{gateway.url}/health", timeout=10).status_code == 200
            assert len(detected(gateway, payload)) > 0
        assert post(gateway, "/v1/detect", payload).status_code == 502
        assert requests.get(f"{gateway.url}/health", timeout=10).status_code == 503


def test_cli_through_the_gateway_prints_json_and_renders(gateway, photos, tmp_path):
    picture = tmp_path / "out.png"
    run = subprocess.run(
        [
            *CLIENT_CLI,
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
        fast_server.settings.admin_key,
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


def test_metrics_and_the_request_log_count_what_happened(fast_server, photos, tmp_path):
    """Good, bad, unauthorized and misdirected requests, then /metrics and the JSON log."""
    key, log = "metrics-test-key", tmp_path / "gateway.log"
    good, bad = photos["chelsea.jpg"].read_bytes(), b"not an image" * 10
    settings = {"API_KEY": key, "LOG_FORMAT": "json"}
    with GatewayProcess(
        fast_server.http_url, log, fast_server.settings.admin_key, **settings
    ) as gw:
        keyed = {"Content-Type": "application/octet-stream", "X-API-Key": key}

        def detect(payload: bytes, **params) -> requests.Response:
            url = f"{gw.url}/v1/detect"
            return requests.post(url, data=payload, params=params, headers=keyed, timeout=TIMEOUT_S)

        answers = [detect(good), detect(good), detect(bad), detect(good, model="nosuchmodel")]
        answers.append(post(gw, "/v1/detect", good))  # no key
        assert [a.status_code for a in answers] == [200, 200, 400, 404, 401]
        total, triton = re.fullmatch(
            r"total;dur=([\d.]+), triton;dur=([\d.]+)", answers[0].headers["Server-Timing"]
        ).groups()
        assert 0 < float(triton) <= float(total)
        found = metric_samples(requests.get(f"{gw.url}/metrics", timeout=10).text)  # no key
    endpoint, default = ("endpoint", "/v1/detect"), ("pipeline", "default")
    count = "d2t_gateway_requests_total"
    assert found[(count, endpoint, default, ("status", "200"))] == 2
    assert found[(count, endpoint, default, ("status", "400"))] == 1
    assert found[(count, endpoint, ("pipeline", ""), ("status", "404"))] == 1
    assert found[(count, endpoint, ("pipeline", ""), ("status", "401"))] == 1
    assert found[("d2t_gateway_unauthorized_total",)] == 1
    assert found[("d2t_gateway_triton_failures_total", ("kind", "refused"), default)] == 1
    assert found[("d2t_gateway_triton_seconds_count", default)] == 3
    assert found[("d2t_gateway_request_seconds_count", endpoint)] == 5
    assert found[("d2t_gateway_upload_bytes_count", endpoint)] == 3
    assert found[("d2t_gateway_upload_bytes_sum", endpoint)] == 2 * len(good) + len(bad)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    requests_logged = [line for line in lines if line.get("path") == "/v1/detect"]
    assert [(r["status"], r["pipeline"]) for r in requests_logged] == [
        (200, "default"),
        (200, "default"),
        (400, "default"),
        (404, None),
        (401, None),
    ]
    assert all(r["method"] == "POST" and r["total_ms"] > 0 for r in requests_logged)
    assert all(0 < r["triton_ms"] <= r["total_ms"] for r in requests_logged[:3])
