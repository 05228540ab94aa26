"""RandAugment (Cubuk et al. 2020) as FixMatch uses it, batched on tensors: each image gets
``ops`` operations drawn from the list below at a random magnitude each, then Cutout.

Images are in unit space ([0, 1] pixels, (B, C, H, W)); every operation keeps them there.
Colour operations act on the whole batch and are kept per image by a mask; the geometric ones
(rotation, shears, translations) are folded into one affine warp per image. Randomness comes
only from the (CPU) generator passed in, so a resumed run draws the same augmentations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

COLOUR = ("identity", "autocontrast", "brightness", "contrast", "posterize", "solarize",
          "sharpness")  # fmt: skip
GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
OPS = COLOUR + GEOMETRIC
MAX_ROTATION = 30.0  # degrees
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.3  # of the image's side


class RandAugment:
    """``ops`` random operations per image at magnitudes uniform in (0, 1] of their range,
    then a Cutout square of side up to ``cutout`` of the image (filled with grey, 0.5)."""

    def __init__(self, ops: int = 2, cutout: float = 0.5) -> None:
        if not 1 <= ops <= len(OPS):
            raise ValueError(f"RandAugment ops must be 1..{len(OPS)}, got {ops}")
        self.ops, self.cutout = ops, cutout

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        # which operations each image gets (``ops`` distinct ones) and how strongly
        scores = torch.rand(b, len(OPS), generator=generator)
        chosen = torch.zeros(b, len(OPS), dtype=torch.bool)
        chosen.scatter_(1, scores.topk(self.ops, dim=1).indices, True)
        strength = torch.rand(b, len(OPS), generator=generator)
        sign = torch.where(torch.rand(b, len(OPS), generator=generator) < 0.5, -1.0, 1.0)
        chosen, strength, sign = (t.to(x.device) for t in (chosen, strength, sign))
        out = x
        for k, name in enumerate(COLOUR[1:], start=1):
            if chosen[:, k].any():
                changed = _colour(name, out, strength[:, k])
                out = torch.where(chosen[:, k].view(-1, 1, 1, 1), changed, out)
        out = _warp(out, chosen, strength * sign)
        if self.cutout > 0:
            out = _cutout(out, self.cutout, generator)
        return out.clamp(0.0, 1.0)


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def _colour(name: str, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """One colour operation on every image of ``x`` at strengths ``m`` in [0, 1]."""
    if name == "autocontrast":
        low = x.amin(dim=(2, 3), keepdim=True)
        high = x.amax(dim=(2, 3), keepdim=True)
        return torch.where(high > low, (x - low) / (high - low).clamp_min(1e-6), x)
    if name == "brightness":  # factor 0.05 .. 1.95, as PIL's enhancer
        return x * _per_image(0.05 + 1.9 * m)
    if name == "contrast":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return mean + _per_image(0.05 + 1.9 * m) * (x - mean)
    if name == "posterize":  # keep 8 down to 4 bits
        levels = torch.pow(2.0, _per_image(8.0 - 4.0 * m))
        return torch.floor(x * (levels - 1) + 0.5) / (levels - 1)
    if name == "solarize":  # invert pixels above a threshold from 1 down to 0
        return torch.where(x >= _per_image(1.0 - m), 1.0 - x, x)
    if name == "sharpness":
        c = x.shape[1]
        kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=x.device)
        kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
        smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)
        return smooth + _per_image(0.05 + 1.9 * m) * (x - smooth)
    raise ValueError(f"unknown colour operation {name}")


def _warp(x: torch.Tensor, chosen: torch.Tensor, signed: torch.Tensor) -> torch.Tensor:
    """Rotation, shears and translations of the chosen images as one affine warp each; the
    uncovered border takes the image's mean corner colour."""
    index = {name: len(COLOUR) + i for i, name in enumerate(GEOMETRIC)}
    amount = torch.where(chosen, signed, torch.zeros_like(signed))
    if not amount[:, len(COLOUR) :].any():
        return x
    angle = amount[:, index["rotate"]] * math.radians(MAX_ROTATION)
    sx, sy = amount[:, index["shear_x"]] * MAX_SHEAR, amount[:, index["shear_y"]] * MAX_SHEAR
    tx = amount[:, index["translate_x"]] * MAX_TRANSLATE * 2  # grid units: the side is 2
    ty = amount[:, index["translate_y"]] * MAX_TRANSLATE * 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    ones = torch.ones_like(sx)
    shear = torch.stack([torch.stack([ones, sx], -1), torch.stack([sy, ones], -1)], -2)
    theta = torch.cat([rotation @ shear, torch.stack([tx, ty], -1).unsqueeze(-1)], dim=-1)
    corners = torch.stack([x[..., 0, 0], x[..., 0, -1], x[..., -1, 0], x[..., -1, -1]]).mean(0)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    # warp (image - fill) so the zeros grid_sample pads with become the fill colour
    fill = corners.view(*corners.shape, 1, 1)
    return F.grid_sample(x - fill, grid, padding_mode="zeros", align_corners=False) + fill


def _cutout(x: torch.Tensor, largest: float, generator: torch.Generator) -> torch.Tensor:
    """A grey square of side up to ``largest`` of the image, at a random place in each image."""
    b, _, h, w = x.shape
    side = (torch.rand(b, generator=generator) * largest * min(h, w)).round().to(x.device)
    cy = (torch.rand(b, generator=generator) * h).to(x.device)
    cx = (torch.rand(b, generator=generator) * w).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    half = (side / 2).view(-1, 1, 1)
    inside = ((rows - cy.view(-1, 1, 1)).abs() < half) & ((cols - cx.view(-1, 1, 1)).abs() < half)
    return torch.where(inside.unsqueeze(1), torch.full_like(x, 0.5), x)
