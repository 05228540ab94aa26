"""Batched augmentation on tensors: one call per batch, no per-image Python loop."""

from __future__ import annotations

from typing import overload

import torch
import torch.nn.functional as F

from deepline.config import AugmentConfig


class BatchAugment:
    """Random shift (pad, then crop at a random offset per image) and optional horizontal and
    vertical flips.

    Input and output: (B, C, H, W), on any device; with ``target`` (B, H, W) masks, the same
    shift and flips move each image's mask (padded with 0, the background), so pixels and
    labels stay aligned. ``fill`` is the images' padding value (the normalised background).
    Randomness comes only from the (CPU) ``generator`` passed in, so a resumed run repeats it
    exactly; the few random numbers a batch needs move to its device.
    """

    def __init__(self, config: AugmentConfig, fill: float | list[float] = 0.0) -> None:
        self.shift = config.shift
        self.flip = config.flip
        self.vflip = config.vflip
        self.fill = fill

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.flip or self.vflip

    @overload
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...
    @overload
    def __call__(
        self, x: torch.Tensor, generator: torch.Generator, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator, target: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        masks = None if target is None else target[:, None]  # (B, 1, H, W), moved alike
        if self.shift > 0:
            x, masks = self._random_shift(x, generator, masks)
        for axis, wanted in ((-1, self.flip), (-2, self.vflip)):
            if wanted:
                chosen = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
                x = torch.where(chosen[:, None, None, None], x.flip(axis), x)
                if masks is not None:
                    masks = torch.where(chosen[:, None, None, None], masks.flip(axis), masks)
        return x if masks is None else (x, masks[:, 0])

    def _random_shift(
        self, x: torch.Tensor, generator: torch.Generator, masks: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, c, h, w = x.shape
        s = self.shift
        padded = F.pad(x, (s, s, s, s))  # (B, C, H + 2s, W + 2s), zeros
        fills = [self.fill] if isinstance(self.fill, (int, float)) else list(self.fill)
        if any(f != 0 for f in fills):  # pad with the background value, not 0
            fill = torch.tensor(fills, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
            border = torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device)
            border = F.pad(border, (s, s, s, s)) == 0
            padded = torch.where(border, fill.expand(b, c, 1, 1), padded)
        dy = torch.randint(0, 2 * s + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * s + 1, (b,), generator=generator).to(x.device)
        x = _window(padded, dy, dx, h, w)
        if masks is not None:
            masks = _window(F.pad(masks, (s, s, s, s)), dy, dx, h, w)
        return x, masks


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
