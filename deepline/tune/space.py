"""Search spaces: which config values to tune, over what ranges, and what to optimise.

A space is YAML::

    metric: val/accuracy          # a validation metric the trainer logs each epoch
    direction: maximize           # or minimize
    params:
      train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      model.hidden: {type: int, low: 64, high: 256, step: 64}
      train.optimizer: {type: categorical, choices: [adamw, sgd]}
      train.momentum: {type: float, low: 0.8, high: 0.99, when: {train.optimizer: sgd}}

``when`` makes a parameter conditional: it is sampled only in trials where the named
parameters took the given values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deepline.config import ExperimentConfig, format_validation_error, load_config, read_yaml
from deepline.errors import ConfigError


class Param(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None
    when: dict[str, Any] | None = Field(None, description="sample only when these params match")

    @model_validator(mode="after")
    def _range(self) -> Param:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"empty range: low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        return self

    def values(self) -> list[Any]:
        """Every value, for grid search: the choices, or the stepped integer range."""
        if self.choices is not None:
            return list(self.choices)
        if self.type == "int":
            step = int(self.step or 1)
            return list(range(int(self.low or 0), int(self.high or 0) + 1, step))
        raise ConfigError("grid search needs 'choices' for float parameters")


class Space(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = "val/loss"
    direction: Literal["minimize", "maximize"] = "minimize"
    params: dict[str, Param] = Field(min_length=1)


def load_space(path: str | Path, base: ExperimentConfig) -> Space:
    """Read and check a space against ``base``: every parameter path must exist in the config."""
    raw = read_yaml(path)
    try:
        space = Space.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"search space {path}")) from None
    check_paths(space, base, str(path))
    return space


def check_paths(space: Space, base: ExperimentConfig, origin: str) -> None:
    """Each parameter, set to a sample value, must give a valid config (else name it)."""
    raw = base.model_dump()
    for name, param in space.params.items():
        sample = param.choices[0] if param.choices else param.low
        if param.type == "int" and sample is not None:
            sample = int(sample)
        try:
            load_config(raw, {name: sample})
        except ConfigError as err:
            detail = str(err).split("\n", 1)[-1].strip()
            raise ConfigError(f"search space {origin}: parameter '{name}': {detail}") from None
        for other in param.when or {}:
            if other not in space.params:
                raise ConfigError(
                    f"search space {origin}: parameter '{name}' depends on "
                    f"'{other}', which is not a parameter of the space"
                )
