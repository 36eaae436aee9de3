"""Triton model `preprocess`: raw JPEG/PNG bytes -> the detector's input tensor.

Decodes (EXIF orientation applied), applies Detectron2's test-time ResizeShortestEdge with
the exported config's MIN_SIZE_TEST / MAX_SIZE_TEST, and lays the pixels out as the model
expects (3 x H x W uint8 in cfg.INPUT.FORMAT order).  The original and resized sizes travel
on to `postprocess`, which maps boxes and masks back to the original image.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from d2_triton import backend
from d2_triton.imaging import DecodeLimits, decode_image, resize_shortest_edge, to_model_layout


class TritonPythonModel:
    def initialize(self, args):
        backend.check_numpy_version()
        config = json.loads(args["model_config"])
        parameters = backend.model_parameters(config)
        self.model_name = args["model_name"]
        self.limits = DecodeLimits(
            max_bytes=int(parameters["max_image_bytes"]),
            max_pixels=int(parameters["max_image_pixels"]),
        )
        self.short_edge = int(parameters["min_size_test"])
        self.max_size = int(parameters["max_size_test"])
        self.channel_order = parameters["input_format"]
        self.dtypes = backend.output_dtypes(config)

    def execute(self, requests):
        return backend.respond_each(requests, self._preprocess, self.model_name)

    def _preprocess(self, request):
        encoded = backend.required_input(request, "image_bytes")
        image = decode_image(encoded.tobytes(), self.limits)
        resized = resize_shortest_edge(image, self.short_edge, self.max_size)
        return [
            pb_utils.Tensor("image", to_model_layout(resized, self.channel_order)),
            pb_utils.Tensor(
                "original_size", np.array(image.shape[:2], self.dtypes["original_size"])
            ),
            pb_utils.Tensor(
                "resized_size", np.array(resized.shape[:2], self.dtypes["resized_size"])
            ),
        ]
