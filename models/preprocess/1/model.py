"""Triton model `preprocess`: raw JPEG/PNG bytes -> the detector's input tensor.

Decodes (EXIF orientation applied), applies Detectron2's test-time ResizeShortestEdge with
the exported config's MIN_SIZE_TEST / MAX_SIZE_TEST, and lays the pixels out as the model
expects (3 x H x W uint8 in cfg.INPUT.FORMAT order).  The original and resized sizes travel
on to `postprocess`, which maps boxes and masks back to the original image.  Request options
meant for `postprocess` are checked here first, so a bad one costs no inference.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from d2_triton import names
from d2_triton.model_config import PreprocessParameters
from d2_triton.serving import backend, steps
from d2_triton.vision.labels import LabelMap


class TritonPythonModel:
    """Decode and resize; check the request's options first."""

    def initialize(self, args):
        """Read the typed parameters and the label map the options are checked against."""
        setup = backend.initialize(args, PreprocessParameters)
        backend.stay_on_one_thread()
        self.model_name = setup.name
        self.parameters = setup.parameters
        self.labels = LabelMap.from_file(setup.folder / setup.parameters.label_map)
        self.dtypes = setup.output_dtypes
        steps.warm_up(parameters=self.parameters)

    def execute(self, requests):
        """One response per request; a bad image fails only its own request."""
        return backend.respond_each(requests, self._preprocess, self.model_name)

    def _preprocess(self, request):
        steps.check_options(backend.read_request_parameters(request), self.labels)
        encoded = backend.required_input(request, names.IMAGE_BYTES)
        model_input = steps.preprocess(encoded.tobytes(), self.parameters)
        image = model_input.image.astype(self.dtypes[names.IMAGE], copy=False)
        return [
            pb_utils.Tensor(names.IMAGE, image),
            self._size(names.ORIGINAL_SIZE, model_input.original_hw),
            self._size(names.RESIZED_SIZE, model_input.resized_hw),
        ]

    def _size(self, name, height_width):
        return pb_utils.Tensor(name, np.array(height_width, dtype=self.dtypes[name]))
