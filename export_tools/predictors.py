"""Detectron2's own predictor for a config: the reference the export is compared with.

``DefaultPredictor`` for a yaml config; for a LazyConfig, for which Detectron2 has no
predictor class, :class:`LazyPredictor` (``DefaultPredictor``'s steps, with the test
loader's settings).  Used by ``benchmarks.speed.eager`` and the parity tests.
"""

from __future__ import annotations

import torch

from export_tools.detector_config import DetectorConfig


class LazyPredictor:
    """``DefaultPredictor`` for a LazyConfig model.

    The same steps, with the test loader's input format and resize (what
    ``lazyconfig_train_net.py``'s evaluation feeds the model).

    Args:
        config: the LazyConfig's :class:`DetectorConfig`.
        model: the built model with its weights loaded.
    """

    def __init__(self, config: DetectorConfig, model: torch.nn.Module):
        from detectron2.data.transforms import ResizeShortestEdge

        self.model = model.eval()
        self.input_format = config.input_format
        size = config.min_size_test
        self.resize = ResizeShortestEdge([size, size], config.max_size_test)

    def __call__(self, original_image):
        """Args: a BGR uint8 H x W x 3 image.  Returns the model's outputs for it."""
        with torch.no_grad():
            if self.input_format == "RGB":
                original_image = original_image[:, :, ::-1]
            height, width = original_image.shape[:2]
            image = self.resize.get_transform(original_image).apply_image(original_image)
            image = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))
            return self.model([{"image": image, "height": height, "width": width}])[0]


def predictor(config: DetectorConfig, model: torch.nn.Module | None = None):
    """Detectron2's own predictor for the config: ``DefaultPredictor`` or its equivalent.

    ``model`` (weights loaded), if given, replaces the one the predictor builds.
    """
    if config.lazy:
        return LazyPredictor(config, model if model is not None else config.build_model())
    from detectron2.engine import DefaultPredictor

    cfg = config.node.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = ""  # the weights are the caller's to load
    found = DefaultPredictor(cfg)
    if model is not None:
        found.model = model.eval()
    return found
