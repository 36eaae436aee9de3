"""The generated repository in the real server, at Detectron2's size: configs load, the
ensemble's interface is what the client expects, result JSON keeps the masks.

(What a client asks of it, options and the CLI, is in test_client_requests.py.)"""

from __future__ import annotations

import numpy as np
import tritonclient.http as httpclient

from d2_triton import names
from d2_triton.client import DetectionClient, DetectionResult
from export_tools.repository import configs

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


def test_result_json_round_trips_the_masks(mask_rcnn_server, photos):
    from pycocotools import mask as coco_mask

    with DetectionClient(mask_rcnn_server.http_url) as client:
        result: DetectionResult = client.detect(photos["rocket.jpg"].read_bytes(), max_detections=4)
    for index, detection in enumerate(result.to_json()["detections"]):
        decoded = coco_mask.decode(
            {"size": detection["mask"]["size"], "counts": detection["mask"]["counts"]}
        )
        np.testing.assert_array_equal(decoded.astype(bool), result.mask(index))
