"""The heart of the project: the served ensemble answers what Detectron2 answers.

For each meta-architecture, a model with fixed-seed weights is exported by the real CLI,
twice (the default staged export and ``--exact``, two pipelines of one repository), and
served by the real tritonserver; each real photo goes over HTTP as raw bytes to each
pipeline and the answer is compared, instance by instance, with Detectron2's
``DefaultPredictor`` on the same file: same classes, boxes within 0.5 px, scores within
1e-3, mask IoU >= 0.99, keypoints within 0.5 px; the default export may keep or drop
instances whose score sits at the cut (``helpers.parity``), and counts them.
Keypoint R-CNN keeps 25 detections per image, in the export and in DefaultPredictor alike
(``helpers.exports.ARCHITECTURES``); the others keep Detectron2's defaults.
Figures are printed at the end of the run and kept in .cache/reports/parity.json.
"""

from __future__ import annotations

import numpy as np
import pytest

from d2_triton.client import DetectionClient, DetectionResult
from d2_triton.names import PipelineNames
from d2_triton.parity.detections import ParityFigures, compare
from d2_triton.serving.stages import PLAN_FILE, StagePlan
from export_tools.repository.writer import read_export_info
from helpers.exports import (
    ARCHITECTURES,
    EXACT_PIPELINE,
    SCORE_THRESH_TEST,
    at_plumbing_size,
    both_modes_repository,
    seeded_checkpoint,
)
from helpers.parity import MEASURED, Cut, detections_per_image, parity_rule
from helpers.photos import photo_bytes
from helpers.reference import detectron2_prediction

PHOTOS = sorted(photo_bytes())
MIN_INSTANCES_PER_ARCHITECTURE = 8  # a parity run that compares nothing proves nothing
# Export mode -> its pipeline in the repository and whether its parity allows the cut rule.
MODES = {
    "default": (PipelineNames(), True),
    "exact": (PipelineNames(EXACT_PIPELINE), False),
}


# (architecture, mode, photo) -> the answer over HTTP, which the gRPC test compares with
# rather than asking again (~2.3 s a request at this size).
HTTP_ANSWERS: dict[tuple[str, str, str], DetectionResult] = {}


# Mask R-CNN, the default model, at Detectron2's size first (the server the modules before
# this one left running); the others at the plumbing size, the same code paths at a fraction
# of the cost; at Detectron2's size too with `pytest -m full` (docs/testing.md).
OTHERS = [ARCHITECTURES[key] for key in sorted(ARCHITECTURES) if key != "mask_rcnn"]
PARITY = [
    pytest.param(ARCHITECTURES["mask_rcnn"], id="mask_rcnn"),
    *(pytest.param(arch, id=arch.key) for arch in map(at_plumbing_size, OTHERS)),
    *(pytest.param(arch, id=arch.key, marks=pytest.mark.full) for arch in OTHERS),
]


@pytest.fixture(scope="module", params=PARITY)
def served(request, server_pool):
    """(architecture, its repository with both modes, the running server); one at a time."""
    arch = request.param
    repository = both_modes_repository(arch)
    return arch, repository, server_pool.get(repository, arch.key)


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("mode", MODES)
def test_served_detections_equal_detectron2(served, photos, mode, photo):
    arch, repository, server = served
    pipeline, has_cut = MODES[mode]
    expected_rule = Cut(SCORE_THRESH_TEST, detections_per_image(arch.options)) if has_cut else None
    path = photos[photo]
    reference = detectron2_prediction(arch, seeded_checkpoint(arch), path)
    with DetectionClient(server.http_url, model=pipeline.name) as client:
        result = client.detect(path.read_bytes())
    HTTP_ANSWERS[(arch.key, mode, photo)] = result
    rule = parity_rule(repository, pipeline)
    assert rule == expected_rule
    figures = compare(result, reference, rule)
    MEASURED.setdefault(f"{arch.key} ({mode})", ParityFigures()).merge(figures)
    assert not figures.problems, f"{arch.key} {mode} / {photo}: " + "; ".join(figures.problems)
    assert len(result.labels) == len(result) and all(result.labels)


@pytest.mark.parametrize("mode", MODES)
def test_parity_compared_enough_instances(served, mode):
    arch, _, _ = served
    compared = MEASURED.get(f"{arch.key} ({mode})", ParityFigures()).instances
    assert compared >= MIN_INSTANCES_PER_ARCHITECTURE, (
        f"{arch.key} {mode}: only {compared} instances compared across the photos"
    )


@pytest.mark.parametrize("mode", MODES)
def test_grpc_answers_like_http(served, photos, mode):
    arch, _, server = served
    model = MODES[mode][0].name
    payload = photos["coffee.jpg"].read_bytes()
    over_http = HTTP_ANSWERS.get((arch.key, mode, "coffee.jpg"))
    if over_http is None:  # run on its own
        with DetectionClient(server.http_url, "http", model=model) as http:
            over_http = http.detect(payload)
    with DetectionClient(server.grpc_url, "grpc", model=model) as grpc:
        over_grpc = grpc.detect(payload)
    assert len(over_http) == len(over_grpc) > 0
    np.testing.assert_array_equal(over_grpc.boxes, over_http.boxes)
    np.testing.assert_array_equal(over_grpc.scores, over_http.scores)
    np.testing.assert_array_equal(over_grpc.classes, over_http.classes)
    assert over_grpc.labels == over_http.labels
    assert over_grpc.masks_rle == over_http.masks_rle


def test_each_mode_writes_its_plan(served):
    """Default: the static parts on OpenVINO; --exact: the one traced TorchScript file."""
    _, repository, _ = served
    for mode, (pipeline, _) in MODES.items():
        folder = repository / pipeline.detector / "1"
        plan = StagePlan.from_json((folder / PLAN_FILE).read_text())
        info = read_export_info(repository, pipeline)
        assert info["detector_mode"] == ("exact" if mode == "exact" else "staged")
        if mode == "exact":
            assert [stage.file for stage in plan.stages] == ["model.pt"]
        else:
            assert "backbone" in {s.name for s in plan.stages if s.runtime == "openvino"}
        assert all((folder / stage.file).is_file() for stage in plan.stages)
