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
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from deepline.errors import ConfigError, describe_problem
from deepline.registry import ATTACKS, DATASETS, EXPORTERS, MODELS, TASKS, Registry


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
        64,
        ge=1,
        le=1_000_000,
        description="text: language-model window / max tokens per text; interactions: the "
        "most recent items a model reads of a history",
    )
    text_column: str = Field("text", description="text-csv: column holding the text")
    columns: dict[str, Literal["numeric", "categorical"]] | None = Field(
        None,
        description="tables: the input columns and their kinds (default: every column but the "
        "target, numeric when all its values are numbers, else categorical)",
    )
    sensitive: list[str] = Field(
        default_factory=list,
        description="tables: columns describing groups (sex, race) that fairness reports "
        "break down by",
    )
    sensitive_input: bool = Field(
        True, description="tables: whether the model sees the sensitive columns as inputs"
    )
    holdout: Literal["leave_one_out", "temporal"] = Field(
        "leave_one_out",
        description="interactions: each user's last item tests and the one before validates "
        "(as SASRec and RecBole), or one global time cut per split (val_fraction and "
        "test_fraction of the interactions, the latest ones)",
    )
    min_rating: float | None = Field(
        None, description="interactions: keep only ratings at or above this (implicit feedback)"
    )
    items_path: str | None = Field(
        None, description="interactions: a CSV or Parquet file describing the items (an item "
        "column, a title, optionally genres separated by '|'), shown in answers"
    )  # fmt: skip
    k_core: int = Field(
        0, ge=0, description="interactions: drop users and items with fewer interactions, "
        "repeatedly, until none is left (0: keep all)"
    )  # fmt: skip


class ModelConfig(Section):
    """Base of the model configs; each model file defines its own subclass."""

    name: str

    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments this config gives the model."""
        return self.model_dump(exclude={"name"})


class TaskConfig(Section):
    """Base of the task configs; each task file defines its own subclass."""

    name: str


class ScheduleConfig(Section):
    name: Literal["constant", "step", "cosine", "onecycle"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    step_size: int = Field(1, ge=1, description="epochs between decays, for 'step'")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="decay factor, for 'step'")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="final lr / peak lr")
    pct_start: float = Field(0.25, gt=0.0, lt=1.0, description="rising part, for 'onecycle'")
    anneal: Literal["cos", "linear"] = Field(
        "cos", description="the falling part's shape, for 'cosine'-like decays and 'onecycle'"
    )


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


class AdversarialConfig(Section):
    """Adversarial training: every training batch is attacked before the model learns from it
    (Madry et al. 2018 with ``attack: pgd``; Wong et al. 2020's fast FGSM with ``attack: fgsm``
    and ``random_start: true``). Epsilon is in the codec's unit space (pixels in [0, 1])."""

    attack: str = Field("pgd", description="a registered attack: fgsm or pgd")
    eps: float = Field(
        ..., ge=0.0, allow_inf_nan=False, description="radius of the ball around each input"
    )
    norm: Literal["linf", "l2"] = "linf"
    alpha: float | None = Field(
        None, gt=0.0, allow_inf_nan=False,
        description="step size; default fgsm 1.25 eps (eps without a random start), pgd "
        "2.5 eps / steps",
    )  # fmt: skip
    steps: int = Field(10, ge=1, description="pgd steps per batch")
    random_start: bool = Field(True, description="start from a uniform point of the ball")
    ramp_epochs: float = Field(
        0.0, ge=0.0, description="epsilon (and alpha) grow linearly from 0 over these epochs"
    )
    validate_examples: int = Field(
        0, ge=0, description="after each validation, PGD accuracy at eps on this many "
        "validation examples, logged as val/robust_accuracy (monitor it to keep the most "
        "robust checkpoint: early stopping against catastrophic overfitting)",
    )  # fmt: skip
    validate_steps: int = Field(10, ge=1, description="PGD steps of that check")

    @field_validator("attack")
    @classmethod
    def _known_attack(cls, value: str) -> str:
        if value not in ATTACKS:
            raise ValueError(ATTACKS.unknown_message(value))
        return value


class PrivacyConfig(Section):
    """Differentially private training (DP-SGD, Opacus): Poisson-sampled batches, each
    example's gradient clipped to ``max_grad_norm``, Gaussian noise added; the accountant
    tracks (epsilon, delta) with respect to one training example."""

    target_epsilon: float | None = Field(
        None, gt=0.0, allow_inf_nan=False,
        description="the epsilon to reach at the end of training (the noise is chosen for it)",
    )  # fmt: skip
    noise_multiplier: float | None = Field(
        None, gt=0.0, allow_inf_nan=False, description="noise std / max_grad_norm, given directly"
    )
    delta: float = Field(1e-5, gt=0.0, lt=1.0, description="usually below 1 / training examples")
    max_grad_norm: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="per example")
    accountant: Literal["rdp", "prv"] = Field(
        "rdp", description="the headline accountant (the other is reported alongside)"
    )

    @model_validator(mode="after")
    def _one_way_to_set_noise(self) -> PrivacyConfig:
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give train.privacy.target_epsilon or noise_multiplier (one)")
        return self


# train settings that DP-SGD cannot be combined with: (field, the value that conflicts, why)
NOT_WITH_PRIVACY = (
    ("compile", True, "Opacus' per-example gradient hooks do not run under torch.compile"),
    ("adversarial", "set", "the attack's input gradients would bypass per-example clipping"),
    ("accumulate", "> 1", "micro-batches of a Poisson-sampled batch break the accounting"),
    ("precision", "fp16", "Opacus' per-example gradients do not support a gradient scaler"),
    ("grad_clip", "set", "DP-SGD clips each example's gradient (train.privacy.max_grad_norm)"),
)


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
    device: str = Field(
        "auto",
        description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps; under "
        "torchrun each process takes its LOCAL_RANK GPU",
    )
    precision: Literal["32", "bf16", "fp16"] = Field(
        "32", description="32, bf16 (autocast) or fp16 (autocast and a gradient scaler)"
    )
    tf32: bool = Field(False, description="CUDA: TensorFloat-32 matmuls and convolutions in fp32")
    compile: bool = Field(
        False, description="torch.compile the model (eager, with a warning, if it cannot)"
    )
    data_on_device: bool | Literal["auto"] = Field(
        "auto",
        description="keep the training split on the device (no copy per batch); auto: when it "
        "takes at most half of the device's free memory",
    )
    channels_last: bool = Field(
        True, description="NHWC memory layout for 4-D inputs (faster convs)"
    )
    adversarial: AdversarialConfig | None = Field(
        None, description="train on attacked inputs (adversarial training)"
    )
    privacy: PrivacyConfig | None = Field(
        None, description="differentially private training (DP-SGD)"
    )
    early_stopping: EarlyStoppingConfig | None = None
    checkpoint: CheckpointConfig = CheckpointConfig()
    non_finite: NonFiniteConfig = NonFiniteConfig()
    log_every_steps: int = Field(50, ge=1)
    deterministic: bool = False
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads")
    tensorboard: bool = True
    mlflow: bool = Field(False, description="also log to MLflow (needs mlflow installed)")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(
                "unknown device. Allowed: auto, cpu, cuda, cuda:N (N = 0, 1, ...), mps"
            )
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return "32" if value == 32 else value  # an unquoted 32 in YAML is an int

    @model_validator(mode="after")
    def _epochs_or_steps(self) -> TrainConfig:
        if self.epochs is not None and self.max_steps is not None:
            raise ValueError("give train.epochs or train.max_steps, not both")
        if self.epochs is None and self.max_steps is None:
            object.__setattr__(self, "epochs", 10)
        return self

    @model_validator(mode="after")
    def _privacy_combines(self) -> TrainConfig:
        if self.privacy is None:
            return self
        for field, value, why in NOT_WITH_PRIVACY:
            current = getattr(self, field)
            if value == "set":
                clash = current is not None
            elif value == "> 1":
                clash = current > 1
            else:
                clash = current == value
            if clash:
                raise ValueError(f"train.privacy cannot be combined with train.{field}: {why}")
        return self


class EvalConfig(Section):
    split: Literal["val", "test"] = "test"
    checkpoint: Literal["best", "last"] = "best"
    batch_size: int = Field(512, ge=1)


def _known_format(name: str) -> str:
    if name not in EXPORTERS:
        raise ValueError(EXPORTERS.unknown_message(name))
    return name


ExportFormatName = Annotated[str, AfterValidator(_known_format)]  # a registered export format


def _default_formats() -> list[str]:
    return ["onnx"]


class ExportConfig(Section):
    formats: list[ExportFormatName] = Field(
        default_factory=_default_formats,
        description="files besides the safetensors weights, each checked against eager PyTorch",
    )
    opset: int = Field(18, ge=13, le=21)
    atol: float = Field(
        1e-4, gt=0.0, description="largest allowed ONNX/TorchScript - PyTorch difference"
    )
    rtol: float = Field(
        1e-5,
        ge=0.0,
        description="relative tolerance added to atol: |format - PyTorch| <= atol + rtol * "
        "|PyTorch| (outputs in large units, such as regression targets)",
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


class CardConfig(Section):
    """What a model card says that no measurement can: ``deepline audit`` puts it at the top
    of ``model_card.html`` and ``export`` into ``bundle.json``."""

    intended_use: str = Field("", description="who should use the model, for what")
    limitations: str = Field("", description="where it must not be trusted, and why")
    notes: str = Field("", description="anything else a reader of the card should know")


class ExperimentConfig(Section):
    """The whole experiment. ``name`` defaults to the config file's stem."""

    name: str = "experiment"
    seed: int = 0
    data: DataConfig = DataConfig()
    model: SerializeAsAny[ModelConfig]
    task: SerializeAsAny[TaskConfig]
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()
    card: CardConfig = CardConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_task(cls, data: Any) -> Any:
        """A config that names no task trains the one its dataset is for."""
        task = data.get("task", {}) if isinstance(data, dict) else None
        if isinstance(task, dict) and "name" not in task:
            section = data.get("data")
            name = section.get("name", "digits") if isinstance(section, dict) else "digits"
            data = {**data, "task": {"name": default_task(str(name)), **task}}
        return data

    @field_validator("model", mode="before")
    @classmethod
    def _dispatch_model(cls, value: Any) -> Any:
        """Validate the model section with the config class its ``name`` registers."""
        return _dispatch(value, ModelConfig, MODELS)

    @field_validator("task", mode="before")
    @classmethod
    def _dispatch_task(cls, value: Any) -> Any:
        """Validate the task section with the config class its ``name`` registers."""
        if isinstance(value, dict):
            value = drop_legacy_task_keys(value)
        return _dispatch(value, TaskConfig, TASKS)

    def to_yaml(self) -> str:
        return yaml.safe_dump(json.loads(self.model_dump_json()), sort_keys=False)


def _dispatch(value: Any, base: type[BaseModel], registry: Registry[Any]) -> Any:
    """A section as the config class that its ``name`` registers (a ValidationError raised
    here is unpacked into field paths later)."""
    if isinstance(value, base) or not isinstance(value, dict):
        return value
    name = value.get("name")
    if name not in registry:
        raise ValueError(registry.unknown_message(str(name)))
    return registry.meta(str(name))["config"].model_validate(value)


def task_config(section: dict[str, Any]) -> TaskConfig:
    """A task section (as a run folder or bundle holds it) as its task's config class."""
    try:
        config: TaskConfig = _dispatch(drop_legacy_task_keys(section), TaskConfig, TASKS)
    except (ValueError, ValidationError) as err:
        raise ConfigError(f"task section {section}: {err}") from None
    return config


def default_task(dataset: str) -> str:
    """The task a dataset is for (its catalog entry says), image classification if unknown."""
    return DATASETS.meta(dataset)["spec"].task if dataset in DATASETS else "image_classification"


# One task section used to hold every task's fields; run folders and bundles written then still
# hold them, at these defaults. A task without the field ignores it at its old default value.
_LEGACY_TASK_DEFAULTS = {
    "label_smoothing": 0.0,
    "top_k": 3,
    "sample_prompt": "\n",
    "sample_tokens": 200,
    "temperature": 0.8,
    "sample_top_k": None,
}


def drop_legacy_task_keys(section: dict[str, Any]) -> dict[str, Any]:
    name = section.get("name")
    if name not in TASKS:
        return section
    fields = TASKS.meta(str(name))["config"].model_fields
    return {
        key: value
        for key, value in section.items()
        if key in fields or key not in _LEGACY_TASK_DEFAULTS or value != _LEGACY_TASK_DEFAULTS[key]
    }


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
