"""Language modelling end to end on a few KB of Shakespeare committed with the tests: train,
evaluate, report, export (ONNX parity), generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepline.config import load_config
from deepline.deploy.export import export_run
from deepline.deploy.predictor import Predictor
from deepline.errors import DeeplineError, InputError
from deepline.evaluate.evaluate import evaluate_run
from deepline.training.experiment import run_training
from tests.serve.conftest import ROMEO


def lm_config(**train) -> dict:  # type: ignore[no-untyped-def]
    return {
        "name": "tiny-gpt",
        "seed": 0,
        "data": {"name": "text-file", "path": str(ROMEO), "context": 32},
        "task": {"name": "language_modelling", "sample_prompt": "ROMEO:", "sample_tokens": 20},
        "model": {"name": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32},
        "train": {
            "max_steps": 40,
            "steps_per_epoch": 20,
            "eval_batches": 2,
            "batch_size": 16,
            "lr": 3e-3,
            "num_threads": 1,
            "tensorboard": False,
            **train,
        },
        "eval": {"split": "val", "batch_size": 32},
    }


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exp = run_training(load_config(lm_config()), tmp_path_factory.mktemp("runs"))
    assert exp.trainer.logs["val/loss"] < 3.5  # from ln(56) = 4.03 at the start
    export_run(exp.run_dir)
    return exp.run_dir


def test_trains_logs_bits_per_char_and_samples(lm_run: Path) -> None:
    lines = [json.loads(x) for x in (lm_run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in lines if "val/bits_per_char" in r]
    assert len(epochs) == 2 and epochs[-1]["val/perplexity"] > 1
    samples = [json.loads(x) for x in (lm_run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(s["text"].startswith("ROMEO:") for s in samples)
    from deepline.report import write_report

    page = write_report(lm_run).read_text()
    assert "Generated samples" in page and "bits_per_char" in page


def test_evaluate_language_model(lm_run: Path) -> None:
    result = evaluate_run(lm_run, split="val", checkpoint="last")
    assert result["metrics"]["bits_per_char"] == pytest.approx(
        result["metrics"]["loss"] / 0.6931471805599453
    )


def test_export_parity_and_generation_backends_agree(lm_run: Path) -> None:
    exported = json.loads((lm_run / "export.json").read_text())["formats"]["onnx"]
    assert exported["ok"] and exported["max_abs_diff"] <= 1e-4
    bundle = lm_run / "bundle"
    assert (bundle / "tokenizer.json").is_file()
    onnx = "".join(Predictor(bundle, "onnx").stream("ROMEO:", 40, seed=3))
    torch_ = "".join(Predictor(bundle, "torch").stream("ROMEO:", 40, seed=3))
    assert onnx == torch_ and len(onnx) == 40  # same seed, same text, on either backend
    again = "".join(Predictor(bundle, "torch").stream("ROMEO:", 40, seed=3))
    assert again == torch_


def test_prompt_errors_and_cropping(lm_run: Path) -> None:
    generator = Predictor(lm_run / "bundle", "torch")
    with pytest.raises(InputError, match="€"):
        list(generator.stream("ROMEO costs 5€", 5))
    with pytest.warns(UserWarning, match="longer than the model's context of 32"):
        text = "".join(generator.stream("To be, or not to be, " * 5, 5))
    assert len(text) == 5


def test_tokenizer_file_must_match_bundle(lm_run: Path, tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(lm_run / "bundle", bundle)
    tokenizer = bundle / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"a"', '"A"', 1))
    with pytest.raises(DeeplineError, match="does not match this bundle"):
        Predictor(bundle, "torch")


def test_generate_cli_streams(lm_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli.test_cli import deepline

    code, out, err = deepline(
        ["generate", str(lm_run / "bundle"), "--prompt", "ROMEO:", "--tokens", "30", "--seed", "1"],
        capsys,
    )
    assert code == 0, err
    assert out.startswith("ROMEO:") and len(out.strip()) >= 30
