"""Triton model `postprocess`: detector outputs -> labelled detections in original pixels.

Boxes are scaled back to the original image, clipped and filtered (Detectron2's
``detector_postprocess``), the request's options are applied (score threshold, classes,
max detections), masks are pasted with Detectron2's semantics and encoded as COCO RLE (or
dense uint8 on request), and class ids are mapped to names from the label-map JSON.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from d2_triton import backend, pipeline
from d2_triton.detections import Detections
from d2_triton.labels import LabelMap
from d2_triton.options import PostprocessOptions


class TritonPythonModel:
    def initialize(self, args):
        backend.check_numpy_version()
        config = json.loads(args["model_config"])
        parameters = backend.model_parameters(config)
        self.model_name = args["model_name"]
        self.labels = LabelMap.from_file(Path(args["model_repository"]) / parameters["label_map"])
        self.defaults = PostprocessOptions(
            score_threshold=float(parameters["default_score_threshold"]),
            mask_format=parameters["default_mask_format"],
        )
        self.dtypes = backend.output_dtypes(config)
        inputs = backend.input_names(config)
        self.has_masks = "mask_probs" in inputs
        self.has_keypoints = "keypoints" in inputs

    def execute(self, requests):
        return backend.respond_each(requests, self._postprocess, self.model_name)

    def _postprocess(self, request):
        options = self.defaults.updated_from(backend.request_parameters(request), self.labels)
        raw = Detections(
            boxes=backend.required_input(request, "boxes"),
            scores=backend.required_input(request, "scores"),
            classes=backend.required_input(request, "classes"),
            mask_probs=self._mask_probs(request),
            keypoints=backend.required_input(request, "keypoints") if self.has_keypoints else None,
        )
        outputs = pipeline.postprocess(
            raw,
            resized_hw=self._size(request, "resized_size"),
            original_hw=self._size(request, "original_size"),
            options=options,
            labels=self.labels,
        )
        return [self._tensor(name, array) for name, array in outputs.items()]

    def _mask_probs(self, request):
        if not self.has_masks:
            return None
        return backend.required_input(request, "mask_probs")[:, 0]  # [N, 1, M, M] -> [N, M, M]

    @staticmethod
    def _size(request, name):
        return tuple(int(v) for v in backend.required_input(request, name))

    def _tensor(self, name, array):
        dtype = self.dtypes[name]
        if dtype == np.object_:
            return pb_utils.Tensor(name, np.asarray(array, dtype=np.object_))
        return pb_utils.Tensor(name, np.ascontiguousarray(array, dtype=dtype))
