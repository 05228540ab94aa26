"""Language modelling: next-token cross-entropy, perplexity, bits per character, generation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepline.config import ModelConfig
from deepline.models import build_model
from deepline.registry import TASKS
from deepline.tasks.base import Evaluator, Task
from deepline.tasks.generation import generate

LN2 = math.log(2.0)


@TASKS.register("language_modelling")
class LanguageModelling(Task):
    """Inputs (B, T) token ids, T <= ``data.context``; outputs (B, T, V) next-token logits."""

    name = "language_modelling"

    @property
    def context(self) -> int:
        return int(self.meta.input_shape[0])

    @property
    def vocab_size(self) -> int:
        return int(self.meta.vocab_size or 0)

    @cached_property
    def tokenizer(self) -> Any:
        from deepline.data.tokenizers import load_tokenizer

        return load_tokenizer(self.meta.tokenizer or "")

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        return build_model(
            model_config,
            num_outputs=self.vocab_size,
            output="sequence",
            in_features=None,
            vocab_size=self.vocab_size,
            max_len=self.context,
        )

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.flatten(0, 1), targets.flatten())

    def evaluator(self, keep_mistakes: int = 0) -> LanguageModelEvaluator:
        return LanguageModelEvaluator(per_char=self.tokenizer.kind == "char")

    def answers(self, outputs: torch.Tensor, top_k: int | None = None) -> list[list[dict]]:
        """The most likely next tokens after each sequence."""
        probs = outputs[:, -1].float().softmax(-1)
        top = probs.topk(min(top_k or self.config.top_k, probs.shape[-1]), dim=-1)
        return [
            [
                {"token": self.tokenizer.decode([int(i)]), "index": int(i), "probability": float(p)}
                for p, i in zip(values, indices)
            ]
            for values, indices in zip(top.values, top.indices)
        ]

    def signature(self) -> dict[str, Any]:
        # exported at a fixed context (positions are learned up to it); generation pads on the right
        return {
            "inputs": [{"name": "input", "dtype": "int64", "shape": [-1, self.context]}],
            "outputs": [
                {"name": "logits", "dtype": "float32", "shape": [-1, self.context, self.vocab_size]}
            ],
        }

    def example_inputs(self, stream: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` consecutive windows of the token stream, (n, context)."""
        usable = (len(stream) // self.context) * self.context
        return stream[:usable].view(-1, self.context)[:n]

    def batches(
        self, stream: torch.Tensor, _: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every non-overlapping window of a token stream with its next-token targets."""
        n = (len(stream) - 1) // self.context
        x = stream[: n * self.context].view(n, self.context)
        y = stream[1 : n * self.context + 1].view(n, self.context)
        for i in range(0, n, batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]

    def monitor_default(self) -> tuple[str, str]:
        return "val/loss", "min"

    def sample(self, model: nn.Module, prompt: str, tokens: int, seed: int = 0) -> str:
        """Text the model writes after ``prompt`` (for reports and progress)."""
        model.eval()
        ids = self.tokenizer.encode(prompt)
        cfg = self.config
        out = list(
            generate(
                lambda x: model(x),
                ids,
                tokens,
                self.context,
                cfg.temperature,
                cfg.sample_top_k,
                None,
                seed,
            )
        )
        return prompt + self.tokenizer.decode(out)


class LanguageModelEvaluator(Evaluator):
    """Mean next-token loss over all positions; perplexity; bits per token (or character)."""

    def __init__(self, per_char: bool) -> None:
        import torchmetrics

        self.mean_loss = torchmetrics.MeanMetric()  # a metric, so processes reduce it too
        self.per_char = per_char
        self.mistakes: list[Any] = []

    @torch.no_grad()
    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        losses = F.cross_entropy(outputs.flatten(0, 1).float(), targets.flatten(), reduction="none")
        self.mean_loss.update(losses)

    def compute(self) -> dict[str, float]:
        loss = float(self.mean_loss.compute())
        bits = "bits_per_char" if self.per_char else "bits_per_token"
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), bits: loss / LN2}
