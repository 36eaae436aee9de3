"""The model trained here, served: accuracy equal to Detectron2's, labels from the dataset.

On a fresh machine the suite trains its model (``benchmarks.accuracy.SUITE_TRAINING``, cached
under ``.cache/trained``) and exports it in the background from its start
(``helpers.background``), and runs these tests last; later runs reuse both.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks import accuracy
from d2_triton.client import DetectionClient
from helpers.exports import REPO_ROOT
from training import shapes

# Served within this many AP points of Detectron2 on every metric: the default (staged,
# float32 OpenVINO) and bf16 exports within 0.3, int8 within 0.5, the exact export within 0.1.
AP_TOLERANCE = {"default": 0.3, "exact": 0.1, "bf16": 0.3, "int8": 0.5}
# "A model that learned": AP50 of boxes and masks on val, for the suite's 300-iteration
# recipe (benchmarks.accuracy.SUITE_TRAINING), which reached 31.4 / 29.2 on the AMD EPYC with
# AVX-512 and 30.5 / 27.6 on the Intel Xeon with AMX (a random model scores ~0).  7 to 11 points
# below those: training on another CPU moved AP50 by one or two; the 1500-iteration model the docs
# quote reaches ~93 (benchmarks.accuracy.run).
MIN_AP50 = 20.0


@pytest.fixture(scope="module")
def summary(tmp_path_factory, server_pool, trained_model):
    server_pool.stop()  # the accuracy run wants both cores
    return accuracy.measure(tmp_path_factory.mktemp("accuracy"), spec=accuracy.SUITE_TRAINING)


@pytest.mark.parametrize("variant", sorted(AP_TOLERANCE))
def test_served_accuracy_equals_detectron2s(summary, variant):
    print(json.dumps(summary, indent=2))
    eager = summary["detectron2"]
    served = summary["served"][variant]
    assert served["export_options"] == list(accuracy.VARIANTS[variant])
    for metric in accuracy.METRICS:
        assert abs(served[metric] - eager[metric]) <= AP_TOLERANCE[variant], (metric, served)


def test_the_trained_model_is_good(summary):
    for figures in (summary["detectron2"], summary["served"]["default"]):
        assert figures["bbox_AP50"] >= MIN_AP50 and figures["segm_AP50"] >= MIN_AP50, figures


def test_labels_come_from_the_dataset_and_a_label_map_overrides_them(
    summary, server_pool, trained_model, tmp_path
):
    """No hand-written label file: the export names classes from thing_classes."""
    model = trained_model
    served = accuracy.variants_repository(model, accuracy.VARIANTS, accuracy.EXPORTS)
    labels = json.loads((served / "postprocess" / "labels.json").read_text())  # "default"
    assert list(labels.values()) == list(shapes.CLASSES)

    renamed = tmp_path / "labels.json"
    renamed.write_text(
        json.dumps({str(i): f"{name}-shape" for i, name in enumerate(shapes.CLASSES)})
    )
    repository = tmp_path / "repository"
    val = shapes.splits(accuracy.DATA)["val"]
    command = accuracy.export_command(model, repository, "--label-map", str(renamed))
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    server = server_pool.get(repository, "relabelled")
    image = sorted(val.image_root.glob("*.jpg"))[0].read_bytes()
    with DetectionClient(server.http_url) as client:
        result = client.detect(image, score_threshold=0.5)
    assert result.labels and all(label.endswith("-shape") for label in result.labels)
    assert result.labels == [f"{shapes.CLASSES[c]}-shape" for c in result.classes]
