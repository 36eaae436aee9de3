"""Every bad input gets a clear 400, every odd-but-valid image a correct answer, and the
server, its models and its stub processes are unharmed afterwards.

On the plumbing export (conftest's ``fast_server``): decoding does not depend on the model's
size, and Detectron2's reference answers with the same options and size
(``PLUMBING_OPTIONS``), so each odd image costs well under a second instead of ~7 s.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from d2_triton import names
from d2_triton.client import DetectionClient
from d2_triton.model_config import DecodeLimits
from d2_triton.parity.detections import compare
from d2_triton.server.processes import stub_pids
from d2_triton.testing.corpus import bad_inputs, encode, odd_valid_images
from helpers.exports import ARCHITECTURES, PLUMBING_OPTIONS, seeded_checkpoint
from helpers.parity import parity_rule
from helpers.reference import detectron2_prediction

BAD = bad_inputs(max_image_bytes=DecodeLimits().max_bytes)
ODD = odd_valid_images()
# A hang catcher only: refusals take milliseconds here, inference of a good image ~0.5 s.
HANG_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def stubs_before(fast_server):
    return stub_pids(fast_server.process.pid)


def detector_requests(server) -> int:
    """Requests the detector has executed or failed, from Triton's statistics."""
    return server.executions(names.DETECTOR_MODEL)


@pytest.mark.parametrize("case", BAD, ids=[case.name for case in BAD])
def test_bad_input_gets_a_400_that_says_what_is_wrong(fast_server, stubs_before, case):
    """Refused by preprocess, before the detector spends any time on it."""
    detector_before = detector_requests(fast_server)
    with (
        DetectionClient(fast_server.http_url, timeout=HANG_TIMEOUT_S) as client,
        pytest.raises(InferenceServerException) as error,
    ):
        client.detect(case.payload)
    assert error.value.status() == "400"
    assert case.expected_error in error.value.message()
    assert "preprocess: " in error.value.message()  # says which step refused it
    assert detector_requests(fast_server) == detector_before


def test_wrong_dtype_and_shape_are_refused_by_triton(fast_server, stubs_before):
    client = httpclient.InferenceServerClient(fast_server.http_url)
    as_float = httpclient.InferInput(names.IMAGE_BYTES, [16], "FP32")
    as_float.set_data_from_numpy(np.zeros(16, np.float32))
    with pytest.raises(InferenceServerException, match="data-type is 'FP32'") as error:
        client.infer(names.ENSEMBLE_MODEL, [as_float])
    assert error.value.status() == "400"
    two_d = httpclient.InferInput(names.IMAGE_BYTES, [4, 4], "UINT8")
    two_d.set_data_from_numpy(np.zeros((4, 4), np.uint8))
    with pytest.raises(InferenceServerException, match="unexpected shape") as error:
        client.infer(names.ENSEMBLE_MODEL, [two_d])
    assert error.value.status() == "400"
    with pytest.raises(InferenceServerException, match="input") as error:
        client.infer(names.ENSEMBLE_MODEL, [])
    assert error.value.status() == "400"


@pytest.mark.parametrize("case", ODD, ids=[case.name for case in ODD])
def test_odd_but_valid_images_get_detectron2s_answer(
    fast_server, fast_repository, stubs_before, case, tmp_path
):
    """Answered as Detectron2 answers the same file; 16-bit PNGs as their 8-bit values."""
    with DetectionClient(fast_server.http_url) as client:
        result = client.detect(case.payload)
        if case.name == "sixteen-bit-png":
            eight_bit = np.asarray(Image.open(_write(tmp_path, case.payload))) // 257
            expected = client.detect(encode(Image.fromarray(eight_bit.astype(np.uint8)), "PNG"))
            np.testing.assert_array_equal(result.boxes, expected.boxes)
            np.testing.assert_array_equal(result.scores, expected.scores)
            assert result.masks_rle == expected.masks_rle
            return
    arch = ARCHITECTURES["mask_rcnn"]
    image = _write(tmp_path, case.payload)
    reference = detectron2_prediction(
        arch, seeded_checkpoint(arch), image, PLUMBING_OPTIONS, served=result
    )
    figures = compare(result, reference, parity_rule(fast_repository))
    assert not figures.problems, "; ".join(figures.problems)


def test_server_models_and_stubs_are_unharmed(fast_server, stubs_before):
    client = httpclient.InferenceServerClient(fast_server.http_url)
    assert client.is_server_live() and client.is_server_ready()
    for name in ("preprocess", "detector", "postprocess", "ensemble"):
        assert client.is_model_ready(name), name
    assert stub_pids(fast_server.process.pid) == stubs_before  # none died or restarted


def _write(directory, payload: bytes):
    path = directory / "image"
    path.write_bytes(payload)
    return path
