"""Generated configs are valid Triton configs and the ensemble is wired consistently."""

from __future__ import annotations

import pytest

from d2_triton import names
from d2_triton.model_config import DetectorParameters, PostprocessParameters, PreprocessParameters
from export_tools.repository import configs as tc

VARIANTS = {
    "mask": tc.ModelOutputs(has_masks=True),
    "boxes-only": tc.ModelOutputs(has_masks=False),
    "keypoints": tc.ModelOutputs(has_masks=False, carried={"keypoints": (17, 3)}),
    "panoptic": tc.ModelOutputs(has_masks=True, sem_seg_classes=54),
    "semantic": tc.ModelOutputs(has_masks=False, has_instances=False, sem_seg_classes=19),
}


def all_configs(outputs: tc.ModelOutputs) -> dict:
    instances = tc.InstanceSettings()
    return {
        "preprocess": tc.preprocess_config(
            PreprocessParameters(
                min_size_test=800,
                max_size_test=1333,
                input_format="BGR",
                max_image_bytes=1000,
                max_image_pixels=1000,
                label_map="../labels.json",
            )
        ),
        "detector": tc.detector_config(
            outputs,
            DetectorParameters(output_fields=("pred_boxes",)),
            instances,
            warmup_hw=(800, 1067),
        ),
        "postprocess": tc.postprocess_config(
            outputs,
            PostprocessParameters(label_map="labels.json", default_mask_format="rle"),
        ),
        "ensemble": tc.ensemble_config(outputs),
    }


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_configs_round_trip_through_text_format(variant):
    for config in all_configs(VARIANTS[variant]).values():
        assert tc.parse_pbtxt(tc.to_pbtxt(config)) == config


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ensemble_steps_connect(variant):
    configs = all_configs(VARIANTS[variant])
    ensemble = configs["ensemble"]
    available = {tensor.name: tensor for tensor in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        declared_inputs = {tensor.name: tensor for tensor in model.input}
        assert set(step.input_map) == set(declared_inputs), step.model_name
        for model_input, ensemble_tensor in step.input_map.items():
            assert ensemble_tensor in available, f"{step.model_name}.{model_input} unfed"
            source = available[ensemble_tensor]
            assert source.data_type == declared_inputs[model_input].data_type
            assert list(source.dims) == list(declared_inputs[model_input].dims)
        outputs = {tensor.name: tensor for tensor in model.output}
        for model_output, ensemble_tensor in step.output_map.items():
            available[ensemble_tensor] = outputs[model_output]
    for output in ensemble.output:
        assert output.name in available
        assert available[output.name].data_type == output.data_type


def test_outputs_follow_the_model():
    outputs = {o.name for o in all_configs(VARIANTS["keypoints"])["ensemble"].output}
    assert "keypoints" in outputs and names.MASKS_RLE not in outputs
    outputs = {o.name for o in all_configs(VARIANTS["mask"])["ensemble"].output}
    assert {names.MASKS_RLE, names.MASKS} <= outputs and "keypoints" not in outputs
    postprocess = all_configs(VARIANTS["boxes-only"])["postprocess"]
    assert postprocess.parameters["default_mask_format"].string_value == "none"


def test_segmenting_models_return_segments_beside_the_instance_outputs():
    segment_outputs = {name for name, _, _ in tc.SEGMENT_OUTPUT_DIMS}
    for variant, instance_inputs in (("panoptic", True), ("semantic", False)):
        configs = all_configs(VARIANTS[variant])
        outputs = {o.name for o in configs["ensemble"].output}
        assert segment_outputs | {names.BOXES, names.LABELS} <= outputs
        logits = [t for t in configs["detector"].output if t.name == names.SEM_SEG_LOGITS]
        assert list(logits[0].dims) == [VARIANTS[variant].sem_seg_classes, -1, -1]
        inputs = {t.name for t in configs["postprocess"].input}
        assert (names.DETECTOR_OUTPUTS["scores"] in inputs) == instance_inputs
        assert VARIANTS[variant].segmentation == variant


def test_gpu_instances():
    config = tc.detector_config(
        VARIANTS["mask"],
        DetectorParameters(output_fields=(), intra_op_threads=4),
        tc.InstanceSettings(detector_kind="gpu", detector_count=2),
    )
    group = config.instance_group[0]
    assert group.kind == group.KIND_GPU and group.count == 2
    assert config.parameters["intra_op_threads"].string_value == "4"


def test_detector_warms_up_on_a_photo_sized_input():
    config = all_configs(VARIANTS["mask"])["detector"]
    (warmup,) = config.model_warmup
    image = warmup.inputs[names.IMAGE]
    assert list(image.dims) == [3, 800, 1067] and image.random_data and warmup.count == 2
    assert image.data_type == config.input[0].data_type


@pytest.mark.parametrize(
    ("min_size", "max_size", "expected"),
    [(800, 1333, (800, 1067)), (800, 1000, (750, 1000)), (256, 1333, (256, 341))],
)
def test_warmup_size_is_a_4_3_photo_resized_as_detectron2_does(min_size, max_size, expected):
    assert tc.warmup_size(min_size, max_size) == expected
