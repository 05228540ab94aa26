"""Segmentation: images (B, C, H, W) -> a class per pixel, (B, K, H, W) logits.

Targets are uint8 (B, H, W) masks of class indices (``meta.classes``, the first being the
background). Losses, Dice and IoU are MONAI's; Dice and IoU are per image over the foreground
classes (an image with no foreground in truth and prediction scores 1), and also "overall",
from the pixels of the whole split at once.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig, TaskConfig
from deepline.data.readers import upright
from deepline.registry import TASKS
from deepline.tasks.base import Evaluator, Figure, OutputSpec, Task, image_model
from deepline.tasks.examples import SHOWN, ExtremeExamples, examples_figure, png


class SegmentationConfig(TaskConfig):
    name: Literal["segmentation"] = "segmentation"
    loss: Literal["dice_ce", "dice_focal", "ce"] = Field(
        "dice_ce", description="Dice (foreground classes) plus cross-entropy or focal loss, or "
        "cross-entropy alone"
    )  # fmt: skip


@TASKS.register(
    "segmentation",
    config=SegmentationConfig,
    example={"data": {"name": "image-masks"},
             "model": {"name": "unet", "features": [4, 4, 8, 8, 8, 4]}},
)  # fmt: skip
class Segmentation(Task):
    """Inputs (B, C, H, W) normalised floats; outputs (B, K, H, W) logits over
    ``meta.classes``; answers are masks (a PNG of class indices) with each class's share."""

    name = "segmentation"
    config: SegmentationConfig
    target_geometry = "masks"

    @property
    def num_classes(self) -> int:
        return len(self.meta.classes)

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        return image_model(model_config, self.meta)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._loss_fn(outputs.float(), targets.long()[:, None])

    @property
    def _loss_fn(self) -> nn.Module:
        if not hasattr(self, "_loss_module"):
            self._loss_module = segmentation_loss(self.config.loss, self.num_classes)
        return self._loss_module

    def class_scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Each class's logit averaged over the pixels: how much of it the model sees."""
        return outputs.flatten(2).mean(-1)

    def explained_class(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The foreground class covering most pixels (the first one when none is found), and
        the share of the image it covers."""
        shares = F.one_hot(outputs.argmax(1), self.num_classes).flatten(1, 2).float().mean(1)
        if self.num_classes == 1:
            return torch.zeros(len(outputs), dtype=torch.long), shares[:, 0]
        share, index = shares[:, 1:].max(-1)
        return index + 1, share

    def evaluator(self, keep_mistakes: int = 0) -> SegmentationEvaluator:
        return SegmentationEvaluator(
            self.num_classes, self.meta.classes, self.loss, self.show_inputs,
            examples=min(keep_mistakes, SHOWN),
        )  # fmt: skip

    def monitor_default(self) -> tuple[str, str]:
        return "val/dice", "max"

    # -- serving ------------------------------------------------------------------------------

    def signature(self) -> dict[str, Any]:
        _, h, w = self.meta.input_shape
        return {
            "inputs": [self.codec.input_spec()],
            "outputs": [{"name": "logits", "dtype": "float32",
                         "shape": [-1, self.num_classes, h, w]}],
        }  # fmt: skip

    def outputs(self) -> list[OutputSpec]:
        _, h, w = self.meta.input_shape
        return [
            OutputSpec("probabilities", "FP32", (-1, self.num_classes, h, w)),
            OutputSpec("mask", "UINT8", (-1, h, w)),
        ]

    def named_outputs(
        self, raw: np.ndarray, inputs: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Per-pixel softmax over the classes, and the most likely class of each pixel."""
        logits = np.asarray(raw, dtype=np.float32)
        shifted = np.exp(logits - logits.max(1, keepdims=True))
        probabilities = (shifted / shifted.sum(1, keepdims=True)).astype(np.float32)
        return {"probabilities": probabilities, "mask": logits.argmax(1).astype(np.uint8)}

    def answers(self, named: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
        """Per image: its size, each class's share of the pixels, and the mask as a PNG of
        class indices (base64), at the model's resolution."""
        return self.answers_at(named, top_k, None)

    def answers_at(
        self,
        named: dict[str, np.ndarray],
        top_k: int | None,
        sizes: Sequence[tuple[int, ...]] | None,
    ) -> list[Any]:
        """As :meth:`answers`, each mask at its image's own size: the probabilities are
        resized bilinearly, then each pixel takes its most likely class."""
        masks = list(named["mask"])
        if sizes is not None:
            masks = [
                resized_mask(p, tuple(size)) if tuple(size) != m.shape else m
                for p, m, size in zip(named["probabilities"], masks, sizes, strict=True)
            ]
        return [
            {
                "size": list(mask.shape),
                "shares": {c: float((mask == i).mean()) for i, c in enumerate(self.meta.classes)},
                "mask_png": mask_png(mask),
            }
            for mask in masks
        ]

    def draw_answer(self, source: Path, answer: Any, out: Path) -> Path:
        """The image with its mask over it: each foreground class tinted, outlined."""
        from deepline import plots

        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask_png"]))))
        with Image.open(source) as img:
            picture = np.asarray(upright(img).convert("RGB"))
        return plots.save_mask_overlay(picture, mask, out)

    def answer_form(self) -> dict[str, Any]:
        return {"type": "mask", "classes": list(self.meta.classes)}

    def answer_cells(self, answer: Any) -> list[str]:
        return [f"{c} {share:.1%}" for c, share in answer["shares"].items()]

    def drift_signal(self, raw: np.ndarray) -> np.ndarray:
        """The share of foreground pixels of each image."""
        return (np.asarray(raw).argmax(1) > 0).reshape(len(raw), -1).mean(1)

    def figures(self, evaluation: dict[str, Any]) -> dict[str, Figure]:
        from deepline import plots

        figures = {}
        dice = evaluation.get("per_image", {}).get("dice")
        if dice:
            figures["dice_histogram"] = Figure(
                "Dice per image",
                "How many images reach each Dice score (foreground classes, at the model's "
                "resolution); the dashed line is the mean.",
                lambda p: plots.plot_histogram(dice, "Dice", p),
            )
        examples = evaluation.get("examples")
        if examples:
            figures["examples"] = examples_figure(
                examples, "dice", "Dice",
                "The images the model segments best and worst: its prediction tinted red, "
                "the true outline in green.",
            )  # fmt: skip
        return figures


def segmentation_loss(kind: str, num_classes: int) -> nn.Module:
    """MONAI's loss for (B, K, H, W) logits and (B, 1, H, W) class indices."""
    from monai.losses import DiceCELoss, DiceFocalLoss

    dice = {"include_background": num_classes == 1, "to_onehot_y": True, "softmax": True}
    if kind == "dice_ce":
        return DiceCELoss(**dice)  # type: ignore[arg-type]
    if kind == "dice_focal":
        return DiceFocalLoss(**dice)  # type: ignore[arg-type]
    return _CrossEntropy()


class _CrossEntropy(nn.Module):
    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets[:, 0])


def resized_mask(probabilities: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """(K, h, w) probabilities -> the (H, W) mask of most likely classes at ``size``."""
    p = torch.from_numpy(np.ascontiguousarray(probabilities))[None]
    up = F.interpolate(p, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
    return up[0].argmax(0).numpy().astype(np.uint8)


def mask_png(mask: np.ndarray) -> str:
    """A (H, W) mask of class indices as a base64 8-bit grey PNG (pixel value = class)."""
    return png(mask)


class SegmentationEvaluator(Evaluator):
    """Mean per-image Dice and IoU (MONAI, foreground classes), overall Dice and IoU from the
    split's pixel counts, pixel accuracy and the loss; per-image scores in ``details``."""

    def __init__(
        self,
        num_classes: int,
        classes: list[str],
        loss: Any,
        show: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
        examples: int = 0,
    ) -> None:
        super().__init__()
        import torchmetrics

        self.num_classes, self.classes, self.loss_fn = num_classes, list(classes), loss
        self.show = show
        self.examples = ExtremeExamples(examples)
        self.means = torchmetrics.MetricCollection(
            {k: torchmetrics.MeanMetric() for k in ("loss", "dice", "iou", "pixel_accuracy")}
        )
        # foreground pixels: predicted and true together, predicted, true (all classes but 0)
        self.sums = torchmetrics.MetricCollection(
            {k: torchmetrics.SumMetric() for k in ("both", "predicted", "true")}
        )
        self.per_image: dict[str, list[float]] = {"dice": [], "iou": []}

    @torch.no_grad()
    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        from monai.metrics import compute_dice, compute_iou

        outputs, targets = outputs.float(), targets.long()
        self.means["loss"].update(self.loss_fn(outputs, targets), len(targets))
        predicted = outputs.argmax(1)
        k = self.num_classes
        p1 = F.one_hot(predicted, k).permute(0, 3, 1, 2).float()
        t1 = F.one_hot(targets, k).permute(0, 3, 1, 2).float()
        foreground = {"include_background": k == 1, "ignore_empty": False}
        dice = compute_dice(p1, t1, **foreground).mean(1)  # (B,), over foreground classes
        iou = compute_iou(p1, t1, **foreground).mean(1)
        self.means["dice"].update(dice)
        self.means["iou"].update(iou)
        self.means["pixel_accuracy"].update((predicted == targets).float().flatten(1).mean(1))
        if self.examples.keep and self.show is not None:
            self._offer_examples(x, predicted, targets, dice)
        self.per_image["dice"] += dice.tolist()
        self.per_image["iou"] += iou.tolist()
        fg_p, fg_t = predicted > 0, targets > 0
        both = (predicted == targets) & fg_t
        self.sums["both"].update(both.sum().float())
        self.sums["predicted"].update(fg_p.sum().float())
        self.sums["true"].update(fg_t.sum().float())

    def compute(self) -> dict[str, float]:
        scores = {name: float(v) for name, v in self.means.compute().items()}
        s = {name: float(v) for name, v in self.sums.compute().items()}
        union = s["predicted"] + s["true"] - s["both"]
        scores["dice_overall"] = 2 * s["both"] / max(s["predicted"] + s["true"], 1.0)
        scores["iou_overall"] = s["both"] / max(union, 1.0)
        return scores

    def _offer_examples(
        self, x: torch.Tensor, predicted: torch.Tensor, targets: torch.Tensor, dice: torch.Tensor
    ) -> None:
        seen = len(self.per_image["dice"])
        for i, score in enumerate(dice.tolist()):

            def draw(i: int = i) -> np.ndarray | None:
                shown = self.show(x[i : i + 1].cpu()) if self.show else None
                return None if shown is None else overlay(shown[0], predicted[i].cpu(),
                                                          targets[i].cpu())  # fmt: skip

            self.examples.offer(score, seen + i, draw)

    def details(self) -> dict[str, Any]:
        return {"n": len(self.per_image["dice"]), "classes": self.classes,
                "per_image": self.per_image,
                "examples": self.examples.details("dice")}  # fmt: skip


def overlay(picture: torch.Tensor, predicted: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8: predicted foreground tinted red, the true
    foreground's outline in green."""
    rgb = picture.expand(3, -1, -1) if picture.shape[0] == 1 else picture[:3]
    out = rgb.permute(1, 2, 0).clone()
    red = torch.tensor([1.0, 0.15, 0.15])
    out[predicted > 0] = 0.55 * out[predicted > 0] + 0.45 * red
    fg = (truth > 0).float()[None, None]
    inner = -F.max_pool2d(-fg, 3, 1, 1)  # erosion
    outline = (fg - inner)[0, 0] > 0
    out[outline] = torch.tensor([0.1, 0.9, 0.2])
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
