"""Cascade R-CNN, a LazyConfig model, Panoptic FPN and the semantic FPN, served, answer what
Detectron2 answers.

One model of each family beyond test_parity's four architectures (``helpers.exports.FAMILIES``),
exported by the real CLI at the plumbing size in its default mode (staged; Panoptic FPN
also ``--exact``), all served by one real tritonserver; two photos each go over HTTP as raw
bytes and the answers are compared with Detectron2's own predictor (``DefaultPredictor``; for
the LazyConfig model its equivalent, ``export_tools.predictors.LazyPredictor``) under the
parity rule of the export's mode (``d2_triton.parity.detections``; segments:
``segment_parity``).  The panoptic answer also goes through the REST gateway (JSON and
render) and the CLI.  The model-zoo coverage run (``benchmarks.zoo.run``) does this for every
config; this keeps one of each family in the default suite.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import requests
from PIL import Image

from d2_triton.client import DetectionClient
from d2_triton.names import PipelineNames
from d2_triton.parity.detections import Cut, ParityFigures, compare
from d2_triton.serving.stages import PLAN_FILE, StagePlan
from export_tools.repository.writer import read_export_info
from helpers.exports import (
    FAMILIES,
    PLUMBING_SIZE,
    SCORE_THRESH_TEST,
    families_repository,
    seeded_checkpoint,
)
from helpers.parity import MEASURED, parity_rule
from helpers.reference import detectron2_prediction
from helpers.servers import GatewayProcess

PHOTOS = ("astronaut.jpg", "coffee.jpg")
DETECTIONS_PER_IMAGE = 25  # what FAMILIES' options set
MIN_COMPARED = 8  # instances or segments: a comparison of nothing proves nothing
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def families_server(server_pool):
    """(the repository of the FAMILIES' pipelines, the server serving it)."""
    repository = families_repository()
    return repository, server_pool.get(repository, "families")


def expected_rule(key: str) -> Cut | None:
    """The parity rule each family's export must carry: staged, or none for --exact."""
    arch = FAMILIES[key]
    if "--exact" in arch.export_options:
        return None
    if arch.segmentation == "semantic":  # no instances: no threshold, no top-k
        return Cut(0.0, 0)
    return Cut(SCORE_THRESH_TEST, DETECTIONS_PER_IMAGE)


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("key", FAMILIES)
def test_each_family_answers_as_detectron2(families_server, photos, key, photo):
    repository, server = families_server
    arch, pipeline = FAMILIES[key], PipelineNames(key)
    path = photos[photo]
    with DetectionClient(server.http_url, model=pipeline.name) as client:
        result = client.detect(path.read_bytes())
    reference = detectron2_prediction(arch, seeded_checkpoint(arch), path, served=result)
    rule = parity_rule(repository, pipeline)
    assert rule == expected_rule(key)
    figures = compare(result, reference, rule)
    MEASURED.setdefault(f"{key} ({'exact' if rule is None else 'default'})", ParityFigures()).merge(
        figures
    )
    assert not figures.problems, f"{key} / {photo}: " + "; ".join(figures.problems)
    if arch.segmentation != "semantic":
        assert result.masks_rle and all(result.labels)
    if arch.segmentation != "none":
        assert len(result.segments) and all(result.segments.labels)


@pytest.mark.parametrize("key", FAMILIES)
def test_each_family_compared_enough(families_server, key):
    figures = [f for name, f in MEASURED.items() if name.split(" (")[0] == key]
    compared = sum(f.instances + f.segments for f in figures)
    assert compared >= MIN_COMPARED, f"{key}: only {compared} instances and segments compared"


@pytest.fixture(scope="module")
def families_gateway(families_server, tmp_path_factory):
    """The REST gateway in front of the families' server."""
    _, server = families_server
    log = tmp_path_factory.mktemp("families-gateway") / "gateway.log"
    with GatewayProcess(server.http_url, log, server.settings.admin_key) as process:
        yield process


def test_panoptic_segments_through_the_gateway_and_the_cli(
    families_server, families_gateway, photos, tmp_path
):
    _, server = families_server
    photo = photos["coffee.jpg"]
    with DetectionClient(server.http_url, model="panoptic-fpn") as client:
        served = client.detect(photo.read_bytes(), score_threshold=0.5)
    url = f"{families_gateway.url}/v1/detect"
    query = {"model": "panoptic-fpn", "score_threshold": "0.5"}
    answer = requests.post(url, params=query, data=photo.read_bytes(), timeout=TIMEOUT_S)
    assert answer.status_code == 200, answer.text
    assert answer.json()["segments"] == served.to_json()["segments"]
    assert {s["is_thing"] for s in answer.json()["segments"]} >= {False}
    render = requests.post(f"{url}/render", params=query, data=photo.read_bytes(), timeout=60)
    assert render.status_code == 200 and render.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(render.content)).convert("RGB"))
    assert drawn.shape[:2] == served.image_size
    original = np.asarray(Image.open(photo).convert("RGB"))
    assert np.mean(np.any(drawn != original, axis=-1)) > 0.5  # the segments cover the image
    picture = tmp_path / "panoptic.png"
    cli = [sys.executable, "-m", "d2_triton.client", "infer", str(photo), "--json"]
    cli += ["--gateway", families_gateway.url, "--model", "panoptic-fpn", "--render", str(picture)]
    run = subprocess.run(cli, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["segments"] == served.to_json()["segments"]
    assert Image.open(picture).size == (served.image_size[1], served.image_size[0])


def test_panoptic_mask_format_none_keeps_the_segments_without_masks(families_server, photos):
    _, server = families_server
    with DetectionClient(server.http_url, model="panoptic-fpn") as client:
        bare = client.detect(photos["coffee.jpg"].read_bytes(), mask_format="none")
        some = client.detect(photos["coffee.jpg"].read_bytes(), classes="person", max_detections=1)
        full = client.detect(photos["coffee.jpg"].read_bytes())
    assert bare.segments.masks_rle is None and not bare.has_masks
    np.testing.assert_array_equal(bare.segments.areas, full.segments.areas)
    # The request's options select instances, not segments.
    assert len(some) <= 1 and some.to_json()["segments"] == full.to_json()["segments"]


def test_cascade_runs_each_stage_head_on_openvino_and_the_lsj_model_is_lazy(families_server):
    repository, _ = families_server
    cascade = PipelineNames("cascade-mask-rcnn")
    plan = (repository / cascade.detector / "1" / PLAN_FILE).read_text()
    on_openvino = {s.name for s in StagePlan.from_json(plan).stages if s.runtime == "openvino"}
    assert {"backbone", "box_head", "box_head_1", "box_head_2", "mask_head"} <= on_openvino
    lazy = read_export_info(repository, PipelineNames("lazy-mask-rcnn-lsj"))
    assert lazy["config_system"] == "lazy" and lazy["detector_mode"] == "staged"
    assert (lazy["min_size_test"], lazy["max_size_test"]) == PLUMBING_SIZE
