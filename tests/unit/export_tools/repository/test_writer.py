"""Several pipelines in one repository: their names, an export beside another one, versions."""

from __future__ import annotations

import json

import pytest

from d2_triton import names
from d2_triton.client.async_client import published_classes
from d2_triton.model_config import EnsembleParameters, PreprocessParameters
from d2_triton.names import PipelineNames
from d2_triton.vision.labels import LabelMap
from export_tools.errors import VersionMismatchError
from export_tools.repository import configs as tc
from export_tools.repository.derive import Overrides, derive
from export_tools.repository.writer import (
    LABEL_MAP_FILE,
    ExportedModel,
    InputSettings,
    detector_versions,
    model_configs,
    read_export_info,
    write_repository,
)
from export_tools.settings import ExportSettings


def exported(labels: list[str], has_masks: bool) -> ExportedModel:
    fields = ("pred_boxes", "scores", "pred_classes") + (("pred_masks",) if has_masks else ())
    return ExportedModel(
        fields=fields,
        outputs=tc.ModelOutputs(has_masks=has_masks),
        input=InputSettings(800, 1333, "BGR"),
        labels=LabelMap.from_names(labels),
        weights_source="random",
        info={"config": "x"},
    )


def export_into(
    repository, tmp_path, tag: str, labels: list[str], has_masks: bool, name: str | None = None
) -> list:
    """Write an export tagged ``tag`` (its model.pt says so) as pipeline ``name`` (``tag``)."""
    detector_files = tmp_path / f"files-{tag}"
    detector_files.mkdir()
    (detector_files / "model.pt").write_text(tag)
    settings = ExportSettings(config="x", repository=repository, name=name or tag)
    return write_repository(exported(labels, has_masks), detector_files, settings)


def config(repository, model: str):
    return tc.parse_pbtxt((repository / model / "config.pbtxt").read_text())


def test_a_named_export_writes_its_own_four_models_beside_the_default(tmp_path):
    repository = tmp_path / "models"
    export_into(repository, tmp_path, "default", ["person", "cat"], has_masks=True)
    before = {path: path.read_bytes() for path in repository.rglob("*") if path.is_file()}
    written = export_into(repository, tmp_path, "shapes", ["square"], has_masks=False)

    assert all(path.relative_to(repository).parts[0].startswith("shapes_") for path in written)
    assert {path: path.read_bytes() for path in before} == before  # the default is untouched
    assert PipelineNames.in_repository(repository) == [PipelineNames(), PipelineNames("shapes")]
    shapes = PipelineNames("shapes")
    for role, model in shapes.models().items():
        assert config(repository, model).name == model
        if role != names.ENSEMBLE_MODEL:  # each Python model runs its role's model.py
            assert (repository / model / "1" / "model.py").is_file()
    scheduling = config(repository, shapes.ensemble).ensemble_scheduling
    steps = [step.model_name for step in scheduling.step]
    assert steps == [shapes.preprocess, shapes.detector, shapes.postprocess]
    preprocess = tc.parameters_of(PreprocessParameters, config(repository, shapes.preprocess))
    assert (repository / shapes.preprocess / preprocess.label_map).resolve() == (
        repository / shapes.postprocess / LABEL_MAP_FILE
    ).resolve()
    assert read_export_info(repository, shapes)["pipeline"] == "shapes"
    assert read_export_info(repository)["pipeline"] == "default"
    # What the ensemble tells clients is the label map postprocess serves.
    published = tc.parameters_of(EnsembleParameters, config(repository, shapes.ensemble))
    served = json.loads((repository / shapes.postprocess / LABEL_MAP_FILE).read_text())
    assert published_classes(published) == served == {"0": "square"}


def test_derive_changes_every_pipeline(tmp_path):
    source = tmp_path / "source"
    export_into(source, tmp_path, "default", ["person"], has_masks=True)
    export_into(source, tmp_path, "shapes", ["square"], has_masks=False)
    target = derive(source, tmp_path / "target", Overrides(min_size_test=320))
    for pipeline in (PipelineNames(), PipelineNames("shapes")):
        preprocess = tc.parameters_of(PreprocessParameters, config(target, pipeline.preprocess))
        assert preprocess.min_size_test == 320


def test_exporting_into_an_existing_pipeline_adds_the_next_detector_version(tmp_path):
    repository = tmp_path / "models"
    export_into(repository, tmp_path, "default", ["person"], has_masks=True)
    configs = {path: path.read_bytes() for path in repository.glob("*/config.pbtxt")}
    written = export_into(repository, tmp_path, "again", ["person"], has_masks=True, name="default")

    assert {path.relative_to(repository).as_posix() for path in written} == {
        "detector/2/model.py",
        "detector/2/model.pt",
        "detector/2/export_info.json",
    }
    assert (repository / "detector" / "2" / "model.pt").read_text() == "again"
    assert (repository / "detector" / "1" / "model.pt").read_text() == "default"
    assert {path: path.read_bytes() for path in configs} == configs
    assert detector_versions(repository) == [1, 2]
    assert read_export_info(repository)["version"] == 2
    assert read_export_info(repository, version=1)["version"] == 1
    assert not list((repository / "detector").glob(".partial-*"))


def test_a_new_version_with_other_settings_is_refused_and_writes_nothing(tmp_path):
    repository = tmp_path / "models"
    export_into(repository, tmp_path, "default", ["person"], has_masks=True)
    before = sorted(repository.rglob("*"))
    changed = "config of detector, postprocess, ensemble would change"
    with pytest.raises(VersionMismatchError, match=changed):
        export_into(repository, tmp_path, "other", ["cat"], has_masks=False, name="default")
    with pytest.raises(VersionMismatchError, match="another --name"):
        export_into(repository, tmp_path, "labels", ["cat"], has_masks=True, name="default")
    assert sorted(repository.rglob("*")) == before


@pytest.mark.parametrize(
    ("options", "instances"),
    [
        ({}, 1),
        ({"precision": "bf16"}, 1),
        ({"precision": "int8"}, 1),
        ({"precision": "int8", "detector_instances": 2}, 2),
        ({"detector_instances": 3}, 3),
    ],
)
def test_the_detector_runs_one_instance_at_every_precision_unless_told(options, instances):
    """A second instance on the same cores cost int8 a quarter of its images a second once
    the glue ran on every core (AVX-512 EPYC, 2026-12-07); a user may still ask for one."""
    settings = ExportSettings(config="x", **options)
    detector = model_configs(exported(["a"], has_masks=False), settings)["detector"]
    assert [group.count for group in detector.instance_group] == [instances]
