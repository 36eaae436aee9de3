"""Segments in a result: read from the ensemble's outputs, written as JSON and back, drawn."""

from __future__ import annotations

import numpy as np

from d2_triton import names
from d2_triton.client.render import draw_detections, segment_colour
from d2_triton.client.results import DetectionResult
from d2_triton.vision.detections import encode_mask_rle

SIZE = (20, 30)


def segment_map() -> np.ndarray:
    ids = np.zeros(SIZE, np.int32)
    ids[:, :10] = 1  # a thing
    ids[:, 10:] = 2  # stuff
    return ids


def panoptic_outputs(mask_format: str = "rle") -> dict[str, np.ndarray]:
    ids = segment_map()
    outputs = {
        names.IMAGE_SIZE: np.array(SIZE, np.int32),
        names.BOXES: np.zeros((0, 4), np.float32),
        names.SCORES: np.zeros(0, np.float32),
        names.CLASSES: np.zeros(0, np.int32),
        names.LABELS: np.array([], dtype=np.object_),
        names.SEGMENT_IDS: np.array([1, 2], np.int32),
        names.SEGMENT_CLASSES: np.array([0, 5], np.int32),
        names.SEGMENT_LABELS: np.array([b"person", b"sky"], dtype=np.object_),
        names.SEGMENT_IS_THING: np.array([True, False]),
        names.SEGMENT_SCORES: np.array([0.75, np.nan], np.float32),
        names.SEGMENT_AREAS: np.array([200, 400], np.int64),
    }
    if mask_format == "rle":
        outputs[names.SEGMENTS_RLE] = np.array(
            [encode_mask_rle(ids == 1), encode_mask_rle(ids == 2)], dtype=np.object_
        )
    elif mask_format == "dense":
        outputs[names.SEGMENT_MAP] = ids
    return outputs


def test_segments_read_from_rle_or_the_dense_map_give_the_same_masks():
    from_rle = DetectionResult.from_outputs(panoptic_outputs("rle")).segments
    from_map = DetectionResult.from_outputs(panoptic_outputs("dense")).segments
    for index in range(2):
        np.testing.assert_array_equal(from_rle.mask(index), from_map.mask(index))
    np.testing.assert_array_equal(from_rle.class_map(), segment_map())
    assert DetectionResult.from_outputs(panoptic_outputs("none")).segments.mask(0) is None


def test_segments_json_names_things_with_scores_and_reads_back():
    result = DetectionResult.from_outputs(panoptic_outputs("rle"))
    document = result.to_json()
    thing, stuff = document["segments"]
    assert thing["label"] == "person" and thing["is_thing"] and thing["score"] == 0.75
    assert "score" not in stuff and stuff["area"] == 400 and "counts" in stuff["mask"]
    back = DetectionResult.from_json(document)
    assert back.to_json() == document
    assert "mask" not in result.to_json(mask_format="none")["segments"][0]
    polygons = result.to_json(mask_format="polygon")["segments"][1]["mask"]["polygons"]
    assert len(polygons) == 1


def test_a_result_with_segments_is_drawn_as_its_segments():
    result = DetectionResult.from_outputs(panoptic_outputs("dense"))
    image = np.full((*SIZE, 3), 128, np.uint8)
    drawn = np.asarray(draw_detections(image, result))
    assert np.any(drawn != image, axis=-1).all()  # both segments cover the picture
    expected = np.rint(128 * 0.55 + np.array(segment_colour(result.segments, 1)) * 0.45)
    assert tuple(drawn[0, -1]) == tuple(expected.astype(np.uint8))


def test_the_cli_lists_segments_after_detections():
    from d2_triton.client.cli import summary_lines

    lines = summary_lines(DetectionResult.from_outputs(panoptic_outputs("none")))
    assert lines[1:] == [
        "2 segments",
        f"{'person':>16s} thing  200 px",
        f"{'sky':>16s} stuff  400 px",
    ]
