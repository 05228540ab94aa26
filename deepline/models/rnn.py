"""Recurrent nets (LSTM and GRU, one implementation) over tokens or float sequences."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig
from deepline.registry import MODELS


class _RNNConfig(ModelConfig):
    hidden: int = Field(128, ge=1, description="hidden state size (per direction)")
    layers: int = Field(2, ge=1, description="stacked recurrent layers")
    bidirectional: bool = Field(False, description="also read right to left (pooled output only)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="between recurrent layers")
    embed_dim: int = Field(64, ge=1, description="token embedding size (token inputs)")


class LSTMConfig(_RNNConfig):
    name: Literal["lstm"] = "lstm"


class GRUConfig(_RNNConfig):
    name: Literal["gru"] = "gru"


class RecurrentNet(nn.Module):
    """Embedding (token inputs), a stacked ``nn.LSTM``/``nn.GRU``, a linear head.

    Input: (B, T) int64 token ids (``vocab_size`` given) or (B, T, in_features) floats.
    Output: (B, num_outputs) from the last step's hidden state (``output="pooled"``; both
    directions concatenated when bidirectional), or (B, T, num_outputs), one prediction per step
    (``output="sequence"``; causal, so unidirectional only). Padded batches are read to the end.
    """

    cell: type[nn.LSTM] | type[nn.GRU] = nn.LSTM

    def __init__(
        self,
        num_outputs: int,
        output: Literal["pooled", "sequence"] = "pooled",
        in_features: int | None = None,
        vocab_size: int | None = None,
        hidden: int = 128,
        layers: int = 2,
        bidirectional: bool = False,
        dropout: float = 0.0,
        embed_dim: int = 64,
        **_unused: Any,  # max_len: any length is accepted
    ) -> None:
        super().__init__()
        if output == "sequence" and bidirectional:
            raise ValueError(
                "output='sequence' needs a causal model, but bidirectional=True reads the "
                "future; set bidirectional=False"
            )
        self.output = output
        self.embed: nn.Module
        if in_features is not None:
            self.embed, width = nn.Identity(), in_features
        elif vocab_size is not None:
            self.embed, width = nn.Embedding(vocab_size, embed_dim), embed_dim
        else:
            raise ValueError("give in_features (float sequences) or vocab_size (token ids)")
        self.rnn = self.cell(
            width,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,  # nn.LSTM warns about dropout with 1 layer
        )
        self.directions = 2 if bidirectional else 1
        self.head = nn.Linear(self.directions * hidden, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, state = self.rnn(self.embed(x))  # out: (B, T, dirs * hidden)
        if self.output == "sequence":
            return self.head(out)  # (B, T, num_outputs)
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n)
        # h_n: (layers * dirs, B, hidden); the last layer's forward state is at step T-1, its
        # backward state (reading right to left) at step 0
        last = h_n[-self.directions :].transpose(0, 1).flatten(1)  # (B, dirs * hidden)
        return self.head(last)  # (B, num_outputs)


@MODELS.register(
    "lstm",
    config=LSTMConfig,
    example={
        "data": {"name": "sequential-mnist"},
        "task": {"name": "sequence_classification"},
        "model": {"hidden": 8, "layers": 1},
    },
)
class LSTM(RecurrentNet):
    __doc__ = RecurrentNet.__doc__
    cell = nn.LSTM


@MODELS.register(
    "gru",
    config=GRUConfig,
    example={
        "data": {"name": "text-csv"},
        "task": {"name": "sequence_classification"},
        "model": {"hidden": 8, "layers": 1, "bidirectional": True},
    },
)
class GRU(RecurrentNet):
    __doc__ = RecurrentNet.__doc__
    cell = nn.GRU


@contextmanager
def dynamic_length_export() -> Iterator[None]:
    """Wrap ``torch.onnx.export(..., dynamo=True)`` of an LSTM/GRU so the length stays dynamic.

    torch.onnx (2.13) swaps in while_loop LSTM/GRU decompositions only while capturing the graph.
    Its decomposition step then traces ``aten.lstm``/``aten.gru`` through the default, unrolled
    decomposition, which fixes the length of the RNN's output to the example's (the values stay
    right; pytorch/pytorch#191855, fixed upstream by #193192), and leaves that kernel in the ops'
    dispatch caches, where it hides the swap from every later export in the process: from the
    second RNN export on, the input's length is fixed too. This keeps the swap over the whole
    export and clears the caches; other models are unaffected.
    """
    try:
        from torch.export._patches import (
            register_gru_while_loop_decomposition,
            register_lstm_while_loop_decomposition,
        )
    except ImportError:  # other torch versions: export as they do
        yield
        return
    ops = (torch.ops.aten.lstm.input, torch.ops.aten.gru.input)
    with register_lstm_while_loop_decomposition(), register_gru_while_loop_decomposition():
        try:
            for op in ops:
                op._dispatch_cache.clear()
            yield
        finally:  # before the original kernels come back
            for op in ops:
                op._dispatch_cache.clear()
