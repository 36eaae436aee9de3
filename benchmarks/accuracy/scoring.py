"""COCO AP of Detectron2's own predictor and of each served pipeline, by one scoring code."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from d2_triton.cache import server_env
from d2_triton.client import DetectionClient
from d2_triton.server import ServerEnvironment, TritonServer
from d2_triton.testing.ports import loopback_server_settings
from export_tools.progress import progress
from training import shapes, train

METRICS = ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50")


def coco_detection(image_id: int, category_id: int, box, score: float, rle: dict) -> dict:
    """One detection in COCO's results format (box as x, y, width, height)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "score": float(score),
        "segmentation": rle,
    }


def detectron2_detections(model: Path, images: list[dict], image_root: Path) -> list[dict]:
    """DefaultPredictor on each val file, as a Detectron2 user runs it."""
    from detectron2.config import get_cfg
    from detectron2.data.detection_utils import read_image
    from detectron2.engine import DefaultPredictor
    from pycocotools import mask as mask_util

    cfg = get_cfg()
    cfg.merge_from_file(str(model / train.CONFIG_FILE))
    cfg.MODEL.WEIGHTS = str(model / train.CHECKPOINT_FILE)
    predictor = DefaultPredictor(cfg)
    detections = []
    for image in progress(images, "Detectron2 on val"):
        instances = predictor(read_image(str(image_root / image["file_name"]), format="BGR"))
        instances = instances["instances"].to("cpu")
        masks = instances.pred_masks.numpy().astype(np.uint8)
        for index in range(len(instances)):
            rle = mask_util.encode(np.asfortranarray(masks[index]))
            rle["counts"] = rle["counts"].decode("ascii")
            detections.append(
                coco_detection(
                    image["id"],
                    int(instances.pred_classes[index]) + 1,
                    instances.pred_boxes.tensor[index].tolist(),
                    instances.scores[index],
                    rle,
                )
            )
    return detections


def served_detections(
    http_url: str, pipeline: str, images: list[dict], image_root: Path
) -> list[dict]:
    """The served pipeline's answer for each val file's bytes, over HTTP."""
    detections = []
    with DetectionClient(http_url, model=pipeline) as client:
        for image in progress(images, f"served {pipeline} on val"):
            result = client.detect((image_root / image["file_name"]).read_bytes())
            height, width = result.image_size
            for index in range(len(result)):
                rle = {"size": [height, width], "counts": result.masks_rle[index].decode("ascii")}
                detections.append(
                    coco_detection(
                        image["id"],
                        int(result.classes[index]) + 1,
                        result.boxes[index],
                        result.scores[index],
                        rle,
                    )
                )
    return detections


def score(ground_truth: Path, detections: list[dict]) -> dict[str, float]:
    """COCO bbox and segm AP and AP50, on the 0-100 scale."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(ground_truth))
        found = truth.loadRes(detections) if detections else None
        figures = {}
        for kind in ("bbox", "segm"):
            if found is None:
                figures |= {f"{kind}_AP": 0.0, f"{kind}_AP50": 0.0}
                continue
            evaluation = COCOeval(truth, found, kind)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            figures[f"{kind}_AP"] = 100 * float(evaluation.stats[0])
            figures[f"{kind}_AP50"] = 100 * float(evaluation.stats[1])
    return figures


def served_figures(
    repository: Path,
    variants: dict[str, tuple[str, ...]],
    images: list[dict],
    val: shapes.DatasetFiles,
    log: Path,
) -> dict[str, dict]:
    """Serve ``repository`` with the real tritonserver and score each variant's pipeline."""
    server_settings = loopback_server_settings(repository)
    environment = ServerEnvironment.inspect(server_env())
    figures = {}
    with TritonServer(server_settings, environment, log_path=log) as server:
        for name, export_options in variants.items():
            detections = served_detections(server.http_url, name, images, val.image_root)
            figures[name] = {
                **score(val.json_file, detections),
                "export_options": list(export_options),
            }
    return figures
