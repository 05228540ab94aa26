"""Language modelling: next-token cross-entropy, perplexity, bits per character, generation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from deepline.config import ExperimentConfig, ModelConfig, TaskConfig
from deepline.data.codecs.tokens import TextCodec
from deepline.data.loaders import BatchLoader, Loader, WindowLoader
from deepline.data.meta import DataSplits
from deepline.models import build_model
from deepline.registry import TASKS
from deepline.tasks.base import Evaluator, OutputSpec, Task
from deepline.tasks.generation import generate

LN2 = math.log(2.0)
Engine = Callable[[np.ndarray], np.ndarray]  # (B, T) int64 ids -> (B, T, V) logits


class LanguageModellingConfig(TaskConfig):
    name: Literal["language_modelling"] = "language_modelling"
    top_k: int = Field(3, ge=1, description="next tokens shown per answer")
    sample_prompt: str = Field("\n", description="prompt of the samples written each epoch")
    sample_tokens: int = Field(200, ge=0, description="length of those samples, 0 = none")
    temperature: float = Field(0.8, gt=0.0, description="their sampling temperature")
    sample_top_k: int | None = Field(None, ge=1, description="their top-k sampling")


@TASKS.register(
    "language_modelling",
    config=LanguageModellingConfig,
    example={"data": {"name": "text-file"},
             "task": {"sample_prompt": "The", "sample_tokens": 8},
             "model": {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16}},
)  # fmt: skip
class LanguageModelling(Task):
    """Inputs (B, T) token ids, T <= ``data.context``; outputs (B, T, V) next-token logits."""

    name = "language_modelling"
    generates = True
    config: LanguageModellingConfig
    codec: TextCodec

    @property
    def context(self) -> int:
        return int(self.meta.input_shape[0])

    @property
    def vocab_size(self) -> int:
        return int(self.meta.vocab_size or 0)

    def loaders(
        self, cfg: ExperimentConfig, data: DataSplits, batch_size: int, rank: int, world: int
    ) -> tuple[Loader, BatchLoader | None]:
        """Random windows of the training stream (an "epoch" is ``train.steps_per_epoch``
        batches), and the same first windows of the validation stream every time."""
        train = WindowLoader(
            data.train.x, self.context, batch_size, cfg.train.steps_per_epoch, cfg.seed, rank,
            world,
        )  # fmt: skip
        limit = cfg.train.eval_batches * cfg.eval.batch_size
        n = min(limit, (len(data.val.x) - 1) // self.context)
        windows = data.val.x[: n * self.context + 1]
        x, y = windows[:-1].view(n, self.context), windows[1:].view(n, self.context)
        return train, BatchLoader(x, y, cfg.eval.batch_size, rank=rank, world_size=world)

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
        return LanguageModelEvaluator(per_char=self.codec.tokenizer.kind == "char")

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

    @classmethod
    def writes_samples(cls, config: TaskConfig) -> bool:
        return isinstance(config, LanguageModellingConfig) and config.sample_tokens > 0

    def sample(self, model: nn.Module, seed: int) -> dict[str, Any]:
        """``{"text": ...}``: the configured prompt continued with the model's own tokens."""
        cfg = self.config
        model.eval()
        with torch.no_grad():
            ids = generate(
                lambda x: model(x), self.codec.encode(cfg.sample_prompt), cfg.sample_tokens,
                self.context, cfg.temperature, cfg.sample_top_k, None, seed,
            )  # fmt: skip
            return {"text": cfg.sample_prompt + self.codec.text(list(ids))}

    # -- serving ------------------------------------------------------------------------------

    def signature(self) -> dict[str, Any]:
        return {
            "inputs": [self.codec.input_spec()],
            "outputs": [
                {"name": "logits", "dtype": "float32", "shape": [-1, self.context, self.vocab_size]}
            ],
        }

    def outputs(self) -> list[OutputSpec]:
        return [OutputSpec("text", "BYTES", (-1,))]

    def named_outputs(
        self, raw: np.ndarray, inputs: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The most likely next token after each window (generation answers ``text``)."""
        tokens = np.asarray(raw)[:, -1].argmax(-1)
        return {"text": np.array([self.codec.text([int(t)]) for t in tokens], dtype=object)}

    def answers(self, named: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
        return [{"text": str(text)} for text in named["text"]]

    def answer_form(self) -> dict[str, Any]:
        return {"type": "text"}

    def drift_signal(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw)[:, -1].argmax(-1)  # the likeliest next token

    def drift_categories(self) -> int:
        return self.vocab_size

    def stream(
        self,
        engine: Engine,
        prompt: str,
        tokens: int,
        fixed_length: bool,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = 0,
    ) -> Iterator[str]:
        """Text the model (run by ``engine``) writes after ``prompt``, piece by piece: whole
        characters, also for byte-level BPE. ``fixed_length``: the engine takes exactly
        ``context`` tokens (an exported graph)."""
        ids = self.codec.encode(prompt)  # InputError for characters it cannot encode

        def forward(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(engine(x.numpy().astype(np.int64)))

        new: list[int] = []
        shown = ""
        for token in generate(
            forward, ids, tokens, self.context, temperature, top_k, top_p, seed, fixed_length
        ):
            new.append(token)
            text = self.codec.text(new)
            if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                yield text[len(shown) :]
                shown = text


class LanguageModelEvaluator(Evaluator):
    """Mean next-token loss over all positions; perplexity; bits per token (or character)."""

    def __init__(self, per_char: bool) -> None:
        super().__init__()
        import torchmetrics

        self.mean_loss = torchmetrics.MeanMetric()  # a metric, so processes reduce it too
        self.per_char = per_char

    @torch.no_grad()
    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        losses = F.cross_entropy(outputs.flatten(0, 1).float(), targets.flatten(), reduction="none")
        self.mean_loss.update(losses)

    def compute(self) -> dict[str, float]:
        loss = float(self.mean_loss.compute())
        bits = "bits_per_char" if self.per_char else "bits_per_token"
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), bits: loss / LN2}
