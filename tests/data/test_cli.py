"""`deepline data list|info|verify|fetch` through Typer's test runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import deepline.cli.commands  # noqa: F401  (registers the subcommands)
from deepline.cli import app
from deepline.errors import DataError

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "250"})


def test_list_shows_every_dataset() -> None:
    result = run("data", "list")
    assert result.exit_code == 0, result.output
    for name in ("digits", "mnist", "fashion-mnist", "breastmnist", "image-folder", "npz", "csv"):
        assert name in result.output
    assert "CC BY-SA 3.0" in result.output and "60,000" in result.output


def test_info_mnist(shared_data: Path) -> None:
    result = run("data", "info", "mnist", "--data-dir", str(shared_data))
    assert result.exit_code == 0, result.output
    assert "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609" in result.output
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in result.output
    assert str(shared_data / "mnist") in result.output and "1x28x28" in result.output


def test_verify_ok_and_corrupt(shared_data: Path, tmp_path: Path, copy_real: Any,
                               flip_byte: Any) -> None:  # fmt: skip
    result = run("data", "verify", "mnist", "--data-dir", str(shared_data))
    assert result.exit_code == 0, result.output
    assert result.output.count("OK") == 4
    flip_byte(copy_real("medmnist", "breastmnist.npz", tmp_path))
    result = run("data", "verify", "breastmnist", "--data-dir", str(tmp_path))
    assert result.exit_code == 1 and "CORRUPT" in result.output
    assert "3a22d2a4625e7dd8903f0f59030e81a3d0c222bece2e5e10927456cb50efdec1" in result.output


def test_verify_missing_exits_1() -> None:
    result = run("data", "verify", "fashion-mnist")
    assert result.exit_code == 1 and "MISSING" in result.output
    assert "deepline data fetch fashion-mnist" in result.output


def test_fetch_downloads_into_cache(mirror: Any, isolated: Path, copy_real: Any) -> None:
    copy_real("medmnist", "breastmnist.npz", mirror.root)
    result = run("data", "fetch", "breastmnist")
    assert result.exit_code == 0, result.output
    assert "downloaded" in result.output
    assert (isolated / "medmnist" / "breastmnist.npz").is_file()
    assert run("data", "verify", "breastmnist").exit_code == 0


def test_unknown_name_is_a_data_error() -> None:
    result = run("data", "info", "mnsit")
    assert isinstance(result.exception, DataError)
    assert "Did you mean 'mnist'" in str(result.exception)


@pytest.mark.parametrize("command", ["list", "info", "verify", "fetch"])
def test_help(command: str) -> None:
    result = run("data", command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output
