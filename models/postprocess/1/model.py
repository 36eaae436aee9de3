"""Triton model `postprocess`: detector outputs -> labelled detections in original pixels.

Boxes are scaled back to the original image, clipped and filtered (Detectron2's
``detector_postprocess``), the request's options are applied (score threshold, classes,
max detections), masks are pasted with Detectron2's semantics and encoded as COCO RLE (or
dense uint8 on request), and class ids are mapped to names from the label-map JSON.  A
semantic or panoptic model's logits become labelled segments (``d2_triton.vision.segments``).
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from d2_triton import carried, names
from d2_triton.model_config import PostprocessParameters
from d2_triton.serving import backend, steps
from d2_triton.serving.options import PostprocessOptions
from d2_triton.vision.detections import Detections
from d2_triton.vision.labels import LabelMap

NO_INSTANCES = Detections(
    boxes=np.zeros((0, 4), np.float32),
    scores=np.zeros(0, np.float32),
    classes=np.zeros(0, np.int64),
)


class TritonPythonModel:
    """Rescale, filter, paste masks, name classes."""

    def initialize(self, args):
        """Read the typed parameters, the label map and which outputs the detector has."""
        setup = backend.initialize(args, PostprocessParameters)
        backend.stay_on_one_thread()
        parameters = setup.parameters
        self.model_name = setup.name
        self.labels = LabelMap.from_file(setup.folder / parameters.label_map)
        self.defaults = PostprocessOptions(
            score_threshold=parameters.default_score_threshold,
            mask_format=parameters.default_mask_format,
        )
        self.dtypes = setup.output_dtypes
        self.has_masks = names.MASK_PROBS in setup.input_names
        # The carried outputs (keypoints ...) this model's detector has: their shapes.
        self.carried = {
            tensor["name"]: tuple(int(v) for v in tensor["dims"][1:])
            for tensor in setup.config["input"]
            if tensor["name"] in carried.BY_NAME
        }
        self.has_instances = names.DETECTOR_OUTPUTS["scores"] in setup.input_names
        self.parameters = parameters
        self.stuff_labels = None
        if parameters.segmentation != "none":
            self.stuff_labels = LabelMap.from_file(setup.folder / parameters.stuff_label_map)
        steps.warm_up(options=self.defaults, labels=self.labels, carried=self.carried)

    def execute(self, requests):
        """One response per request; a bad option fails only its own request."""
        return backend.respond_each(requests, self._postprocess, self.model_name)

    def _postprocess(self, request):
        options = self.defaults.updated_from(backend.read_request_parameters(request), self.labels)
        outputs = steps.postprocess(
            self._instances(request),
            resized_hw=self._size(request, names.RESIZED_SIZE),
            original_hw=self._size(request, names.ORIGINAL_SIZE),
            options=options,
            labels=self.labels,
            segmentation=self._segmentation(request),
        )
        return [self._tensor(name, array) for name, array in outputs.items()]

    def _instances(self, request):
        if not self.has_instances:
            return NO_INSTANCES
        fields = names.DETECTOR_OUTPUTS
        return Detections(
            boxes=backend.required_input(request, fields["pred_boxes"]),
            scores=backend.required_input(request, fields["scores"]),
            classes=backend.required_input(request, fields["pred_classes"]),
            mask_probs=self._mask_probs(request),
            carried={name: backend.required_input(request, name) for name in self.carried},
        )

    def _segmentation(self, request):
        if self.stuff_labels is None:
            return None
        return steps.Segmentation(
            kind=self.parameters.segmentation,
            logits=backend.required_input(request, names.SEM_SEG_LOGITS),
            stuff_labels=self.stuff_labels,
            stride=self.parameters.sem_seg_stride,
            panoptic=self.parameters.panoptic,
        )

    def _mask_probs(self, request):
        if not self.has_masks:
            return None
        # [N, 1, M, M] -> [N, M, M]
        return backend.required_input(request, names.MASK_PROBS)[:, 0]

    @staticmethod
    def _size(request, name):
        return tuple(int(v) for v in backend.required_input(request, name))

    def _tensor(self, name, array):
        dtype = self.dtypes[name]
        if dtype == np.object_:
            return pb_utils.Tensor(name, np.asarray(array, dtype=np.object_))
        return pb_utils.Tensor(name, np.ascontiguousarray(array, dtype=dtype))
