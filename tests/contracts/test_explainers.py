"""The contract of every registered explanation method, on its own example: it applies to the
example's model, gives one finite attribution per input element (per token for token ids), and
its sanity checks run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from deepline.config import load_config
from deepline.evaluate.loading import load_trained
from deepline.registry import EXPLAINERS
from deepline.training.experiment import run_training
from deepline.trust.explain import get_explainer
from deepline.trust.explanations import Source, sanity_checks
from tests.contracts.conftest import QUICK_TRAIN, example_data


@pytest.mark.parametrize("name", EXPLAINERS.names())
def test_explains_its_example(name: str, tmp_path: Path) -> None:
    raw = copy.deepcopy(EXPLAINERS.meta(name)["example"])
    raw.update(name=name, train=QUICK_TRAIN)
    config = load_config(raw)
    data_config, data = example_data(config, tmp_path / "data")
    config = config.model_copy(update={"data": data_config})
    run = load_trained(run_training(config, tmp_path / "runs", data=data).run_dir, data=data)
    x, y = run.data.test.x[:6], run.data.test.y[:6]
    explainer = get_explainer(name)
    explainer.check(run.model, run.task)
    attribution = explainer.attribute(run.model, run.task, x, y)
    expected = x.shape if x.is_floating_point() else x.shape[:2]
    assert attribution.values.shape == expected
    assert torch.isfinite(attribution.values).all()
    checks = sanity_checks(Source(run.model, run.task, x, y, tmp_path), [name], 6)[name]
    assert (
        -1 <= checks["randomisation"]["spearman"] <= 1 or checks["randomisation"]["examples"] == 0
    )
    assert checks["deletion"] is None or 0 <= checks["deletion"]["auc_random"] <= 1
    assert EXPLAINERS.get(name).__doc__ or __import__(EXPLAINERS.get(name).__module__).__doc__
