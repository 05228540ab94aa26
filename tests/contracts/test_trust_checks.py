"""The contract of every registered trust check, on its own example: it fits the example's
model, computes a JSON result that it leaves in the run folder and reads back, and draws a
report section that the run report and a model card both show."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from deepline.config import load_config
from deepline.evaluate.loading import load_trained
from deepline.federated import federate
from deepline.registry import TRUST_CHECKS
from deepline.report import write_report
from deepline.training.experiment import run_training
from deepline.trust.audit import render_card
from deepline.trust.checks import Subject, get_check
from tests.contracts.conftest import QUICK_TRAIN, example_data


@pytest.mark.parametrize("name", TRUST_CHECKS.names())
def test_checks_its_example(name: str, tmp_path: Path) -> None:
    raw = copy.deepcopy(TRUST_CHECKS.meta(name)["example"])
    raw.update(name=name, train={**raw.get("train", {}), **QUICK_TRAIN})
    config = load_config(raw)
    data_config, data = example_data(config, tmp_path / "data")
    config = config.model_copy(update={"data": data_config})
    if config.federated is not None:  # trained by Flower clients on its simulation engine
        run_dir = federate(config, tmp_path / "runs", data=data, cpus=1)
    else:
        run_dir = run_training(config, tmp_path / "runs", data=data).run_dir
    prepare = TRUST_CHECKS.meta(name).get("prepare")
    if prepare is not None:  # what the check reads is made by a command of its own
        prepare(run_dir)
    run = load_trained(run_dir, data=data)
    check = get_check(name)
    assert check.unfit(run) is None
    result = check.compute(Subject(run))
    assert check.read(run.run_dir) == json.loads(json.dumps(result, default=str))
    assert check.result_for(Subject(run)) == check.read(run.run_dir)  # reused, same weights
    section = check.section(check.read(run.run_dir) or {})
    assert section.title and (section.tables or section.figures)
    assert section.title in write_report(run.run_dir).read_text()
    card = {"name": name, "created_at": "-", "deepline_version": "-",
            "bound_to": {"weights_sha256": "0", "data_fingerprint": "0", "checkpoint": "-"},
            "card": {"intended_use": "", "limitations": "", "notes": ""},
            "model": {"name": "lenet", "task": run.task.name, "parameters": 1},
            "data": {"name": "digits", "fingerprint": "0", "sizes": {"test": 1}, "classes": []},
            "evaluation": {"split": "test", "metrics": {}}, "checks": {name: result},
            "skipped": {}}  # fmt: skip
    assert section.title in render_card(card, tmp_path / "card.html").read_text()
