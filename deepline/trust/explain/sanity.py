"""Two checks that an explanation depends on the model, because one that does not is worse
than none.

- Model randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps"): the Spearman
  rank correlation between the maps of the trained model and of the same network with every
  weight re-initialised; it passes at <= 0.3 (maps of a model that learnt nothing should not
  look alike).
- Deletion (Petsiuk et al. 2018, RISE): input elements are replaced by the baseline, most
  attributed first, and the accuracy after each step is drawn against the share removed; the
  area under that curve must be at most 0.7 of the area when elements go in random order.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from deepline.tasks import Task
from deepline.trust.explain.base import Attribution, Explainer, baseline, is_tokens

RANDOMISATION_PASS = 0.3
DELETION_PASS = 0.7
DELETION_STEPS = 20


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer's parameters re-initialised (full randomisation)."""
    torch.manual_seed(seed)
    copied = copy.deepcopy(model)
    for module in copied.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return copied.eval()


def importance(values: torch.Tensor) -> torch.Tensor:
    """(N, P) magnitudes per input element people see: an image's pixel sums its channels."""
    magnitude = values.detach().abs().float()
    if magnitude.dim() == 4:  # (N, C, H, W)
        magnitude = magnitude.sum(1)
    return magnitude.flatten(1)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Spearman's rho of each example's two importance maps (NaN where one is constant)."""
    out = []
    for x, y in zip(importance(a).cpu().numpy(), importance(b).cpu().numpy()):
        constant = np.ptp(x) == 0 or np.ptp(y) == 0
        out.append(float("nan") if constant else float(spearmanr(x, y).statistic))
    return out


def randomisation_check(
    explainer: Explainer,
    model: nn.Module,
    task: Task,
    x: torch.Tensor,
    target: torch.Tensor,
    trained: Attribution,
) -> dict[str, Any]:
    random_maps = explainer.attribute(randomised(model), task, x, target)
    rhos = [r for r in rank_correlation(trained.values, random_maps.values) if r == r]
    mean = float(np.mean(rhos)) if rhos else float("nan")
    return {
        "spearman": mean,
        "examples": len(rhos),
        "passed": bool(rhos) and mean <= RANDOMISATION_PASS,
        "threshold": RANDOMISATION_PASS,
    }


@torch.no_grad()
def deletion_check(
    model: nn.Module,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
    attribution: Attribution,
    steps: int = DELETION_STEPS,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Accuracy as elements are removed, most attributed first vs random; None for tasks
    whose answers are not right or wrong."""
    if task.wrong(model(x[:1]), y[:1]) is None:
        return None
    magnitude = importance(attribution.values)
    generator = torch.Generator().manual_seed(seed)
    random_order = torch.stack(
        [torch.randperm(magnitude.size(1), generator=generator) for _ in range(len(x))]
    ).to(magnitude.device)
    # most attributed first; equal magnitudes (Grad-CAM's zeros) in random order, not by index
    ties_shuffled = magnitude.gather(1, random_order).argsort(dim=1, descending=True, stable=True)
    order = random_order.gather(1, ties_shuffled)
    shares = np.linspace(0.0, 1.0, steps + 1)
    curves = {
        name: [_accuracy_without(model, task, x, y, ranks, share) for share in shares]
        for name, ranks in (("attributed", order), ("random", random_order))
    }
    area = {name: _area(curve, shares) for name, curve in curves.items()}
    ratio = area["attributed"] / area["random"] if area["random"] > 0 else float("nan")
    return {
        "auc_attributed": area["attributed"],
        "auc_random": area["random"],
        "ratio": ratio,
        "passed": ratio <= DELETION_PASS,
        "threshold": DELETION_PASS,
        "shares": shares.tolist(),
        "curves": curves,
    }


def _area(curve: list[float], shares: np.ndarray) -> float:
    """The trapezoid-rule area under ``curve`` over ``shares``."""
    values = np.asarray(curve)
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(shares)))


def _accuracy_without(
    model: nn.Module,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
    ranks: torch.Tensor,
    share: float,
) -> float:
    """Accuracy with the first ``share`` of each example's elements (by ``ranks``) removed."""
    n_elements = ranks.size(1)
    removed = torch.zeros_like(ranks, dtype=torch.bool)
    k = round(share * n_elements)
    removed.scatter_(1, ranks[:, :k], True)
    mask = removed.view(len(x), *_element_shape(x))
    if x.dim() == 4:  # a pixel is removed in every channel
        mask = mask[:, None].expand_as(x)
    kept = torch.where(mask, baseline(task, x), x)
    wrong = task.wrong(model(kept), y)
    assert wrong is not None
    return float(1.0 - wrong.float().mean())


def _element_shape(x: torch.Tensor) -> tuple[int, ...]:
    if x.dim() == 4:
        return tuple(x.shape[-2:])
    return tuple(x.shape[1:]) if not is_tokens(x) else (x.size(1),)
