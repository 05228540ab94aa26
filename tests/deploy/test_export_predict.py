"""Export to a bundle with an ONNX parity check; predict from files of any size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepline.config import load_config
from deepline.deploy.bundle import load_bundle
from deepline.deploy.export import export_run
from deepline.deploy.predictor import Predictor
from deepline.errors import DeeplineError, ExportError, InputError
from deepline.training.experiment import run_training
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(tiny_config(epochs=3, lr=0.02, schedule={"name": "onecycle"}))
    return run_training(cfg, tmp_path_factory.mktemp("runs")).run_dir


@pytest.fixture(scope="module")
def bundle(run_dir: Path) -> Path:
    report = export_run(run_dir)
    assert report["formats"]["onnx"]["ok"]
    return Path(report["bundle"])


def digit_image(digit_pixels: np.ndarray, size: int) -> Image.Image:
    """A dataset digit (8x8, values 0..16) as an 8-bit greyscale image of ``size`` pixels."""
    image = Image.fromarray((digit_pixels / 16 * 255).astype(np.uint8), mode="L")
    return image.resize((size, size), Image.Resampling.NEAREST)


def test_bundle_contents(bundle: Path, run_dir: Path) -> None:
    spec = json.loads((bundle / "bundle.json").read_text())
    assert spec["task"]["name"] == "image_classification"
    assert spec["signature"]["inputs"][0]["shape"] == [-1, 1, 8, 8]
    assert spec["data"]["classes"] == [str(i) for i in range(10)]
    assert len(spec["data_fingerprint"]) == 64
    assert {"weights", "onnx"} <= set(spec["files"])
    exported = json.loads((run_dir / "export.json").read_text())
    assert exported["formats"]["onnx"]["max_abs_diff"] <= 1e-4


def test_torch_and_onnx_predict_the_same(bundle: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    files = []
    for i, size in enumerate((8, 28, 100)):  # any size: resized to the model's 8x8
        path = tmp_path / f"digit{i}.png"
        digit_image(digits.images[i], size).save(path)
        files.append(path)
    jpeg = tmp_path / "digit.jpg"
    digit_image(digits.images[3], 64).convert("RGB").save(jpeg)  # colour, converted to grey
    npy = tmp_path / "digit.npy"
    np.save(npy, (digits.images[4] / 16).astype(np.float32))
    files += [jpeg, npy]
    onnx = [a for _, a in Predictor(bundle, "onnx").predict_files(files, top_k=3)]
    torch_ = [a for _, a in Predictor(bundle, "torch").predict_files(files, top_k=3)]
    assert [a[0]["class"] for a in onnx] == [a[0]["class"] for a in torch_]
    for a, b in zip(onnx, torch_):
        assert a[0]["probability"] == pytest.approx(b[0]["probability"], abs=1e-4)
    assert onnx[0][0]["class"] == str(digits.target[0])  # an 8x8 digit, as trained
    assert all(len(a) == 3 for a in onnx)


def test_an_npy_batch_is_one_answer_per_image(bundle: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    batch = tmp_path / "batch.npy"
    np.save(batch, (digits.images[:5] * 255 / 16).astype(np.uint8))  # (5, 8, 8) whole pixels
    answers = Predictor(bundle).predict_files([batch])
    assert [name for name, _ in answers] == [f"{batch}[{i}]" for i in range(5)]
    single = [
        Predictor(bundle).predict_files([_save(tmp_path, i, img)])[0][1][0]["class"]
        for i, img in enumerate(np.load(batch))
    ]
    assert [a[0]["class"] for _, a in answers] == single


def _save(folder: Path, i: int, image: np.ndarray) -> Path:
    path = folder / f"one{i}.npy"
    np.save(path, image)
    return path


def test_non_image_file_is_a_clear_error(bundle: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(InputError, match=r"notes\.png"):
        Predictor(bundle).predict_files([text])
    bad = tmp_path / "words.npy"
    np.save(bad, np.array(["a", "b"]))
    with pytest.raises(InputError, match=r"words\.npy"):
        Predictor(bundle).predict_files([bad])


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(DeeplineError, match="not a deepline bundle"):
        load_bundle(tmp_path)


def test_parity_failure_is_reported(run_dir: Path, tmp_path: Path) -> None:
    config = run_dir / "config.yaml"
    original = config.read_text()
    try:
        config.write_text(original.replace("atol: 0.0001", "atol: 1.0e-12"))
        with pytest.raises(ExportError, match="differs from PyTorch"):
            export_run(run_dir, out=tmp_path / "strict")
    finally:
        config.write_text(original)
    # reported, but not left where a Predictor could load it
    assert (
        json.loads((tmp_path / "strict" / "export.json").read_text())["formats"]["onnx"]["ok"]
        is False
    )
    assert not (tmp_path / "strict" / "model.onnx").exists()
    assert "onnx" not in load_bundle(tmp_path / "strict").spec["files"]
