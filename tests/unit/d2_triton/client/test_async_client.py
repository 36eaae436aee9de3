"""The asyncio client's account of what Triton serves, against a stand-in Triton client."""

from __future__ import annotations

import asyncio
import json

import pytest
from tritonclient.utils import InferenceServerException

from d2_triton.client.async_client import AsyncDetectionClient
from d2_triton.model_config import DetectorParameters, EnsembleParameters, to_parameters


def config(parameters) -> dict:
    """A model config in Triton's JSON form with these typed parameters."""
    return {
        "parameters": {
            key: {"string_value": value} for key, value in to_parameters(parameters).items()
        }
    }


class StandInTriton:
    """tritonclient.http.aio's calls that listing pipelines makes, for two pipelines."""

    def __init__(self):
        labels = json.dumps({"0": "person"})
        self.configs = {
            "ensemble": config(EnsembleParameters(labels=labels)),
            "detector": config(DetectorParameters(("pred_boxes",))),
            "quick_ensemble": config(EnsembleParameters(labels=labels, precision="int8")),
            "quick_detector": config(DetectorParameters(("pred_boxes",), 0, "random")),
        }

    async def get_inference_statistics(self, headers=None):
        return {"model_stats": [{"name": name, "version": "1"} for name in self.configs]}

    async def is_model_ready(self, name, version=""):
        return True

    async def get_model_config(self, name):
        return self.configs[name]

    async def get_model_metadata(self, name):
        if name not in self.configs:
            raise InferenceServerException(f"unknown model {name}", "400")
        return {"name": name}


def client() -> AsyncDetectionClient:
    async def make() -> AsyncDetectionClient:
        made = AsyncDetectionClient("localhost:8000")
        await made.close()
        made._client = StandInTriton()
        return made

    return asyncio.run(make())


def test_each_pipeline_says_whether_its_weights_are_random():
    pipelines = asyncio.run(client().pipelines())
    found = {p["name"]: (p["precision"], p["weights"]) for p in pipelines}
    assert found == {"default": ("f32", "checkpoint"), "quick": ("int8", "random")}


@pytest.mark.parametrize(("model", "served"), [("quick_ensemble", True), ("other", False)])
def test_a_model_is_served_when_triton_has_it_loaded(model, served):
    assert asyncio.run(client().is_served(model)) is served


def test_the_ensemble_has_its_own_name_and_model_name_is_deprecated():
    """``model`` means a pipeline in the client's interface; the Triton model it calls is
    ``ensemble``; the old ``model_name`` still answers, with a DeprecationWarning."""

    async def make() -> AsyncDetectionClient:
        made = AsyncDetectionClient("localhost:8000", model="quick")
        await made.close()
        return made

    quick = asyncio.run(make())
    assert (quick.pipeline.name, quick.ensemble) == ("quick", "quick_ensemble")
    with pytest.warns(DeprecationWarning, match="ensemble"):
        assert quick.model_name == "quick_ensemble"
