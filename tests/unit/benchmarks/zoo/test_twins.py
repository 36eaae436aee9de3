"""Which model-zoo configs are one model at test time (benchmarks/zoo/twins.py)."""

from __future__ import annotations

import pytest

from benchmarks.zoo.rows import Row
from benchmarks.zoo.twins import find_twins, inference_key
from export_tools.detectron2_setup.shims import import_detectron2


@pytest.fixture(scope="module", autouse=True)
def detectron2():
    import_detectron2()


def test_schedules_and_checkpoints_of_one_model_share_a_key():
    key = inference_key("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml")
    assert key == inference_key("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml")
    # a quick_schedules copy: another checkpoint and a 100-image val set of the same classes
    assert key == inference_key("quick_schedules/mask_rcnn_R_50_FPN_instant_test.yaml")
    lsj = inference_key("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py")  # lambdas inside
    assert lsj == inference_key("new_baselines/mask_rcnn_R_50_FPN_400ep_LSJ.py")


@pytest.mark.parametrize(
    "other",
    [
        "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml",  # another backbone
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_giou.yaml",  # another box loss
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py",  # the LazyConfig twin
        "Cityscapes/mask_rcnn_R_50_FPN.yaml",  # other classes
        "LVISv1-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
    ],
)
def test_another_model_has_another_key(other):
    assert inference_key(other) != inference_key(
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
    )


def test_the_first_config_of_a_key_is_served_and_the_others_take_its_row():
    configs = [
        "COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml",
        "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml",
        "COCO-Keypoints/keypoint_rcnn_R_101_FPN_3x.yaml",
    ]
    assert find_twins(configs, {}) == {configs[1]: configs[0]}
    earlier = {inference_key(configs[2]): "served/before.yaml"}
    assert find_twins(configs[1:], earlier) == {configs[2]: "served/before.yaml"}
    original = Row(configs[0], "yaml", mode="staged", parity={"instances": 3}, problems=[])
    original.served_ms = 10.0
    twin = Row(configs[1], "yaml")
    twin.take_from(original)
    assert twin.outcome == "parity" and twin.mode == "staged" and twin.same_as == configs[0]
    assert twin.served_ms is None  # not measured for the twin
