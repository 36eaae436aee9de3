"""What a client asks of the served ensemble: request options travel through it, a bad one
is a 400, the thin client CLI prints labelled detections (over HTTP and gRPC).

On conftest's ``fast_server`` (the test Mask R-CNN at ``helpers.exports.PLUMBING_SIZE``, 25
detections): none of it depends on the input size, and a request costs a fraction of the
~2.2 s it costs at Detectron2's size.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image
from tritonclient.utils import InferenceServerException

from d2_triton.client import DetectionClient
from helpers.servers import CLIENT_CLI


def test_request_options_travel_through_the_ensemble(fast_server, photos):
    payload = photos["astronaut.jpg"].read_bytes()
    with DetectionClient(fast_server.http_url) as client:
        everything = client.detect(payload)
        assert len(everything) > 20
        median = float(np.median(everything.scores))
        above = client.detect(payload, score_threshold=median)
        assert len(above) == int((everything.scores >= np.float32(median)).sum())
        assert len(client.detect(payload, max_detections=5)) == 5
        label = everything.labels[0]
        only = client.detect(payload, classes=[label])
        assert len(only) > 0 and set(only.labels) == {label}
        dense = client.detect(payload, mask_format="dense")
        assert dense.masks.shape == (len(everything), 512, 512) and dense.masks_rle is None
        for index in range(len(everything)):
            np.testing.assert_array_equal(dense.mask(index), everything.mask(index))
        bare = client.detect(payload, mask_format="none")
        assert bare.masks is None and bare.masks_rle is None
        np.testing.assert_array_equal(bare.boxes, everything.boxes)


def test_a_bad_option_is_a_400_and_the_server_carries_on(fast_server, photos):
    payload = photos["chelsea.jpg"].read_bytes()
    with DetectionClient(fast_server.http_url) as client:
        with pytest.raises(
            InferenceServerException, match="score_threshold must be within"
        ) as error:
            client.detect(payload, score_threshold=7)
        assert error.value.status() == "400"
        assert len(client.detect(payload)) > 0


def test_the_thin_client_cli_prints_labelled_detections(fast_server, photos, tmp_path):
    host, port = fast_server.http_url.split(":")
    command = [
        *CLIENT_CLI,
        "infer",
        str(photos["coffee.jpg"]),
        "--max-detections",
        "3",
    ]
    environment = {**os.environ, "TRITON_HOST": host, "TRITON_PORT": port}
    picture = tmp_path / "detections.png"
    as_json = subprocess.run(
        [*command, "--json", "--render", str(picture)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    document = json.loads(as_json.stdout)
    assert document["image_size"] == {"height": 400, "width": 600}
    assert len(document["detections"]) == 3
    for detection in document["detections"]:
        assert set(detection) == {"box", "score", "class_id", "label", "mask"}
        assert isinstance(detection["label"], str) and detection["label"]
        assert detection["mask"]["size"] == [400, 600]
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.size == (600, 400)
    # The default output is a summary; --protocol grpc reaches the same answer.
    summary = subprocess.run(
        [*command, "--protocol", "grpc", "--url", fast_server.grpc_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert summary[0] == "3 detections in a 600x400 image"
    for line, detection in zip(summary[1:], document["detections"], strict=True):
        assert line.split()[0] == detection["label"].split()[0]
        assert f"{detection['score']:.3f}" in line
