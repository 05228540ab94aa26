"""Reading a config: YAML files and shipped names, ``--set`` overrides, the JSON Schema, and
validation errors that name the field, the value and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    TypeAdapter,
    ValidationError,
)

from deepline.config.sections import ExperimentConfig
from deepline.errors import ConfigError, describe_problem
from deepline.registry import MODELS, TASKS


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any] | list[str]) -> dict[str, Any]:
    """Set dotted keys (``{"train.lr": 3e-4}`` or ``["train.lr=3e-4"]``) in a raw config dict.

    String values are parsed as YAML, so ``train.epochs=3`` gives an int.
    """
    raw = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else map(_split_override, overrides)
    for dotted, value in items:
        keys = dotted.split(".")
        node = raw
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                path = ".".join(keys[: depth + 1])
                raise ConfigError(f"cannot set '{dotted}': '{path}' is {child!r}, not a section")
            node = child
        node[keys[-1]] = value
    return raw


def _split_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' should look like key.path=value")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file '{path}' is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file '{path}' should hold a mapping of sections")
    return raw


def load_config(
    source: str | Path | dict[str, Any], overrides: dict[str, Any] | list[str] | None = None
) -> ExperimentConfig:
    """Load, override and validate a config from a YAML path, a packaged name or a dict."""
    if isinstance(source, dict):
        raw, origin = copy.deepcopy(source), "config"
    else:
        path = resolve_config_path(source)
        raw, origin = read_yaml(path), str(path)
        raw.setdefault("name", path.stem)
    if overrides:
        raw = apply_overrides(raw, overrides)
    if "model" not in raw:
        raw["model"] = {"name": "mlp"}
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin, raw)) from None


def packaged_configs_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "configs"


def resolve_config_path(source: str | Path) -> Path:
    """A config path as given, or the name of a config shipped with deepline."""
    path = Path(source)
    if path.is_file():
        return path
    packaged = packaged_configs_dir() / (path.name if path.suffix else f"{path.name}.yaml")
    if packaged.is_file():
        return packaged
    shipped = ", ".join(p.stem for p in sorted(packaged_configs_dir().glob("*.yaml")))
    raise ConfigError(f"config file '{source}' does not exist (configs shipped: {shipped})")


def config_schema() -> dict[str, Any]:
    """JSON Schema of ExperimentConfig, with the model and task sections listing every
    registered model and task."""
    schema = ExperimentConfig.model_json_schema()
    for section, registry in (("model", MODELS), ("task", TASKS)):
        configs = [registry.meta(n)["config"] for n in registry.names()]
        union = TypeAdapter(Any).json_schema()
        if configs:
            union = {
                "oneOf": [c.model_json_schema() for c in configs],
                "description": "chosen by 'name'",
            }
        schema["properties"][section] = union
    # the task may be left out: the dataset's own task is then trained
    schema["required"] = [key for key in schema.get("required", []) if key != "task"]
    return schema


# ---------------------------------------------------------------------------- errors


def format_validation_error(
    err: ValidationError, origin: str = "config", raw: dict[str, Any] | None = None
) -> str:
    """One line per problem: the dotted path, what is wrong, the value and what is allowed."""
    lines = [describe_problem(e, lambda loc: _allowed_keys(loc, raw or {})) for e in err.errors()]
    return f"Invalid {origin}:\n  " + "\n  ".join(lines)


def _allowed_keys(loc: tuple[Any, ...], raw: dict[str, Any]) -> list[str]:
    """Field names of the config section at ``loc`` (the model section by its ``name``)."""
    model: Any = ExperimentConfig
    for depth, key in enumerate(loc):
        fields = getattr(model, "model_fields", {})
        if str(key) not in fields:
            return []
        model = _section_class(fields[str(key)].annotation)
        registry = {"model": MODELS, "task": TASKS}.get(str(key)) if depth == 0 else None
        if registry is not None:
            name = (raw.get(str(key)) or {}).get("name")
            model = registry.meta(str(name))["config"] if name in registry else model
    return list(getattr(model, "model_fields", {}))


def _section_class(annotation: Any) -> Any:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
