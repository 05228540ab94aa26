"""Quantization-aware training: weights and inputs rounded as ONNX Runtime's int8 rounds them,
gradients passed straight through, the ordinary model before and after, an exact resume, and
the int8 export of what it trained."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from deepline.config import load_config
from deepline.deploy.export import export_run
from deepline.errors import ConfigError
from deepline.training.callbacks.quantization import InputRange, rounded_weight
from deepline.training.checkpoint import list_checkpoints
from deepline.training.events import Callback
from deepline.training.experiment import run_training
from tests.train.test_checkpoint import assert_same_weights, final_weights


def test_weights_round_to_seven_bits_per_channel_with_a_straight_through_gradient() -> None:
    torch.manual_seed(0)
    weight = torch.randn(4, 3, 3, 3) * torch.tensor([0.01, 0.1, 1.0, 10.0]).view(4, 1, 1, 1)
    weight.requires_grad_(True)
    rounded = rounded_weight(weight)
    for channel in range(4):
        scale = weight[channel].detach().abs().max() / 63
        steps = rounded[channel].detach() / scale
        torch.testing.assert_close(steps, steps.round(), atol=1e-4, rtol=0)
        whole = steps.round()
        assert whole.min() >= -64 and whole.max() <= 63 and len(whole.unique()) > 20
    rounded.sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(weight))  # within range: identity


def test_inputs_round_to_eight_bits_over_their_tracked_range() -> None:
    tracked = InputRange(momentum=0.5)
    x = torch.linspace(-1.0, 3.0, 1000)
    assert torch.equal(tracked(x, training=True), x)  # observing only
    tracked.rounding = True
    y = tracked(x, training=False)
    assert len(y.unique()) <= 256 and (y - x).abs().max() <= 4.0 / 255 / 2 + 1e-6
    assert tracked(torch.zeros(3), training=False).eq(0).all()  # zero stays exact
    tracked(x * 3, training=True)  # the range moves halfway to the new one
    assert tracked.bounds is not None
    torch.testing.assert_close(tracked.bounds, torch.tensor([-2.0, 6.0]))


class Classes(Callback):
    """Records the classes of the model's layers while training and after."""

    def __init__(self) -> None:
        self.during: set[str] = set()

    def batch_start(self, trainer: Any) -> None:
        self.during |= {type(m).__name__ for m in trainer.model.modules()}


def test_layers_round_while_training_and_the_run_keeps_an_ordinary_model(
    tiny: dict[str, Any], tmp_path: Path
) -> None:
    raw = {**tiny, "train": {**tiny["train"], "epochs": 2, "qat": {"observe_steps": 5}}}
    raw["export"] = {"formats": ["onnx", "int8"]}
    seen = Classes()
    exp = run_training(load_config(raw), tmp_path / "runs", extra_callbacks=[seen])
    assert {"RoundedConv2d", "RoundedLinear"} <= seen.during
    assert not any(type(m).__name__.startswith("Rounded") for m in exp.model.modules())
    plain = exp.task.build_model(exp.config.model)
    assert list(plain.state_dict()) == list(exp.model.state_dict())
    report = export_run(exp.run_dir)
    assert report["formats"]["int8"]["ok"], report["formats"]["int8"]


def test_a_quantization_aware_run_resumes_exactly(tiny: dict[str, Any], tmp_path: Path) -> None:
    raw = {**tiny, "train": {**tiny["train"], "epochs": 3, "checkpoint": {"keep_last": 10},
                             "qat": {"observe_steps": 5}}}  # fmt: skip
    full = run_training(load_config(raw), tmp_path / "full")
    part = run_training(load_config(raw), tmp_path / "part")
    for later in list_checkpoints(part.run_dir / "checkpoints")[1:]:
        shutil.rmtree(later)
    resumed = run_training(None, run_dir=part.run_dir)
    assert_same_weights(final_weights(full.run_dir), final_weights(part.run_dir))
    assert resumed.trainer.logs["val/loss"] == full.trainer.logs["val/loss"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"precision": "bf16"}, "train.qat cannot be combined with train.precision bf16"),
        ({"privacy": {"noise_multiplier": 1.0}}, "train.privacy cannot be combined with train.qat"),
    ],
)
def test_what_qat_cannot_combine_with_is_named(
    tiny: dict[str, Any], setting: dict[str, Any], message: str
) -> None:
    raw = {**tiny, "train": {**tiny["train"], "qat": {}, **setting}}
    with pytest.raises(ConfigError, match=message):
        load_config(raw)


def test_unrounded_layers_are_left_alone() -> None:
    from deepline.config import QATConfig
    from deepline.training.callbacks.quantization import QuantizationAware

    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Embedding(4, 3))

    class FakeTrainer:
        def __init__(self) -> None:
            self.model = self.eval_model = model

    callback = QuantizationAware(QATConfig())
    callback.fit_start(FakeTrainer())  # type: ignore[arg-type]
    assert [type(m).__name__ for m in model] == ["RoundedLinear", "LayerNorm", "Embedding"]
    callback.fit_end(FakeTrainer())  # type: ignore[arg-type]
    assert [type(m).__name__ for m in model] == ["Linear", "LayerNorm", "Embedding"]
