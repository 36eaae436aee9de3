"""Which pipeline a request goes to: ?model= or DEFAULT_MODEL, refused (404) if not served."""

from __future__ import annotations

import asyncio

import pytest
from tritonclient.utils import InferenceServerException

from d2_triton.gateway.errors import GatewayError
from d2_triton.gateway.service import Gateway
from d2_triton.gateway.settings import GatewaySettings
from d2_triton.names import PipelineNames


class FakeTriton:
    """Serves the models named in ``loaded`` (a list the test may extend), or is down."""

    def __init__(self, loaded: list[str] | None):
        self.loaded = loaded
        self.listed = 0

    async def is_served(self, model: str) -> bool:
        self.listed += 1
        if self.loaded is None:
            raise InferenceServerException("connection refused", "StatusCode.UNAVAILABLE")
        return model in self.loaded

    async def models(self):
        self.listed += 1
        if self.loaded is None:
            raise InferenceServerException("connection refused", "StatusCode.UNAVAILABLE")
        if self.loaded == "no key":
            raise InferenceServerException("This API is restricted", "403")
        return [{"name": name, "version": "1", "state": "READY"} for name in self.loaded]


def gateway_for(loaded: list[str] | None, default_model: str = "default") -> Gateway:
    gateway = Gateway(GatewaySettings(default_model=default_model))
    gateway.client = FakeTriton(loaded)
    return gateway


def resolve(gateway: Gateway, model: str | None) -> PipelineNames:
    return asyncio.run(gateway.pipeline(model))


SERVED = [
    "ensemble",
    "preprocess",
    "detector",
    "postprocess",
    "keypoints_ensemble",
    "keypoints_preprocess",
    "keypoints_detector",
    "keypoints_postprocess",
]


def test_a_request_gets_the_pipeline_it_names_or_the_default():
    gateway = gateway_for(SERVED)
    assert resolve(gateway, None) == PipelineNames()
    assert resolve(gateway, "keypoints").ensemble == "keypoints_ensemble"
    assert resolve(gateway_for(SERVED, "keypoints"), None) == PipelineNames("keypoints")
    listed = gateway.client.listed
    resolve(gateway, "keypoints")
    assert gateway.client.listed == listed  # known names are not looked up again


@pytest.mark.parametrize("model", ["masks", "detector", "keypoints_ensemble", "Bad Name"])
def test_a_model_triton_does_not_serve_is_a_404_naming_those_it_does(model):
    with pytest.raises(GatewayError) as error:
        resolve(gateway_for(SERVED), model)
    assert error.value.status == 404
    assert "models: default, keypoints" in error.value.detail


def test_a_pipeline_loaded_later_is_found():
    loaded = ["ensemble"]
    gateway = gateway_for(loaded)
    with pytest.raises(GatewayError):
        resolve(gateway, "keypoints")
    loaded.append("keypoints_ensemble")
    assert resolve(gateway, "keypoints") == PipelineNames("keypoints")


def test_an_unreachable_triton_is_a_502():
    with pytest.raises(GatewayError) as error:
        resolve(gateway_for(None), "keypoints")
    assert error.value.status == 502


def test_without_the_admin_key_a_served_pipeline_is_found_and_a_refusal_says_why():
    """Triton's statistics (the listing) need the admin key; readiness does not."""
    gateway = gateway_for(SERVED)
    gateway.client.models = FakeTriton("no key").models
    assert resolve(gateway, "keypoints") == PipelineNames("keypoints")
    with pytest.raises(GatewayError) as error:
        resolve(gateway, "masks")
    assert error.value.status == 404 and "TRITON_ADMIN_KEY" in error.value.detail
