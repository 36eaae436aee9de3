"""The generated repository in the real server: configs load, the ensemble's interface is
what the client expects, request options travel through the ensemble, the CLI works."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from d2_triton import names
from d2_triton.client import DetectionClient, DetectionResult
from export_tools.repository import configs
from helpers.servers import SERVER_ENV

MODELS = (
    names.PREPROCESS_MODEL,
    names.DETECTOR_MODEL,
    names.POSTPROCESS_MODEL,
    names.ENSEMBLE_MODEL,
)


def protocol_datatype(config_dtype: int) -> str:
    """TYPE_FP32 -> FP32, TYPE_STRING -> BYTES: config names vs. the wire protocol's."""
    name = configs.mc.DataType.Name(config_dtype).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def generated(repository, name):
    return configs.parse_pbtxt((repository / name / "config.pbtxt").read_text())


def test_generated_configs_load_and_are_what_the_server_runs(
    mask_rcnn_server, mask_rcnn_repository
):
    client = httpclient.InferenceServerClient(mask_rcnn_server.http_url)
    for name in MODELS:
        assert client.is_model_ready(name), name
        served = client.get_model_config(name)
        ours = generated(mask_rcnn_repository, name)
        assert [t["name"] for t in served["input"]] == [t.name for t in ours.input]
        assert [t["name"] for t in served["output"]] == [t.name for t in ours.output]
        assert {k: v["string_value"] for k, v in served.get("parameters", {}).items()} == {
            k: v.string_value for k, v in ours.parameters.items()
        }


def test_ensemble_interface_matches_the_client(mask_rcnn_server, mask_rcnn_repository):
    client = httpclient.InferenceServerClient(mask_rcnn_server.http_url)
    metadata = client.get_model_metadata(names.ENSEMBLE_MODEL)
    assert metadata["inputs"] == [{"name": names.IMAGE_BYTES, "datatype": "UINT8", "shape": [-1]}]
    declared = {
        output["name"]: (output["datatype"], output["shape"]) for output in metadata["outputs"]
    }
    expected = configs.ensemble_output_dims(configs.ModelOutputs(has_masks=True))
    assert declared == {name: (protocol_datatype(dtype), dims) for name, dtype, dims in expected}
    # Every output the client reads is one the ensemble declares, with the dtype it assumes.
    assert {
        names.BOXES,
        names.SCORES,
        names.CLASSES,
        names.LABELS,
        names.IMAGE_SIZE,
        names.MASKS_RLE,
        names.MASKS,
    } <= set(declared)


def test_request_options_travel_through_the_ensemble(mask_rcnn_server, photos):
    payload = photos["astronaut.jpg"].read_bytes()
    with DetectionClient(mask_rcnn_server.http_url) as client:
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


def test_a_bad_option_is_a_400_and_the_server_carries_on(mask_rcnn_server, photos):
    payload = photos["chelsea.jpg"].read_bytes()
    with DetectionClient(mask_rcnn_server.http_url) as client:
        with pytest.raises(
            InferenceServerException, match="score_threshold must be within"
        ) as error:
            client.detect(payload, score_threshold=7)
        assert error.value.status() == "400"
        assert len(client.detect(payload)) > 0


def test_the_thin_client_cli_prints_labelled_detections(mask_rcnn_server, photos, tmp_path):
    host, port = mask_rcnn_server.http_url.split(":")
    command = [
        str(SERVER_ENV / "bin" / "python"),
        "-m",
        "d2_triton.client",
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
        [*command, "--protocol", "grpc", "--url", mask_rcnn_server.grpc_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert summary[0] == "3 detections in a 600x400 image"
    for line, detection in zip(summary[1:], document["detections"], strict=True):
        assert line.split()[0] == detection["label"].split()[0]
        assert f"{detection['score']:.3f}" in line


def test_result_json_round_trips_the_masks(mask_rcnn_server, photos):
    from pycocotools import mask as coco_mask

    with DetectionClient(mask_rcnn_server.http_url) as client:
        result: DetectionResult = client.detect(photos["rocket.jpg"].read_bytes(), max_detections=4)
    for index, detection in enumerate(result.to_json()["detections"]):
        decoded = coco_mask.decode(
            {"size": detection["mask"]["size"], "counts": detection["mask"]["counts"]}
        )
        np.testing.assert_array_equal(decoded.astype(bool), result.mask(index))
