"""Evaluation: metrics checked against scikit-learn on the same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from deepline.config import load_config
from deepline.evaluate.evaluate import evaluate_run
from deepline.evaluate.loading import load_trained, predict_batches
from deepline.training.experiment import run_training
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(tiny_config(epochs=2))
    return run_training(cfg, tmp_path_factory.mktemp("runs")).run_dir


def test_metrics_match_scikit_learn(trained_run: Path) -> None:
    result = evaluate_run(trained_run, split="test", checkpoint="last")
    run = load_trained(trained_run, "last")
    probs = predict_batches(run.model, run.data.test.x).softmax(-1).numpy()
    y, pred = run.data.test.y.numpy(), probs.argmax(1)
    m = result["metrics"]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-6)
    assert m["precision_macro"] == pytest.approx(
        skm.precision_score(y, pred, average="macro", zero_division=0), abs=1e-6
    )
    assert m["recall_macro"] == pytest.approx(skm.recall_score(y, pred, average="macro"), abs=1e-6)
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-6)
    assert m["auroc_macro"] == pytest.approx(
        skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-4
    )
    assert m["loss"] == pytest.approx(skm.log_loss(y, probs, labels=range(10)), abs=1e-4)
    assert result["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    np.testing.assert_allclose(
        result["per_class"]["f1"], skm.f1_score(y, pred, average=None), atol=1e-6
    )
    assert result["n"] == len(y) == 359


def test_writes_eval_json_mistakes_and_plots(trained_run: Path) -> None:
    evaluate_run(trained_run)
    saved = json.loads((trained_run / "eval.json").read_text())
    assert saved["split"] == "test" and saved["classes"] == [str(i) for i in range(10)]
    with np.load(trained_run / "mistakes.npz", allow_pickle=False) as mistakes:
        images = mistakes["images"]
        assert images.ndim == 4 and images.min() >= 0 and images.max() <= 1
        assert (mistakes["true"] != mistakes["pred"]).all()
    for name in ("confusion_matrix.png", "per_class.png"):
        assert (trained_run / "plots" / name).read_bytes()[:4] == b"\x89PNG"


def test_val_split_and_best_checkpoint(trained_run: Path) -> None:
    result = evaluate_run(trained_run, split="val", checkpoint="best")
    assert result["split"] == "val" and result["n"] == 144
