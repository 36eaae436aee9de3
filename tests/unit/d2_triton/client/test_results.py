"""DetectionResult's JSON: exact short floats, polygons at pixel centres."""

from __future__ import annotations

import json

import numpy as np
import pytest

from d2_triton.client.results import DetectionResult, exact_float
from d2_triton.vision.detections import mask_to_polygons


def square_result() -> DetectionResult:
    from d2_triton.vision.detections import compress_rle_counts, region_to_rle_counts

    mask = np.zeros((40, 60), bool)
    mask[10:30, 20:50] = True
    counts = region_to_rle_counts(mask[10:30, 20:50], (20, 10, 50, 30), (40, 60))
    return DetectionResult(
        image_size=(40, 60),
        boxes=np.array([[20.1, 10.2, 49.7, 29.9]], np.float32),
        scores=np.array([0.9], np.float32),
        classes=np.array([3], np.int32),
        labels=["motorcycle"],
        masks_rle=[compress_rle_counts(counts, (40, 60))],
    )


def test_json_floats_are_short_and_exact():
    assert exact_float(np.float32(0.9)) == 0.9
    assert np.float32(exact_float(np.float32(1 / 3))) == np.float32(1 / 3)
    document = square_result().to_json()
    assert json.dumps(document["detections"][0]["score"]) == "0.9"
    assert document["detections"][0]["box"] == [20.1, 10.2, 49.7, 29.9]
    round_trip = DetectionResult.from_json(json.loads(json.dumps(document)))
    np.testing.assert_array_equal(round_trip.boxes, square_result().boxes)
    assert round_trip.masks_rle == square_result().masks_rle


def test_polygons_trace_the_mask_at_pixel_centres():
    result = square_result()
    polygons = result.to_json("polygon")["detections"][0]["mask"]["polygons"]
    assert len(polygons) == 1
    corners = np.array(polygons[0]).reshape(-1, 2)
    assert corners.min(axis=0).tolist() == [20.5, 10.5]
    assert corners.max(axis=0).tolist() == [49.5, 29.5]
    assert mask_to_polygons(np.zeros((5, 5), bool)) == []
    assert "mask" not in result.to_json("none")["detections"][0]
    with pytest.raises(ValueError, match="mask_format"):
        result.to_json("png")
