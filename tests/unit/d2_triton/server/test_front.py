"""The front's nginx config: limits derived from the repository, and nginx accepts it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from d2_triton.errors import ServerEnvironmentError
from d2_triton.names import ADMITTED_PER_INSTANCE, PipelineNames
from d2_triton.server.front import (
    BODY_OVERHEAD_BYTES,
    GRPC_READINESS_CALLS,
    Front,
    FrontPorts,
    pipeline_limits,
    render_config,
)

PREPROCESS = """name: "{name}"
parameters {{ key: "min_size_test" value {{ string_value: "800" }} }}
parameters {{ key: "max_size_test" value {{ string_value: "1333" }} }}
parameters {{ key: "input_format" value {{ string_value: "BGR" }} }}
parameters {{ key: "label_map" value {{ string_value: "labels.json" }} }}
parameters {{ key: "max_image_bytes" value {{ string_value: "{max_bytes}" }} }}
"""
DETECTOR = 'name: "{name}"\ninstance_group [ {{ count: {count} kind: KIND_CPU }} ]\n'


def write_pipeline(repository: Path, name: str, instances: int, max_bytes: int) -> None:
    pipeline = PipelineNames(name)
    configs = {
        pipeline.preprocess: PREPROCESS.format(name=pipeline.preprocess, max_bytes=max_bytes),
        pipeline.detector: DETECTOR.format(name=pipeline.detector, count=instances),
        pipeline.ensemble: f'name: "{pipeline.ensemble}"\n',
    }
    for model, text in configs.items():
        (repository / model).mkdir(parents=True)
        (repository / model / "config.pbtxt").write_text(text)


# The longest pipeline name there may be: nginx's default variable hash buckets (64 bytes)
# did not hold the front's variable for it, and nginx refused to start.
LONGEST_NAME = "lvisv1-instancesegmentation-mask-rcnn-x-101-32x8d-fpn-1x-" + "a" * 6


@pytest.fixture
def repository(tmp_path) -> Path:
    write_pipeline(tmp_path / "models", "default", instances=1, max_bytes=1000)
    write_pipeline(tmp_path / "models", "keypoints", instances=2, max_bytes=5000)
    write_pipeline(tmp_path / "models", LONGEST_NAME, instances=1, max_bytes=1000)
    return tmp_path / "models"


def test_limits_come_from_the_detector_instances_and_preprocess_byte_limit(repository):
    limits = {item.pipeline.name: item for item in pipeline_limits(repository)}
    assert limits["default"].max_in_flight == ADMITTED_PER_INSTANCE
    assert limits["keypoints"].max_in_flight == 2 * ADMITTED_PER_INSTANCE
    assert limits["keypoints"].max_body_bytes == 5000 + BODY_OVERHEAD_BYTES
    assert {item.max_in_flight for item in pipeline_limits(repository, 3)} == {3}


def test_each_pipeline_counts_the_infer_calls_of_its_own_models(repository):
    limits = {item.pipeline.name: item for item in pipeline_limits(repository)}
    default, keypoints = (re.compile(limits[n].uri_pattern) for n in ("default", "keypoints"))
    assert default.match("/v2/models/ensemble/infer")
    assert default.match("/v2/models/detector/versions/2/infer")
    assert not default.match("/v2/models/keypoints_ensemble/infer")
    assert not default.match("/v2/models/ensemble/ready")
    assert keypoints.match("/v2/models/keypoints_ensemble/infer")
    assert keypoints.match("/v2/models/keypoints_preprocess/versions/1/infer")
    assert not keypoints.match("/v2/models/ensemble/infer")


def test_nginx_accepts_the_config(repository, tmp_path):
    front = Front(FrontPorts("127.0.0.1", 1, 2, 3, 11, 12, 13, 14, 15), pipeline_limits(repository))
    config = front.write_config()
    try:
        text = config.read_text()
        assert "127.0.0.1:11" in text and "listen 127.0.0.1:1;" in text
        assert "limit_conn d2t_keypoints 32;" in text
        # Readiness and metrics come from the launcher's status endpoint, not from Triton.
        assert "upstream d2t_status { server 127.0.0.1:14; }" in text
        for route in (
            "= /v2/health/ready",
            "~ ^/v2/models/[^/]+(/versions/[^/]+)?/ready$",
            "= /d2t/pipelines",
            "= /metrics",
        ):
            assert f"location {route} {{ proxy_pass http://d2t_status; }}" in text, route
        for call in GRPC_READINESS_CALLS:
            assert f"location = {call} {{ grpc_pass grpc://d2t_status_grpc; }}" in text, call
        checked = subprocess.run(
            [str(front.binary), "-t", "-e", "stderr", "-p", str(front.prefix), "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert checked.returncode == 0, checked.stderr
    finally:
        front.stop()
    assert not front.prefix.exists()  # its temp folder goes with it


def test_a_broken_repository_config_is_named(tmp_path):
    write_pipeline(tmp_path, "default", instances=1, max_bytes=1000)
    (tmp_path / "detector" / "config.pbtxt").write_text("instance_group [ { count: x } ]")
    with pytest.raises(ServerEnvironmentError, match=r"detector/config\.pbtxt"):
        pipeline_limits(tmp_path)


def test_the_config_renders_without_pipelines():
    text = render_config(FrontPorts("0.0.0.0", 1, 2, 3, 11, 12, 13, 14, 15), [], Path("/p"))
    assert "grpc_pass grpc://triton_grpc;" in text
