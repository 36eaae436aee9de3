"""Cascade R-CNN and a LazyConfig model, served, answer what Detectron2 answers.

One model of each family beyond test_parity's four architectures (``helpers.exports.FAMILIES``),
exported by the real CLI in its default mode (staged) at the plumbing size, both served by
one real tritonserver; two photos each go over HTTP as raw bytes and the answers are
compared with Detectron2's own predictor (``DefaultPredictor``; for the LazyConfig model its
equivalent, ``export_tools.predictors.LazyPredictor``) under the staged parity rule
(``helpers.parity``).  The model-zoo coverage run (``benchmarks.zoo``) does this for every
config; this keeps one of each family in the default suite.
"""

from __future__ import annotations

import pytest

from d2_triton.client import DetectionClient
from d2_triton.names import PipelineNames
from d2_triton.serving.stages import PLAN_FILE, StagePlan
from d2_triton.testing.parity import Cut, ParityFigures, compare
from export_tools.repository.writer import read_export_info
from helpers.exports import FAMILIES, SCORE_THRESH_TEST, families_repository, seeded_checkpoint
from helpers.parity import MEASURED, parity_rule
from helpers.reference import detectron2_prediction

PHOTOS = ("astronaut.jpg", "coffee.jpg")
DETECTIONS_PER_IMAGE = 25  # what FAMILIES' options set
MIN_INSTANCES = 8  # a comparison of nothing proves nothing


@pytest.fixture(scope="module")
def families_server(server_pool):
    """(the repository of the FAMILIES' pipelines, the server serving it)."""
    repository = families_repository()
    return repository, server_pool.get(repository, "families")


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("key", FAMILIES)
def test_each_family_answers_as_detectron2(families_server, photos, key, photo):
    repository, server = families_server
    arch, pipeline = FAMILIES[key], PipelineNames(key)
    path = photos[photo]
    reference = detectron2_prediction(arch, seeded_checkpoint(arch), path)
    with DetectionClient(server.http_url, model=pipeline.name) as client:
        result = client.detect(path.read_bytes())
    rule = parity_rule(repository, pipeline)
    assert rule == Cut(SCORE_THRESH_TEST, DETECTIONS_PER_IMAGE)
    figures = compare(result, reference, rule)
    MEASURED.setdefault(f"{key} (default)", ParityFigures()).merge(figures)
    assert not figures.problems, f"{key} / {photo}: " + "; ".join(figures.problems)
    assert result.masks_rle and all(result.labels)


@pytest.mark.parametrize("key", FAMILIES)
def test_each_family_compared_enough_instances(families_server, key):
    compared = MEASURED.get(f"{key} (default)", ParityFigures()).instances
    assert compared >= MIN_INSTANCES, f"{key}: only {compared} instances compared"


def test_cascade_runs_each_stage_head_on_openvino_and_the_lsj_model_is_lazy(families_server):
    repository, _ = families_server
    cascade = PipelineNames("cascade-mask-rcnn")
    plan = (repository / cascade.detector / "1" / PLAN_FILE).read_text()
    on_openvino = {s.name for s in StagePlan.from_json(plan).stages if s.runtime == "openvino"}
    assert {"backbone", "box_head", "box_head_1", "box_head_2", "mask_head"} <= on_openvino
    lazy = read_export_info(repository, PipelineNames("lazy-mask-rcnn-lsj"))
    assert lazy["config_system"] == "lazy" and lazy["detector_mode"] == "staged"
    assert (lazy["min_size_test"], lazy["max_size_test"]) == (320, 533)
