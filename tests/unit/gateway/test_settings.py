"""The gateway's settings come from the environment; bad ones name the variable."""

from __future__ import annotations

import pytest

from d2_triton.gateway.settings import GatewaySettings, SettingsError


def test_settings_come_from_the_environment():
    settings = GatewaySettings.from_env(
        {"HOST": "127.0.0.1", "PORT": "9000", "mode": "develop", "TRITON_HOST": "triton",
         "TRITON_PROTOCOL": "grpc", "DEFAULT_MODEL": "keypoints"}
    )  # fmt: skip
    assert (settings.host, settings.port, settings.triton_url) == ("127.0.0.1", 9000, "triton:8001")
    assert settings.default_model == "keypoints"
    assert settings.reload and settings.docs_enabled and settings.log_level == "info"
    production = GatewaySettings.from_env({})
    assert production.triton_url == "localhost:8000"
    assert not production.reload and not production.docs_enabled
    assert GatewaySettings.from_env({"MODE": "Debug"}).log_level == "debug"


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"mode": "fast"}, "mode must be one of"),
        ({"TRITON_PROTOCOL": "ws"}, "TRITON_PROTOCOL"),
        ({"PORT": "eighty"}, "invalid gateway setting"),
        ({"LABEL_MAPPING_FILE": "/nowhere/labels.json"}, "does not exist"),
        ({"MAX_UPLOAD_BYTES": "0"}, "MAX_UPLOAD_BYTES must be positive"),
        ({"DEFAULT_MODEL": "Mask_RCNN"}, "DEFAULT_MODEL: a pipeline name is"),
    ],
)
def test_bad_settings_name_the_variable(environment, message):
    with pytest.raises(SettingsError, match=message):
        GatewaySettings.from_env(environment)
