"""The command line as a user meets it: bad input gives one clear paragraph, never a traceback."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import sys
from pathlib import Path

import pytest
import yaml

from deepline.cli import main
from deepline.training.checkpoint import list_checkpoints
from tests.conftest import tiny_config


def deepline(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the real entry point in-process: (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["deepline", *args]
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = int(stop.code or 0)
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


def write_config(tmp_path: Path, raw: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def assert_clear_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and err.lstrip().startswith("error:")
    text = " ".join(err.split())  # the console wraps long lines
    for needle in needles:
        assert needle in text, (needle, err)


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("train.optimiser=sgd", ["train.optimiser: unknown key", "Did you mean 'optimizer'?"]),
        ("train.epochs=ten", ["train.epochs", "valid integer", "'ten'"]),
        ("train.lr=-0.5", ["train.lr", "greater than 0", "-0.5"]),
        ("model.name=lenett", ["unknown model 'lenett'", "Did you mean 'lenet'?"]),
    ],
)
def test_bad_config_values(tmp_path, capsys, override: str, needles: list[str]) -> None:
    config = write_config(tmp_path, tiny_config())
    code, _, err = deepline(["train", str(config), "--set", override], capsys)
    assert_clear_error(code, err, *needles)


@pytest.fixture
def no_dataset_sources(tmp_path, monkeypatch) -> None:
    """An empty cache, no DEEPLINE_DATA_DIR, and a mirror nobody listens on (no download)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("DEEPLINE_MIRROR", f"http://127.0.0.1:{sock.getsockname()[1]}")
    monkeypatch.setenv("DEEPLINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPLINE_DATA_DIR", raising=False)


def test_missing_dataset_file_names_file_and_sha(tmp_path, capsys, no_dataset_sources) -> None:
    config = write_config(tmp_path, {**tiny_config(), "data": {"name": "mnist"}})
    code, _, err = deepline(["train", str(config), "--data-dir", str(tmp_path / "empty")], capsys)
    assert_clear_error(
        code,
        err,
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    )


def test_corrupt_dataset_file_names_file_and_sha(tmp_path, capsys, no_dataset_sources) -> None:
    """A file of the catalog's name with other bytes, where the catalog looks for it."""
    data_dir = tmp_path / "data"
    images = data_dir / "mnist" / "train-images-idx3-ubyte.gz"
    images.parent.mkdir(parents=True)
    images.write_bytes(b"\x1f\x8b not the MNIST training images")
    config = write_config(tmp_path, {**tiny_config(), "data": {"name": "mnist"}})
    code, _, err = deepline(["train", str(config), "--data-dir", str(data_dir)], capsys)
    assert_clear_error(
        code,
        err,
        "train-images-idx3-ubyte.gz",
        "corrupt",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",  # expected
        hashlib.sha256(images.read_bytes()).hexdigest(),  # found
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deepline.config import load_config
    from deepline.deploy.export import export_run
    from deepline.training.experiment import run_training

    raw = tiny_config(epochs=2, checkpoint={"every_steps": 5, "keep_last": 20})
    run_dir = run_training(load_config(raw), tmp_path_factory.mktemp("runs")).run_dir
    export_run(run_dir)
    return run_dir


def test_predict_non_image_file(trained, tmp_path, capsys) -> None:
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(b"%PDF-1.4 definitely not a jpeg")
    code, _, err = deepline(["predict", str(trained / "bundle"), str(fake)], capsys)
    assert_clear_error(code, err, "photo.jpg")


def test_predict_table(trained, tmp_path, capsys, monkeypatch) -> None:
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (33, 17), "white").save("blank.png")
    code, out, err = deepline(
        ["predict", str(trained / "bundle"), "blank.png", "--top-k", "2"], capsys
    )
    assert code == 0, err
    assert "blank.png" in out and "%" in out


def test_truncated_checkpoint_resume_falls_back(trained, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    checkpoints = list_checkpoints(run / "checkpoints")
    for late in checkpoints[-3:]:  # keep an unfinished run: the last complete one is step 27
        shutil.rmtree(late)
    newest = list_checkpoints(run / "checkpoints")[-1]
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.warns(UserWarning, match="falling back to the previous checkpoint"):
        code, _, err = deepline(["train", "--resume", str(run)], capsys)
    assert code == 0, err
    previous = checkpoints[checkpoints.index(newest) - 1]
    assert f"resumedfrom{previous}" in "".join(err.split())  # the console may wrap the path
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


def test_show_loop(tmp_path, capsys) -> None:
    config = write_config(tmp_path, tiny_config(early_stopping={"patience": 2}))
    code, out, _ = deepline(["train", str(config), "--show-loop"], capsys)
    assert code == 0
    for event in ("fit_start", "step_end", "epoch_end", "fit_end"):
        assert event in out
    assert "Checkpointing" in out and "EarlyStopping" in out and "MetricsLog" in out


def test_config_schema_and_show(capsys) -> None:
    code, out, _ = deepline(["config", "schema"], capsys)
    assert code == 0 and json.loads(out)["title"] == "ExperimentConfig"
    code, out, _ = deepline(["config", "show", "mnist_lenet", "--set", "train.lr=0.01"], capsys)
    assert code == 0 and "lr: 0.01" in out


def test_demo_end_to_end(tmp_path, capsys) -> None:
    code, out, err = deepline(["demo", "--epochs", "2", "--runs-dir", str(tmp_path)], capsys)
    assert code == 0, err
    text = " ".join(out.split())
    assert "test accuracy" in text and "report.html" in text
    run = next(tmp_path.glob("digits_lenet/*"))
    for name in ("report.html", "eval.json", "bundle/model.onnx", "bundle/bundle.json"):
        assert (run / name).is_file(), name
