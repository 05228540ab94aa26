"""Batched augmentation on tensors: one call per batch, no per-image Python loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepline.config import AugmentConfig


class BatchAugment:
    """Random shift (pad, then crop at a random offset per image) and optional horizontal flip.

    Input and output: (B, C, H, W), on any device. ``fill`` is the padding value (the normalised
    background). Randomness comes only from the (CPU) ``generator`` passed in, so a resumed run
    repeats it exactly; the few random numbers a batch needs move to its device.
    """

    def __init__(self, config: AugmentConfig, fill: float | list[float] = 0.0) -> None:
        self.shift = config.shift
        self.flip = config.flip
        self.fill = fill

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.shift > 0:
            x = self._random_shift(x, generator)
        if self.flip:
            mask = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x

    def _random_shift(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
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
        # gather a (H, W) window at a per-image offset with index arithmetic
        ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        rows = (dy[:, None] + ys[None, :])[:, None, :, None].expand(b, c, h, w + 2 * s)
        out = padded.gather(2, rows)
        cols = (dx[:, None] + xs[None, :])[:, None, None, :].expand(b, c, h, w)
        return out.gather(3, cols)
