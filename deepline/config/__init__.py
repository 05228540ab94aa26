"""The experiment configuration: typed, validated, with errors that name the field.

A config is a YAML file with the sections ``data``, ``model``, ``task``, ``train``, ``eval``
and ``export``. Unknown keys are rejected; every error names the dotted path, the bad value and
what is allowed. ``sections`` and ``training`` hold the section classes, ``loading`` reads files
and overrides into them.

>>> cfg = load_config({"data": {"name": "digits"}, "model": {"name": "mlp"}})
>>> cfg.train.lr
0.001
"""

from deepline.config.base import Section
from deepline.config.federated import (
    ClientPrivacyConfig,
    FederatedConfig,
    PartitionConfig,
    SecureAggregationConfig,
)
from deepline.config.loading import (
    apply_overrides,
    config_schema,
    format_validation_error,
    load_config,
    packaged_configs_dir,
    read_yaml,
    resolve_config_path,
)
from deepline.config.sections import (
    AugmentConfig,
    CardConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ExportConfig,
    ModelConfig,
    SeriesConfig,
    SyntheticConfig,
    TaskConfig,
    default_task,
    drop_legacy_task_keys,
    task_config,
)
from deepline.config.training import (
    NOT_WITH_PRIVACY,
    AdversarialConfig,
    CheckpointConfig,
    ContrastiveConfig,
    DistillConfig,
    EarlyStoppingConfig,
    MixupConfig,
    NonFiniteConfig,
    PrivacyConfig,
    PruneConfig,
    QATConfig,
    ScheduleConfig,
    SemiSupervisedConfig,
    TrainConfig,
)

__all__ = [
    "NOT_WITH_PRIVACY",
    "AdversarialConfig",
    "AugmentConfig",
    "CardConfig",
    "CheckpointConfig",
    "ClientPrivacyConfig",
    "ContrastiveConfig",
    "DataConfig",
    "DistillConfig",
    "EarlyStoppingConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ExportConfig",
    "FederatedConfig",
    "MixupConfig",
    "ModelConfig",
    "NonFiniteConfig",
    "PartitionConfig",
    "PrivacyConfig",
    "PruneConfig",
    "QATConfig",
    "ScheduleConfig",
    "Section",
    "SecureAggregationConfig",
    "SemiSupervisedConfig",
    "SeriesConfig",
    "SyntheticConfig",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "config_schema",
    "default_task",
    "drop_legacy_task_keys",
    "format_validation_error",
    "load_config",
    "packaged_configs_dir",
    "read_yaml",
    "resolve_config_path",
    "task_config",
]  # fmt: skip
