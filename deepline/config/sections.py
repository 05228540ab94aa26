"""The config sections of an experiment: data, model, task, eval, export, the card, and the
whole ``ExperimentConfig`` (training's sections are in ``training.py``)."""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from deepline.config.base import Section
from deepline.config.federated import FederatedConfig
from deepline.config.training import TrainConfig
from deepline.errors import ConfigError
from deepline.registry import DATASETS, EXPORTERS, MODELS, TASKS, Registry


class AugmentConfig(Section):
    """Batched augmentation of training images (applied on tensors, per batch)."""

    shift: int = Field(0, ge=0, le=16, description="random translation, in pixels, each axis")
    flip: bool = Field(False, description="random horizontal flip")
    vflip: bool = Field(False, description="random vertical flip (not for digits or text)")
    rotate: float = Field(
        0.0, ge=0.0, le=180.0, description="random rotation about the centre, up to this many "
        "degrees either way",
    )  # fmt: skip
    scale: float = Field(
        0.0, ge=0.0, lt=1.0, description="random zoom by a factor in [1 - scale, 1 + scale]"
    )


class SyntheticConfig(Section):
    """Generated labelled images added to the training split (GAN augmentation)."""

    generator: str = Field(
        description="a conditional image generator's bundle (RUN_DIR/bundle of a GAN trained "
        "with task image_generation on the same images and classes)"
    )
    per_class: int = Field(ge=1, le=100_000, description="images generated of each class")
    seed: int = Field(0, ge=0, description="the first image's seed; image i uses seed + i")


class SeriesConfig(Section):
    """Time series: the columns read, and how forecasting windows and backtest origins are cut.

    Test origins are the latest ``test_origins``, ``stride`` apart, their horizons ending at
    the series' end; validation origins come just before, their horizons ending at the first
    test origin; training windows end before the first validation origin (no look-ahead)."""

    time_column: str | None = Field(
        None, description="CSV/Parquet: the column of times the rows are sorted by (none: in order)"
    )
    target: str | None = Field(
        None, description="CSV/Parquet: the column forecast (default: the first numeric one)"
    )
    covariates: list[str] = Field(
        default_factory=list, description="other columns whose past the model reads too"
    )
    horizon: int = Field(12, ge=1, le=10_000, description="values forecast from each origin")
    test_origins: int = Field(6, ge=1, le=10_000, description="forecast origins of the test")
    val_origins: int = Field(3, ge=1, le=10_000, description="origins of the validation")
    stride: int | None = Field(
        None, ge=1, description="steps between origins (default: the horizon)"
    )
    season: int | None = Field(
        None, ge=1, description="the seasonal period (12 for monthly values; default: the "
        "dataset's, else 1): seasonal naive and MASE use it",
    )  # fmt: skip


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
    labels_per_class: float | None = Field(
        None, gt=0.0, description="few labels (images): keep N labelled training examples of "
        "each class (N >= 1, a whole number) or this fraction of each class (< 1); the rest "
        "of the training split becomes the unlabelled split, its labels hidden from training",
    )  # fmt: skip
    labels_seed: int = Field(0, description="which draw of the labelled subset")
    synthetic: SyntheticConfig | None = Field(
        None, description="add generated labelled images to the training split"
    )
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
        "most recent items a model reads of a history; series: the past values a forecast reads",
    )
    window_stride: int | None = Field(
        None, ge=1, description="interactions: pairs between the ends of consecutive training "
        "windows (default: context, no overlap); smaller strides give every target a longer "
        "history at the cost of more windows, each target still trained once",
    )  # fmt: skip
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
    series: SeriesConfig = Field(
        default_factory=SeriesConfig, description="time series: columns, horizon and origins"
    )
    k_core: int = Field(
        0, ge=0, description="interactions: drop users and items with fewer interactions, "
        "repeatedly, until none is left (0: keep all)"
    )  # fmt: skip

    @model_validator(mode="after")
    def _stride_within_window(self) -> DataConfig:
        if self.window_stride is not None and self.window_stride > self.context:
            raise ValueError(
                f"window_stride ({self.window_stride}) must be at most data.context "
                f"({self.context}): a longer stride would skip the pairs between windows"
            )
        return self


class ModelConfig(Section):
    """Base of the model configs; each model file defines its own subclass."""

    name: str
    init_from: str | None = Field(
        None, description="a run folder whose weights start this model (the checkpoint it "
        "evaluates, eval.checkpoint): tensors of the same name and shape are loaded; the output "
        "layer may differ (a new head)",
    )  # fmt: skip
    freeze: list[str] = Field(
        default_factory=list, description="parameters (names or their prefixes, e.g. "
        "'features') kept as they start: with init_from, a linear probe trains only the head",
    )  # fmt: skip

    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments this config gives the model."""
        return self.model_dump(exclude={"name", "init_from", "freeze"})


class TaskConfig(Section):
    """Base of the task configs; each task file defines its own subclass."""

    name: str
    # the validation metric (and "min" or "max") that picks the best checkpoint when the
    # config names none, for a task without a validation loss
    checkpoint_monitor: ClassVar[tuple[str, str] | None] = None


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
    compact_bits: int = Field(
        5, ge=1, le=8, description="compact: bits per non-zero weight (2^bits shared values "
        "per tensor); the drop allowed is export.int8_max_drop",
    )  # fmt: skip

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


# train settings that federated training cannot be combined with: (field, why)
NOT_WITH_FEDERATED = (
    ("privacy", "DP-SGD protects one client's examples; use federated.privacy for "
     "client-level privacy"),
    ("ema", "clients restart from the global weights every round: there is no average to keep"),
    ("early_stopping", "federated.rounds sets the length of federated training"),
    ("method", "a client's unlabelled images are not dealt to it (yet)"),
    ("distill", "every client would need the teacher's weights"),
    ("prune", "averaging the clients' weights would fill the pruned ones in again"),
)  # fmt: skip


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
    federated: FederatedConfig | None = Field(
        None, description="train on Flower clients (`deepline federate`), not in one place"
    )

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

    @model_validator(mode="after")
    def _task_picks_the_best(self) -> ExperimentConfig:
        picked = type(self.task).checkpoint_monitor
        checkpoint = self.train.checkpoint
        if picked is not None and "monitor" not in checkpoint.model_fields_set:
            best = checkpoint.model_copy(update={"monitor": picked[0], "mode": picked[1]})
            object.__setattr__(self.train, "checkpoint", best)
        return self

    @model_validator(mode="after")
    def _federated_combines(self) -> ExperimentConfig:
        if self.federated is None:
            return self
        for field, why in NOT_WITH_FEDERATED:
            if getattr(self.train, field) is not None:
                raise ValueError(f"federated cannot be combined with train.{field}: {why}")
        return self

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
