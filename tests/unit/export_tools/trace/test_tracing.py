"""Tracing changes that make Detectron2 layers traceable keep their eager results."""

from __future__ import annotations

import torch

from export_tools.detectron2_setup.shims import import_detectron2
from export_tools.trace.tracing import traceable

import_detectron2()
from detectron2.layers import DeformConv  # noqa: E402


class _OffsetAndDeform(torch.nn.Module):
    """A ResNet ``DeformBottleneckBlock``'s pair: an offset convolution, then DCNv1."""

    def __init__(self):
        super().__init__()
        self.offset = torch.nn.Conv2d(8, 18, 3, padding=1)
        self.deform = DeformConv(8, 8, 3, padding=1, bias=False)
        torch.nn.init.normal_(self.offset.weight, std=0.5)

    def forward(self, x):
        return self.deform(x, self.offset(x))


def test_deformable_convolution_traces_to_what_detectron2_computes_on_the_cpu():
    torch.manual_seed(0)
    module = _OffsetAndDeform().eval()
    sample, other = torch.randn(1, 8, 12, 16), torch.randn(1, 8, 20, 9)
    with torch.no_grad():
        eager = module(other)  # Detectron2's own _DeformConv (torchvision's op on the CPU)
        with traceable():
            traced = torch.jit.trace(module, (sample,), check_trace=False)
        torch.testing.assert_close(traced(other), eager, rtol=0, atol=0)
    assert "deform_conv2d" in str(traced.inlined_graph)
