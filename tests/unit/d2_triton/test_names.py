"""d2_triton.names: pipeline names, the model names they give, and what names an ensemble."""

from __future__ import annotations

import pytest

from d2_triton import names
from d2_triton.errors import InvalidArgumentError, ModelConfigError
from d2_triton.model_config import EnsembleParameters, from_parameters, to_parameters
from d2_triton.names import PipelineNames, Precision


def test_the_default_pipeline_keeps_the_plain_names_and_others_are_prefixed():
    assert PipelineNames().models() == {role: role for role in names.ROLES}
    keypoints = PipelineNames("keypoints")
    assert keypoints.models() == {role: f"keypoints_{role}" for role in names.ROLES}
    assert (keypoints.ensemble, keypoints.detector) == ("keypoints_ensemble", "keypoints_detector")


@pytest.mark.parametrize("name", ["", "Mask", "mask_rcnn", "-mask", "a b", "x" * 64, "../up"])
def test_a_pipeline_name_that_could_collide_or_escape_is_refused(name):
    with pytest.raises(ValueError, match="pipeline name"):
        PipelineNames(name)


def test_ensembles_name_their_pipeline_and_nothing_else_does():
    for name in ("default", "keypoints", "mask-rcnn-2"):
        assert PipelineNames.of_ensemble(PipelineNames(name).ensemble) == PipelineNames(name)
    others = (
        "detector",
        "keypoints_detector",
        "my_ensemble_x",
        "Bad_ensemble",
        "_ensemble",
        "default_ensemble",
    )
    for model in others:
        assert PipelineNames.of_ensemble(model) is None


def test_a_precision_is_parsed_refused_with_its_choices_and_written_as_its_value():
    assert Precision.parse("int8") is Precision.INT8 == "int8"
    with pytest.raises(InvalidArgumentError, match=r"'fp8' \(one of f32, bf16 or int8\)"):
        Precision.parse("fp8")
    parameters = EnsembleParameters(precision="bf16")
    assert parameters.precision is Precision.BF16
    assert to_parameters(parameters)["precision"] == "bf16" == f"{Precision.BF16}"
    with pytest.raises(ModelConfigError, match="unknown precision"):
        from_parameters(EnsembleParameters, {"precision": "fp16"})


def test_what_each_precision_needs():
    assert [p for p in Precision if p.needs_calibration] == [Precision.INT8]
    assert [p for p in Precision if not p.staged_only] == [Precision.F32]
    assert [p.cpu_capability for p in Precision] == [None, "BF16", None]
    assert [p.float_arithmetic for p in Precision] == ["f32", "bf16", "f32"]
