"""Glue the three Python-backend models share: config parsing and per-request responses.

Imported only inside Triton's Python-backend stub (or in unit tests, with a stand-in
``triton_python_backend_utils`` on ``sys.path``).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import triton_python_backend_utils as pb_utils

from d2_triton import model_config
from d2_triton.errors import InvalidRequestError
from d2_triton.serving.numpy_version import check_numpy_version
from d2_triton.serving.usage_telemetry import turn_off_openvino_telemetry

Parameters = TypeVar("Parameters")


@dataclass(frozen=True)
class ModelSetup(Generic[Parameters]):
    """What a ``model.py`` learns from the ``args`` Triton passes to ``initialize``.

    Attributes:
        name: the model's name (prefixes its error messages).
        config: the model config, as Triton's JSON.
        parameters: the config's parameters, typed (``d2_triton.model_config``).
        folder: the model's folder in the repository (files named by parameters are in it).
        version_folder: the folder of the version being loaded.
        output_dtypes: numpy dtype of each declared output, so no model hard-codes one.
        input_names: the declared inputs (optional ones say what the model produces).
    """

    name: str
    config: dict[str, Any]
    parameters: Parameters
    folder: Path
    version_folder: Path
    output_dtypes: dict[str, np.dtype]
    input_names: frozenset[str]


def initialize(args: dict[str, str], parameters: type[Parameters]) -> ModelSetup[Parameters]:
    """Check the environment and read the model's config; shared by every ``initialize``."""
    check_numpy_version(np.__version__)
    turn_off_openvino_telemetry()  # before the detector imports OpenVINO (usage_telemetry)
    config = json.loads(args["model_config"])
    folder = Path(args["model_repository"])
    return ModelSetup(
        name=args["model_name"],
        config=config,
        parameters=model_config.from_model_config(parameters, config),
        folder=folder,
        version_folder=folder / args["model_version"],
        output_dtypes={
            output["name"]: np.dtype(pb_utils.triton_string_to_numpy(output["data_type"]))
            for output in config["output"]
        },
        input_names=frozenset(tensor["name"] for tensor in config["input"]),
    )


def stay_on_one_thread() -> None:
    """Keep this stub's numeric libraries on one thread each (preprocess, postprocess).

    OpenBLAS (numpy's matrix products) and OpenCV start one worker per core; in a stub
    beside the detector those workers busy-wait on the cores the detector computes on, which
    slows both.  A request's pre/post work is milliseconds: one thread is enough, and more
    instances, not more threads, scale it.
    """
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(limits=1)


def read_request_parameters(request: Any) -> dict[str, Any]:
    """A request's Triton parameters (those sent to the ensemble reach every step)."""
    text = request.parameters()
    return json.loads(text) if text else {}


def optional_input(request: Any, name: str) -> np.ndarray | None:
    """An input tensor of the request as numpy, or None if the request lacks it."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def required_input(request: Any, name: str) -> np.ndarray:
    """An input tensor of the request as numpy; InvalidRequestError if it is missing."""
    array = optional_input(request, name)
    if array is None:
        raise InvalidRequestError(f"missing input tensor {name!r}")
    return array


def respond_each(
    requests: list[Any], handle: Callable[[Any], list[Any]], model_name: str
) -> list[Any]:
    """One response per request, in order; one bad request never fails its neighbours.

    ``handle`` returns the output tensors of one request.  InvalidRequestError becomes an
    INVALID_ARG error (HTTP 400) with its message; anything else is a server fault,
    logged with its traceback and returned as INTERNAL (HTTP 500).
    """
    responses = []
    for request in requests:
        try:
            responses.append(pb_utils.InferenceResponse(output_tensors=handle(request)))
        except InvalidRequestError as error:
            responses.append(
                _error_response(f"{model_name}: {error}", pb_utils.TritonError.INVALID_ARG)
            )
        except Exception as error:
            pb_utils.Logger.log_error(f"{model_name}: {traceback.format_exc()}")
            message = f"{model_name}: internal error: {type(error).__name__}: {error}"
            responses.append(_error_response(message, pb_utils.TritonError.INTERNAL))
    return responses


def _error_response(message: str, code: int) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))
