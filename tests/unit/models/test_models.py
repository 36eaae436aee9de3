"""Unit tests of each models/*/1/model.py, run against the pb_utils stand-in.

The same files run inside the real server in the integration tests; here each model's
request handling is checked in isolation: outputs, dtypes from the config, one response per
request, and per-request errors that do not touch the neighbours.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import json_format

from d2_triton.cache import CHECKOUT
from helpers import pb_utils_stub as pb_utils

sys.modules.setdefault("triton_python_backend_utils", pb_utils)

from d2_triton.model_config import (  # noqa: E402
    DetectorParameters,
    PostprocessParameters,
    PreprocessParameters,
)
from d2_triton.serving.numpy_version import check_numpy_version  # noqa: E402
from d2_triton.serving.stages import PLAN_FILE, Stage, StagePlan  # noqa: E402
from d2_triton.vision.detections import decode_rle  # noqa: E402
from d2_triton.vision.imaging import decode_image, resize_shortest_edge, to_model_layout  # noqa: E402
from d2_triton.vision.labels import LabelMap  # noqa: E402
from export_tools.repository import configs as tc  # noqa: E402
from helpers.photos import photo_bytes  # noqa: E402

MODELS = CHECKOUT / "models"


def load_model(name: str, config, model_dir: Path, kind: str = "CPU"):
    """Import models/<name>/1/model.py and initialise it as Triton would."""
    spec = importlib.util.spec_from_file_location(f"{name}_model", MODELS / name / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)
    model.initialize(
        {
            "model_config": json.dumps(as_json),
            "model_instance_kind": kind,
            "model_instance_device_id": "0",
            "model_repository": str(model_dir),
            "model_version": "1",
            "model_name": name,
        }
    )
    return model


def request(parameters=None, **inputs) -> pb_utils.InferenceRequest:
    return pb_utils.InferenceRequest(
        [pb_utils.Tensor(name, array) for name, array in inputs.items()], parameters
    )


def outputs(response) -> dict[str, np.ndarray]:
    assert not response.has_error(), response.error().message()
    return {tensor.name(): tensor.as_numpy() for tensor in response.output_tensors()}


# -- preprocess ---------------------------------------------------------------------------


def preprocess_model(tmp_path, input_format="BGR"):
    LabelMap.from_names(["person", "bicycle", "car"]).write(tmp_path / "labels.json")
    config = tc.preprocess_config(
        PreprocessParameters(
            min_size_test=800,
            max_size_test=1333,
            input_format=input_format,
            max_image_bytes=1_000_000,
            max_image_pixels=10_000_000,
            label_map="labels.json",
        )
    )
    return load_model("preprocess", config, tmp_path)


def encoded(payload: bytes) -> np.ndarray:
    return np.frombuffer(payload, dtype=np.uint8)


def test_preprocess_outputs_the_resized_image_and_sizes(tmp_path):
    model = preprocess_model(tmp_path)
    payload = photo_bytes()["coffee.jpg"]
    (response,) = model.execute([request(image_bytes=encoded(payload))])
    result = outputs(response)
    expected = to_model_layout(resize_shortest_edge(decode_image(payload), 800, 1333), "BGR")
    np.testing.assert_array_equal(result["image"], expected)
    assert result["image"].dtype == np.uint8
    np.testing.assert_array_equal(result["original_size"], [400, 600])
    np.testing.assert_array_equal(result["resized_size"], [800, 1200])
    assert result["original_size"].dtype == np.int32


def test_preprocess_rgb_models_get_rgb(tmp_path):
    payload = photo_bytes()["coffee.jpg"]
    bgr = outputs(preprocess_model(tmp_path).execute([request(image_bytes=encoded(payload))])[0])
    rgb = outputs(
        preprocess_model(tmp_path, "RGB").execute([request(image_bytes=encoded(payload))])[0]
    )
    np.testing.assert_array_equal(rgb["image"], bgr["image"][::-1])


def test_preprocess_bad_requests_fail_alone(tmp_path):
    model = preprocess_model(tmp_path)
    good = encoded(photo_bytes()["chelsea.jpg"])
    batch = [
        request(image_bytes=good),
        request(image_bytes=np.zeros(0, np.uint8)),
        request(image_bytes=encoded(b"not an image")),
        request(image_bytes=encoded(photo_bytes()["coffee.jpg"][:5000])),
        request(image_bytes=good),
    ]
    responses = model.execute(batch)
    assert len(responses) == len(batch)
    assert [r.has_error() for r in responses] == [False, True, True, True, False]
    for response, message in zip(
        responses[1:4], ["empty request", "unrecognised image format", "truncated"], strict=True
    ):
        assert response.error().code() == pb_utils.TritonError.INVALID_ARG
        assert response.error().message().startswith("preprocess: ")
        assert message in response.error().message()


def test_preprocess_refuses_bad_postprocess_options_before_decoding(tmp_path):
    model = preprocess_model(tmp_path)
    good = encoded(photo_bytes()["chelsea.jpg"])
    responses = model.execute(
        [
            request({"classes": "unicorn"}, image_bytes=good),
            request({"score_threshold": 2}, image_bytes=np.zeros(0, np.uint8)),  # checked first
            request({"classes": "car,0", "mask_format": "none"}, image_bytes=good),
        ]
    )
    assert "classes: unknown class 'unicorn'" in responses[0].error().message()
    assert "score_threshold must be within [0, 1]" in responses[1].error().message()
    assert not responses[2].has_error()


# -- detector -----------------------------------------------------------------------------


class ToyDetector(torch.nn.Module):
    """Stands in for the traced Detectron2 model: same output layout, fixed values."""

    def forward(self, image: torch.Tensor):
        height, width = image.shape[1], image.shape[2]
        boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 50.0, 40.0]])
        boxes = boxes * torch.tensor([width, height, width, height]) / 100.0
        scores = torch.tensor([0.9, 0.3])
        classes = torch.tensor([1, 2])
        masks = torch.full((2, 1, 28, 28), 0.75)
        return boxes, scores, classes, masks, torch.tensor([height, width])


def detector_model(tmp_path, kind="CPU"):
    (tmp_path / "1").mkdir(exist_ok=True)
    torch.jit.script(ToyDetector()).save(str(tmp_path / "1" / "model.pt"))
    fields = ("pred_boxes", "scores", "pred_classes", "pred_masks", "image_size")
    stage = Stage("model", "torchscript", "model.pt", ("image",), fields)
    plan = StagePlan("image", (stage,), fields)
    (tmp_path / "1" / PLAN_FILE).write_text(plan.to_json())
    config = tc.detector_config(
        outputs=tc.ModelOutputs(has_masks=True),
        parameters=DetectorParameters(
            output_fields=fields,
            weights_source="random",
            intra_op_threads=1,
        ),
        instances=tc.InstanceSettings(detector_kind=kind.lower()),
    )
    return load_model("detector", config, tmp_path, kind)


def test_detector_maps_torchscript_outputs_by_field(tmp_path):
    model = detector_model(tmp_path)
    image = np.zeros((3, 200, 100), np.uint8)
    result = outputs(model.execute([request(image=image)])[0])
    assert set(result) == {"boxes", "scores", "classes", "mask_probs"}
    np.testing.assert_allclose(result["boxes"], [[0, 0, 10, 40], [5, 10, 50, 80]])
    assert result["classes"].dtype == np.int64 and result["mask_probs"].shape == (2, 1, 28, 28)
    warnings = [message for level, message in pb_utils.Logger.records if level == "warn"]
    assert any("EXPORTED WITH RANDOM WEIGHTS" in message for message in warnings)


def test_detector_without_cuda_runs_gpu_instances_on_cpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the GPU path is taken, tested on GPU machines")
    model = detector_model(tmp_path, kind="GPU")
    assert model.device == torch.device("cpu")
    assert any("CUDA is unavailable" in message for _, message in pb_utils.Logger.records)


def test_detector_rejects_images_that_are_not_3_x_h_x_w(tmp_path):
    model = detector_model(tmp_path)
    responses = model.execute(
        [
            request(image=np.zeros((1, 20, 20), np.uint8)),
            request(image=np.zeros((3, 8, 8), np.uint8)),
        ]
    )
    assert responses[0].error().code() == pb_utils.TritonError.INVALID_ARG
    assert "3 x H x W" in responses[0].error().message()
    assert not responses[1].has_error()


# -- postprocess --------------------------------------------------------------------------


def postprocess_model(tmp_path, outputs_=None, threshold=0.0):
    LabelMap.from_names(["person", "bicycle", "car"]).write(tmp_path / "labels.json")
    config = tc.postprocess_config(
        outputs=outputs_ or tc.ModelOutputs(has_masks=True),
        parameters=PostprocessParameters(
            label_map="labels.json", default_score_threshold=threshold, default_mask_format="rle"
        ),
    )
    return load_model("postprocess", config, tmp_path)


def detector_outputs(parameters=None):
    probs = np.zeros((3, 1, 28, 28), np.float32)
    probs[:, :, 7:21, 7:21] = 0.9
    return request(
        parameters,
        boxes=np.array([[100, 100, 300, 200], [0, 0, 50, 50], [900, 700, 1400, 900]], np.float32),
        scores=np.array([0.9, 0.6, 0.2], np.float32),
        classes=np.array([0, 2, 1], np.int64),
        mask_probs=probs,
        original_size=np.array([400, 600], np.int32),
        resized_size=np.array([800, 1200], np.int32),
    )


def test_postprocess_maps_back_to_original_pixels_with_labels(tmp_path):
    result = outputs(postprocess_model(tmp_path).execute([detector_outputs()])[0])
    np.testing.assert_allclose(
        result["boxes"], [[50, 50, 150, 100], [0, 0, 25, 25], [450, 350, 600, 400]]
    )
    assert list(result["labels"]) == [b"person", b"car", b"bicycle"]
    assert result["classes"].dtype == np.int32
    np.testing.assert_array_equal(result["image_size"], [400, 600])
    assert "masks" not in result and len(result["masks_rle"]) == 3
    first = decode_rle(result["masks_rle"][0], (400, 600))
    rows, cols = np.nonzero(first)
    assert 60 <= rows.min() < rows.max() <= 90 and 75 <= cols.min() < cols.max() <= 125


def test_postprocess_request_options(tmp_path):
    model = postprocess_model(tmp_path)
    dense = outputs(model.execute([detector_outputs({"mask_format": "dense"})])[0])
    assert dense["masks"].shape == (3, 400, 600) and "masks_rle" not in dense
    rle = outputs(model.execute([detector_outputs()])[0])["masks_rle"]
    for counts, mask in zip(rle, dense["masks"], strict=True):
        np.testing.assert_array_equal(decode_rle(counts, (400, 600)), mask.astype(bool))
    none = outputs(model.execute([detector_outputs({"mask_format": "none"})])[0])
    assert "masks" not in none and "masks_rle" not in none
    filtered = outputs(
        model.execute([detector_outputs({"score_threshold": 0.5, "classes": "car,person"})])[0]
    )
    assert list(filtered["labels"]) == [b"person", b"car"]
    assert len(filtered["masks_rle"]) == 2


def test_postprocess_default_threshold_comes_from_the_config(tmp_path):
    result = outputs(postprocess_model(tmp_path, threshold=0.5).execute([detector_outputs()])[0])
    np.testing.assert_allclose(result["scores"], [0.9, 0.6])


def test_postprocess_bad_parameters_fail_alone(tmp_path):
    model = postprocess_model(tmp_path)
    responses = model.execute(
        [
            detector_outputs({"score_threshold": "lots"}),
            detector_outputs(),
            detector_outputs({"classes": "cat"}),
        ]
    )
    assert [r.has_error() for r in responses] == [True, False, True]
    assert "postprocess: score_threshold must be a number" in responses[0].error().message()
    assert "unknown class 'cat'" in responses[2].error().message()


def test_postprocess_boxes_only_and_keypoints(tmp_path):
    model = postprocess_model(
        tmp_path, tc.ModelOutputs(has_masks=False, carried={"keypoints": (2, 3)})
    )
    keypoints = np.array([[[200, 100, 1.0], [400, 300, 2.0]]], np.float32)
    req = request(
        boxes=np.array([[100, 100, 300, 200]], np.float32),
        scores=np.array([0.9], np.float32),
        classes=np.array([0], np.int64),
        keypoints=keypoints,
        original_size=np.array([400, 600], np.int32),
        resized_size=np.array([800, 1200], np.int32),
    )
    result = outputs(model.execute([req])[0])
    np.testing.assert_allclose(result["keypoints"], [[[100, 50, 1.0], [200, 150, 2.0]]])
    assert "masks_rle" not in result


def test_postprocess_internal_errors_are_500s_with_a_log(tmp_path):
    model = postprocess_model(tmp_path)
    broken = detector_outputs()
    broken._inputs["boxes"] = pb_utils.Tensor("boxes", np.zeros((3, 5), np.float32))
    (response,) = model.execute([broken])
    assert response.error().code() == pb_utils.TritonError.INTERNAL
    assert "postprocess: internal error" in response.error().message()
    assert pb_utils.Logger.records[-1][0] == "error"


# -- shared guards ------------------------------------------------------------------------


def test_models_refuse_numpy_2():
    """The one numpy check, which backend.initialize runs in every model."""
    check_numpy_version("1.26.4")
    with pytest.raises(RuntimeError, match="numpy<2"):
        check_numpy_version("2.0.0")
