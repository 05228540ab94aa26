"""Optimizers and learning-rate schedules from the ``train`` config section."""

from __future__ import annotations

import math

import torch
from torch import nn

from deepline.config import ScheduleConfig, TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW. Norm and bias parameters get no weight decay.

    On CUDA, Adam and AdamW take their fused kernels: fewer launches, and a GradScaler's
    overflow check stays on the device (no host read per step)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    fused = any(p.is_cuda for p in decay + no_decay) or None
    adam = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return adam(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)


class LRSchedule:
    """The learning-rate multiplier at an optimizer step: warm-up, then the chosen shape.

    A plain object of numbers (no closures), so the scheduler's state is just its step count.

    >>> s = LRSchedule(ScheduleConfig(name="cosine", warmup_steps=10), 110, steps_per_epoch=10)
    >>> round(s(0), 2), round(s(10), 2), round(s(110), 2)
    (0.1, 1.0, 0.0)
    """

    def __init__(self, cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int) -> None:
        self.name = cfg.name
        self.warmup = cfg.warmup_steps
        if cfg.name == "onecycle" and not cfg.warmup_steps:
            self.warmup = max(1, int(cfg.pct_start * total_steps))
        self.total = max(total_steps, self.warmup + 1)
        self.step_size = cfg.step_size * steps_per_epoch
        self.gamma = cfg.gamma
        self.floor = cfg.min_lr_ratio
        self.anneal = cfg.anneal

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            start = 0.04 if self.name == "onecycle" else 0.0  # one-cycle starts at lr/25
            return start + (1.0 - start) * (step + 1) / self.warmup
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            return float(self.gamma ** ((step - self.warmup) // self.step_size))
        progress = min(1.0, (step - self.warmup) / (self.total - self.warmup))
        if self.anneal == "linear":
            falling = 1.0 - progress
        else:
            falling = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.floor + (1.0 - self.floor) * falling


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, LRSchedule(cfg, total_steps, steps_per_epoch)
    )
