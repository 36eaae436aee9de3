"""Drawing detections: on the detection, nothing far from it."""

from __future__ import annotations

import numpy as np
import pytest

from d2_triton.client.render import colour_of, draw_detections
from d2_triton.vision.detections import decode_rle
from tests.unit.d2_triton.client.test_results import square_result


def test_drawing_touches_the_detection_and_nothing_far_from_it():
    result = square_result()
    image = np.full((40, 60, 3), 200, np.uint8)
    drawn = np.asarray(draw_detections(image, result))
    changed = np.any(drawn != image, axis=-1)
    mask = decode_rle(result.masks_rle[0], (40, 60))
    assert changed[mask].all()
    assert not changed[35:, :].any() and not changed[:, :15].any()
    assert tuple(drawn[20, 21]) == colour_of(3)  # the box outline
    with pytest.raises(ValueError, match="detections are for 60x40"):
        draw_detections(np.zeros((10, 10, 3), np.uint8), result)
