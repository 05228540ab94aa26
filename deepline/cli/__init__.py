"""The ``deepline`` command. Each group of subcommands lives in its own module."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from deepline.errors import DeeplineError

app = typer.Typer(
    name="deepline",
    help="From data to a trained, evaluated, exported and reported model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # paragraphs reflow to the terminal's width
)
console = Console()
err_console = Console(stderr=True)


def main() -> None:
    """Entry point: runs the app and prints deepline errors as one paragraph, no traceback."""
    from deepline.cli import commands  # noqa: F401  (registers the subcommands)

    try:
        app()
    except DeeplineError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
