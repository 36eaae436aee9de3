"""What a Detectron2 user does without this project: ``DefaultPredictor`` in a loop.

Runs in the dev environment (it needs Detectron2).  Same photos, same weights as the
exported repository (rebuilt from its export_info.json: the checkpoint file, or the same
seeded random initialisation), end to end per image: decode (Detectron2's ``read_image``),
resize, eager model, ``detector_postprocess`` with pasted masks.

    python -m benchmarks.speed.eager --repository R --photos DIR --out DIR --repeats 2
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from d2_triton.commands import Parser, command
from d2_triton.serving import allocator
from export_tools.detectron2_setup.shims import import_detectron2
from export_tools.repository.writer import read_export_info


def predictor_for(repository: Path, threads: int, pipeline=None):
    """Detectron2's own predictor, with the export's weights, for an exported pipeline.

    ``pipeline``: its ``PipelineNames`` (default: the default pipeline).
    """
    import_detectron2()
    from detectron2.checkpoint import DetectionCheckpointer

    from export_tools.detector_config import load_config
    from export_tools.predictors import predictor
    from export_tools.random_init import build_random_model

    info = read_export_info(repository, pipeline)
    config = load_config(info["config"], info["config_options"], info["score_thresh_test"])
    if threads > 0:
        torch.set_num_threads(threads)
    if info["weights"]["source"] == "random":
        return predictor(config, build_random_model(config, info["weights"]["seed"]))
    model = config.build_model()
    DetectionCheckpointer(model).load(info["weights"]["location"])
    return predictor(config, model)


def heads_for_boxes(predictor, image, boxes, classes) -> dict[str, np.ndarray]:
    """Detectron2's masks and keypoints for given boxes (original pixels) and classes.

    The predictor runs as usual on ``image``, but its ROI heads' ``forward_with_given_boxes``
    (where the mask and keypoint heads read their boxes, as Detectron2's test-time
    augmentation uses it) gets these boxes, scaled to the resized image, instead of its own.
    Empty if the model has neither head or drops some of the boxes (empty after clipping).
    """
    heads = getattr(predictor.model, "roi_heads", None)
    wanted = [("mask_on", "pred_masks"), ("keypoint_on", "pred_keypoints")]
    fields = [field for switch, field in wanted if getattr(heads, switch, False)]
    if not fields or not len(boxes):
        return {}
    with given_boxes(heads, boxes, classes, image.shape[:2]):
        instances = predictor(image)["instances"]
    if len(instances) != len(boxes):
        return {}
    return {field: instances.get(field).numpy() for field in fields}


def with_served_heads(prediction, predictor, image, served):
    """A copy of ``prediction`` (a ``Prediction``) with Detectron2's masks for the served boxes.

    Its masks and keypoints for the ``served`` answer's boxes (``heads_for_boxes``), the parity
    rule's same-box comparison; the given prediction stays as it is.
    """
    found = heads_for_boxes(predictor, image, served.boxes, served.classes)
    return dataclasses.replace(
        prediction,
        masks_for_served=found.get("pred_masks"),
        keypoints_for_served=found.get("pred_keypoints"),
    )


@contextmanager
def given_boxes(heads, boxes, classes, original_hw) -> Iterator[None]:
    """While the block runs, ``heads.forward_with_given_boxes`` uses these boxes."""
    from detectron2.structures import Boxes, Instances

    own = heads.forward_with_given_boxes

    def forward(features, instances):
        resized_hw = instances[0].image_size
        scaled = torch.as_tensor(np.asarray(boxes, np.float32)).clone()
        scaled[:, 0::2] *= resized_hw[1] / original_hw[1]
        scaled[:, 1::2] *= resized_hw[0] / original_hw[0]
        mine = Instances(resized_hw, pred_boxes=Boxes(scaled))
        mine.pred_classes = torch.as_tensor(np.asarray(classes)).long()
        mine.scores = torch.ones(len(scaled))
        return own(features, [mine])

    heads.forward_with_given_boxes = forward
    try:
        yield
    finally:
        del heads.forward_with_given_boxes  # the class's method again


@command("python -m benchmarks.speed.eager")
def main(argv: list[str] | None = None) -> int:
    """Time DefaultPredictor on the photos; write eager.json."""
    parser = Parser(prog="python -m benchmarks.speed.eager", description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="the detector stub's allocator policy (d2_triton.serving.allocator) in this "
        "process too: what Detectron2 gains from it alone (not the baseline's default)",
    )
    args = parser.parse_args(argv)
    if args.keep_freed_memory and not allocator.keep_freed_memory():
        raise SystemExit("--keep-freed-memory: this C library has no mallopt")
    predictor = predictor_for(args.repository, args.threads)
    from detectron2.data.detection_utils import read_image

    results = {"threads": torch.get_num_threads(), "sizes": {}}
    for folder in sorted(p for p in args.photos.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        predictor(read_image(str(photos[0]), format="BGR"))  # warm-up
        times = []
        for _ in range(args.repeats):
            for photo in photos:
                started = time.perf_counter()
                predictor(read_image(str(photo), format="BGR"))
                times.append(time.perf_counter() - started)
        results["sizes"][folder.name] = {
            "wall_ms": 1000 * statistics.mean(times),
            "throughput": 1.0 / statistics.mean(times),
        }
        print(f"{folder.name}: {json.dumps(results['sizes'][folder.name])}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eager.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
