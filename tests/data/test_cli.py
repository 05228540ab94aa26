"""`deepline data list|info|verify|fetch` through Typer's test runner, on synthetic files
(only `test_verify_ok_on_real_mnist` needs the real datasets)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import deepline.cli.commands  # noqa: F401  (registers the subcommands)
from deepline.cli import app
from deepline.errors import DataError
from tests.data.conftest import SYNTH_IMAGES, SYNTH_LABELS, Synthetic

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "250"})


def test_list_shows_every_dataset() -> None:
    result = run("data", "list")
    assert result.exit_code == 0, result.output
    for name in ("digits", "mnist", "fashion-mnist", "breastmnist", "image-folder", "npz", "csv"):
        assert name in result.output
    assert "CC BY-SA 3.0" in result.output and "60,000" in result.output


def test_info_mnist(tmp_path: Path) -> None:
    """A file of the right name is shown where it was found; info does not hash it."""
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"not checked by info")
    result = run("data", "info", "mnist", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609" in result.output
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in result.output
    assert "1x28x28" in result.output and result.output.count("not found") == 3
    rows = [line.split("│") for line in result.output.splitlines() if line.startswith("│")]
    found_at = "".join(row[-2].strip() for row in rows)  # the column folds long paths
    assert found_at.startswith(str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz"))
    assert f"searched: {tmp_path / 'mnist'}" in result.output


@pytest.mark.data
def test_verify_ok_on_real_mnist(shared_data: Path) -> None:
    """About the real MNIST files: their bytes match the catalog's official sha256."""
    result = run("data", "verify", "mnist", "--data-dir", str(shared_data))
    assert result.exit_code == 0, result.output
    assert result.output.count("OK") == 4


def test_verify_ok_corrupt_and_missing(registered: Synthetic, tmp_path: Path) -> None:
    name = registered.spec.name
    registered.put_all(tmp_path)
    result = run("data", "verify", name, "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.output.count("OK") == 2
    bad = registered.put(tmp_path, SYNTH_IMAGES, b"wrong bytes")
    (tmp_path / "synth" / SYNTH_LABELS).unlink()
    result = run("data", "verify", name, "--data-dir", str(tmp_path))
    assert result.exit_code == 1, result.output
    assert "CORRUPT" in result.output and "MISSING" in result.output
    assert registered.sha(SYNTH_IMAGES) in result.output
    assert hashlib.sha256(bad.read_bytes()).hexdigest() in result.output
    assert f"deepline data fetch {name}" in result.output


def test_verify_corrupt_catalog_file(tmp_path: Path) -> None:
    """A file of the catalog's name with other bytes: named CORRUPT with the expected sha256."""
    (tmp_path / "medmnist").mkdir()
    (tmp_path / "medmnist" / "breastmnist.npz").write_bytes(b"PK\x03\x04 not breastmnist")
    result = run("data", "verify", "breastmnist", "--data-dir", str(tmp_path))
    assert result.exit_code == 1 and "CORRUPT" in result.output
    assert "3a22d2a4625e7dd8903f0f59030e81a3d0c222bece2e5e10927456cb50efdec1" in result.output


def test_verify_missing_exits_1() -> None:
    result = run("data", "verify", "fashion-mnist")
    assert result.exit_code == 1 and "MISSING" in result.output
    assert "deepline data fetch fashion-mnist" in result.output


def test_fetch_downloads_into_cache(registered: Synthetic, mirror: Any, isolated: Path) -> None:
    name = registered.spec.name
    registered.put_all(mirror.root)
    result = run("data", "fetch", name)
    assert result.exit_code == 0, result.output
    assert result.output.count("downloaded") == 2
    for file, blob in registered.blobs.items():
        assert (isolated / "synth" / file).read_bytes() == blob
    assert run("data", "verify", name).exit_code == 0
    result = run("data", "fetch", name)  # a second fetch finds them in the cache
    assert result.exit_code == 0 and result.output.count("present") == 2


def test_fetch_corrupt_download_fails(registered: Synthetic, mirror: Any, isolated: Path) -> None:
    registered.put_all(mirror.root)
    registered.put(mirror.root, SYNTH_IMAGES, b"wrong bytes")
    result = run("data", "fetch", registered.spec.name)
    assert isinstance(result.exception, DataError)
    assert registered.sha(SYNTH_IMAGES) in str(result.exception)
    assert not (isolated / "synth" / SYNTH_IMAGES).exists()


def test_unknown_name_is_a_data_error() -> None:
    result = run("data", "info", "mnsit")
    assert isinstance(result.exception, DataError)
    assert "Did you mean 'mnist'" in str(result.exception)


@pytest.mark.parametrize("command", ["list", "info", "verify", "fetch"])
def test_help(command: str) -> None:
    result = run("data", command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output
