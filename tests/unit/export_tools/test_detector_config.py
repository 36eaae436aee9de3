"""``export_tools.detector_config``: yaml and LazyConfig read the way Detectron2 reads them."""

from __future__ import annotations

import pytest

from export_tools.detector_config import detections_per_image, load_config, score_thresh
from export_tools.detectron2_setup.shims import import_detectron2
from export_tools.errors import ConfigError


@pytest.fixture(scope="module", autouse=True)
def detectron2():
    import_detectron2()


def test_a_yaml_config_gives_defaultpredictors_settings():
    config = load_config(
        "COCO-Detection/retinanet_R_50_FPN_1x.yaml", ["INPUT.MIN_SIZE_TEST", "640"], 0.2
    )
    assert not config.lazy and config.meta_architecture == "RetinaNet"
    assert (config.input_format, config.min_size_test, config.max_size_test) == ("BGR", 640, 1333)
    assert config.test_datasets == ("coco_2017_val",)
    assert score_thresh(config.build_model()) == pytest.approx(0.2)


def test_a_lazyconfig_gives_its_test_loaders_settings_and_overrides_apply():
    override = "dataloader.test.mapper.augmentations.0.short_edge_length=512"
    config = load_config("COCO-Detection/fcos_R_50_FPN_1x.py", [override], 0.3)
    assert config.lazy and config.meta_architecture == "FCOS"
    assert (config.input_format, config.min_size_test, config.max_size_test) == ("BGR", 512, 1333)
    assert config.test_datasets == ("coco_2017_val",)
    model = config.build_model()  # a GroupNorm head: needs the probe shim
    assert score_thresh(model) == pytest.approx(0.3) and detections_per_image(model) == 100


def test_a_model_detectron2_cannot_build_is_one_config_error():
    config = load_config(
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py",
        ["model.backbone.bottom_up.stages.depth=7"],
        None,
    )
    with pytest.raises(ConfigError, match="Detectron2 cannot build this model"):
        config.build_model()
