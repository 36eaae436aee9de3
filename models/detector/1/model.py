"""Triton model `detector`: the exported TorchScript Detectron2 model, run by torch.

The TorchScript file has no device baked in: it is loaded onto the GPU when this instance
is KIND_GPU and CUDA is available, else onto the CPU.  Tensors cross the Triton boundary
through DLPack, so the image is not copied on the way in nor the results on the way out.
Only torch (and torchvision's ops, which the traced graph calls) are needed here, not
Detectron2.
"""

import torch
import torch.utils.dlpack
import torchvision  # noqa: F401  (registers torchvision::nms and roi_align for the graph)
import triton_python_backend_utils as pb_utils

from d2_triton import backend, schema
from d2_triton.errors import InvalidRequestError
from d2_triton.model_config import DetectorParameters


class TritonPythonModel:
    """The traced Detectron2 model on this instance's device."""

    def initialize(self, args):
        """Load the TorchScript file onto the instance's device with its thread setting."""
        setup = backend.initialize(args, DetectorParameters)
        parameters = setup.parameters
        self.model_name = setup.name
        self.device = self._select_device(args)
        if parameters.intra_op_threads > 0:
            torch.set_num_threads(parameters.intra_op_threads)
        model_file = setup.version_folder / parameters.torchscript_file
        self.model = torch.jit.load(str(model_file), map_location=self.device).eval()
        # Position of each TorchScript output -> the detector output it feeds (if any).
        declared = {output["name"] for output in setup.config["output"]}
        self.outputs = [
            (index, schema.DETECTOR_OUTPUTS[field])
            for index, field in enumerate(parameters.output_fields)
            if schema.DETECTOR_OUTPUTS.get(field) in declared
        ]
        pb_utils.Logger.log_info(
            f"{self.model_name}: loaded {model_file.name} on {self.device} "
            f"({torch.get_num_threads()} intra-op threads)"
        )
        if parameters.weights_source == "random":
            pb_utils.Logger.log_warn(
                f"{self.model_name}: THIS MODEL WAS EXPORTED WITH RANDOM WEIGHTS "
                "(no checkpoint was available); its detections are meaningless."
            )

    @staticmethod
    def _select_device(args):
        if args["model_instance_kind"] == "GPU":
            if torch.cuda.is_available():
                return torch.device("cuda", int(args["model_instance_device_id"]))
            pb_utils.Logger.log_warn("KIND_GPU instance but CUDA is unavailable: running on CPU")
        return torch.device("cpu")

    def execute(self, requests):
        """One model call per request (no batching: images differ in size)."""
        return backend.respond_each(requests, self._detect, self.model_name)

    def _detect(self, request):
        image = pb_utils.get_input_tensor_by_name(request, schema.IMAGE)
        pixels = torch.from_dlpack(image.to_dlpack())
        if pixels.dim() != 3 or pixels.shape[0] != 3 or min(pixels.shape[1:]) < 1:
            raise InvalidRequestError(f"image must be 3 x H x W, got {list(pixels.shape)}")
        with torch.inference_mode():
            results = self.model(pixels.to(self.device))
        return [
            pb_utils.Tensor.from_dlpack(
                name, torch.utils.dlpack.to_dlpack(results[index].contiguous())
            )
            for index, name in self.outputs
        ]

    def finalize(self):
        """Drop the model so its memory goes with the instance."""
        self.model = None
