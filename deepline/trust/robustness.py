"""A model's metrics under attack, against epsilon (``deepline attack``).

Each epsilon is attacked ``restarts`` times per example; an example counts as robust only if
no attempt fools it (for tasks whose answers are right or wrong), else its worst attempt by
loss is kept. The clean input is the first attempt, so a metric under attack is never better
than the clean one by construction. Curves that look like gradient masking (a single step
stronger than many, a metric rising with epsilon) are flagged.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepline.attacks import Attack, AttackSpec, get_attack
from deepline.data.codecs.base import UnitSpace
from deepline.errors import ConfigError
from deepline.evaluate.loading import TrainedRun
from deepline.registry import ATTACKS
from deepline.runs import write_json
from deepline.tasks import Task

MASKING_TOLERANCE = 0.005  # differences below this are noise, not signs of gradient masking
ONE_STEP_GAP = 0.1  # one step this much weaker than many: the gradient at the input misleads


@dataclass(frozen=True)
class AttackPlan:
    """What ``deepline attack`` runs: attacks, epsilons and each attack's budget."""

    attacks: tuple[str, ...]
    eps: tuple[float, ...]
    norm: str = "linf"
    steps: int = 10
    alpha: float | None = None
    restarts: int = 1
    random_start: bool | None = None  # None: PGD starts at random, FGSM does not

    def __post_init__(self) -> None:
        if not self.attacks:
            raise ConfigError("--attack names no attack. Allowed: " + ", ".join(ATTACKS.names()))
        if not self.eps:
            raise ConfigError("--eps names no epsilon")
        bad = [e for e in self.eps if not math.isfinite(e)]
        if bad:
            raise ConfigError(f"--eps: epsilons must be finite numbers, got {bad[0]:g}")
        bad = [e for e in self.eps if e < 0]
        if bad:
            raise ConfigError(f"--eps: epsilons must be >= 0, got {bad[0]:g}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(f"--alpha: the step size must be a number > 0, got {self.alpha:g}")
        for option, value in (("--restarts", self.restarts), ("--steps", self.steps)):
            if value < 1:
                raise ConfigError(f"{option} must be at least 1, got {value}")
        for name in self.attacks:
            get_attack(name)  # an unknown name is an error listing the attacks

    def spec(self, attack: str, eps: float) -> AttackSpec:
        random_start = attack == "pgd" if self.random_start is None else self.random_start
        return AttackSpec(eps, self.norm, self.alpha, self.steps, random_start)  # type: ignore[arg-type]


@dataclass
class Curve:
    attack: str
    points: list[dict[str, Any]] = field(default_factory=list)  # eps, metrics, seconds


def unit_space_of(task: Task) -> UnitSpace:
    space = task.codec.unit_space()
    if space is None:
        raise ConfigError(
            f"the {task.codec.name} inputs of a {task.name} model are discrete: gradient "
            "attacks cannot perturb them"
        )
    return space


def attacked_metrics(
    model: nn.Module,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    spec: AttackSpec,
    restarts: int = 1,
    batch_size: int = 1000,
) -> dict[str, float]:
    """The task's metrics on the worst of ``restarts`` attempts per example (model on its
    device, in eval mode)."""
    space = unit_space_of(task)
    device = next(model.parameters()).device
    evaluator = task.evaluator().to(device)

    def forward(unit: torch.Tensor) -> torch.Tensor:
        return model(space.from_unit(unit))

    for xb, yb in task.batches(x, y, batch_size):
        xb, yb = xb.to(device), yb.to(device)
        worst = worst_case(forward, task, attack, spec, space, space.to_unit(xb), yb, restarts)
        with torch.no_grad():
            attacked = space.from_unit(worst)
            evaluator.update(attacked, model(attacked), yb)
    return evaluator.compute()


def worst_case(
    forward: Any,
    task: Task,
    attack: Attack,
    spec: AttackSpec,
    space: UnitSpace,
    unit: torch.Tensor,
    y: torch.Tensor,
    restarts: int,
) -> torch.Tensor:
    """Per example, the first attempt that makes the answer wrong, else the one of highest
    loss (the clean input included); examples already fooled are not attacked again. An
    attack without a random start is tried once: its attempts would all be the same."""
    worst = unit.clone()
    with torch.no_grad():
        outputs = forward(worst)
        loss, wrong = task.example_losses(outputs, y), task.wrong(outputs, y)
    attempts = (restarts if spec.random_start else 1) if spec.eps > 0 else 0
    for _ in range(attempts):
        todo = (~wrong).nonzero().flatten() if wrong is not None else None
        if todo is not None and not len(todo):
            break
        index = todo if todo is not None else slice(None)
        tried = attack.perturb(
            forward, task.loss, unit[index], y[index], spec, space.low, space.high
        )
        with torch.no_grad():
            outputs = forward(tried)
            tried_loss = task.example_losses(outputs, y[index])
            tried_wrong = task.wrong(outputs, y[index])
        better = tried_loss > loss[index]
        if tried_wrong is not None and wrong is not None:
            better = tried_wrong | (better & ~wrong[index])
            wrong[index] = wrong[index] | tried_wrong
        rows = torch.arange(len(unit), device=unit.device)[index][better]
        worst[rows] = tried[better]
        loss[rows] = tried_loss[better]
    return worst


def robustness_curves(
    run: TrainedRun, plan: AttackPlan, split: str, limit: int | None = None, batch_size: int = 1000
) -> dict[str, Any]:
    """Each attack's metrics at each epsilon (0 first) on ``split``, with masking warnings."""
    unit_space_of(run.task)
    data = run.data.split(split)
    x, y = data.x[:limit], data.y[:limit]
    metric = run.task.monitor_default()[0].split("/", 1)[-1]
    curves = []
    for name in plan.attacks:
        curve = Curve(name)
        for eps in sorted({0.0, *plan.eps}):
            start = time.perf_counter()
            metrics = attacked_metrics(
                run.model, run.task, x, y, get_attack(name), plan.spec(name, eps),
                plan.restarts, batch_size,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            curve.points.append({"eps": eps, "metrics": metrics, "seconds": seconds})
        curves.append(curve)
    result = {
        "split": split,
        "n": len(x),
        "checkpoint": run.checkpoint.name,
        "metric": metric,
        "norm": plan.norm,
        "steps": plan.steps,
        "alpha": plan.alpha,
        "restarts": plan.restarts,
        "curves": {c.attack: c.points for c in curves},
    }
    result["warnings"] = masking_warnings(result)
    return result


def masking_warnings(result: dict[str, Any]) -> list[str]:
    """Signs that gradients mislead the attacks, so robustness is overstated (Athalye et al.
    2018): a metric rising with epsilon, or FGSM (one step) stronger than PGD (many)."""
    metric, curves = result["metric"], result["curves"]
    found = []
    for attack, points in curves.items():
        values = [(p["eps"], p["metrics"][metric]) for p in points]
        for (e0, v0), (e1, v1) in itertools.pairwise(values):
            if v1 > v0 + MASKING_TOLERANCE:
                found.append(
                    f"{attack}: {metric} rises from {v0:.4f} at eps {e0:g} to {v1:.4f} at "
                    f"eps {e1:g}; a stronger attack should not do worse (gradient masking?)"
                )
    if "fgsm" in curves and "pgd" in curves:
        pgd = {p["eps"]: p["metrics"][metric] for p in curves["pgd"]}
        for p in curves["fgsm"]:
            other = pgd.get(p["eps"])
            if other is not None and p["metrics"][metric] < other - MASKING_TOLERANCE:
                found.append(
                    f"at eps {p['eps']:g}, FGSM leaves {metric} {p['metrics'][metric]:.4f}, "
                    f"below PGD's {other:.4f}: one step beats many, a sign of gradient masking"
                )
        largest = max(pgd)
        fgsm = {p["eps"]: p["metrics"][metric] for p in curves["fgsm"]}
        if largest > 0 and fgsm.get(largest, -1.0) > pgd[largest] + ONE_STEP_GAP:
            found.append(
                f"at eps {largest:g}, FGSM leaves {metric} {fgsm[largest]:.4f}, far above "
                f"PGD's {pgd[largest]:.4f}: the gradient at the input misleads one-step attacks "
                "(gradient masking; after FGSM training, catastrophic overfitting). Trust PGD"
            )
    return found


def write_robustness(run_dir: Path, result: dict[str, Any]) -> Path:
    """``robustness.json`` and ``plots/robustness.png`` in the run folder."""
    from deepline import plots

    write_json(run_dir / "robustness.json", result)
    (run_dir / "plots").mkdir(exist_ok=True)
    return plots.plot_robustness(result, run_dir / "plots" / "robustness.png")
