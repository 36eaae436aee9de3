"""Three pipelines in one tritonserver: a Mask R-CNN (the default), a Keypoint R-CNN
exported beside it with ``export --name keypoints`` and the same Mask R-CNN exported again
with ``--precision int8 --name int8`` (all with the plumbing options, at the plumbing size:
``helpers.exports.PLUMBING_OPTIONS``, ``PLUMBING_SIZE``).

The float32 two answer as their own Detectron2 ``DefaultPredictor`` does; the client, the
CLI and the gateway pick one by name; ``/v1/models`` lists all with their classes and
precision; the int8 one holds the bad-input corpus under load beside them, and the reload
watchdog brings its detector back after its stub is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from tritonclient.utils import InferenceServerException

from d2_triton.client import DetectionClient
from d2_triton.client.results import DetectionResult
from d2_triton.names import PipelineNames
from d2_triton.parity.detections import compare
from d2_triton.server.processes import live_stubs
from d2_triton.testing.corpus import mixed_cases
from d2_triton.testing.load import reference_answers, run_load, same_answer
from helpers.exports import (
    ARCHITECTURES,
    INT8_PIPELINE,
    PLUMBING_OPTIONS,
    REPO_ROOT,
    SECOND_PIPELINE,
    seeded_checkpoint,
    several_pipelines_repository,
)
from helpers.parity import parity_rule
from helpers.reference import detectron2_prediction
from helpers.servers import GatewayProcess

# Float32 pipeline name -> the architecture it serves.
PIPELINES = {"default": "mask_rcnn", SECOND_PIPELINE: "keypoint_rcnn"}
SERVED = sorted([*PIPELINES, INT8_PIPELINE])
PHOTOS = ("astronaut.jpg", "coffee.jpg")
# Hang catchers only: an answer takes ~0.5 s here, reloading a detector ~10 s.
TIMEOUT_S = 180
RELOAD_LIMIT_S = 300


@pytest.fixture(scope="module")
def repository():
    return several_pipelines_repository()


@pytest.fixture(scope="module")
def server(server_pool, repository):
    return server_pool.get(repository, "two-pipelines")


@pytest.fixture(scope="module")
def gateway(server, tmp_path_factory):
    log = tmp_path_factory.mktemp("gateway-two-pipelines") / "gateway.log"
    with GatewayProcess(server.http_url, log, server.settings.admin_key) as process:
        yield process


@pytest.mark.parametrize("model", sorted(PIPELINES))
def test_each_pipeline_answers_as_its_own_detectron2_model(server, repository, photos, model):
    arch = ARCHITECTURES[PIPELINES[model]]
    rule = parity_rule(repository, PipelineNames(model))
    compared = 0
    with DetectionClient(server.http_url, model=model, timeout=TIMEOUT_S) as client:
        for photo in PHOTOS:
            result = client.detect(photos[photo].read_bytes())
            reference = detectron2_prediction(
                arch, seeded_checkpoint(arch), photos[photo], PLUMBING_OPTIONS, served=result
            )
            figures = compare(result, reference, rule)
            assert not figures.problems, f"{model} / {photo}: " + "; ".join(figures.problems)
            assert (result.masks_rle is not None) == arch.has_masks
            assert (result.keypoints is not None) == arch.has_keypoints
            compared += figures.instances
    assert compared > 20


def test_the_gateway_lists_every_pipeline_with_its_classes_and_precision(gateway):
    document = requests.get(f"{gateway.url}/v1/models", timeout=TIMEOUT_S).json()
    assert document["default_model"] == "default"
    models = {model["name"]: model for model in document["models"]}
    assert sorted(models) == SERVED
    assert {name: model["precision"] for name, model in models.items()} == {
        "default": "f32",
        SECOND_PIPELINE: "f32",
        INT8_PIPELINE: "int8",
    }
    assert {model["weights"] for model in models.values()} == {"checkpoint"}
    assert models[INT8_PIPELINE]["classes"] == models["default"]["classes"]
    assert models[SECOND_PIPELINE]["ensemble"] == f"{SECOND_PIPELINE}_ensemble"
    assert models[SECOND_PIPELINE]["classes"] == {"0": "person"}
    assert len(models["default"]["classes"]) == 80
    assert models["default"]["classes"]["0"] == "person"
    assert all(model["state"] == "READY" for model in models.values())
    assert {model["health"]["state"] for model in models.values()} == {"ready"}
    triton_models = {entry["name"] for entry in document["triton_index"]}
    assert triton_models == {
        model for name in SERVED for model in PipelineNames(name).models().values()
    }


def test_the_gateway_and_the_cli_ask_the_pipeline_they_name(server, gateway, photos, tmp_path):
    payload = photos["astronaut.jpg"].read_bytes()
    with DetectionClient(server.http_url) as client:
        direct = {model: client.detect(payload, model=model) for model in PIPELINES}
    assert direct[SECOND_PIPELINE].keypoints is not None and direct["default"].keypoints is None
    for model, expected in direct.items():
        response = requests.post(
            f"{gateway.url}/v1/detect",
            params={"model": model},
            data=payload,
            headers={"Content-Type": "application/octet-stream"},
            timeout=TIMEOUT_S,
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == model
        assert same_answer(DetectionResult.from_json(response.json()), expected)
    unknown = requests.post(
        f"{gateway.url}/v1/detect", params={"model": "faces"}, data=payload, timeout=TIMEOUT_S
    )
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "no model 'faces' here; models: default, int8, keypoints"
    image = tmp_path / "astronaut.jpg"
    image.write_bytes(payload)
    for where in (["--url", server.http_url], ["--gateway", gateway.url]):
        printed = subprocess.run(
            [
                sys.executable,
                "-m",
                "d2_triton.client",
                "infer",
                str(image),
                *where,
                "--model",
                SECOND_PIPELINE,
                "--json",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=True,
        ).stdout
        answer = DetectionResult.from_json(json.loads(printed))
        assert same_answer(answer, direct[SECOND_PIPELINE]), where


def test_the_int8_pipeline_holds_bad_inputs_under_load_beside_float32(server):
    """The bad-input corpus, odd-but-valid images and photos from three clients at once to
    the int8 pipeline: each bad one a 400 that says why, each good one well formed and the
    answer it gets alone.  (How near int8 answers float32 is for trained weights to say:
    ``test_accuracy`` gates it.)"""
    cases = mixed_cases()
    alone = reference_answers(server.http_url, cases, model=INT8_PIPELINE)
    for name, answer in alone.items():
        assert_well_formed(answer, name)
    assert all(len(alone[name]) for name in alone if name.startswith("photo-"))
    report = run_load(
        server.http_url,
        cases,
        alone,
        clients=3,
        requests_per_client=3 * len(cases) // 2,
        deadline=time.monotonic() + RELOAD_LIMIT_S,
        timeout=TIMEOUT_S,
        model=INT8_PIPELINE,
    )
    print(json.dumps(report.summary(), indent=2))
    assert report.failures == []
    assert report.bad_rejected > 0 and report.good_ok > 0


def assert_well_formed(answer: DetectionResult, name: str) -> None:
    """Detections inside the image, scores within [0, 1], a mask for each."""
    height, width = answer.image_size
    assert (answer.boxes >= 0).all(), name
    assert (answer.boxes[:, [0, 2]] <= width).all() and (answer.boxes[:, [1, 3]] <= height).all()
    assert ((answer.scores >= 0) & (answer.scores <= 1)).all(), name
    assert len(answer.masks_rle) == len(answer), name


def readiness(server) -> dict[str, int]:
    """The front's answers to the probes, for the int8 pipeline and the others."""
    paths = {
        "server": "/v2/health/ready",
        "live": "/v2/health/live",
        **{name: f"/v2/models/{PipelineNames(name).ensemble}/ready" for name in SERVED},
    }
    return {
        key: requests.get(f"http://{server.http_url}{path}", timeout=10).status_code
        for key, path in paths.items()
    }


def test_the_watchdog_brings_back_the_int8_pipelines_detector(server, gateway, photos):
    """Kill one of int8_detector's stubs (exported with two instances): that pipeline
    fails and says so (not ready, through the front; the others stay ready, the server stays
    live), then answers again as before from a reload's new stubs; the survivor the reload
    replaced is ended (Triton would keep it for ever) and the pipeline answers on; the other
    pipelines' stubs are never touched."""
    payload = photos["coffee.jpg"].read_bytes()
    int8 = PipelineNames(INT8_PIPELINE)
    assert set(readiness(server).values()) == {200}
    with DetectionClient(server.http_url, model=INT8_PIPELINE, timeout=TIMEOUT_S) as client:
        before_kill = client.detect(payload)
        stubs = live_stubs(server.process.pid)
        assert len(stubs[int8.detector]) == 2  # helpers.exports.several_pipelines_repository
        reloads_before = len(server.watchdog.reloads)
        os.kill(min(stubs[int8.detector]), signal.SIGKILL)
        deadline = time.monotonic() + RELOAD_LIMIT_S
        seen, told = [], []
        while True:
            seen.append(readiness(server))
            if seen[-1][INT8_PIPELINE] != 200 and not told:  # what the gateway says of it
                told.append(requests.get(f"{gateway.url}/health", timeout=TIMEOUT_S).json())
                told.append(requests.get(f"{gateway.url}/v1/models", timeout=TIMEOUT_S).json())
            try:
                answer = client.detect(payload)
                # Back: its reload done and readiness 200 again.  Not "two new stubs": the
                # reload starts both at once, seconds before they serve, and the survivor
                # answers meanwhile (the loop once ended there before any probe saw it down).
                if (
                    reloaded(server, reloads_before, int8.detector)
                    and seen[-1][INT8_PIPELINE] == 200
                ):
                    break
            except InferenceServerException:
                pass
            assert time.monotonic() < deadline, "int8_detector was not brought back"
            time.sleep(0.5)
    new = live_stubs(server.process.pid)[int8.detector] - stubs[int8.detector]
    assert len(new) == 2, new  # the reload's two
    down = [probe for probe in seen if probe[INT8_PIPELINE] != 200]
    assert down, f"readiness never said the int8 pipeline was down: {seen}"
    assert all(probe[INT8_PIPELINE] == 503 for probe in down)
    assert any(probe["server"] == 503 for probe in down)  # (asked a moment apart)
    assert all(probe["live"] == 200 and probe["default"] == 200 for probe in seen)
    health, listing = told
    assert health["status"] == "unavailable"
    int8_health = {p["name"]: p for p in health["pipelines"]}[INT8_PIPELINE]
    assert int8_health["state"] in ("broken", "reloading")
    assert int8_health["model"] == int8.detector and int8_health["since"] > 0
    listed = {model["name"]: model for model in listing["models"]}
    assert listed[INT8_PIPELINE]["state"] == "UNAVAILABLE"
    assert listed[INT8_PIPELINE]["health"]["model"] == int8.detector
    assert listed["default"]["health"]["state"] == "ready"
    wait_until(lambda: set(readiness(server).values()) == {200}, "ready again after the reload")
    # The survivor of the old generation idles beside the new stubs until the watchdog ends it.
    wait_until(lambda: live_stubs(server.process.pid)[int8.detector] == new, "survivor ended")
    assert set(readiness(server).values()) == {200}
    with DetectionClient(server.http_url, model=INT8_PIPELINE, timeout=TIMEOUT_S) as client:
        assert same_answer(client.detect(payload), before_kill)
    after = live_stubs(server.process.pid)
    assert {m: p for m, p in after.items() if m != int8.detector} == {
        m: p for m, p in stubs.items() if m != int8.detector
    }
    reloads = [(reload.model, reload.succeeded) for reload in server.watchdog.reloads]
    assert reloads[-1] == (int8.detector, True)
    assert same_answer(answer, before_kill)


def reloaded(server, since: int, model: str) -> bool:
    """Whether the watchdog reloaded ``model`` successfully after its first ``since`` reloads."""
    return any(r.model == model and r.succeeded for r in server.watchdog.reloads[since:])


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + RELOAD_LIMIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {RELOAD_LIMIT_S} s"
        time.sleep(0.5)
