"""The health board and the status endpoint, against a stand-in Triton on loopback.

The stand-in answers READY to everything, as Triton 2.51 does for a model whose stub died;
the endpoint must answer from the board instead while a pipeline is not ready.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from d2_triton.names import PipelineNames
from d2_triton.server.health import HealthBoard, ModelState
from d2_triton.server.ports import free_ports
from d2_triton.server.status import StatusServer, StatusSource
from d2_triton.server.status_grpc import GrpcStatusServer

PIPELINES = [PipelineNames(), PipelineNames("int8")]
TRITON_METRICS = b'nv_inference_count{model="ensemble",version="1"} 3\n'


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_pipeline_is_its_worst_models_state_and_each_change_is_one_log_line():
    clock, lines = Clock(), []
    board = HealthBoard(PIPELINES, clock=clock, log=lines.append)
    clock.now = 1010.0
    board.set("int8_detector", ModelState.BROKEN, "stub died (pid 7)")
    clock.now = 1012.0
    board.set("int8_detector", ModelState.RELOADING, "reloading after its stub died")
    clock.now = 1015.0
    board.set("int8_preprocess", ModelState.BROKEN, "stub died (pid 8)")  # worse
    int8 = {p.name: p for p in board.pipelines()}["int8"]
    assert (int8.state, int8.model, int8.since, int8.last_ready) == (
        ModelState.BROKEN,
        "int8_preprocess",
        1015.0,
        1010.0,
    )
    clock.now = 1030.0
    board.set("int8_preprocess", ModelState.READY)
    board.set("int8_detector", ModelState.READY)
    assert [p.ready for p in board.pipelines()] == [True, True]
    assert [p.last_ready for p in board.pipelines()] == [1030.0, 1030.0]
    assert lines == [
        "pipeline 'int8': ready -> broken (model 'int8_detector': stub died (pid 7))",
        "pipeline 'int8': broken -> reloading (model 'int8_detector': reloading after its "
        "stub died)",
        "pipeline 'int8': reloading -> broken (model 'int8_preprocess': stub died (pid 8))",
        "pipeline 'int8': broken -> reloading (model 'int8_detector': reloading after its "
        "stub died)",
        "pipeline 'int8': reloading -> ready (20.0 s not ready)",
    ]


def test_an_ensemble_is_not_ready_while_its_pipeline_is_not():
    board = HealthBoard(PIPELINES)
    board.set("postprocess", ModelState.BROKEN, "stub died (pid 9)")
    assert board.model_ready("ensemble").model == "postprocess"
    assert board.model_ready("postprocess").state is ModelState.BROKEN
    assert board.model_ready("preprocess") is None  # alive: Triton's answer stands
    assert board.model_ready("int8_ensemble") is None
    assert board.model_ready("no_such_model") is None


class StandInTriton(BaseHTTPRequestHandler):
    """Live, metrics, every model ready except the paths in ``NOT_READY`` (400, as Triton)."""

    protocol_version = "HTTP/1.1"
    NOT_READY: ClassVar[set[str]] = set()

    def do_GET(self):
        if self.path in self.NOT_READY:
            self.send_error(400)
            return
        if self.path == "/metrics":
            body = TRITON_METRICS
        elif self.path.endswith(("/ready", "/live")):
            body = b""
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Watchdog:
    """A watchdog that looks, as ``ReloadWatchdog`` does, for the metrics and readiness."""

    reloads, tick_errors = [], 0

    def __init__(self, stalled: bool = False):
        self._stalled = stalled

    def stalled(self) -> bool:
        return self._stalled

    def seconds_since_tick(self) -> float:
        return 99.0 if self._stalled else 0.5


@pytest.fixture
def endpoint():
    """(status URL, board, source) with a stand-in Triton behind it."""
    triton_port, status_port = free_ports(2)
    triton = ThreadingHTTPServer(("127.0.0.1", triton_port), StandInTriton)
    threading.Thread(target=triton.serve_forever, daemon=True).start()
    board = HealthBoard(PIPELINES)
    source = StatusSource(board, f"127.0.0.1:{triton_port}", f"127.0.0.1:{triton_port}")
    source.watch(Watchdog())
    server = StatusServer(status_port, source).start()
    yield f"http://127.0.0.1:{status_port}", board, source
    server.stop()
    triton.shutdown()
    triton.server_close()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_readiness_is_tritons_while_every_pipeline_is_ready(endpoint):
    url, _, _ = endpoint
    assert get(f"{url}/v2/health/ready")[0] == 200
    assert get(f"{url}/v2/models/int8_ensemble/ready")[0] == 200
    assert get(f"{url}/v2/models/ensemble/versions/1/ready")[0] == 200


def test_readiness_is_503_with_the_reason_while_a_pipeline_is_not(endpoint):
    url, board, _ = endpoint
    board.set("int8_detector", ModelState.RELOADING, "reloading after its stub died")
    status, body = get(f"{url}/v2/health/ready")
    assert status == 503
    assert "pipeline 'int8' reloading: int8_detector" in json.loads(body)["error"]
    assert get(f"{url}/v2/models/int8_ensemble/ready")[0] == 503
    assert get(f"{url}/v2/models/int8_detector/versions/1/ready")[0] == 503
    assert get(f"{url}/v2/models/ensemble/ready")[0] == 200  # the other pipeline answers
    board.set("int8_detector", ModelState.READY)
    assert get(f"{url}/v2/health/ready")[0] == 200


def test_no_readiness_before_the_watchdog_watches_unless_there_is_none(endpoint):
    url, _, source = endpoint
    source.watchdog = None  # Triton is ready; the launcher has not started watching yet
    status, body = get(f"{url}/v2/health/ready")
    assert status == 503 and b"does not watch the stubs yet" in body
    assert get(f"{url}/v2/models/ensemble/ready")[0] == 503
    assert json.loads(get(f"{url}/d2t/pipelines")[1])["watchdog"] == "starting"
    source.watched = False  # the launcher's --no-watchdog: Triton's answer stands
    assert get(f"{url}/v2/health/ready")[0] == 200


def test_a_new_version_that_failed_to_load_leaves_the_server_ready(endpoint):
    """Triton's strict server readiness says no while the previous version serves on: every
    replica of a shared repository would leave the Service at once.  An ensemble Triton
    says is not ready does make the server not ready."""
    url, _, _ = endpoint
    StandInTriton.NOT_READY = {"/v2/health/ready"}
    try:
        assert get(f"{url}/v2/health/ready")[0] == 200
        StandInTriton.NOT_READY = {"/v2/models/int8_ensemble/ready"}
        status, body = get(f"{url}/v2/health/ready")
        assert status == 503 and b"int8_ensemble/ready: 400" in body
    finally:
        StandInTriton.NOT_READY = set()


def test_a_stalled_watchdog_makes_the_server_not_ready(endpoint):
    url, _, source = endpoint
    source.watch(Watchdog(stalled=True))
    status, body = get(f"{url}/v2/health/ready")
    assert status == 503 and b"stopped looking" in body
    assert json.loads(get(f"{url}/d2t/pipelines")[1])["watchdog"] == "stalled"


def test_triton_out_of_reach_is_not_ready(endpoint):
    url, _, source = endpoint
    source.triton_http = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    status, body = get(f"{url}/v2/health/ready")
    assert status == 503 and b"not reachable" in body


def test_the_pipelines_answer_and_the_metrics_carry_the_boards_states(endpoint):
    url, board, _ = endpoint
    board.set("preprocess", ModelState.BROKEN, "stub died (pid 3)")
    status, body = get(f"{url}/d2t/pipelines")
    states = {p["name"]: (p["state"], p["model"]) for p in json.loads(body)["pipelines"]}
    assert status == 200 and states == {
        "default": ("broken", "preprocess"),
        "int8": ("ready", None),
    }
    status, metrics = get(f"{url}/metrics")
    assert status == 200 and metrics.startswith(TRITON_METRICS)
    text = metrics.decode()
    assert 'd2t_pipeline_ready{pipeline="default"} 0.0' in text
    assert 'd2t_pipeline_ready{pipeline="int8"} 1.0' in text
    assert 'd2t_pipeline_seconds_since_ready{pipeline="int8"} 0.0' in text
    assert get(f"{url}/v2/models")[0] == 404  # nothing else is answered here


def test_grpc_readiness_says_what_http_readiness_says(endpoint):
    """ServerReady and ModelReady, as tritonclient.grpc asks them through the front."""
    import tritonclient.grpc as grpcclient

    _, board, source = endpoint
    port = free_ports(1)[0]
    server = GrpcStatusServer(port, source).start()
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_ready() and client.is_model_ready("int8_ensemble")
        board.set("int8_postprocess", ModelState.BROKEN, "stub died (pid 5)")
        assert not client.is_server_ready()
        assert not client.is_model_ready("int8_ensemble")
        assert not client.is_model_ready("int8_postprocess", "1")
        assert client.is_model_ready("ensemble")
        client.close()
    finally:
        server.stop()
