"""The experiment configuration: typed, validated, with errors that name the field.

A config is a YAML file with the sections ``data``, ``model``, ``task``, ``train``, ``eval``
and ``export``. Unknown keys are rejected; every error names the dotted path, the bad value and
what is allowed.

>>> cfg = load_config({"data": {"name": "digits"}, "model": {"name": "mlp"}})
>>> cfg.train.lr
0.001
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from deepline.errors import ConfigError
from deepline.registry import MODELS, did_you_mean


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(Section):
    """Batched augmentation of training images (applied on tensors, per batch)."""

    shift: int = Field(0, ge=0, le=16, description="random translation, in pixels, each axis")
    flip: bool = Field(False, description="random horizontal flip")


class DataConfig(Section):
    name: str = Field("digits", description="catalog name (see `deepline data list`)")
    path: str | None = Field(None, description="file or folder, for the generic readers")
    data_dir: str | None = Field(None, description="where dataset files are looked up first")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="of the training split")
    test_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="for datasets without a test split"
    )
    split_seed: int = Field(0, description="seed of the deterministic split")
    normalize: bool = True
    image_size: tuple[int, int] | None = Field(None, description="resize images to (H, W)")
    channels: Literal[1, 3] | None = Field(None, description="convert images to 1 or 3 channels")
    label_column: str = Field("label", description="CSV column holding the class")
    limit: int | None = Field(None, ge=1, description="use at most this many training examples")
    augment: AugmentConfig = AugmentConfig()
    tokenizer: Literal["char", "bpe"] = Field(
        "char", description="text: characters, or byte-level BPE fitted on the training split"
    )
    vocab_size: int = Field(512, ge=256, le=1_000_000, description="text: BPE vocabulary size")
    context: int = Field(
        64, ge=1, le=1_000_000, description="text: language-model window / max tokens per text"
    )
    text_column: str = Field("text", description="text-csv: column holding the text")


class ModelConfig(Section):
    """Base of the model configs; each model file defines its own subclass."""

    name: str

    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments this config gives the model."""
        return self.model_dump(exclude={"name"})


class TaskConfig(Section):
    name: Literal["image_classification", "sequence_classification", "language_modelling"] = (
        "image_classification"
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    top_k: int = Field(3, ge=1, description="classes shown by predict")
    sample_prompt: str = Field("\n", description="language models: prompt of training samples")
    sample_tokens: int = Field(200, ge=0, description="language models: sample length, 0 = none")
    temperature: float = Field(0.8, gt=0.0, description="language models: sampling temperature")
    sample_top_k: int | None = Field(None, ge=1, description="language models: top-k sampling")


class ScheduleConfig(Section):
    name: Literal["constant", "step", "cosine", "onecycle"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    step_size: int = Field(1, ge=1, description="epochs between decays, for 'step'")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="decay factor, for 'step'")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="final lr / peak lr")
    pct_start: float = Field(0.25, gt=0.0, lt=1.0, description="rising part, for 'onecycle'")


class EarlyStoppingConfig(Section):
    monitor: str = "val/loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(3, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class NonFiniteConfig(Section):
    """What to do when a loss or gradient is NaN or infinite (checked before each update)."""

    policy: Literal["skip", "rollback", "stop"] = Field(
        "stop", description="skip the update, reload the last checkpoint, or stop with an error"
    )
    max_skips: int = Field(5, ge=1, description="'skip': stop after this many in a row")
    lr_factor: float = Field(0.5, gt=0.0, le=1.0, description="'rollback': lr multiplier")
    max_rollbacks: int = Field(3, ge=1, description="'rollback': stop after this many")


class CheckpointConfig(Section):
    every_steps: int | None = Field(None, ge=1, description="also save inside an epoch")
    keep_last: int = Field(2, ge=1)
    monitor: str = Field("val/loss", description="metric that picks the best checkpoint")
    mode: Literal["min", "max"] = "min"


class TrainConfig(Section):
    epochs: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    steps_per_epoch: int = Field(
        250, ge=1, description="streamed data (language models): batches between validations"
    )
    eval_batches: int = Field(
        20, ge=1, description="streamed data: validation batches (of eval.batch_size windows)"
    )
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="for sgd")
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: ScheduleConfig = ScheduleConfig()
    grad_clip: float | None = Field(None, gt=0.0, description="max global gradient norm")
    accumulate: int = Field(1, ge=1, description="batches per optimizer step")
    precision: Literal["32", "bf16"] = "32"
    channels_last: bool = Field(
        True, description="NHWC memory layout for 4-D inputs (faster convs)"
    )
    early_stopping: EarlyStoppingConfig | None = None
    checkpoint: CheckpointConfig = CheckpointConfig()
    non_finite: NonFiniteConfig = NonFiniteConfig()
    log_every_steps: int = Field(50, ge=1)
    deterministic: bool = False
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads")
    tensorboard: bool = True
    mlflow: bool = Field(False, description="also log to MLflow (needs mlflow installed)")

    @model_validator(mode="after")
    def _epochs_or_steps(self) -> TrainConfig:
        if self.epochs is not None and self.max_steps is not None:
            raise ValueError("give train.epochs or train.max_steps, not both")
        if self.epochs is None and self.max_steps is None:
            object.__setattr__(self, "epochs", 10)
        return self


class EvalConfig(Section):
    split: Literal["val", "test"] = "test"
    checkpoint: Literal["best", "last"] = "best"
    batch_size: int = Field(512, ge=1)


ExportFormat = Literal["onnx", "torchscript", "int8"]


def _default_formats() -> list[ExportFormat]:
    return ["onnx"]


class ExportConfig(Section):
    formats: list[ExportFormat] = Field(
        default_factory=_default_formats,
        description="files besides the safetensors weights, each checked against eager PyTorch",
    )
    opset: int = Field(18, ge=13, le=21)
    atol: float = Field(
        1e-4, gt=0.0, description="largest allowed ONNX/TorchScript - PyTorch difference"
    )
    int8_max_drop: float = Field(
        0.02,
        ge=0.0,
        description="int8: largest allowed drop of the task's primary metric (accuracy, or "
        "a rise of the loss for language models), in the metric's units",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_onnx_flag(cls, data: Any) -> Any:
        """``onnx: true|false``, as run folders saved before ``formats`` existed hold it."""
        if isinstance(data, dict) and isinstance(data.get("onnx"), bool):
            if "formats" in data:
                raise ValueError("give export.formats, not also the old export.onnx")
            onnx = data["onnx"]
            data = {k: v for k, v in data.items() if k != "onnx"}
            data["formats"] = ["onnx"] if onnx else []
        return data

    @field_validator("formats")
    @classmethod
    def _unique_formats(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))  # each once, in the order given


class ExperimentConfig(Section):
    """The whole experiment. ``name`` defaults to the config file's stem."""

    name: str = "experiment"
    seed: int = 0
    data: DataConfig = DataConfig()
    model: SerializeAsAny[ModelConfig]
    task: TaskConfig = TaskConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()

    @field_validator("model", mode="before")
    @classmethod
    def _dispatch_model(cls, value: Any) -> Any:
        """Validate the model section with the config class its ``name`` registers."""
        if isinstance(value, ModelConfig) or not isinstance(value, dict):
            return value
        name = value.get("name")
        if name not in MODELS:
            raise ValueError(MODELS.unknown_message(str(name)))
        config_cls = MODELS.meta(str(name))["config"]
        return config_cls.model_validate(value)  # a ValidationError here is unpacked later

    def to_yaml(self) -> str:
        return yaml.safe_dump(json.loads(self.model_dump_json()), sort_keys=False)


# ---------------------------------------------------------------------------- loading


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
    return Path(__file__).parent / "configs"


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
    """JSON Schema of ExperimentConfig, with the model section listing every registered model."""
    schema = ExperimentConfig.model_json_schema()
    union = TypeAdapter(Any).json_schema()
    configs = [MODELS.meta(n)["config"] for n in MODELS.names()]
    if configs:
        model_schemas = [c.model_json_schema() for c in configs]
        union = {"oneOf": model_schemas, "description": "chosen by 'name'"}
    schema["properties"]["model"] = union
    return schema


# ---------------------------------------------------------------------------- errors


def format_validation_error(
    err: ValidationError, origin: str = "config", raw: dict[str, Any] | None = None
) -> str:
    """One line per problem: the dotted path, what is wrong, the value and what is allowed."""
    lines = [_describe(e, raw or {}) for e in err.errors()]
    return f"Invalid {origin}:\n  " + "\n  ".join(lines)


def _describe(e: Any, raw: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
    kind, value = e["type"], e.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(e["loc"][:-1], raw)
        hint = did_you_mean(str(e["loc"][-1]), allowed)
        return f"{path}: unknown key. Allowed here: {', '.join(allowed)}.{hint}"
    if kind == "missing":
        return f"{path}: required, but missing"
    message = str(e["msg"]).removeprefix("Value error, ")
    if isinstance(value, dict):  # the value is a whole section: its name says enough
        return f"{path}: {message}"
    return f"{path}: {message} (got {value!r})" if path else message


def _allowed_keys(loc: tuple[Any, ...], raw: dict[str, Any]) -> list[str]:
    """Field names of the config section at ``loc`` (the model section by its ``name``)."""
    model: Any = ExperimentConfig
    for depth, key in enumerate(loc):
        fields = getattr(model, "model_fields", {})
        if str(key) not in fields:
            return []
        model = _section_class(fields[str(key)].annotation)
        if depth == 0 and key == "model":
            name = (raw.get("model") or {}).get("name")
            model = MODELS.meta(str(name))["config"] if name in MODELS else model
    return list(getattr(model, "model_fields", {}))


def _section_class(annotation: Any) -> Any:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
