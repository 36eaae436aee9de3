"""The gateway's settings come from the environment; bad ones name the variable."""

from __future__ import annotations

import pytest

from d2_triton.gateway.settings import GatewaySettings, SettingsError


def test_settings_come_from_the_environment():
    settings = GatewaySettings.from_env(
        {
            "HOST": "127.0.0.1",
            "PORT": "9000",
            "mode": "develop",
            "TRITON_HOST": "triton",
            "TRITON_PROTOCOL": "grpc",
            "DEFAULT_MODEL": "keypoints",
        }
    )
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
        ({"TRITON_MODEL_PROTOCOL": "ws"}, "TRITON_PROTOCOL must be one of"),
        (
            {"TRITON_PROTOCOL": "http", "TRITON_MODEL_PROTOCOL": "grpc"},
            "TRITON_PROTOCOL=http and TRITON_MODEL_PROTOCOL=grpc disagree",
        ),
        ({"PORT": "eighty"}, "PORT must be a number"),
        ({"LABEL_MAPPING_FILE": "/nowhere/labels.json"}, "does not exist"),
        ({"MAX_UPLOAD_BYTES": "0"}, "MAX_UPLOAD_BYTES must be positive"),
        ({"DEFAULT_MODEL": "Mask_RCNN"}, "DEFAULT_MODEL: a pipeline name is"),
        ({"MAX_IN_FLIGHT": "0"}, "MAX_IN_FLIGHT must be positive"),
        ({"MAX_IN_FLIGHT": "many"}, "MAX_IN_FLIGHT must be a number"),
        ({"UI": "maybe"}, "UI must be 1 or 0"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of"),
    ],
)
def test_bad_settings_name_the_variable(environment, message):
    with pytest.raises(SettingsError, match=message):
        GatewaySettings.from_env(environment)


@pytest.mark.parametrize("variable", ["TRITON_PROTOCOL", "TRITON_MODEL_PROTOCOL"])
def test_the_protocol_comes_from_either_variable(variable):
    """TRITON_MODEL_PROTOCOL is the seed's name for it, once silently ignored (HTTP)."""
    settings = GatewaySettings.from_env({variable: "GRPC"})
    assert settings.triton_protocol == "grpc"
    assert settings.triton_url == "localhost:8001"  # gRPC's default port follows
    both = {"TRITON_PROTOCOL": "grpc", "TRITON_MODEL_PROTOCOL": "grpc"}
    assert GatewaySettings.from_env(both).triton_protocol == "grpc"
    assert GatewaySettings.from_env({}).triton_protocol == "http"


def test_the_admin_key_comes_from_the_environment_or_a_file_read_at_each_use(tmp_path):
    assert GatewaySettings.from_env({"TRITON_ADMIN_KEY": "k1"}).admin_key() == "k1"
    key_file = tmp_path / "admin-key"
    settings = GatewaySettings.from_env({"TRITON_ADMIN_KEY_FILE": str(key_file)})
    assert settings.admin_key() is None  # the model server has not written it yet
    key_file.write_text("k2\n")
    assert settings.admin_key() == "k2"
    key_file.write_text("k3\n")  # the model server restarted with a new key
    assert settings.admin_key() == "k3"
    assert "k1" not in repr(GatewaySettings.from_env({"TRITON_ADMIN_KEY": "k1"}))


def test_the_page_is_on_outside_production_unless_ui_says_otherwise():
    assert GatewaySettings.from_env({"mode": "debug"}).ui_enabled
    assert not GatewaySettings.from_env({}).ui_enabled
    assert GatewaySettings.from_env({"UI": "1"}).ui_enabled
    assert not GatewaySettings.from_env({"mode": "develop", "UI": "0"}).ui_enabled
    assert GatewaySettings.from_env({"LOG_FORMAT": " JSON "}).log_format == "json"
