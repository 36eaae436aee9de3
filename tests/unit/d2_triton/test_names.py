"""d2_triton.names: pipeline names, the model names they give, and what names an ensemble."""

from __future__ import annotations

import pytest

from d2_triton import names
from d2_triton.names import PipelineNames


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
