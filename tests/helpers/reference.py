"""What Detectron2 itself predicts: ``DefaultPredictor`` on ``read_image``'s pixels.

For a LazyConfig model, Detectron2 has no predictor class; ``LazyPredictor`` takes
``DefaultPredictor``'s steps with the config's test loader settings.

This is the parity baseline: Detectron2's eager model with the same checkpoint file and
config the exporter used, fed the image exactly as Detectron2 reads a file (PIL decode with
EXIF orientation, BGR).  It imports Detectron2, so it runs in the test process, never in
the server.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from d2_triton.client import DetectionResult
from d2_triton.parity.detections import Prediction
from export_tools.detectron2_setup.shims import import_detectron2
from helpers.exports import SCORE_THRESH_TEST, Architecture


@lru_cache(maxsize=1)
def _predictor(config: str, weights: str, options: tuple[str, ...]):
    if config.endswith(".py"):
        return _lazy_predictor(config, weights, options)
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = SCORE_THRESH_TEST
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = SCORE_THRESH_TEST
    cfg.merge_from_list(list(options))
    return DefaultPredictor(cfg)


def _lazy_predictor(config: str, weights: str, overrides: tuple[str, ...]):
    """A LazyConfig's ``DefaultPredictor`` equivalent (``export_tools.predictors``)."""
    from detectron2.checkpoint import DetectionCheckpointer

    from export_tools.detector_config import load_config
    from export_tools.predictors import LazyPredictor

    lazy = load_config(config, list(overrides), SCORE_THRESH_TEST)
    model = lazy.build_model()
    DetectionCheckpointer(model).load(weights)
    return LazyPredictor(lazy, model)


def detectron2_prediction(
    arch: Architecture,
    weights: Path,
    image_path: Path,
    options: tuple[str, ...] = (),
    served: DetectionResult | None = None,
) -> Prediction:
    """DefaultPredictor's answer for one photo (``options``: config options, as the export's
    and the served input size); kept for the photos of the architecture at hand, which both
    export modes are compared with (the parity tests run mode after mode).

    ``served``: a staged export's answer, whose boxes Detectron2's own mask and keypoint
    heads then run on as well (``Prediction.masks_for_served``), for the parity rule's
    same-box comparison (``d2_triton.parity.masks``), as ``benchmarks.zoo`` records it.  At
    the plumbing size the masks are a few hundred pixels, and a box's float rounding moves a
    larger share of them: a cascade mask of 454 px moved 8 pixels with its box 0.004 px off,
    and none on the served box.
    """
    options = (*options, *arch.options)
    prediction = _prediction(arch.config, str(weights), str(image_path), options)
    if served is None:
        return prediction
    from detectron2.data.detection_utils import read_image

    from benchmarks.speed.eager import with_served_heads

    image = read_image(str(image_path), format="BGR")
    predictor = _predictor(arch.config, str(weights), options)
    return with_served_heads(prediction, predictor, image, served)


@lru_cache(maxsize=8)
def _prediction(config: str, weights: str, image_path: str, options: tuple[str, ...]) -> Prediction:
    import_detectron2()
    from detectron2.data.detection_utils import read_image

    predictor = _predictor(config, weights, options)
    image = read_image(image_path, format="BGR")
    return Prediction.from_output(predictor(image), image.shape[:2])
