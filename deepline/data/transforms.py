"""Batched augmentation on tensors: one call per batch, no per-image Python loop."""

from __future__ import annotations

import math
from typing import Literal, overload

import torch
import torch.nn.functional as F

from deepline.config import AugmentConfig
from deepline.data.boxes import PADDING

Geometry = Literal["masks", "boxes"]


class BatchAugment:
    """Random shift (pad, then crop at a random offset per image), optional horizontal and
    vertical flips, then a random rotation and zoom about the centre (one affine warp each).

    Input and output: (B, C, H, W), on any device. With a ``target``, the same moves apply to
    it, so pixels and labels stay aligned: (B, H, W) masks (padded with 0, the background;
    warped by nearest neighbour), or (B, M, 5) box rows ``[x1, y1, x2, y2, class]`` (see
    ``deepline.data.boxes``; a warped box becomes the box enclosing its moved corners; a box
    moved out of the picture becomes padding, one partly out is clipped). ``fill`` is the
    images' padding value (the normalised background).
    Randomness comes only from the (CPU) ``generator`` passed in, so a resumed run repeats it
    exactly; the few random numbers a batch needs move to its device.
    """

    def __init__(self, config: AugmentConfig, fill: float | list[float] = 0.0) -> None:
        self.shift = config.shift
        self.flip = config.flip
        self.vflip = config.vflip
        self.rotate = config.rotate
        self.scale = config.scale
        self._fills = [fill] if isinstance(fill, (int, float)) else list(fill)

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.flip or self.vflip or self.warps

    @property
    def warps(self) -> bool:
        return self.rotate > 0 or self.scale > 0

    @overload
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...
    @overload
    def __call__(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor,
        geometry: Geometry = "masks",
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def __call__(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None = None,
        geometry: Geometry = "masks",
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        boxes = geometry == "boxes"
        if self.shift > 0:
            s = self.shift
            dy = torch.randint(0, 2 * s + 1, (b,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * s + 1, (b,), generator=generator).to(x.device)
            x = self._shifted(x, dy, dx)
            if target is not None and boxes:
                target = _shifted_boxes(target, s - dx, s - dy, w, h)
            elif target is not None:
                target = _window(F.pad(target[:, None], (s, s, s, s)), dy, dx, h, w)[:, 0]
        for axis, wanted in ((-1, self.flip), (-2, self.vflip)):
            if wanted:
                chosen = (torch.rand(b, generator=generator) < 0.5).to(x.device)
                x = torch.where(chosen[:, None, None, None], x.flip(axis), x)
                if target is not None and boxes:
                    target = torch.where(chosen[:, None, None],
                                         _flipped_boxes(target, axis, w if axis == -1 else h),
                                         target)  # fmt: skip
                elif target is not None:
                    target = torch.where(chosen[:, None, None], target.flip(axis), target)
        if self.warps:
            x, target = self._warped(x, generator, target, geometry)
        return x if target is None else (x, target)

    def _fill(self, x: torch.Tensor) -> torch.Tensor:
        """The padding value per channel, shaped (1, C, 1, 1) for ``x``."""
        return torch.tensor(self._fills, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)

    def _warped(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        target: torch.Tensor | None,
        geometry: Geometry,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each image rotated and zoomed about its centre, its target alike."""
        b, _, h, w = x.shape
        angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(self.rotate)
        zoom = 1 + (torch.rand(b, generator=generator) * 2 - 1) * self.scale
        cos, sin = torch.cos(angle), torch.sin(angle)
        # where each point goes, in pixels about the centre: p -> zoom R p
        forward = zoom.view(-1, 1, 1) * torch.stack(
            [torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2
        )
        # affine_grid asks where each output point comes from, in coordinates normalised by
        # each side's half-length: S^-1 A^-1 S with S = diag(w / 2, h / 2)
        inverse = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
        inverse = inverse / zoom.view(-1, 1, 1)
        half = torch.tensor([w / 2, h / 2])
        theta = torch.cat([inverse * half.view(1, 1, 2) / half.view(1, 2, 1),
                           torch.zeros(b, 2, 1)], -1)  # fmt: skip
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        fill = self._fill(x)  # warp (image - fill): the zeros padded in become the fill
        x = F.grid_sample(x - fill, grid, padding_mode="zeros", align_corners=False) + fill
        if target is None:
            return x, None
        if geometry == "boxes":
            return x, _warped_boxes(target, forward.to(target.device, target.dtype), w, h)
        moved = F.grid_sample(target[:, None].to(grid.dtype), grid, mode="nearest",
                              padding_mode="zeros", align_corners=False)  # fmt: skip
        return x, moved[:, 0].to(target.dtype)

    def _shifted(self, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.shift
        padded = F.pad(x, (s, s, s, s))  # (B, C, H + 2s, W + 2s), zeros
        if any(f != 0 for f in self._fills):  # pad with the background value, not 0
            fill = self._fill(x)
            border = torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device)
            border = F.pad(border, (s, s, s, s)) == 0
            padded = torch.where(border, fill.expand(b, c, 1, 1), padded)
        return _window(padded, dy, dx, h, w)


def _window(
    padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """The (H, W) window of each padded image at its own offset (dy, dx), by index arithmetic."""
    b, c, _, wide = padded.shape
    ys, xs = torch.arange(h, device=padded.device), torch.arange(w, device=padded.device)
    rows = (dy[:, None] + ys[None, :])[:, None, :, None].expand(b, c, h, wide)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + xs[None, :])[:, None, None, :].expand(b, c, h, w)
    return out.gather(3, cols)


def _shifted_boxes(
    boxes: torch.Tensor, mx: torch.Tensor, my: torch.Tensor, w: int, h: int
) -> torch.Tensor:
    """(B, M, 5) rows moved by (mx, my) per image, clipped to the picture; a box moved wholly
    out of it becomes padding."""
    move = torch.stack([mx, my, mx, my], -1).to(boxes.dtype)[:, None, :]  # (B, 1, 4)
    return _clipped(boxes, boxes[..., :4] + move, w, h)


def _warped_boxes(boxes: torch.Tensor, forward: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """(B, M, 5) rows as the boxes enclosing their corners moved by ``forward`` (B, 2, 2),
    a linear map about the picture's centre, clipped to the picture."""
    x1, y1, x2, y2 = boxes[..., :4].unbind(-1)
    corners = torch.stack([torch.stack([x1, y1], -1), torch.stack([x2, y1], -1),
                           torch.stack([x1, y2], -1), torch.stack([x2, y2], -1)], -2)  # fmt: skip
    centre = torch.tensor([w / 2, h / 2], dtype=boxes.dtype, device=boxes.device)
    moved = (corners - centre) @ forward.transpose(-1, -2)[:, None] + centre  # (B, M, 4, 2)
    return _clipped(boxes, torch.cat([moved.amin(-2), moved.amax(-2)], -1), w, h)


def _clipped(boxes: torch.Tensor, moved: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """(B, M, 5) rows with their boxes ``moved`` (B, M, 4) clipped to the picture; a box wholly
    outside it, like padding, becomes padding."""
    limit = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    xy = torch.minimum(moved.clamp_min(0), limit)
    label = boxes[..., 4]
    gone = (xy[..., 2] <= xy[..., 0]) | (xy[..., 3] <= xy[..., 1])  # wholly outside
    label = torch.where(gone, torch.full_like(label, PADDING), label)
    xy = torch.where((label == PADDING)[..., None], boxes[..., :4] * 0, xy)
    return torch.cat([xy, label[..., None]], -1)


def _flipped_boxes(boxes: torch.Tensor, axis: int, extent: int) -> torch.Tensor:
    """(B, M, 5) rows mirrored left-right (axis -1) or top-bottom (-2) in a picture of that
    ``extent``; padding rows stay as they are."""
    first, second = (0, 2) if axis == -1 else (1, 3)
    out = boxes.clone()
    out[..., first] = extent - boxes[..., second]
    out[..., second] = extent - boxes[..., first]
    padding = (boxes[..., 4] == PADDING)[..., None]
    return torch.where(padding, boxes, out)
