"""A compression plan: steps applied in order to a trained run, each stage a run of its own.

``prune:0.9`` fine-tunes the previous stage with 90% of its weights pruned (magnitude,
``train.prune``); ``channels:0.5`` removes half of each layer's channels and neurons
(Torch-Pruning, ``train.prune.structure: channels``) and fine-tunes the narrower model;
``distill`` fine-tunes it with the original run as its teacher (``train.distill``); ``qat``
fine-tunes it quantization-aware (``train.qat``) at a tenth of its learning rate, for its int8
export. A stage keeps what
earlier stages did: after ``prune:0.9``, a later stage keeps the same weights pruned, a
narrower model stays narrow, and a distilled one keeps its teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepline.config import ExperimentConfig, load_config
from deepline.errors import ConfigError

STEPS = ("prune", "channels", "distill", "qat")
RATIOS = ("prune", "channels")  # the steps that take a ratio
QAT_LR_FACTOR = 0.1


@dataclass(frozen=True)
class Step:
    name: str
    amount: float | None = None  # prune: the share of weights pruned

    @property
    def label(self) -> str:
        return f"{self.name}-{self.amount:g}" if self.amount is not None else self.name


def parse_plan(text: str) -> list[Step]:
    """``prune:0.9,distill`` as steps; a ConfigError names a step or ratio it cannot take."""
    steps = []
    for raw in (part.strip() for part in text.split(",")):
        name, _, arg = raw.partition(":")
        if name not in STEPS:
            raise ConfigError(
                f"--plan: unknown step {name!r} in {text!r}. Allowed: prune:RATIO, "
                "channels:RATIO, distill, qat"
            )
        if name in RATIOS:
            try:
                amount = float(arg)
            except ValueError:
                message = f"--plan: {name} needs a ratio, e.g. {name}:0.5 (got {raw!r})"
                raise ConfigError(message) from None
            if not 0.0 < amount < 1.0:
                raise ConfigError(f"--plan: {name}:{arg} must prune a ratio above 0 and below 1")
            steps.append(Step(name, amount))
        elif arg:
            raise ConfigError(f"--plan: {name} takes no value (got {raw!r})")
        else:
            steps.append(Step(name))
    if not steps:
        raise ConfigError("--plan is empty: give steps such as prune:0.9,distill")
    return steps


def stage_config(
    config: ExperimentConfig, step: Step, start_from: str, teacher: str, epochs: int
) -> ExperimentConfig:
    """The config of the stage ``step``: ``config`` (the previous stage's) fine-tuned for
    ``epochs`` from the run ``start_from``."""
    raw = config.model_dump()
    raw["name"] = f"{config.name}-{step.label}"
    raw["model"]["init_from"] = start_from  # a narrower model is built back from its weights
    raw["eval"]["checkpoint"] = "last"  # after the last pruning event, whatever scored best
    train = raw["train"]
    train.update(epochs=epochs, max_steps=None, early_stopping=None)
    earlier = train.get("prune")
    if step.name == "prune":
        train["prune"] = {"amount": step.amount, "steps": min(3, epochs)}
    elif step.name == "channels":
        train["prune"] = {"amount": step.amount, "structure": "channels"}
    elif step.name == "distill":
        train["distill"] = {"teacher": teacher}
    else:  # fine-tuning a trained model to its rounding: a tenth of the learning rate
        train["qat"] = {}
        train["lr"] = train["lr"] * QAT_LR_FACTOR
    if step.name in ("distill", "qat") and earlier:
        if earlier["structure"] == "channels":
            train["prune"] = None  # removed already, not again
        elif earlier["structure"] == "weights":  # keep the pruned weights pruned
            train["prune"] = {**earlier, "steps": 1}
    return load_config(raw)
