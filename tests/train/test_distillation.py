"""Knowledge distillation: the loss is Hinton et al.'s, the teacher must answer the same
classes, and the method refuses what it cannot combine with."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from deepline.config import load_config
from deepline.errors import ConfigError
from deepline.training.callbacks.distillation import distillation_loss, load_teacher
from deepline.training.experiment import build_experiment, run_training


def test_the_distillation_loss_matches_a_hand_computation() -> None:
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    t = 2.0
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        p = [math.exp(v / t) for v in t_row]
        p = [v / sum(p) for v in p]
        q = [math.exp(v / t) for v in s_row]
        q = [v / sum(q) for v in q]
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = total / 2 * t * t  # KL averaged over the batch, times T^2
    assert distillation_loss(student, teacher, t).item() == pytest.approx(expected, rel=1e-6)
    assert distillation_loss(teacher, teacher, t).item() == pytest.approx(0.0, abs=1e-6)


def test_a_student_learns_from_a_teacher_run(tiny: dict[str, Any], tmp_path: Path) -> None:
    teacher_dir = run_training(load_config(tiny), tmp_path / "teacher").run_dir
    teacher, classes = load_teacher(teacher_dir)
    assert len(classes) == 10 and not teacher.training
    distill = {"teacher": str(teacher_dir), "temperature": 3.0, "alpha": 0.7}
    student = {**tiny, "model": {"name": "mlp", "hidden": [16]},
               "train": {**tiny["train"], "distill": distill}}  # fmt: skip
    exp = run_training(load_config(student), tmp_path / "student")
    assert exp.trainer.logs["val/accuracy"] > 0.5
    # the objective is the distillation one: alpha * soft + (1 - alpha) * hard
    x, y = exp.data.train.x[:32], exp.data.train.y[:32]
    exp.model.eval()
    with torch.no_grad():
        out, ref = exp.model(x), teacher(x)
        expected = 0.7 * distillation_loss(out, ref, 3.0) + 0.3 * exp.task.loss(out, y)
        assert exp.trainer.objective(exp.model, (x, y)).item() == pytest.approx(expected.item())


def test_an_exported_bundle_teaches_through_onnx_runtime(
    tiny: dict[str, Any], tmp_path: Path
) -> None:
    from deepline.deploy.export import export_run

    teacher_dir = run_training(load_config(tiny), tmp_path / "teacher").run_dir
    bundle = Path(export_run(teacher_dir, formats=["onnx"])["bundle"])
    torch_teacher, classes = load_teacher(teacher_dir)
    onnx_teacher, bundle_classes = load_teacher(bundle)
    assert bundle_classes == classes and not isinstance(onnx_teacher, torch.nn.Module)
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(onnx_teacher(x), torch_teacher(x), atol=1e-4, rtol=1e-4)
    distill = {"teacher": str(bundle), "temperature": 2.0, "alpha": 0.5}
    student = {**tiny, "train": {**tiny["train"], "epochs": 1, "distill": distill}}
    exp = run_training(load_config(student), tmp_path / "student")
    assert exp.trainer.logs["val/accuracy"] > 0.2


def test_bad_teachers_and_pairs_are_refused(tiny: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    student = {**tiny, "train": {**tiny["train"], "distill": {"teacher": str(tmp_path)}}}
    exp = build_experiment(load_config(student), tmp_path / "s")
    with pytest.raises(ConfigError, match="is neither a run folder nor a bundle"):
        exp.trainer.fit()
    regression = run_training(load_config({
        "name": "other", "data": {"name": "diabetes"}, "model": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": 1, "tensorboard": False}}), tmp_path / "other").run_dir  # fmt: skip
    student["train"]["distill"]["teacher"] = str(regression)
    exp = build_experiment(load_config(student), tmp_path / "s")
    with pytest.raises(ConfigError, match="a teacher must answer the same classes"):
        exp.trainer.fit()
    both = {**student, "train": {**student["train"], "method": {"name": "fixmatch"}}}
    with pytest.raises(ConfigError, match=r"train.method .fixmatch. and train.distill both"):
        load_config(both)
    private = {**student, "train": {**student["train"], "privacy": {"noise_multiplier": 1.0}}}
    with pytest.raises(ConfigError, match=r"train.privacy cannot be combined with train.distill"):
        load_config(private)
