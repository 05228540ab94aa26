"""A NaN injected into a batch: each non-finite policy does what it says."""

from __future__ import annotations

import math

import pytest
import torch

from deepline.config import load_config
from deepline.training.callbacks import NonFiniteError
from deepline.training.events import Callback
from deepline.training.experiment import run_training
from tests.conftest import tiny_config


class PoisonBatch(Callback):
    """Replaces the inputs of the batches at the given steps with NaN (once per step)."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = set(steps)

    def batch_start(self, trainer) -> None:  # type: ignore[no-untyped-def]
        if trainer.step in self.steps:
            self.steps.discard(trainer.step)
            x, y = trainer.batch
            trainer.batch = (torch.full_like(x, math.nan), y)


def config(policy: str, **non_finite):  # type: ignore[no-untyped-def]
    return load_config(
        tiny_config(
            epochs=2,
            non_finite={"policy": policy, **non_finite},
            checkpoint={"every_steps": 5, "keep_last": 5},
        )
    )


def all_finite(model: torch.nn.Module) -> bool:
    """Parameters and buffers (BatchNorm statistics) alike."""
    return all(torch.isfinite(t).all() for t in [*model.parameters(), *model.buffers()])


def test_stop_names_step_and_batch(tmp_path) -> None:
    where = r"non-finite loss .* at step 8 \(epoch 1, batch 8 of 21\)"
    with pytest.raises(NonFiniteError, match=where):
        run_training(config("stop"), tmp_path, extra_callbacks=[PoisonBatch({7})])


def test_skip_drops_the_update_and_counts(tmp_path) -> None:
    exp = run_training(config("skip"), tmp_path, extra_callbacks=[PoisonBatch({7, 12})])
    assert exp.trainer.logs["train/skipped_steps"] == 2
    assert exp.trainer.step == 42 and all_finite(exp.model)
    assert math.isfinite(exp.trainer.logs["val/loss"])
    assert math.isfinite(exp.trainer.logs["train/loss_epoch"])


def test_skip_stops_after_k_in_a_row(tmp_path) -> None:
    poison = PoisonBatch(set())
    poison.batch_start = lambda trainer: setattr(  # type: ignore[method-assign]
        trainer, "batch", (torch.full_like(trainer.batch[0], math.nan), trainer.batch[1])
    )
    with pytest.raises(NonFiniteError, match="3 updates skipped in a row"):
        run_training(config("skip", max_skips=3), tmp_path, extra_callbacks=[poison])


def test_rollback_reloads_and_lowers_lr(tmp_path) -> None:
    exp = run_training(
        config("rollback", lr_factor=0.5), tmp_path, extra_callbacks=[PoisonBatch({17})]
    )
    trainer = exp.trainer
    assert trainer.logs["train/rollbacks"] == 1
    assert trainer.step == 42 and all_finite(exp.model)
    assert trainer.scheduler.base_lrs[0] == pytest.approx(0.01 * 0.5)


def test_rollback_without_checkpoint_is_an_error(tmp_path) -> None:
    with pytest.raises(NonFiniteError, match="no checkpoint to roll back to"):
        run_training(config("rollback"), tmp_path, extra_callbacks=[PoisonBatch({2})])
