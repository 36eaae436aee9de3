"""The heart of the project: the served ensemble answers what Detectron2 answers.

For each meta-architecture, a model with fixed-seed weights is exported by the real CLI and
served by the real tritonserver; each real photo goes over HTTP as raw bytes and the answer
is compared, instance by instance, with Detectron2's ``DefaultPredictor`` on the same file:
same classes, boxes within 0.5 px, scores within 1e-3, mask IoU >= 0.99, keypoints within
0.5 px.  Figures are printed at the end of the run and kept in .cache/reports/parity.json.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import PARITY_FIGURES
from d2_triton.client import DetectionClient
from helpers.exports import ARCHITECTURES, exported_repository, seeded_checkpoint
from helpers.parity import ParityFigures, compare
from helpers.photos import photo_bytes
from helpers.reference import detectron2_prediction

PHOTOS = sorted(photo_bytes())
MIN_INSTANCES_PER_ARCHITECTURE = 8  # a parity run that compares nothing proves nothing


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def served(request, server_pool):
    """(architecture, its running server); the pool keeps one server per repository."""
    arch = ARCHITECTURES[request.param]
    return arch, server_pool.get(exported_repository(arch), arch.key)


@pytest.mark.parametrize("photo", PHOTOS)
def test_served_detections_equal_detectron2(served, photos, photo):
    arch, server = served
    path = photos[photo]
    reference = detectron2_prediction(arch, seeded_checkpoint(arch), path)
    with DetectionClient(server.http_url) as client:
        result = client.detect(path.read_bytes())
    figures = compare(result, reference)
    PARITY_FIGURES.setdefault(arch.key, ParityFigures()).merge(figures)
    assert not figures.problems, f"{arch.key} / {photo}: " + "; ".join(figures.problems)
    assert len(result.labels) == len(result) and all(result.labels)


def test_parity_compared_enough_instances(served):
    arch, _ = served
    compared = PARITY_FIGURES.get(arch.key, ParityFigures()).instances
    assert compared >= MIN_INSTANCES_PER_ARCHITECTURE, (
        f"{arch.key}: only {compared} instances compared across the photos"
    )


def test_grpc_answers_like_http(served, photos):
    _, server = served
    payload = photos["coffee.jpg"].read_bytes()
    with (
        DetectionClient(server.http_url, "http") as http,
        DetectionClient(server.grpc_url, "grpc") as grpc,
    ):
        over_http = http.detect(payload)
        over_grpc = grpc.detect(payload)
    assert len(over_http) == len(over_grpc) > 0
    np.testing.assert_array_equal(over_grpc.boxes, over_http.boxes)
    np.testing.assert_array_equal(over_grpc.scores, over_http.scores)
    np.testing.assert_array_equal(over_grpc.classes, over_http.classes)
    assert over_grpc.labels == over_http.labels
    assert over_grpc.masks_rle == over_http.masks_rle
