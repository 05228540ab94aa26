"""The task contract: what ties data, model, training, evaluation, export and serving together.

A task owns everything task-specific, so that nothing outside ``tasks/`` asks which task it is:
its config class (registered with it), the model it builds from the data's meta, the loss, the
metrics, its **named outputs** (what every protocol answers: logits, probabilities and a label;
a value per target; generated text), its answers as JSON, whether it generates, what it adds
to training (samples after each epoch), its figures in the evaluation and the report, and how
drift of its predictions is watched. Inputs are the codec's business (``deepline.data.codecs``).

Tasks without labels (a GAN) override ``step_loss``; tasks without a dataset (a policy learning
from an environment) override ``load_data`` and ``loaders``. See docs/extending.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from deepline.config import DataConfig, ExperimentConfig, ModelConfig, TaskConfig, TrainConfig
from deepline.data.codecs import InputCodec, codec_for
from deepline.data.load import load_data
from deepline.data.loaders import BatchLoader, Loader
from deepline.data.meta import DataMeta, DataSplits, Split
from deepline.data.transforms import BatchAugment, Geometry
from deepline.errors import ConfigError, DeeplineError


@dataclass(frozen=True)
class OutputSpec:
    """One named output every protocol answers: V2 ``datatype`` and ``shape`` (-1: any).

    ``classes`` names the last axis of a score output, for KServe's classification extension.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    classes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Figure:
    """A figure of an evaluation: drawn into ``plots/`` and embedded in the report."""

    title: str
    caption: str
    draw: Callable[[Path], Path]  # writes a PNG at the path given and returns it


class Evaluator(ABC):
    """Accumulates model outputs over batches and turns them into metrics."""

    mistakes: list[tuple[torch.Tensor, int, int, float]]  # (input, true, predicted, confidence)

    def __init__(self) -> None:
        self.mistakes = []

    @abstractmethod
    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """Scalar metrics, keyed by metric name (no split prefix)."""

    def details(self) -> dict[str, Any]:
        """Everything an evaluation report shows beyond scalars (JSON-able)."""
        return {}

    def to(self, device: torch.device) -> Evaluator:
        """Keep the metrics' state on ``device`` (the batches' own), as torchmetrics does."""
        for name, value in vars(self).items():
            if isinstance(value, nn.Module):  # torchmetrics metrics and collections
                setattr(self, name, value.to(device))
        return self


def image_model(model_config: ModelConfig, meta: DataMeta) -> nn.Module:
    """The configured model for (C, H, W) images and the data's classes: what image tasks
    (classification, segmentation, detection) build."""
    from deepline.models import build_model

    c, h, w = meta.input_shape
    return build_model(
        model_config, in_channels=c, num_classes=len(meta.classes), image_size=(h, w)
    )


class Task(ABC):
    """The contract; see the module docstring. A task is bound to one dataset's meta."""

    name: ClassVar[str]
    generates: ClassVar[bool] = False  # answers a prompt with generated text (``stream``)
    generates_images: ClassVar[bool] = False  # makes images of seeds (and classes)
    recommends: ClassVar[bool] = False  # ranks items for a user or history (``recommend``)
    plays: ClassVar[bool] = False  # acts in an environment, episode by episode (``play``)
    # its probabilities follow ``config.temperature`` (fitted by ``deepline calibrate``)
    calibratable: ClassVar[bool] = False
    # its decisions may follow ``config.thresholds`` (fitted by ``deepline fairness --mitigate``)
    thresholdable: ClassVar[bool] = False
    # its targets are in pixels ("masks", "boxes"): augmentation moves them with the images
    target_geometry: ClassVar[Geometry | None] = None

    def __init__(self, config: TaskConfig, meta: DataMeta) -> None:
        self.config = config
        self.meta = meta

    @cached_property
    def codec(self) -> InputCodec:
        """The input codec of the data this task is bound to."""
        return codec_for(self.meta)

    # -- data and training ------------------------------------------------------------------

    @classmethod
    def load_data(cls, config: DataConfig) -> DataSplits:
        """The splits to train and evaluate on (a task without a dataset makes its own)."""
        return load_data(config)

    def loaders(
        self, cfg: ExperimentConfig, data: DataSplits, batch_size: int, rank: int, world: int
    ) -> tuple[Loader, BatchLoader | None]:
        """Training batches (shuffled, augmented) and fixed validation batches; each of
        ``world`` processes takes its share."""
        fill = [-m / s for m, s in zip(self.meta.mean, self.meta.std)]  # normalised background
        train = BatchLoader(
            data.train.x, data.train.y, batch_size, shuffle=True, seed=cfg.seed,
            augment=BatchAugment(cfg.data.augment, fill=fill), rank=rank, world_size=world,
            geometry=self.target_geometry,
        )  # fmt: skip
        if not len(data.val):
            return train, None
        val = BatchLoader(data.val.x, data.val.y, cfg.eval.batch_size, rank=rank, world_size=world)
        return train, val

    def check_training(self, train: TrainConfig) -> None:
        """A ConfigError naming the pair for a training method this task cannot take."""
        return None  # every method, by default

    def refuse_methods(self, train: TrainConfig, reasons: dict[str, str]) -> None:
        """A ConfigError for the first ``train`` field of ``reasons`` that is set, naming the
        pair and saying why (what ``check_training`` usually raises)."""
        for field, reason in reasons.items():
            if getattr(train, field) is not None:
                raise ConfigError(f"train.{field} cannot be combined with task {self.name}: "
                                  f"{reason}")  # fmt: skip

    @abstractmethod
    def build_model(self, model_config: ModelConfig) -> nn.Module: ...

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def class_scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """One score per class and example (N, K), what explanations attribute: the outputs
        themselves, or those at the last position of a model answering at every position."""
        return outputs[:, -1] if outputs.dim() == 3 else outputs

    def explained_class(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The class an explanation explains by default, and how sure the model is of it, per
        example: the most probable of the class scores' softmax."""
        confidence, predicted = self.class_scores(outputs).float().softmax(-1).max(-1)
        return predicted, confidence

    def example_losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of each example (attacks keep each example's worst attempt by it)."""
        return torch.stack([self.loss(o[None], t[None]) for o, t in zip(outputs, targets)])

    def wrong(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """Per example, whether the model's answer is wrong (an attack that makes it so has
        succeeded); None for tasks whose answers are not right or wrong (regression)."""
        return None

    def step_loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The loss of one training batch (a task without targets overrides this)."""
        x, y = batch
        return self.loss(model(x), y)

    @classmethod
    def writes_samples(cls, config: TaskConfig) -> bool:
        """Whether training writes ``sample`` after each epoch (to ``samples.jsonl``)."""
        return False

    def sample(self, model: nn.Module, seed: int) -> dict[str, Any]:
        """What the model makes now, for people to follow training (text, images, ...)."""
        raise DeeplineError(f"the {self.name} task writes no samples")

    def monitor_default(self) -> tuple[str, str]:
        """The validation metric that picks the best checkpoint, and 'min' or 'max'."""
        return "val/loss", "min"

    # -- evaluation ---------------------------------------------------------------------------

    @abstractmethod
    def evaluator(self, keep_mistakes: int = 0) -> Evaluator: ...

    def baselines(self, data: DataSplits, split: str) -> dict[str, Any]:
        """What the evaluation of ``split`` compares the model with, beyond its own metrics
        (a forecaster's statistical baselines on the same origins); JSON-able, into eval.json."""
        return {}

    def batches(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """A whole split as (inputs, targets) batches, in order (for evaluation)."""
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]

    def example_batch(self, split: Split, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to ``n`` examples of ``split`` as one (inputs, targets) batch, as the task
        batches them: what exports are checked on and explanations explain."""
        batch: tuple[torch.Tensor, torch.Tensor] = next(iter(self.batches(split.x, split.y, n)))
        return batch

    def example_inputs(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Up to ``n`` model inputs from a split's ``x`` (export checks run on these)."""
        return x[:n]

    def figures(self, evaluation: dict[str, Any]) -> dict[str, Figure]:
        """Figures of an evaluation (``eval.json``), by file stem."""
        return {}

    def show_inputs(self, x: torch.Tensor) -> torch.Tensor | None:
        """Model inputs as images (N, C, H, W) in [0, 1] for people, or None."""
        return self.codec.show(x)

    # -- serving ------------------------------------------------------------------------------

    @abstractmethod
    def signature(self) -> dict[str, Any]:
        """The exported graph's input and output tensors: names, dtypes and shapes."""

    @abstractmethod
    def outputs(self) -> list[OutputSpec]:
        """The named outputs every protocol answers."""

    @abstractmethod
    def named_outputs(
        self, raw: np.ndarray, inputs: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The model's raw outputs for a batch -> the named outputs, each batch first.
        ``inputs`` is the model-ready batch they came from, for decisions that depend on it
        (a task's group thresholds)."""

    @abstractmethod
    def answers(self, named: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
        """Named outputs -> one JSON-able answer per example, as people read it."""

    def answers_at(
        self,
        named: dict[str, np.ndarray],
        top_k: int | None,
        sizes: Sequence[tuple[int, ...]] | None,
    ) -> list[Any]:
        """Answers for inputs whose own sizes were ``sizes`` (None: the model's); a task
        whose answers are in pixels (masks, boxes) maps them back to each input's size."""
        return self.answers(named, top_k)

    def draw_answer(self, source: Path, answer: Any, out: Path) -> Path | None:
        """Draw ``answer`` over the input file ``source`` as a PNG at ``out`` (a mask or
        boxes over the image), or None for answers that are not drawn."""
        return None

    def stream(
        self,
        engine: Callable[[np.ndarray], np.ndarray],
        prompt: str,
        tokens: int,
        fixed_length: bool,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = 0,
    ) -> Iterator[str]:
        """A generating task's text after ``prompt``, piece by piece, the model run by
        ``engine`` (``fixed_length``: it takes exactly the context's length)."""
        raise DeeplineError(f"the {self.name} task does not generate")

    def recommend(
        self,
        engine: Callable[[np.ndarray], np.ndarray],
        user: str | None,
        history: Sequence[Any] | None,
        k: int,
        include_seen: bool = False,
    ) -> dict[str, Any]:
        """A recommending task's answer for one user and/or history, the model run by
        ``engine``: the ``k`` best items, and the history they follow."""
        raise DeeplineError(f"the {self.name} task does not recommend")

    def play(
        self,
        engine: Callable[[np.ndarray], np.ndarray],
        env_id: str | None,
        episodes: int,
        seed: int = 0,
        record: int = 0,
    ) -> dict[str, Any]:
        """A policy's greedy episodes in an environment (its own when None), the model run by
        ``engine``: each episode's return and length (and ``record`` frames of the first)."""
        raise DeeplineError(f"the {self.name} task does not act in an environment")

    def answer_form(self) -> dict[str, Any]:
        """How answers are shown to people (the web page): ``{"type": ...}``."""
        return {"type": "values"}

    def answer_cells(self, answer: Any) -> list[str]:
        """One answer as the cells of a terminal table row."""
        return [str(answer)]

    def drift_signal(self, raw: np.ndarray) -> np.ndarray:
        """One number per example that drift monitoring watches: a class index when
        ``drift_categories`` is set, else a value."""
        return np.asarray(raw, dtype=np.float64).reshape(len(raw), -1)[:, 0]

    def drift_categories(self) -> int | None:
        """How many classes ``drift_signal`` takes, or None when it is a continuous value."""
        return None
