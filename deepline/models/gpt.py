"""A GPT decoder for language modelling, after nanoGPT (Karpathy), typed and configured."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from deepline.config import ModelConfig
from deepline.models.attention import Block, RotaryEmbedding
from deepline.registry import MODELS


class GPTConfig(ModelConfig):
    name: Literal["gpt"] = "gpt"
    n_layer: int = Field(4, ge=1, description="transformer blocks")
    n_head: int = Field(4, ge=1, description="attention heads (must divide n_embd)")
    n_embd: int = Field(128, ge=1, description="width of the token representations")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    bias: bool = Field(False, description="biases in Linear and LayerNorm layers")
    rotary: bool = Field(False, description="rotary positions on q/k instead of learned ones")

    @model_validator(mode="after")
    def _head_size(self) -> GPTConfig:
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd must be divisible by n_head; got n_embd={self.n_embd}, "
                f"n_head={self.n_head}"
            )
        if self.rotary and (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"rotary needs an even head size n_embd / n_head; got {self.n_embd // self.n_head}"
            )
        return self


@MODELS.register(
    "gpt",
    config=GPTConfig,
    example={
        "data": {"name": "text-file"},
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16},
    },
)
class GPT(nn.Module):
    """Token + position embedding, ``n_layer`` causal pre-LN blocks, LayerNorm, tied LM head.

    Input: (B, T) int64 token ids, T <= max_len (the context). Output: (B, T, vocab) next-token
    logits; position t sees tokens <= t only. ``rotary=True`` rotates q/k by position instead of
    adding a learned position embedding. The head shares its weight with the token embedding.
    """

    def __init__(
        self,
        num_outputs: int,
        output: Literal["pooled", "sequence"] = "sequence",
        in_features: int | None = None,
        vocab_size: int | None = None,
        max_len: int = 256,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
        bias: bool = False,
        rotary: bool = False,
        **_unused: Any,
    ) -> None:
        super().__init__()
        if output != "sequence":
            raise ValueError(
                f"gpt predicts every position: output must be 'sequence', got {output!r}"
            )
        if in_features is not None:
            raise ValueError(f"gpt reads token ids only; got in_features={in_features}")
        vocab = vocab_size if vocab_size is not None else num_outputs
        if vocab != num_outputs:
            raise ValueError(
                "gpt ties its output head to the token embedding, so num_outputs must equal "
                f"vocab_size; got num_outputs={num_outputs}, vocab_size={vocab_size}"
            )
        self.max_len = max_len
        self.wte = nn.Embedding(vocab, n_embd)
        self.attention_readout = "last"  # the next token is read at the last position
        self.wpe = None if rotary else nn.Embedding(max_len, n_embd)
        rope = RotaryEmbedding(n_embd // n_head, max_len) if rotary else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(n_embd, n_head, 4, dropout, bias, causal=True, rotary=rope)
            for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf, 2017)

        self.apply(_init_weights)
        # GPT-2: scale the projections into the residual stream by 1/sqrt(number of them)
        for name, weight in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.proj.weight")):
                nn.init.normal_(weight, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.size(1)
        if idx.size(1) > self.max_len:
            raise ValueError(
                f"sequence of length {T} is longer than the model's context max_len={self.max_len}"
            )
        x = self.wte(idx)  # (B, T, n_embd)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))  # (T, n_embd) broadcast
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)  # (B, T, n_embd)
        return self.lm_head(self.ln_f(x))  # (B, T, vocab)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameters, counting the tied embedding once; without the position table by default."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding and self.wpe is not None else n


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
