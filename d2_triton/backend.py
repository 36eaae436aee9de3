"""Glue the three Python-backend models share: config parsing and per-request responses.

Imported only inside Triton's Python-backend stub (or in unit tests, with a stand-in
``triton_python_backend_utils`` on ``sys.path``).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from d2_triton.errors import InvalidRequestError


def check_numpy_version(version: str = np.__version__) -> None:
    """Refuse to load under numpy >= 2.

    Triton 2.51's Python-backend stub (the one nvidia-pytriton 0.7.0 ships) is built
    against numpy 1.x; with numpy 2 in its environment it returns *empty* output tensors and
    logs nothing.  Failing the model load says what is wrong instead.
    """
    if np.lib.NumpyVersion(version) >= "2.0.0":
        raise RuntimeError(
            f"numpy {version} is installed in the Python-backend environment; this Triton "
            "Python backend needs numpy<2 (with numpy 2 it silently returns empty outputs). "
            "Install the project's requirements.txt, which pins numpy<2."
        )


def model_parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """The config.pbtxt ``parameters`` block as a plain dict of strings."""
    return {key: value["string_value"] for key, value in model_config.get("parameters", {}).items()}


def output_dtypes(model_config: dict[str, Any]) -> dict[str, np.dtype]:
    """numpy dtypes of the declared outputs, so model.py never hard-codes them."""
    return {
        output["name"]: np.dtype(pb_utils.triton_string_to_numpy(output["data_type"]))
        for output in model_config["output"]
    }


def input_names(model_config: dict[str, Any]) -> set[str]:
    return {tensor["name"] for tensor in model_config["input"]}


def request_parameters(request: Any) -> dict[str, Any]:
    """A request's Triton parameters (those sent to the ensemble reach every step)."""
    text = request.parameters()
    return json.loads(text) if text else {}


def optional_input(request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def required_input(request: Any, name: str) -> np.ndarray:
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
