"""ROIAlign for the staged export: one weighted sum of feature rows per output bin.

torchvision's CPU ``roi_align`` walks every box, bin and sample one channel at a time in
scalar code: it was 80 % of the ``proposals`` stage, the largest stage of an int8 detector.
Here the feature map is read channels-last (H*W rows of C values: the backbone's stage writes
it so, ``export_tools.trace.modules``, and the table is a view) and each output bin is
a *bag* of (row, weight) pairs, the four bilinear corners of each of its samples, weighted by
the corner's share over the bin's sample count.  torch's ``embedding_bag`` (FBGEMM's
vectorised kernel on the CPU, threaded over the bags) sums each bag's rows, all channels at
once.  Sample positions, the adaptive grid, the clamping at the border and the zero for a
sample outside the map follow torchvision's kernel term by term, so the result is its own to
float rounding (the order of the sum differs).

The modules are scripted (their sizes follow the boxes), then called from the traced stages.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def _axis_samples(
    start: torch.Tensor, size: torch.Tensor, grid: torch.Tensor, bins: int, limit: int
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The samples along one axis, for every box, bin and sample of that axis in turn.

    Args:
        start: each box's start on this axis, in feature pixels.
        size: each box's extent on this axis, in feature pixels.
        grid: each box's samples per bin on this axis.
        bins: output bins on this axis.
        limit: the feature map's extent on this axis.

    Returns:
        (the lower and the upper pixel, their weights: E each, zero for a sample outside the
        map), and each box's first entry (B).  Kept as separate flat tensors:
        torch's elementwise kernels on E x 2 operands broadcast against each other run ~50x
        slower than on flat ones.
    """
    entries = grid * bins
    box = torch.repeat_interleave(torch.arange(start.shape[0], device=start.device), entries)
    first = torch.cumsum(entries, 0) - entries
    local = torch.arange(box.shape[0], device=start.device) - first.index_select(0, box)
    box_grid = grid.index_select(0, box)
    bin_index = torch.div(local, box_grid, rounding_mode="floor")
    sample = (local - bin_index * box_grid).to(start.dtype)
    step = (size / bins).index_select(0, box)
    position = start.index_select(0, box) + bin_index.to(start.dtype) * step
    position = position + (sample + 0.5) * step / box_grid.to(start.dtype)
    inside = (position >= -1.0) & (position <= limit)
    position = position.clamp(min=0.0)
    low = position.long().clamp(max=limit - 1)
    position = torch.where(low >= limit - 1, low.to(position.dtype), position)
    high = (low + 1).clamp(max=limit - 1)
    upper = position - low
    inside = inside.to(position.dtype)
    return (low, high, (1.0 - upper) * inside, upper * inside), first


def _corners(
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    cols: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    row: torch.Tensor,
    col: torch.Tensor,
    share: torch.Tensor,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's four bilinear corners: rows of the H*W table (S x 4) and weights (S x 4).

    Corners in the order (low, low), (low, high), (high, low), (high, high); ``rows`` and
    ``cols`` are ``_axis_samples``' per axis, ``row`` and ``col`` each sample's entry in them,
    ``share`` each sample's share of its bin.
    """
    row_low, row_high, row_low_w, row_high_w = rows
    col_low, col_high, col_low_w, col_high_w = cols
    top, bottom = row_low.index_select(0, row) * width, row_high.index_select(0, row) * width
    left, right = col_low.index_select(0, col), col_high.index_select(0, col)
    indices = torch.stack((top + left, top + right, bottom + left, bottom + right), 1)
    top_w, bottom_w = (
        row_low_w.index_select(0, row) * share,
        row_high_w.index_select(0, row) * share,
    )
    left_w, right_w = col_low_w.index_select(0, col), col_high_w.index_select(0, col)
    weights = torch.stack(
        (top_w * left_w, top_w * right_w, bottom_w * left_w, bottom_w * right_w), 1
    )
    return indices, weights


class BagRoiAlign(nn.Module):
    """Detectron2's ``ROIAlign`` (either alignment, any sampling ratio) as bags of rows.

    Args:
        output_size: bins (height, width); spatial_scale: feature pixels per image pixel;
        sampling_ratio: samples per bin and axis (0: as many as the bin's extent, rounded up);
        aligned: Detectron2's ``ROIAlignV2`` half-pixel shift (no minimum box size).
    """

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool):
        super().__init__()
        self.bins_h, self.bins_w = int(output_size[0]), int(output_size[1])
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def forward(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """Args: features (1 x C x h x w), rois (R x 5: batch index, x0, y0, x1, y1).

        Returns: R x C x bins_h x bins_w.
        """
        channels, height, width = features.shape[1], features.shape[2], features.shape[3]
        boxes = rois.shape[0]
        corners = rois[:, 1:].to(features.dtype) * self.spatial_scale
        start_w, start_h, end_w, end_h = (corners - (0.5 if self.aligned else 0.0)).unbind(1)
        size_w, size_h = end_w - start_w, end_h - start_h
        if not self.aligned:
            size_w, size_h = size_w.clamp(min=1.0), size_h.clamp(min=1.0)
        grid_h, grid_w = self._grid(size_h, self.bins_h), self._grid(size_w, self.bins_w)
        rows, row_first = _axis_samples(start_h, size_h, grid_h, self.bins_h, height)
        cols, col_first = _axis_samples(start_w, size_w, grid_w, self.bins_w, width)

        # Bin b of box r holds grid_h[r] x grid_w[r] samples, rows varying slowest.  Every
        # gather is index_select: on these 1-D tensors ~3x faster than indexing (aten::index).
        bins = self.bins_h * self.bins_w
        box_of_bin = torch.arange(boxes, device=rois.device).repeat_interleave(bins)
        bin_in_box = torch.arange(boxes * bins, device=rois.device) - box_of_bin * bins
        bin_row = torch.div(bin_in_box, self.bins_w, rounding_mode="floor")
        bin_grid_h, bin_grid_w = (
            grid_h.index_select(0, box_of_bin),
            grid_w.index_select(0, box_of_bin),
        )
        row_base = row_first.index_select(0, box_of_bin) + bin_row * bin_grid_h
        col_base = (
            col_first.index_select(0, box_of_bin)
            + (bin_in_box - bin_row * self.bins_w) * bin_grid_w
        )
        per_bin = bin_grid_h * bin_grid_w
        bag = torch.repeat_interleave(torch.arange(boxes * bins, device=rois.device), per_bin)
        bag_first = torch.cumsum(per_bin, 0) - per_bin
        within = torch.arange(bag.shape[0], device=rois.device) - bag_first.index_select(0, bag)
        sample_w = bin_grid_w.index_select(0, bag)
        sample_row = torch.div(within, sample_w, rounding_mode="floor")
        row = row_base.index_select(0, bag) + sample_row
        col = col_base.index_select(0, bag) + within - sample_row * sample_w

        share = (1.0 / per_bin.clamp(min=1).to(features.dtype)).index_select(0, bag)
        indices, weights = _corners(rows, cols, row, col, share, width)
        table = features[0].permute(1, 2, 0).reshape(height * width, channels).contiguous()
        pooled = nn.functional.embedding_bag(
            indices.flatten(),
            table,
            bag_first * 4,
            mode="sum",
            per_sample_weights=weights.flatten(),
        )
        return pooled.view(boxes, self.bins_h, self.bins_w, channels).permute(0, 3, 1, 2)

    def _grid(self, size: torch.Tensor, bins: int) -> torch.Tensor:
        """Samples per bin along an axis of extent ``size`` split into ``bins``."""
        if self.sampling_ratio > 0:
            return torch.full_like(size, self.sampling_ratio, dtype=torch.long)
        return torch.ceil(size / bins).long().clamp(min=0)


@contextlib.contextmanager
def bag_roi_pooling(roi_heads):
    """Within the block, every ``ROIAlign`` of ``roi_heads``' poolers is a :class:`BagRoiAlign`.

    Poolers of other kinds (``ROIPool``, rotated boxes: in no model zoo config) stay as they are.
    """
    from detectron2.layers import ROIAlign

    poolers = [
        getattr(roi_heads, name)
        for name in ("box_pooler", "mask_pooler", "keypoint_pooler")
        if getattr(roi_heads, name, None) is not None
    ]
    originals = [list(pooler.level_poolers) for pooler in poolers]
    for pooler in poolers:
        for index, inner in enumerate(pooler.level_poolers):
            if isinstance(inner, ROIAlign):
                bags = BagRoiAlign(
                    inner.output_size, inner.spatial_scale, inner.sampling_ratio, inner.aligned
                )
                pooler.level_poolers[index] = torch.jit.script(bags)
    try:
        yield
    finally:
        for pooler, inners in zip(poolers, originals, strict=True):
            for index, inner in enumerate(inners):
                pooler.level_poolers[index] = inner
