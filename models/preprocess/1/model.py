"""Triton model `preprocess`: raw JPEG/PNG bytes -> the detector's input tensor.

Decodes (EXIF orientation applied), applies Detectron2's test-time ResizeShortestEdge with
the exported config's MIN_SIZE_TEST / MAX_SIZE_TEST, and lays the pixels out as the model
expects (3 x H x W uint8 in cfg.INPUT.FORMAT order).  The original and resized sizes travel
on to `postprocess`, which maps boxes and masks back to the original image.  Request options
meant for `postprocess` are checked here first, so a bad one costs no inference.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from d2_triton import backend, pipeline
from d2_triton.imaging import DecodeLimits
from d2_triton.labels import LabelMap


class TritonPythonModel:
    def initialize(self, args):
        backend.check_numpy_version()
        config = json.loads(args["model_config"])
        parameters = backend.model_parameters(config)
        self.model_name = args["model_name"]
        self.settings = pipeline.PreprocessSettings(
            min_size_test=int(parameters["min_size_test"]),
            max_size_test=int(parameters["max_size_test"]),
            input_format=parameters["input_format"],
            limits=DecodeLimits(
                max_bytes=int(parameters["max_image_bytes"]),
                max_pixels=int(parameters["max_image_pixels"]),
            ),
        )
        self.labels = LabelMap.from_file(Path(args["model_repository"]) / parameters["label_map"])
        self.dtypes = backend.output_dtypes(config)

    def execute(self, requests):
        return backend.respond_each(requests, self._preprocess, self.model_name)

    def _preprocess(self, request):
        pipeline.check_options(backend.request_parameters(request), self.labels)
        encoded = backend.required_input(request, "image_bytes")
        model_input = pipeline.preprocess(encoded.tobytes(), self.settings)
        return [
            pb_utils.Tensor("image", model_input.image.astype(self.dtypes["image"], copy=False)),
            self._size("original_size", model_input.original_hw),
            self._size("resized_size", model_input.resized_hw),
        ]

    def _size(self, name, height_width):
        return pb_utils.Tensor(name, np.array(height_width, dtype=self.dtypes[name]))
