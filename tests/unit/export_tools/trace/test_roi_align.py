"""The staged export's ROIAlign pools as torchvision's does, traced or not, for any boxes."""

from __future__ import annotations

import pytest
import torch
import torchvision

from d2_triton.serving import torchscript
from export_tools.detectron2_setup.shims import import_detectron2
from export_tools.trace.roi_align import BagRoiAlign, bag_roi_pooling
from export_tools.trace.tracing import traceable

import_detectron2()
from detectron2.modeling.poolers import ROIPooler  # noqa: E402
from detectron2.structures import Boxes  # noqa: E402

# Float rounding: the bag sums a bin's samples in another order than torchvision's loop.
TOLERANCE = {"rtol": 0, "atol": 2e-5}


def awkward_rois(count: int, height: int, width: int, stride: int) -> torch.Tensor:
    """Boxes (R x 5) of every kind a proposal can be: inside, across or past the border,
    from sub-pixel to larger than the map, and degenerate (zero or negative extent)."""
    generator = torch.Generator().manual_seed(count)
    extent = torch.tensor([width, height]) * stride
    corner = torch.rand(count, 2, generator=generator) * extent * 1.4 - 0.2 * extent
    size = torch.rand(count, 2, generator=generator) ** 3 * extent * 1.2
    boxes = torch.cat([torch.zeros(count, 1), corner, corner + size], 1)
    boxes[:4, 3:] = boxes[:4, 1:3] - torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.3, 0.2]])
    return boxes


@pytest.mark.parametrize("aligned", [True, False], ids=["ROIAlignV2", "ROIAlign"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("output_size", [(7, 7), (14, 14), (3, 5)])
def test_bags_pool_as_torchvisions_roi_align(aligned, sampling_ratio, output_size):
    torch.manual_seed(0)
    features = torch.randn(1, 24, 29, 41)
    rois = awkward_rois(300, 29, 41, stride=8)
    expected = torchvision.ops.roi_align(
        features, rois, output_size, 1 / 8, sampling_ratio, aligned
    )
    with torchscript.on_purpose():
        pooled = torch.jit.script(BagRoiAlign(output_size, 1 / 8, sampling_ratio, aligned))
    torch.testing.assert_close(pooled(features, rois), expected, **TOLERANCE)
    assert pooled(features, rois[:0]).shape == (0, 24, *output_size)


class _BoxPooling(torch.nn.Module):
    """A stage that pools, as ``roi_heads.Proposals`` does with its ``box_pooler``."""

    def __init__(self):
        super().__init__()
        self.box_pooler = ROIPooler((7, 7), (1 / 4, 1 / 8, 1 / 16), 0, "ROIAlignV2")

    def forward(self, boxes, *maps):
        return self.box_pooler(list(maps), [Boxes(boxes)])


def test_a_traced_pooler_with_bags_pools_other_boxes_and_maps_as_detectron2():
    """Traced on one image's boxes, it must follow another's sizes and box count."""
    torch.manual_seed(0)
    pool = _BoxPooling().eval()
    pooler = pool.box_pooler

    def sample(height, width, count):
        maps = [torch.randn(1, 8, height // s, width // s) for s in (4, 8, 16)]
        return awkward_rois(count, height // 4, width // 4, stride=4)[:, 1:], maps

    boxes, maps = sample(160, 224, 120)
    with bag_roi_pooling(pool), traceable(), torch.no_grad():
        assert pooler.level_poolers[0].original_name == "BagRoiAlign"
        traced = torch.jit.trace(pool, (boxes, *maps), check_trace=False)
    assert type(pooler.level_poolers[0]).__name__ == "ROIAlign"  # put back
    other_boxes, other_maps = sample(272, 96, 333)
    with torch.no_grad():
        torch.testing.assert_close(
            traced(other_boxes, *other_maps), pool(other_boxes, *other_maps), **TOLERANCE
        )
