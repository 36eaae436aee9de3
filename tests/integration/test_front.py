"""The front (nginx before tritonserver): what a client on the network can and cannot do.

Triton 2.51 has public holes (docs/security.md): a chunked body of tiny chunks crashes its
HTTP front, its non-inference APIs answer anyone, and it copies any body into shared
memory.  Every request here goes to the front's port, as a client's would.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from benchmarks.speed.inputs import write_input_data
from benchmarks.speed.perf import run_perf_analyzer
from d2_triton import names
from d2_triton.client import DetectionClient
from d2_triton.testing.burst import (
    Request,
    binary_infer_request,
    send_all,
    settled_executions,
    statuses,
)
from helpers.leaks import LEAK
from helpers.servers import SERVER_ENV

# Hang catchers only: the front answers these in well under a second here.
ANSWER_TIMEOUT_S = 60
BURST = 100


def raw_exchange(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are (``head`` asks to close the connection); status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S) as connection:
        connection.sendall(head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer.split(b"\r\n\r\n", 1)[1]


def front_port(server) -> int:
    return int(server.http_url.rsplit(":", 1)[1])


def test_a_flood_of_tiny_chunks_is_read_by_the_front_and_triton_lives(fast_server, photos):
    """CVE-2025-23310/23311: sent to tritonserver 2.51 itself, this body killed it (SIGSEGV)."""
    head = (
        b"POST /v2/models/ensemble/infer HTTP/1.1\r\nHost: d2t\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    )
    status, body = raw_exchange(
        front_port(fast_server), head, b"1\r\nA\r\n" * 600_000 + b"0\r\n\r\n"
    )
    assert 400 <= status < 600 and "error" in json.loads(body)  # refused: not a JSON request
    assert fast_server.exited() is None and fast_server.is_ready()
    with DetectionClient(fast_server.http_url, timeout=ANSWER_TIMEOUT_S) as client:
        assert client.detect(photos["chelsea.jpg"].read_bytes()).boxes.shape[1] == 4


def test_bodies_over_the_limit_are_refused_before_triton_sees_them(fast_server):
    """A 1.5 GB body was copied into shared memory before preprocess could refuse it."""
    port = front_port(fast_server)
    limit = fast_server.front.limits[0].max_body_bytes
    started = time.monotonic()
    for path, size in (("/v2/models/ensemble/infer", limit + 1), ("/v2/logging", 2 << 20)):
        head = f"POST {path} HTTP/1.1\r\nHost: d2t\r\nConnection: close\r\n"
        head = f"{head}Content-Length: {size}\r\n\r\n".encode()
        status, body = raw_exchange(port, head)  # no byte of the body is sent
        assert status == 413 and json.loads(body) == {"error": "request body too large"}
    assert time.monotonic() - started < ANSWER_TIMEOUT_S


def test_restricted_apis_answer_only_with_the_admin_key(fast_server):
    url = f"http://{fast_server.http_url}/v2"
    key = {names.ADMIN_HEADER: fast_server.settings.admin_key}
    region = next(p.name for p in Path("/dev/shm").glob("triton_python_backend_shm_region_*"))
    register = {"key": f"/{region}", "offset": 0, "byte_size": 64}
    refused = [
        ("get", "/logging", None),
        ("post", "/logging", {"log_verbose_level": 1}),
        ("get", "/trace/setting", None),
        ("post", "/trace/setting", {"trace_level": ["TIMESTAMPS"]}),
        ("get", "/systemsharedmemory/status", None),
        ("post", "/systemsharedmemory/region/taken/register", register),
        ("get", "/cudasharedmemory/status", None),
        ("post", "/repository/index", None),
        ("get", "/models/stats", None),
    ]
    for method, path, body in refused:
        answer = requests.request(method, url + path, json=body, timeout=ANSWER_TIMEOUT_S)
        assert answer.status_code == 403, (path, answer.text)
        assert names.ADMIN_HEADER in answer.json()["error"]
    for path in ("/logging", "/trace/setting", "/systemsharedmemory/status", "/models/stats"):
        assert requests.get(url + path, headers=key, timeout=ANSWER_TIMEOUT_S).status_code == 200
    for path in ("/health/ready", "/models/ensemble", "/models/ensemble/config"):
        assert requests.get(url + path, timeout=ANSWER_TIMEOUT_S).status_code == 200
    metrics = requests.get(f"http://{fast_server.metrics_url}/metrics", timeout=30)
    assert "nv_inference_request_success" in metrics.text
    grpc = grpcclient.InferenceServerClient(fast_server.grpc_url)
    with pytest.raises(InferenceServerException, match="restricted"):
        grpc.get_log_settings()
    grpc_key = {names.ADMIN_GRPC_METADATA: fast_server.settings.admin_key}
    assert grpc.get_log_settings(headers=grpc_key, as_json=True)["settings"]
    assert grpc.is_model_ready(names.ENSEMBLE_MODEL)


def test_no_refusal_names_a_region_or_a_file(fast_server):
    """The first step of the public chain: a region's name in an error message."""
    url = f"http://{fast_server.http_url}/v2/models/ensemble/infer"
    too_big = np.zeros(32 * 1024 * 1024 + 1, np.uint8).tobytes()  # preprocess's limit + 1
    body, headers = binary_infer_request(too_big)
    tensor = {"name": names.IMAGE_BYTES, "datatype": "UINT8"}
    sent = [
        (body, headers),  # over preprocess's max_image_bytes
        # Killed tritonserver 2.51 (std::bad_alloc) before the front's check (front.js):
        (json.dumps({"inputs": [{**tensor, "shape": [1 << 40], "data": [1]}]}), {}),
        ('{"inputs": [{"shape": [1099511627776], "shape": [1], "data": [1]}]}', {}),
        ('{"inputs": [{"sh\\u0061pe": [1099511627776], "shape": [1], "data": [1]}]}', {}),
        (json.dumps({"inputs": [{**tensor, "shape": [3], "data": [1, 2]}]}), {}),
        (json.dumps({"inputs": [{**tensor, "datatype": "FP32", "shape": [1], "data": [1]}]}), {}),
        (json.dumps({"inputs": [{**tensor, "name": "x", "shape": [1], "data": [1]}]}), {}),
        (b'{"inputs": [', {}),
        (
            binary_infer_request(b"not an image")[0][:-3],
            {"Inference-Header-Content-Length": "99999"},
        ),
    ]
    for payload, extra in sent:
        answer = requests.post(url, data=payload, headers=extra, timeout=ANSWER_TIMEOUT_S)
        assert 400 <= answer.status_code < 600, answer.text
        assert not LEAK.search(answer.text), answer.text
    assert fast_server.is_ready()


def test_a_burst_is_answered_200_or_503_and_no_admitted_work_is_wasted(
    fast_server, gateway, photos
):
    """100 uploads at once once gave 48 time-outs, and the detector ran 47 images for
    clients that had been told 504; now the excess is refused at once."""
    image = photos["chelsea.jpg"].read_bytes()
    body, headers = binary_infer_request(image)
    infer_url = f"http://{fast_server.http_url}/v2/models/ensemble/infer"
    limit = fast_server.front.limits[0].max_in_flight
    assert limit == names.ADMITTED_PER_INSTANCE  # the test export has one detector instance
    senders = {
        "front": Request(infer_url, body, headers),
        "gateway": Request(f"{gateway.url}/v1/detect", image),
    }
    executions = partial(fast_server.executions, names.DETECTOR_MODEL)
    for where, request in senders.items():
        before = executions()
        answers = send_all(request, BURST)
        counts = statuses(answers)
        ran = settled_executions(executions) - before
        print(where, dict(counts), "detector ran", ran)
        assert set(counts) <= {200, 503} and counts[200] >= 1, (where, counts)
        assert counts[503] >= BURST - limit, (where, counts)
        refused = [answer for answer in answers if answer.status == 503]
        assert {answer.retry_after for answer in refused} == {str(names.RETRY_AFTER_S)}
        assert max(answer.seconds for answer in refused) < ANSWER_TIMEOUT_S  # not queued
        assert ran <= counts[200] + limit, (where, ran, counts)


def test_the_design_cards_clients_work_through_the_front(fast_server, photos, tmp_path):
    image = photos["coffee.jpg"].read_bytes()
    with DetectionClient(fast_server.http_url) as client:
        expected = client.detect(image)
    request = {
        "inputs": [
            {
                "name": names.IMAGE_BYTES,
                "shape": [len(image)],
                "datatype": "UINT8",
                "data": list(image),
            }
        ]
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    curl = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            f"http://{fast_server.http_url}/v2/models/ensemble/infer",
            "--data-binary",
            f"@{tmp_path / 'request.json'}",
        ],
        capture_output=True,
        text=True,
        timeout=ANSWER_TIMEOUT_S * 5,
    )
    assert curl.returncode == 0, curl.stdout + curl.stderr
    outputs = {o["name"]: o for o in json.loads(curl.stdout)["outputs"]}
    assert np.allclose(np.array(outputs[names.BOXES]["data"]).reshape(-1, 4), expected.boxes)
    triton = httpclient.InferenceServerClient(fast_server.http_url)
    tensor = httpclient.InferInput(names.IMAGE_BYTES, [len(image)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(image, np.uint8))
    answer = triton.infer(names.ENSEMBLE_MODEL, [tensor])
    assert np.array_equal(answer.as_numpy(names.BOXES), expected.boxes)
    data = write_input_data(
        tmp_path / "perf.json", [{names.IMAGE_BYTES: np.frombuffer(image, np.uint8)}]
    )
    row = run_perf_analyzer(
        SERVER_ENV / "bin" / "perf_analyzer",
        fast_server.http_url,
        names.ENSEMBLE_MODEL,
        data,
        1,
        tmp_path / "perf.csv",
        2,
        3,
        1000,
        admin_key=fast_server.settings.admin_key,
    )
    assert float(row["Inferences/Second"]) > 0
