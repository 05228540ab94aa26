"""Image generation: a GAN learns the training images (of each class, when conditional).

Training does not alternate: each batch gives the discriminator's loss on real and generated
images and the generator's non-saturating loss (Goodfellow et al. 2014), and one optimizer step
moves both networks (the model keeps each loss's gradient to its own network). Validation and
evaluation generate one image per real image of the split (seeded latents, the real image's
class) and measure the Fréchet distance between the two sets (``fd``) in the feature space of
a classifier bundle (``task.features``; there are no Inception weights here, so it is not the
published FID) or of the pixels, and, for a conditional generator with a classifier, how often
the classifier sees the class asked for (``class_accuracy``).

The exported and served model is the generator: latents in, images in [0, 1] out, given as
seeds and classes by people and clients (:mod:`deepline.tasks.latents`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field
from torch import nn

from deepline.config import ExperimentConfig, ModelConfig, TaskConfig, TrainConfig
from deepline.data.loaders import BatchLoader, Loader
from deepline.data.meta import DataSplits
from deepline.errors import ConfigError, DeeplineError
from deepline.models import build_model
from deepline.models.parts import output_layer
from deepline.registry import TASKS
from deepline.tasks.base import Evaluator, Figure, OutputSpec, Task
from deepline.tasks.examples import png
from deepline.tasks.latents import LatentCodec

GRID_UNCONDITIONAL = 64  # images in the sample grid of an unconditional generator


class ImageGenerationConfig(TaskConfig):
    name: Literal["image_generation"] = "image_generation"
    checkpoint_monitor = ("val/fd", "min")
    latent_dim: int = Field(100, ge=1, le=4096, description="noise numbers per image")
    conditional: bool = Field(
        True, description="generate a class asked for (a conditional GAN); needs classes"
    )
    features: str | None = Field(
        None, description="a classifier bundle of the same images (RUN_DIR/bundle) whose last "
        "hidden layer the Fréchet distance compares; without one it compares pixels",
    )  # fmt: skip
    samples_per_class: int = Field(
        8, ge=1, le=32, description="images per class in the grid written after each epoch"
    )


@TASKS.register(
    "image_generation",
    config=ImageGenerationConfig,
    example={"data": {"name": "digits"},
             "task": {"latent_dim": 8, "samples_per_class": 2},
             "model": {"name": "dcgan", "width": 4}},
)  # fmt: skip
class ImageGeneration(Task):
    """Inputs (B, latent_dim + K) latents; outputs (B, C, H, W) images in [-1, 1] (tanh)."""

    name = "image_generation"
    generates_images = True
    config: ImageGenerationConfig

    @cached_property
    def codec(self) -> LatentCodec:
        """The task's own input (seeds and classes), not the data's images."""
        classes = self.meta.classes if self.config.conditional else []
        return LatentCodec.for_generator(self.config.latent_dim, classes)

    @property
    def conditional(self) -> bool:
        return bool(self.codec.classes)

    # -- data and training ------------------------------------------------------------------

    def loaders(
        self, cfg: ExperimentConfig, data: DataSplits, batch_size: int, rank: int, world: int
    ) -> tuple[Loader, BatchLoader | None]:
        """Real images and their classes to train on; seeded latents of the validation
        images' classes, with those images, to measure."""
        train, _ = super().loaders(cfg, data, batch_size, rank, world)
        if not len(data.val):
            return train, None
        x, y = self.measured(data.val.x, data.val.y)
        return train, BatchLoader(x, y, cfg.eval.batch_size, rank=rank, world_size=world)

    def check_training(self, train: TrainConfig) -> None:
        for field in ("adversarial", "privacy", "method", "distill", "prune"):
            if getattr(train, field) is not None:
                raise ConfigError(
                    f"train.{field} with task image_generation: it trains a classifier, and a "
                    f"GAN's two networks have no labels to learn; remove train.{field}"
                )

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        if self.meta.codec != "image":
            raise ConfigError(
                f"task image_generation learns images; dataset '{self.meta.name}' holds "
                f"{self.meta.codec} inputs"
            )
        if self.config.conditional and not self.meta.classes:
            raise ConfigError(
                f"task.conditional: dataset '{self.meta.name}' has no classes; set it false"
            )
        c, h, w = self.meta.input_shape
        return build_model(
            model_config, latent_dim=self.config.latent_dim, num_classes=len(self.codec.classes),
            out_channels=c, image_size=(h, w),
        )  # fmt: skip

    def step_loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The discriminator's and the generator's losses on a batch of real images."""
        x, y = batch
        noise = torch.randn(len(x), self.config.latent_dim, device=x.device)
        latent = self._with_classes(noise, y)
        return self.loss(model(latent, real=self.to_tanh(x)), y)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``outputs``: the discriminator's logits (3, B) for real images, generated ones
        (its own loss) and generated ones again (the generator's, non-saturating)."""
        real, fake, fooled = outputs.float()
        ones, zeros = torch.ones_like(real), torch.zeros_like(real)
        critic = F.binary_cross_entropy_with_logits(real, ones)
        critic = critic + F.binary_cross_entropy_with_logits(fake, zeros)
        return critic + F.binary_cross_entropy_with_logits(fooled, ones)

    def monitor_default(self) -> tuple[str, str]:
        return ImageGenerationConfig.checkpoint_monitor

    @classmethod
    def writes_samples(cls, config: TaskConfig) -> bool:
        return True

    @torch.no_grad()
    def sample(self, model: nn.Module, seed: int) -> dict[str, Any]:
        """``{"png": ...}``: a grid of the same latents every epoch (a column per class)."""
        model.eval()
        device = next(model.parameters()).device
        latents = torch.from_numpy(self.grid_latents(seed)).to(device)
        images = self.to_unit(model(latents)).cpu()
        ncols = len(self.codec.classes) if self.conditional else 8
        return {"png": png(tile(images, ncols))}

    def grid_latents(self, seed: int) -> np.ndarray:
        if not self.conditional:
            return self.codec.latents(range(seed, seed + GRID_UNCONDITIONAL), [])
        n, k = self.config.samples_per_class * len(self.codec.classes), len(self.codec.classes)
        return self.codec.latents(range(seed, seed + n), [i % k for i in range(n)])

    # -- evaluation ---------------------------------------------------------------------------

    def measured(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents, real images in [-1, 1]) for a split: image i is compared with the one
        generated from seed i (and its class)."""
        latents = self.codec.latents(range(len(x)), y.tolist() if self.conditional else [])
        return torch.from_numpy(latents), self.to_tanh(x)

    def batches(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        latents, real = self.measured(x, y)
        for i in range(0, len(x), batch_size):
            yield latents[i : i + batch_size], real[i : i + batch_size]

    def example_inputs(self, x: torch.Tensor, n: int) -> torch.Tensor:
        k = len(self.codec.classes)
        return torch.from_numpy(
            self.codec.latents(range(n), [i % k for i in range(n)] if k else [])
        )

    def evaluator(self, keep_mistakes: int = 0) -> GenerationEvaluator:
        return GenerationEvaluator(self.feature_model, self.config.latent_dim, self.conditional)

    @cached_property
    def feature_model(self) -> ImageFeatures:
        """What the Fréchet distance compares: a classifier's features, or the pixels."""
        if self.config.features is None:
            return ImageFeatures(None, self.meta.input_shape)
        from deepline.tasks.saved import bundle_model

        try:
            classifier, task = bundle_model(self.config.features)
        except DeeplineError as err:
            raise ConfigError(f"task.features: {err}") from None
        if task.codec.name != "image":
            raise ConfigError(
                f"task.features: '{self.config.features}' is a bundle of task {task.name}, "
                "which does not read images; give an image classifier's bundle"
            )
        if tuple(task.meta.input_shape) != tuple(self.meta.input_shape):
            raise ConfigError(
                f"task.features: the classifier reads {list(task.meta.input_shape)} images, "
                f"the generator makes {list(self.meta.input_shape)}"
            )
        same_classes = list(task.meta.classes) == list(self.meta.classes)
        return ImageFeatures(
            classifier, self.meta.input_shape, task.meta.mean, task.meta.std,
            name=Path(self.config.features).resolve().as_posix(), judges_classes=same_classes,
        )  # fmt: skip

    def figures(self, evaluation: dict[str, Any]) -> dict[str, Figure]:
        images = evaluation.get("images_png")
        if not images:
            return {}

        def draw(path: Path) -> Path:
            picture = Image.open(io.BytesIO(base64.b64decode(images)))
            picture.resize((picture.width * 4, picture.height * 4), Image.Resampling.NEAREST).save(
                path
            )
            return path

        features = evaluation.get("fd_features", "pixels")
        measured = "the pixels" if features == "pixels" else f"the features of {features}"
        caption = (
            f"The first generated images of the evaluation (seeds 0, 1, ...; for a conditional "
            f"generator, the test images' classes). Fréchet distance to the test images: "
            f"{evaluation.get('metrics', {}).get('fd', float('nan')):.2f}, on {measured}."
        )
        return {"generated": Figure("Generated images", caption, draw)}

    def show_inputs(self, x: torch.Tensor) -> torch.Tensor | None:
        return None  # latents are not pictures

    # -- serving ------------------------------------------------------------------------------

    def signature(self) -> dict[str, Any]:
        return {
            "inputs": [self.codec.input_spec()],
            "outputs": [{"name": "images", "dtype": "float32",
                         "shape": [-1, *self.meta.input_shape]}],
        }  # fmt: skip

    def outputs(self) -> list[OutputSpec]:
        return [OutputSpec("image", "FP32", (-1, *self.meta.input_shape))]

    def named_outputs(
        self, raw: np.ndarray, inputs: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Images in [0, 1], (B, C, H, W)."""
        return {"image": np.clip((np.asarray(raw, np.float32) + 1) / 2, 0, 1)}

    def answers(self, named: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
        """Each image as a base64 PNG, with its size."""
        return [
            {"png": png(as_picture(image)), "size": list(image.shape[1:])}
            for image in named["image"]
        ]

    def answer_form(self) -> dict[str, Any]:
        return {"type": "image"}

    def answer_cells(self, answer: Any) -> list[str]:
        return [f"{answer['size'][1]}x{answer['size'][0]} PNG"]

    def drift_signal(self, raw: np.ndarray) -> np.ndarray:
        """The mean brightness of each generated image."""
        return np.asarray(raw, dtype=np.float64).reshape(len(raw), -1).mean(1)

    # -- internals ------------------------------------------------------------------------------

    def to_tanh(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (the data's mean and std) -> [-1, 1]."""
        return self.to_unit_from_data(x) * 2 - 1

    def to_unit_from_data(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.meta.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.meta.std, device=x.device).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)

    @staticmethod
    def to_unit(images: torch.Tensor) -> torch.Tensor:
        return ((images.float() + 1) / 2).clamp(0, 1)

    def _with_classes(self, noise: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.conditional:
            return noise
        one_hot = F.one_hot(y.long(), len(self.codec.classes)).to(noise.dtype)
        return torch.cat([noise, one_hot], 1)


class ImageFeatures(nn.Module):
    """Images in [0, 1] -> features: the input of a classifier's output layer (the images
    normalised as the classifier was trained), or the pixels when there is no classifier.
    ``logits`` keeps the classifier's answers to the last batch."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        classifier: nn.Module | None,
        image_shape: tuple[int, ...],
        mean: list[float] | None = None,
        std: list[float] | None = None,
        name: str = "pixels",
        judges_classes: bool = False,
    ) -> None:
        super().__init__()
        self.classifier, self.name, self.judges_classes = classifier, name, judges_classes
        self.logits: torch.Tensor | None = None
        self._features: torch.Tensor | None = None
        channels = image_shape[0]
        self.register_buffer("mean", torch.tensor(mean or [0.0] * channels).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std or [1.0] * channels).view(1, -1, 1, 1))
        if classifier is None:
            self.num_features = int(np.prod(image_shape))
            return
        classifier.requires_grad_(False).eval()
        layer = output_layer(classifier)
        if not isinstance(layer, nn.Linear):
            raise ConfigError(
                f"task.features: the classifier's output layer is a {type(layer).__name__}; "
                "the Fréchet distance reads the input of a Linear output layer"
            )
        self.num_features = layer.in_features
        layer.register_forward_hook(self._keep_input)

    def _keep_input(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        self._features = inputs[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            return images.flatten(1)
        self.classifier.eval()
        self.logits = self.classifier((images - self.mean) / self.std)
        assert self._features is not None
        return self._features.flatten(1)


class GenerationEvaluator(Evaluator):
    """The Fréchet distance between generated and real images (torchmetrics' FID with our
    feature extractor), and the share of conditional images the classifier sees as the class
    they were asked to be."""

    def __init__(self, features: ImageFeatures, latent_dim: int, conditional: bool) -> None:
        super().__init__()
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.features, self.latent_dim = features, latent_dim
        self.fd = FrechetInceptionDistance(feature=features)
        self.judge = conditional and features.judges_classes
        self.hits = self.total = 0
        self.first: torch.Tensor | None = None  # a few generated images, for the report

    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.fd.update(ImageGeneration.to_unit(targets), real=True)
        fake = ImageGeneration.to_unit(outputs)
        self.fd.update(fake, real=False)
        if self.judge and self.features.logits is not None:
            asked = x[:, self.latent_dim :].argmax(1).to(self.features.logits.device)
            self.hits += int((self.features.logits.argmax(1) == asked).sum())
            self.total += len(x)
        if self.first is None:
            self.first = fake[:GRID_UNCONDITIONAL].cpu()

    def compute(self) -> dict[str, float]:
        metrics = {"fd": float(self.fd.compute())}
        if self.total:
            metrics["class_accuracy"] = self.hits / self.total
        return metrics

    def details(self) -> dict[str, Any]:
        shown = {"fd_features": self.features.name}
        if self.first is not None:
            shown["images_png"] = png(tile(self.first, 8))
        return shown


def as_picture(image: np.ndarray) -> np.ndarray:
    """A (C, H, W) image in [0, 1] as (H, W) or (H, W, 3) uint8."""
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    return pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)


def tile(images: torch.Tensor, ncols: int, pad: int = 2) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] as one (H', W'[, 3]) uint8 grid, ``ncols`` per row."""
    n, c, h, w = images.shape
    rows = -(-n // ncols)
    grid = np.zeros((c, rows * (h + pad) + pad, ncols * (w + pad) + pad), dtype=np.float32)
    for i, image in enumerate(images.numpy()):
        top, left = pad + (i // ncols) * (h + pad), pad + (i % ncols) * (w + pad)
        grid[:, top : top + h, left : left + w] = image
    return as_picture(grid)
