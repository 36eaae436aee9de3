"""export_tools.repository.derive.derive: a copy of an export with only config settings changed."""

from __future__ import annotations

from d2_triton.vision.labels import LabelMap
from export_tools.repository import configs as tc
from export_tools.repository.derive import Overrides, derive
from export_tools.repository.writer import ExportedModel, InputSettings, model_configs
from export_tools.settings import ExportSettings


def write_source(root):
    model = ExportedModel(
        fields=("pred_boxes", "scores", "pred_classes"),
        outputs=tc.ModelOutputs(has_masks=False),
        input=InputSettings(800, 1333, "BGR"),
        labels=LabelMap.from_names(["a"]),
        weights_source="random",
        info={},
    )
    for name, config in model_configs(model, ExportSettings(config="x")).items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(tc.to_pbtxt(config))
    for file in ("backbone.bin", "roi_heads.pt", "stages.json"):
        (root / "detector" / "1" / file).write_text(file)


def detector_config(root):
    return tc.parse_pbtxt((root / "detector" / "config.pbtxt").read_text())


def test_derive_changes_only_what_it_is_asked(tmp_path):
    write_source(tmp_path / "source")
    target = derive(tmp_path / "source", tmp_path / "target", Overrides(detector_instances=2))
    config = detector_config(target)
    assert config.instance_group[0].count == 2
    assert len(config.model_warmup) == 1  # kept
    assert list(config.model_warmup[0].inputs["image"].dims) == [3, 800, 1067]
    assert detector_config(tmp_path / "source").instance_group[0].count == 1


def test_a_new_input_size_moves_the_warmup_image_to_it(tmp_path):
    """Warming up 800-pixel images would leave a model that serves 320-pixel ones cold."""
    write_source(tmp_path / "source")
    overrides = Overrides(min_size_test=320, max_size_test=533)
    [warmup] = detector_config(
        derive(tmp_path / "source", tmp_path / "target", overrides)
    ).model_warmup
    assert list(warmup.inputs["image"].dims) == [3, 320, 427]
    assert warmup.name == "image_320x427" and warmup.count == tc.WARMUP_RUNS
    assert warmup.inputs["image"].random_data


def test_derive_can_drop_the_detector_warmup_and_links_model_files(tmp_path):
    write_source(tmp_path / "source")
    target = derive(tmp_path / "source", tmp_path / "target", Overrides(detector_warmup=False))
    assert len(detector_config(target).model_warmup) == 0
    assert len(detector_config(tmp_path / "source").model_warmup) == 1
    for file, linked in (("backbone.bin", True), ("roi_heads.pt", True), ("stages.json", False)):
        copied = target / "detector" / "1" / file
        source = tmp_path / "source" / "detector" / "1" / file
        assert copied.read_text() == file
        assert (copied.stat().st_ino == source.stat().st_ino) is linked
