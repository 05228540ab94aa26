"""``deepline config``: print the JSON Schema or a resolved config."""

from __future__ import annotations

import json

import typer
from rich.syntax import Syntax

from deepline.cli import app, console
from deepline.config import config_schema, load_config

config_app = typer.Typer(help="Inspect experiment configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of an experiment config (for editors and validation)."""
    typer.echo(json.dumps(config_schema(), indent=2))


@config_app.command("show")
def show(
    config: str = typer.Argument(..., help="YAML file, or the name of a shipped config"),
    set_: list[str] = typer.Option([], "--set", help="override, e.g. --set train.lr=3e-4"),
) -> None:
    """Print the resolved config: file, defaults and overrides, validated."""
    cfg = load_config(config, set_)
    console.print(Syntax(cfg.to_yaml(), "yaml", background_color="default"))
