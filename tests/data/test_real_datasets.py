"""The catalog's datasets, from the real files in ../shared/data (figures from its README).

Only tests about a particular dataset's own files live here; every other test runs on data
that ships with deepline or the tests. Without ../shared/data this module is skipped as one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deepline.config import DataConfig, load_config
from deepline.data import DataMeta, DataSplits, get_spec, load_data
from deepline.data.codecs import codec_for
from deepline.data.fetch import check_file
from deepline.data.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer
from deepline.deploy.export import export_run
from deepline.errors import DataError, InputError
from deepline.evaluate.evaluate import evaluate_run
from deepline.training.experiment import run_training
from tests.conftest import SHARED_DATA

if not (SHARED_DATA / "mnist").is_dir():
    pytest.skip(f"the real datasets are not at {SHARED_DATA}", allow_module_level=True)

pytestmark = pytest.mark.data
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"  # tinyshakespeare
SPEC = get_spec("tinyshakespeare")

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist_full(shared_data: Path) -> DataSplits:
    """MNIST with no validation split, so train is the whole official training set."""
    return load_data(DataConfig(name="mnist", data_dir=str(shared_data), val_fraction=0.0))


def counts(y: torch.Tensor) -> list[int]:
    return torch.bincount(y, minlength=10).tolist()


def pixels(x: torch.Tensor, b: DataSplits) -> torch.Tensor:
    """Undo the normalisation: values in [0, 1] again."""
    return x * b.meta.std[0] + b.meta.mean[0]


def test_mnist_shapes_counts_and_normalisation(mnist_full: DataSplits) -> None:
    b = mnist_full
    assert b.train.x.shape == (60000, 1, 28, 28) and b.test.x.shape == (10000, 1, 28, 28)
    assert b.meta.sizes == {"train": 60000, "val": 0, "test": 10000}
    assert counts(b.train.y) == MNIST_TRAIN_COUNTS and counts(b.test.y) == MNIST_TEST_COUNTS
    assert b.meta.mean[0] == pytest.approx(0.1307, abs=5e-5)  # 33.32 / 255
    assert b.meta.std[0] == pytest.approx(0.3081, abs=5e-5)
    assert b.meta.input_scale == 255.0 and b.meta.classes == [str(i) for i in range(10)]
    assert len(b.meta.files) == 4 and all(Path(f).is_file() for f in b.meta.files)
    # The test split is normalised with the training statistics, not its own.
    assert float(pixels(b.test.x, b).mean()) == pytest.approx(0.1325, abs=1e-3)
    assert abs(float(b.test.x.mean())) > 1e-3


def test_mnist_validation_split(data_env: Path, mnist_full: DataSplits) -> None:
    b = load_data(DataConfig(name="mnist", split_seed=3))
    assert b.meta.sizes == {"train": 54000, "val": 6000, "test": 10000}
    assert np.add(counts(b.train.y), counts(b.val.y)).tolist() == MNIST_TRAIN_COUNTS
    # Deterministic, and train and val are disjoint parts of the official training set.
    again = load_data(DataConfig(name="mnist", split_seed=3, limit=5000))
    assert again.meta.sizes["train"] == 5000  # limit caps train, and leaves val alone:
    assert torch.equal(again.val.y, b.val.y)
    assert torch.allclose(pixels(again.val.x, again), pixels(b.val.x, b), atol=1e-5)
    # Each val image is one of the official training images.
    official = pixels(mnist_full.train.x[:, 0, 14], mnist_full)  # row 14 tells them apart
    for image in pixels(b.val.x[:20, 0, 14], b):
        assert int(((official - image).abs().amax(dim=1) < 1e-4).sum()) >= 1
    assert b.meta.fingerprint != mnist_full.meta.fingerprint


def test_fashion_mnist(data_env: Path) -> None:
    b = load_data(DataConfig(name="fashion-mnist", limit=1000))
    assert b.meta.classes[0] == "T-shirt/top" and b.meta.classes[9] == "Ankle boot"
    assert len(b.meta.classes) == 10 and counts(b.test.y) == [1000] * 10
    assert b.meta.sizes == {"train": 1000, "val": 6000, "test": 10000}


def test_breastmnist_official_splits(data_env: Path) -> None:
    b = load_data(DataConfig(name="breastmnist", val_fraction=0.3))
    assert b.meta.sizes == {"train": 546, "val": 78, "test": 156}  # the file's own val split
    assert b.meta.classes == ["malignant", "normal/benign"]
    assert b.train.x.shape == (546, 1, 28, 28)
    assert torch.bincount(b.train.y).tolist() == [147, 399]
    assert torch.bincount(b.val.y).tolist() == [21, 57]
    assert torch.bincount(b.test.y).tolist() == [42, 114]


# ---------------------------------------------------------------------------- sequential-mnist


def test_sequential_mnist(data_env: Path) -> None:
    seq = load_data(DataConfig(name="sequential-mnist", split_seed=3))
    img = load_data(DataConfig(name="mnist", split_seed=3))
    m = seq.meta
    assert m.codec == "sequence" and m.input_shape == (28, 28) and m.name == "sequential-mnist"
    assert m.classes == [str(i) for i in range(10)] and m.sizes == img.meta.sizes
    assert m.sizes == {"train": 54000, "val": 6000, "test": 10000}  # mnist's split rules
    assert seq.train.x.shape == (54000, 28, 28) and seq.test.x.shape == (10000, 28, 28)
    assert seq.train.x.dtype == torch.float32 and seq.train.y.dtype == torch.int64
    # Time step t is image row t; normalised with the training split's statistics.
    assert torch.equal(seq.val.x, img.val.x[:, 0]) and torch.equal(seq.test.y, img.test.y)
    assert m.mean[0] == pytest.approx(0.1307, abs=2e-4) and m.std[0] == pytest.approx(
        0.3081, abs=2e-4
    )
    assert abs(float(seq.train.x.mean())) < 1e-3 and abs(float(seq.train.x.std()) - 1) < 1e-3
    total = torch.bincount(torch.cat([seq.train.y, seq.val.y]), minlength=10)
    assert total.tolist() == MNIST_TRAIN_COUNTS
    pre = codec_for(m).preprocessing
    assert pre == {"codec": "sequence", "input_shape": [28, 28], "input_scale": 255.0,
                   "mean": m.mean, "std": m.std}  # fmt: skip
    assert DataMeta.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert m.fingerprint != img.meta.fingerprint and len(m.fingerprint) == 64
    with pytest.raises(DataError, match="channels"):
        load_data(DataConfig(name="sequential-mnist", channels=3))


def test_sequence_classification_lstm(tmp_path: Path, data_env: Path) -> None:
    cfg = load_config(
        "smnist_lstm",
        {
            "data.limit": 3000,
            "train.epochs": None,
            "train.max_steps": 60,
            "model.hidden": 32,
            "model.layers": 1,
            "train.num_threads": 1,
            "train.tensorboard": False,
        },
    )
    exp = run_training(cfg, tmp_path)
    assert exp.trainer.logs["val/accuracy"] > 0.3
    result = evaluate_run(exp.run_dir, split="test", checkpoint="last")
    assert result["n"] == 10_000
    onnx = export_run(exp.run_dir)["formats"]["onnx"]
    assert onnx["ok"] and onnx["max_abs_diff"] <= 1e-4


# ---------------------------------------------------------------------------- tinyshakespeare


@pytest.fixture(scope="module")
def text(shared_data: Path) -> str:
    return (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def char_bundle(shared_data: Path) -> DataSplits:
    return load_data(DataConfig(name="tinyshakespeare", data_dir=str(shared_data)))


@pytest.fixture(scope="module")
def bpe_bundle(shared_data: Path) -> DataSplits:
    cfg = DataConfig(name="tinyshakespeare", data_dir=str(shared_data), tokenizer="bpe")
    return load_data(cfg)


@pytest.fixture(scope="module")
def bpe(bpe_bundle: DataSplits) -> Tokenizer:
    assert bpe_bundle.meta.tokenizer is not None
    return load_tokenizer(bpe_bundle.meta.tokenizer)


def test_tinyshakespeare_file_and_nanogpt_split(
    shared_data: Path, char_bundle: DataSplits, text: str
) -> None:
    status = check_file(SPEC, SPEC.file("input.txt"), shared_data)
    assert status.status == "OK" and status.actual_sha256 == SHA256 == SPEC.files[0].sha256
    assert len(text) == 1_115_394
    b = char_bundle
    assert b.meta.sizes == {"train": 1_003_854, "val": 111_540, "test": 111_540}
    assert b.meta.codec == "text" and b.meta.classes == [] and b.meta.input_shape == (64,)
    assert b.meta.vocab_size == 65 and b.meta.files == [str(shared_data / "tinyshakespeare" /
                                                            "input.txt")]  # fmt: skip
    assert b.train.x.dtype == torch.int64 and b.train.x.ndim == 1 and b.train.y.numel() == 0
    assert len(b.train) == 1_003_854 and torch.equal(b.test.x, b.val.x)
    assert b.train.x[:10].tolist() == [18, 47, 56, 57, 58, 1, 15, 47, 58, 47]  # as nanoGPT
    assert b.meta.tokenizer is not None
    tok = load_tokenizer(b.meta.tokenizer)
    assert tok.decode(b.train.x.tolist()) + tok.decode(b.val.x.tolist()) == text
    assert len(b.meta.fingerprint) == 64


def test_char_vocabulary_matches_whole_text(char_bundle: DataSplits, text: str) -> None:
    assert char_bundle.meta.tokenizer is not None
    tok = load_tokenizer(char_bundle.meta.tokenizer)
    assert isinstance(tok, CharTokenizer) and tok.kind == "char"
    assert tok.chars == sorted(set(text))  # fitted on train only, yet nanoGPT's 65
    assert tok.encode("hii there") == [46, 47, 47, 1, 58, 46, 43, 56, 43]  # nanoGPT's example
    assert tok.decode(tok.encode("To be, or not to be")) == "To be, or not to be"


def test_bpe_on_shakespeare(bpe_bundle: DataSplits, bpe: Tokenizer, text: str) -> None:
    b = bpe_bundle
    assert isinstance(bpe, BPETokenizer) and bpe.kind == "bpe" and bpe.vocab_size == 512
    assert b.meta.vocab_size == 512 and int(b.train.x.max()) < 512
    assert b.meta.sizes["train"] < 1_003_854 / 1.8  # merges shorten the stream
    assert bpe.decode(b.train.x.tolist()) + bpe.decode(b.val.x.tolist()) == text
    with pytest.raises(InputError, match="outside"):
        bpe.decode([512])


def test_download_through_mirror(mirror: Any, isolated: Path, copy_real: Any) -> None:
    copy_real("tinyshakespeare", "input.txt", mirror.root)
    b = load_data(DataConfig(name="tinyshakespeare", limit=1000))
    cached = isolated / "tinyshakespeare" / "input.txt"
    assert b.meta.files == [str(cached)] and cached.is_file()
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == SHA256
    assert b.meta.vocab_size == 65 and b.meta.sizes["train"] == 1000


def test_cli_shows_text_entries(shared_data: Path) -> None:
    import deepline.cli.commands  # noqa: F401  (registers the subcommands)
    from deepline.cli import app

    runner = CliRunner()
    env = {"COLUMNS": "250"}
    listed = runner.invoke(app, ["data", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    for name in ("tinyshakespeare", "sequential-mnist", "text-csv"):
        assert name in listed.output
    info = runner.invoke(
        app, ["data", "info", "tinyshakespeare", "--data-dir", str(shared_data)], env=env
    )
    assert info.exit_code == 0 and SHA256 in info.output, info.output
    verify = runner.invoke(
        app, ["data", "verify", "tinyshakespeare", "--data-dir", str(shared_data)], env=env
    )
    assert verify.exit_code == 0 and "OK" in verify.output, verify.output


def test_adult_official_split_schema_and_groups(shared_data: Path) -> None:
    """UCI Adult as its README counts it: 32,561 / 16,281 rows, 7,841 and 3,846 above 50K,
    '?' as missing, the test file's trailing dots gone; sensitive columns kept per row."""
    cfg = DataConfig(name="adult", data_dir=str(shared_data), val_fraction=0.0,
                     sensitive=["sex", "race"])  # fmt: skip
    data = load_data(cfg)
    assert data.meta.sizes == {"train": 32561, "val": 0, "test": 16281}
    assert int(data.train.y.sum()) == 7841 and int(data.test.y.sum()) == 3846
    assert data.meta.classes == ["<=50K", ">50K"] and data.meta.codec == "tabular"
    kinds = {c["name"]: c["kind"] for c in data.meta.columns}
    assert sum(k == "categorical" for k in kinds.values()) == 8 and len(kinds) == 14
    workclass = next(c for c in data.meta.columns if c["name"] == "workclass")
    assert "?" not in workclass["vocabulary"] and len(workclass["vocabulary"]) == 8
    assert set(data.test.groups["sex"]) == {"Male", "Female"}
    assert len(data.test.groups["race"]) == 16281
    hidden = load_data(cfg.model_copy(update={"sensitive_input": False}))
    assert [c["name"] for c in hidden.meta.columns if c["name"] in ("sex", "race")] == []


def test_movielens_100k_as_its_readme_counts_it(shared_data: Path) -> None:
    """100,000 ratings by 943 users of 1,682 movies, no (user, movie) pair twice; leave-one-out
    holds 2 per user out; titles read as latin-1."""
    data = load_data(DataConfig(name="movielens-100k", data_dir=str(shared_data), context=50))
    i = data.meta.interactions
    assert len(i["users"]) == 943 and len(i["items"]) == 1682
    assert sum(len(h.split()) for h in i["histories"]) == 100_000
    assert sum(i["counts"]) == 100_000 - 2 * 943
    assert data.meta.sizes["val"] == data.meta.sizes["test"] == 943
    titles = dict(zip(i["items"], i["titles"]))
    assert titles["1"] == "Toy Story (1995)" and titles["543"] == "Misérables, Les (1995)"
    assert dict(zip(i["items"], i["genres"]))["1"] == ["Animation", "Children's", "Comedy"]


def test_kvasir_seg_as_its_readme_counts_it(shared_data: Path) -> None:
    """880 training pairs (a tenth carved for validation) and the 120 official held-out ones;
    every file checked against the shipped sha256 list; polyps cover about 15% of pixels."""
    data = load_data(DataConfig(name="kvasir-seg", data_dir=str(shared_data), val_fraction=0.1,
                                image_size=(64, 64)))  # fmt: skip
    assert data.meta.sizes == {"train": 792, "val": 88, "test": 120}
    assert data.meta.classes == ["background", "polyp"]
    assert data.train.x.shape == (792, 3, 64, 64) and data.test.y.shape == (120, 64, 64)
    assert data.train.y.dtype == torch.uint8 and set(data.train.y.unique().tolist()) == {0, 1}
    everything = torch.cat([data.train.y, data.val.y, data.test.y]).float()
    assert 0.14 < float(everything.mean()) < 0.17  # the README: 15.4% at full size
