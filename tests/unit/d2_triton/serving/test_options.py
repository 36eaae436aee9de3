"""Label maps and per-request options: parsing, validation, filtering."""

from __future__ import annotations

import numpy as np
import pytest

from d2_triton.errors import InvalidRequestError
from d2_triton.serving.options import PostprocessOptions
from d2_triton.vision.detections import Detections
from d2_triton.vision.labels import LabelMap

LABELS = LabelMap.from_names(["person", "bicycle", "car", "dog"])


def detections() -> Detections:
    return Detections(
        boxes=np.arange(20, dtype=np.float32).reshape(5, 4),
        scores=np.array([0.9, 0.2, 0.75, 0.5, 0.1], np.float32),
        classes=np.array([0, 3, 2, 3, 0], np.int32),
    )


def test_defaults_keep_everything():
    kept = PostprocessOptions().apply(detections())
    np.testing.assert_array_equal(kept.scores, detections().scores)


def test_request_parameters_filter_detections():
    options = PostprocessOptions().updated_from(
        {"score_threshold": "0.4", "classes": "dog, 2", "max_detections": 1}, LABELS
    )
    assert options.classes == frozenset({3, 2})
    kept = options.apply(detections())
    np.testing.assert_array_equal(kept.scores, [0.75])
    np.testing.assert_array_equal(kept.classes, [2])


def test_max_detections_keeps_highest_scores_in_original_order():
    kept = PostprocessOptions(max_detections=3).apply(detections())
    np.testing.assert_array_equal(kept.scores, np.array([0.9, 0.75, 0.5], np.float32))
    assert len(PostprocessOptions(max_detections=0).apply(detections())) == 0


def test_threshold_is_inclusive():
    kept = PostprocessOptions(score_threshold=0.5).apply(detections())
    assert np.float32(0.5) in kept.scores


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"score_threshold": "high"}, "score_threshold must be a number"),
        ({"score_threshold": 1.5}, "within"),
        ({"score_threshold": "nan"}, "finite"),
        ({"max_detections": -1}, ">= 0"),
        ({"max_detections": "ten"}, "integer"),
        ({"max_detections": True}, "integer"),
        ({"classes": "unicorn"}, "unknown class 'unicorn'"),
        ({"classes": " , "}, "at least one"),
        ({"mask_format": "png"}, "mask_format must be one of"),
    ],
)
def test_bad_parameters_are_invalid_requests(parameters, message):
    with pytest.raises(InvalidRequestError, match=message):
        PostprocessOptions().updated_from(parameters, LABELS)


def test_unknown_parameters_are_ignored():
    options = PostprocessOptions()
    assert options.updated_from({"sequence_id": 0, "priority": 2}, LABELS) is options
