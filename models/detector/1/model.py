"""Triton model `detector`: the exported Detectron2 model, run by torch and OpenVINO.

The version folder holds the model as a chain of stages (``stages.json``, see
``d2_triton.serving.stages``): by default the static parts (backbone, FPN, RPN head, mask/keypoint
heads) as OpenVINO IR and the dynamic glue as TorchScript; an ``--exact`` export is one
TorchScript file.  TorchScript stages have no device baked in: they are loaded onto the
GPU when this instance is KIND_GPU and CUDA is available, else onto the CPU.  Tensors cross
the Triton boundary through DLPack, so the image is not copied on the way in nor the results
on the way out.  Only torch, torchvision's ops and openvino are needed here, not Detectron2.
"""

import torch
import torch.utils.dlpack
import torchvision  # noqa: F401  (registers torchvision::nms and roi_align for the graph)
import triton_python_backend_utils as pb_utils

from d2_triton import names
from d2_triton.errors import InvalidRequestError
from d2_triton.model_config import DetectorParameters
from d2_triton.serving import allocator, backend
from d2_triton.serving.stages import StagedModel, threads_per_instance


class TritonPythonModel:
    """The exported Detectron2 model on this instance's device."""

    def initialize(self, args):
        """Load the stages onto the instance's device with threads for its share of cores."""
        setup = backend.initialize(args, DetectorParameters)
        parameters = setup.parameters
        reusing = allocator.keep_freed_memory()
        self.model_name = setup.name
        self.device = self._select_device(args)
        instances = sum(group.get("count", 1) for group in setup.config["instance_group"])
        threads = threads_per_instance(parameters.intra_op_threads, instances)
        torch.set_num_threads(threads)
        self.model = StagedModel.load(setup.version_folder, self.device, threads)
        # Position of each model output -> the detector output it feeds (if any).
        declared = {output["name"] for output in setup.config["output"]}
        self.outputs = [
            (index, names.DETECTOR_OUTPUTS[field])
            for index, field in enumerate(parameters.output_fields)
            if names.DETECTOR_OUTPUTS.get(field) in declared
        ]
        stages = ", ".join(f"{s.name} ({s.runtime})" for s in self.model.plan.stages)
        pb_utils.Logger.log_info(
            f"{self.model_name}: loaded {stages} on {self.device}, {threads} threads "
            f"for each of {instances} instance(s), OpenVINO stages in {self.model.precision}"
        )
        if not reusing:
            pb_utils.Logger.log_warn(
                f"{self.model_name}: no glibc mallopt here: large tensors are mapped anew on "
                "every request (d2_triton.serving.allocator)"
            )
        if self.model.precision != self.model.plan.precision:
            pb_utils.Logger.log_warn(
                f"{self.model_name}: exported for {self.model.plan.precision}, which this CPU "
                f"does not compute natively (no AMX or AVX512-BF16): running "
                f"{self.model.precision}"
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
        image = pb_utils.get_input_tensor_by_name(request, names.IMAGE)
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
