"""Adversarial training from the config: it makes a model more robust than standard training,
ramps epsilon, resumes exactly, combines with other training settings, and refuses inputs that
cannot be perturbed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from deepline.attacks import AttackSpec, get_attack
from deepline.config import load_config
from deepline.errors import ConfigError
from deepline.evaluate.loading import load_trained
from deepline.training.checkpoint import list_checkpoints
from deepline.training.experiment import run_training
from deepline.trust.robustness import attacked_metrics
from tests.train.test_checkpoint import assert_same_weights, final_weights
from tests.trust.conftest import digits_config, romeo_config

ADVERSARIAL = {"attack": "pgd", "eps": 0.1, "steps": 3, "random_start": True}


def robust_accuracy(run_dir: Path) -> float:
    run = load_trained(run_dir)
    test = run.data.split("test")
    torch.manual_seed(0)
    spec = AttackSpec(0.1, steps=10, random_start=True)
    return attacked_metrics(run.model, run.task, test.x, test.y, get_attack("pgd"), spec)[
        "accuracy"
    ]


def test_adversarial_training_makes_a_model_more_robust(digits_run: Path, tmp_path: Path) -> None:
    raw = digits_config(adversarial=ADVERSARIAL)
    experiment = run_training(load_config(raw), tmp_path)
    assert experiment.trainer.logs["train/adversarial_eps"] == pytest.approx(0.1)
    standard, robust = robust_accuracy(digits_run), robust_accuracy(experiment.run_dir)
    assert robust > standard + 0.1, (standard, robust)


def test_robust_accuracy_is_validated_and_can_pick_the_checkpoint(tmp_path: Path) -> None:
    """val/robust_accuracy after every epoch: PGD at eps on the first validation examples,
    never above clean accuracy; the checkpoint monitor can keep the most robust epoch."""
    adversarial = {**ADVERSARIAL, "validate_examples": 60, "validate_steps": 5}
    raw = digits_config(epochs=2, adversarial=adversarial)
    raw["train"]["checkpoint"] = {"monitor": "val/robust_accuracy", "mode": "max"}
    experiment = run_training(load_config(raw), tmp_path)
    records = [r for r in (experiment.run_dir / "metrics.jsonl").read_text().splitlines()
               if "val/robust_accuracy" in r]  # fmt: skip
    assert len(records) == 2
    logs = experiment.trainer.logs
    assert 0.0 <= logs["val/robust_accuracy"] <= 1.0
    states = [json.loads((c / "state.json").read_text())["monitor_value"]
              for c in list_checkpoints(experiment.run_dir / "checkpoints")]  # fmt: skip
    assert logs["val/robust_accuracy"] in states


def test_epsilon_ramps_up_over_the_first_epochs(tmp_path: Path) -> None:
    seen: list[float] = []
    from deepline.training.events import Callback

    class Watch(Callback):
        order = 50

        def batch_start(self, trainer) -> None:  # type: ignore[no-untyped-def]
            seen.append(trainer.logs["train/adversarial_eps"])

    raw = digits_config(epochs=2, adversarial={**ADVERSARIAL, "ramp_epochs": 1.5})
    run_training(load_config(raw), tmp_path, extra_callbacks=[Watch()])
    assert seen[0] < 0.01 and seen == sorted(seen) and seen[-1] == pytest.approx(0.1)
    assert 0 < seen[len(seen) // 2] < 0.1


def test_an_adversarially_trained_run_resumes_exactly(tmp_path: Path) -> None:
    raw = digits_config(
        epochs=2, adversarial=ADVERSARIAL, checkpoint={"every_steps": 7, "keep_last": 20}
    )
    full = run_training(load_config(raw), tmp_path / "full")
    part = run_training(load_config(raw), tmp_path / "part")
    checkpoints = list_checkpoints(part.run_dir / "checkpoints")
    for later in checkpoints[3:]:  # cut at step 21, inside the second epoch
        shutil.rmtree(later)
    run_training(None, run_dir=part.run_dir)
    assert_same_weights(final_weights(full.run_dir), final_weights(part.run_dir))


def test_it_combines_with_bf16_and_accumulation(tmp_path: Path) -> None:
    raw = digits_config(epochs=1, adversarial=ADVERSARIAL, precision="bf16", accumulate=2)
    experiment = run_training(load_config(raw), tmp_path)
    assert experiment.trainer.step == 10  # 20 batches, 2 per update
    assert torch.isfinite(torch.tensor(experiment.trainer.logs["train/loss_epoch"]))


def test_token_inputs_cannot_be_trained_adversarially(tmp_path: Path) -> None:
    raw = romeo_config(adversarial={"eps": 0.1})
    with pytest.raises(ConfigError, match=r"train.adversarial: the text inputs .* discrete"):
        run_training(load_config(raw), tmp_path)


def test_an_unknown_attack_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"train.adversarial.attack: .*unknown attack 'cw'"):
        load_config(digits_config(adversarial={"attack": "cw", "eps": 0.1}))
