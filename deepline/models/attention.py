"""The pre-LayerNorm transformer block shared by ``transformer`` and ``gpt``, and attention capture.

The normal path runs ``F.scaled_dot_product_attention`` (fused kernels, exportable). Inside
``capture_attention(model)`` every attention layer computes softmax(q k^T / sqrt(hs)) explicitly
instead, and appends the weights to the captured list:

>>> import torch
>>> block = Block(d_model=8, heads=2, causal=True)
>>> with capture_attention(block) as maps:
...     y = block(torch.randn(1, 5, 8))
>>> [tuple(m.shape) for m in maps]
[(1, 2, 5, 5)]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer, GPT-NeoX "rotate half" layout) for q and k.

    Input: (B, nh, T, hs) with T <= max_len and hs even. Output: the same shape, each pair of
    channels (i, i + hs/2) rotated by the angle position * base^(-2i/hs). Written with real
    cos/sin tables, not complex numbers, so it exports to ONNX.
    """

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, head_size: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_size % 2:
            raise ValueError(f"rotary positions need an even head size; got head_size={head_size}")
        inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (L, hs/2)
        # tables are recomputed from the config, so they stay out of the state dict
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, half = x.size(-2), x.size(-1) // 2
        cos, sin = self.cos[:T], self.sin[:T]  # (T, hs/2), broadcast over (B, nh)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention. Input: (B, T, C). Output: (B, T, C).

    ``causal``: position t attends to positions <= t only. ``rotary``: a ``RotaryEmbedding``
    applied to q and k (positions then need no other encoding).
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        causal: bool = False,
        rotary: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be divisible by heads={heads}")
        self.heads, self.causal, self.dropout = heads, causal, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)  # q, k, v for all heads at once
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        self.rotary = rotary
        self.captured: list[torch.Tensor] | None = None  # set by capture_attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        # (B, T, C) -> (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        p = self.dropout if self.training else 0.0
        if self.captured is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal)
        else:
            y = self._explicit_attention(q, k, v, p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        return self.resid_dropout(self.proj(y))

    def _explicit_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float
    ) -> torch.Tensor:
        """What SDPA computes, with the weights kept: (B, nh, T, hs) -> (B, nh, T, hs)."""
        T = q.size(-2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, nh, T, T)
        if self.causal:
            future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
            att = att.masked_fill(future, float("-inf"))
        att = att.softmax(dim=-1)
        assert self.captured is not None
        self.captured.append(att)
        return F.dropout(att, p) @ v  # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)


class MLP(nn.Module):
    """Linear -> GELU -> Linear -> Dropout. (B, T, C) -> (B, T, C)."""

    def __init__(self, d_model: int, ff_mult: int = 4, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(d_model, ff_mult * d_model, bias=bias)
        self.proj = nn.Linear(ff_mult * d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x)).

    Input: (B, T, d_model). Output: (B, T, d_model).
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        ff_mult: int = 4,
        dropout: float = 0.0,
        bias: bool = True,
        causal: bool = False,
        rotary: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, bias=bias)
        self.attn = SelfAttention(d_model, heads, dropout, bias, causal, rotary)
        self.ln2 = nn.LayerNorm(d_model, bias=bias)
        self.mlp = MLP(d_model, ff_mult, dropout, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the attention weights of every ``SelfAttention`` in ``model`` while inside.

    Yields a list that each forward pass extends with one (B, heads, T, T) tensor per layer, in
    the order the layers run; each row sums to 1 (and is zero above the diagonal when causal).
    The tensors keep their graph, so gradients can flow through them (use ``torch.no_grad()``
    when only looking).
    """
    layers = [m for m in model.modules() if isinstance(m, SelfAttention)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no SelfAttention layer to capture")
    maps: list[torch.Tensor] = []
    previous = [layer.captured for layer in layers]
    for layer in layers:
        layer.captured = maps
    try:
        yield maps
    finally:
        for layer, before in zip(layers, previous):
            layer.captured = before
