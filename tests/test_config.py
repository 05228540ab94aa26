"""The config: validation errors that name the field, overrides, schema, shipped configs."""

from __future__ import annotations

import pytest
import yaml

from deepline.config import config_schema, load_config, resolve_config_path
from deepline.errors import ConfigError


def error_of(raw: dict, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(raw, overrides)
    return str(info.value)


def test_defaults_and_overrides() -> None:
    cfg = load_config({"model": {"name": "lenet"}}, ["train.lr=3e-4", "train.epochs=3"])
    assert cfg.train.lr == 3e-4 and cfg.train.epochs == 3
    assert cfg.model.name == "lenet" and cfg.model.channels == (32, 64)
    cfg = load_config({"model": {"name": "mlp"}}, {"model.hidden": [10]})
    assert cfg.model.hidden == [10]


def test_unknown_key_names_path_and_suggests() -> None:
    message = error_of({"model": {"name": "lenet"}, "train": {"learning_rate": 0.1}})
    assert "train.learning_rate: unknown key" in message
    assert "Did you mean 'lr'?" in message
    message = error_of({"model": {"name": "lenet", "chanels": [1, 2]}})
    assert "model.chanels" in message and "Did you mean 'channels'?" in message


def test_unknown_model_suggests() -> None:
    message = error_of({"model": {"name": "resnett"}})
    assert "unknown model 'resnett'" in message and "Did you mean 'resnet'?" in message
    assert "lenet" in message and "mlp" in message and "resnet" in message


def test_wrong_type_and_out_of_range_name_value() -> None:
    message = error_of({"model": {"name": "mlp"}}, ["train.epochs=ten", "train.lr=-1"])
    assert "train.epochs" in message and "'ten'" in message
    assert "train.lr" in message and "greater than 0" in message and "-1" in message
    message = error_of({"model": {"name": "mlp"}, "train": {"optimizer": "adam2"}})
    assert "train.optimizer" in message and "'sgd', 'adam' or 'adamw'" in message


def test_epochs_or_max_steps() -> None:
    assert load_config({}, ["train.max_steps=10"]).train.epochs is None
    assert load_config({}).train.epochs == 10
    assert "not both" in error_of({}, ["train.max_steps=10", "train.epochs=2"])


def test_override_into_a_value_is_an_error() -> None:
    assert "not a section" in error_of({"train": {"lr": 0.1}}, ["train.lr.x=1"])
    assert "train.lr" in error_of({}, ["train.lr.x=1"])


def test_yaml_round_trip_and_packaged_configs(tmp_path) -> None:
    cfg = load_config("digits_lenet")
    assert cfg.name == "digits_lenet"
    path = tmp_path / "again.yaml"
    path.write_text(cfg.to_yaml())
    again = load_config(path)
    assert again.model_dump() == cfg.model_dump()
    assert resolve_config_path("mnist_lenet.yaml").is_file()
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_invalid_yaml_file(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_schema_lists_models() -> None:
    schema = config_schema()
    assert {"data", "model", "train", "eval", "export", "task"} <= set(schema["properties"])
    names = {s["properties"]["name"]["const"] for s in schema["properties"]["model"]["oneOf"]}
    assert {"mlp", "lenet", "resnet"} <= names
    yaml.safe_dump(schema)  # serialisable
