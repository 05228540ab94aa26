"""Sequential recommendation: what a user will interact with next, given what they did.

Inputs are ``[user, items...]`` rows (the ``interactions`` codec); models score every item
(B, V). Training reads every position of a window (``every_position=True``) with one of three
losses: full softmax cross-entropy (``ce``), binary cross-entropy of the next item against
sampled negatives (``bce``, the SASRec paper) or BPR's pairwise loss (``bpr``). Evaluation
ranks the held-out item under both protocols of ``tasks.ranking``. Served answers are the
``top_k`` unseen items with titles and scores; an empty row (an unknown user, an empty
history) is answered with the most popular items, flagged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig, TaskConfig, TrainConfig
from deepline.data.codecs.interactions import InteractionsCodec
from deepline.errors import ConfigError, InputError
from deepline.models import build_model
from deepline.registry import TASKS
from deepline.tasks.base import Figure, OutputSpec, Task
from deepline.tasks.ranking import LIST_LENGTH, RankingEvaluator

FALLBACK = "popularity"


class SequentialRecommendationConfig(TaskConfig):
    name: Literal["sequential_recommendation"] = "sequential_recommendation"
    loss: Literal["ce", "bce", "bpr"] = Field(
        "ce", description="full softmax cross-entropy, or BCE / BPR against sampled negatives"
    )
    negatives: int = Field(1, ge=1, description="bce/bpr: negatives drawn per position")
    eval_negatives: int = Field(100, ge=1, description="the sampled protocol's negatives")
    eval_seed: int = Field(0, description="seed of the sampled protocol's negatives")
    top_k: int = Field(LIST_LENGTH, ge=1, description="items per answer")
    max_k: int = Field(100, ge=1, description="items every protocol's outputs hold")
    exclude_seen: bool = Field(True, description="never recommend an item of the history")


@TASKS.register(
    "sequential_recommendation",
    config=SequentialRecommendationConfig,
    example={"data": {"name": "movielens-100k"}, "model": {"name": "sasrec", "d_model": 16,
             "heads": 1, "layers": 1}},
)  # fmt: skip
class SequentialRecommendation(Task):
    """Outputs (B, V) scores of every item index (0 is padding); see the module docstring."""

    name = "sequential_recommendation"
    recommends = True
    config: SequentialRecommendationConfig
    codec: InteractionsCodec

    @property
    def num_items(self) -> int:
        return int(self.meta.vocab_size or 0)

    @property
    def counts(self) -> list[int]:
        counts: list[int] = self.meta.interactions["counts"]
        return counts

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        return build_model(
            model_config,
            num_items=self.num_items,
            num_users=len(self.meta.interactions["users"]),
            max_len=int(self.meta.input_shape[0]),
        )

    # -- training -----------------------------------------------------------------------------

    def check_training(self, train: TrainConfig) -> None:
        if train.privacy is not None:
            raise ConfigError(
                "train.privacy with task sequential_recommendation: DP-SGD bounds what one "
                "training example reveals, but a user's history spans several training "
                "windows, so no guarantee per user would follow; remove train.privacy"
            )

    def step_loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The loss over every position of the windows that has a next item."""
        x, y = batch
        scores = model(x, every_position=True)  # (B, L, V)
        real = y > 0
        if self.config.loss == "ce":
            return self.loss(scores[real], y[real])
        positive = scores.gather(-1, y.unsqueeze(-1))  # (B, L, 1)
        negative = scores.gather(-1, self.draw_negatives(y))  # (B, L, n)
        if self.config.loss == "bce":
            each = F.softplus(-positive) + F.softplus(negative).mean(-1, keepdim=True)
        else:  # bpr: -log sigmoid(positive - negative)
            each = F.softplus(negative - positive).mean(-1, keepdim=True)
        return each.squeeze(-1)[real].mean()

    def draw_negatives(self, targets: torch.Tensor) -> torch.Tensor:
        """Items drawn uniformly (1..V-1) for each position, none equal to its target."""
        n, v = self.config.negatives, self.num_items
        draws = torch.randint(1, v - 1, (*targets.shape, n), device=targets.device)
        return draws + (draws >= targets.unsqueeze(-1)).long()  # skips the target

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Softmax cross-entropy of the next item over every item but padding."""
        outputs = outputs.float().clone()
        outputs[..., 0] = -math.inf
        return F.cross_entropy(outputs.reshape(-1, outputs.size(-1)), targets.reshape(-1))

    def monitor_default(self) -> tuple[str, str]:
        return "val/full/ndcg@10", "max"

    # -- evaluation ---------------------------------------------------------------------------

    def evaluator(self, keep_mistakes: int = 0) -> RankingEvaluator:
        return RankingEvaluator(
            self.counts, self.config.eval_negatives, self.config.eval_seed,
            examples=8 if keep_mistakes else 0,
        )  # fmt: skip

    def show_inputs(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def figures(self, evaluation: dict[str, Any]) -> dict[str, Figure]:
        from deepline import plots

        metrics = evaluation.get("metrics") or {}
        figures = {}
        if "full/ndcg@10" in metrics:
            figures["ranking"] = Figure(
                "Ranking under both protocols",
                "HR@K and NDCG@K of each user's held-out item, ranked among every item the "
                "user had not seen (full) and among 100 sampled unseen items (sampled; the "
                "SASRec paper's protocol, flattering by comparison).",
                lambda p: plots.plot_ranking(metrics, p),
            )
        examples = evaluation.get("examples") or []
        if examples:
            rows = [self._example_row(e) for e in examples]
            figures["examples"] = Figure(
                "Example recommendations",
                "A few users of the split: their latest items, the item they chose next, and "
                "the model's top 5 (the chosen item starred when it is among them).",
                lambda p: plots.plot_recommendation_examples(rows, p),
            )
        return figures

    def _example_row(self, example: dict[str, Any]) -> dict[str, str]:
        titles = self.meta.interactions["titles"]
        users = self.meta.interactions["users"]

        def title(i: int) -> str:
            return str(titles[i - 1]) if 0 < i <= len(titles) else str(i)

        target = int(example["target"])
        latest = [title(i) for i in example["history"][-3:]]
        shown = [("* " if i == target else "") + title(i) for i in example["recommended"][:5]]
        user = int(example["user"])
        return {
            "user": users[user - 1] if 0 < user <= len(users) else "-",
            "history": "\n".join(latest),
            "target": title(target),
            "recommended": "\n".join(shown),
        }

    # -- serving ------------------------------------------------------------------------------

    def signature(self) -> dict[str, Any]:
        return {
            "inputs": [self.codec.input_spec()],
            "outputs": [{"name": "scores", "dtype": "float32", "shape": [-1, self.num_items]}],
        }

    def outputs(self) -> list[OutputSpec]:
        k = min(self.config.max_k, self.num_items - 1)
        return [
            OutputSpec("items", "BYTES", (-1, k)),
            OutputSpec("scores", "FP32", (-1, k)),
            OutputSpec("fallback", "BYTES", (-1,)),
        ]

    def named_outputs(
        self, raw: np.ndarray, inputs: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The ``max_k`` best items of each row (ids, scores), unseen ones only unless
        ``exclude_seen`` is off; an empty row gets the most popular items and the flag
        ``fallback="popularity"``. Without ``inputs`` nothing is excluded or replaced."""
        return self.ranked(raw, inputs, self.config.exclude_seen)

    def ranked(
        self, raw: np.ndarray, inputs: np.ndarray | None, exclude_seen: bool
    ) -> dict[str, np.ndarray]:
        """``named_outputs``, excluding the history's items or not."""
        scores = np.array(raw, dtype=np.float32).reshape(len(raw), -1)
        rows = np.ones((len(scores), 1), np.int64) if inputs is None else np.asarray(inputs)
        empty = (rows[:, 1:] == 0).all(1) & (rows[:, 0] == 0)
        scores[empty] = np.log1p(np.asarray(self.counts, dtype=np.float32))
        scores[:, 0] = -np.inf
        if exclude_seen:
            np.put_along_axis(scores, rows[:, 1:], -np.inf, axis=1)
            scores[:, 0] = -np.inf
        k = min(self.config.max_k, self.num_items - 1)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        ids = np.asarray(["", *self.codec.items], dtype=object)
        return {
            "items": ids[top],
            "scores": np.take_along_axis(scores, top, axis=1),
            "fallback": np.where(empty, FALLBACK, "").astype(object),
        }

    def answers(self, named: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
        """Per example: ``{"items": [{"item", "title", "score"}...], "fallback"}``."""
        k = top_k or self.config.top_k
        available = named["items"].shape[1]
        if k > available:
            raise InputError(f"k={k}: this model answers at most {available} items (task.max_k)")
        titles = dict(zip(self.codec.items, self.meta.interactions["titles"]))
        return [
            {
                "items": [
                    {"item": str(i), "title": titles.get(str(i), str(i)), "score": float(s)}
                    for i, s in zip(items[:k], scores[:k])
                    if np.isfinite(s)
                ],
                "fallback": str(flag) or None,
            }
            for items, scores, flag in zip(named["items"], named["scores"], named["fallback"])
        ]

    def recommend(
        self,
        engine: Callable[[np.ndarray], np.ndarray],
        user: str | None,
        history: Sequence[Any] | None,
        k: int,
        include_seen: bool = False,
    ) -> dict[str, Any]:
        """``{"items": [...], "fallback", "history": [{"item", "title"}...]}`` for a known
        user (their whole history), a history of item ids, or both; an unknown user or an
        empty history gets the most popular items, flagged."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        if user is None and history is None:
            raise InputError("give a user, a history of item ids, or both")
        item: dict[str, Any] = {} if user is None else {"user": user}
        if history is not None:
            item["history"] = list(history)
        rows = self.codec.decode([item])
        named = self.ranked(engine(rows), rows, exclude_seen=not include_seen)
        answer: dict[str, Any] = self.answers(named, k)[0]
        titles = self.meta.interactions["titles"]
        answer["history"] = [
            {"item": self.codec.items[i - 1], "title": titles[i - 1]} for i in rows[0, 1:] if i
        ]
        return answer

    def answer_form(self) -> dict[str, Any]:
        return {"type": "recommendations"}

    def answer_cells(self, answer: Any) -> list[str]:
        return [f"{a['title']} ({a['score']:.2f})" for a in answer["items"]]

    def drift_signal(self, raw: np.ndarray) -> np.ndarray:
        """The top recommended item of each example."""
        scores = np.asarray(raw, dtype=np.float64).reshape(len(raw), -1).copy()
        scores[:, 0] = -np.inf
        return scores.argmax(1)

    def drift_categories(self) -> int:
        return self.num_items
