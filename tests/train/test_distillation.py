"""Knowledge distillation: the loss is Hinton et al.'s, the teacher must answer the same
classes, and the method refuses what it cannot combine with."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from deepline.config import load_config
from deepline.deploy.export import export_run
from deepline.errors import ConfigError
from deepline.models.parts import output_layer
from deepline.training.callbacks.distillation import (
    Distillation,
    distillation_loss,
    load_teacher,
    similarity_loss,
)
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


def test_the_similarity_loss_matches_a_hand_computation() -> None:
    student = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])  # width 2
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])  # width 3

    def rows(features: list[list[float]]) -> list[list[float]]:
        gram = [[sum(a * b for a, b in zip(u, v)) for v in features] for u in features]
        return [[g / math.sqrt(sum(h * h for h in row)) for g in row] for row in gram]

    gs, gt = rows(student.tolist()), rows(teacher.tolist())
    expected = sum((a - b) ** 2 for ra, rb in zip(gs, gt) for a, b in zip(ra, rb)) / 9
    assert similarity_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    assert similarity_loss(teacher * 5, teacher).item() == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import tiny_config

    return run_training(load_config(tiny_config()), tmp_path_factory.mktemp("t")).run_dir


def test_features_and_a_cache_give_the_same_objective_as_the_live_teacher(
    tiny: dict[str, Any], teacher_run: Path, tmp_path: Path
) -> None:
    teacher, _ = load_teacher(teacher_run)
    distill = {"teacher": str(teacher_run), "temperature": 2.0, "alpha": 0.5, "features": 3.0}
    unaugmented = {"name": tiny["data"]["name"]}
    student = {**tiny, "data": unaugmented, "model": {"name": "mlp", "hidden": [24]},
               "train": {**tiny["train"], "distill": distill}}  # fmt: skip
    live = run_training(load_config(student), tmp_path / "live")
    student["train"] = {**student["train"], "distill": {**distill, "cache": True}}
    cached = run_training(load_config(student), tmp_path / "cached")
    distillation = next(c for c in cached.trainer.callbacks if type(c).__name__ == "Distillation")
    outputs, features = distillation.cached
    assert len(outputs) == len(features) == len(cached.data.train.x)  # one answer per example
    # the same seed, data and objective: the cache changes where the teacher's answers come from
    for a, b in zip(live.model.parameters(), cached.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not output_layer(live.model)._forward_pre_hooks  # the hooks went with training
    # by hand: soft and hard targets, plus 3 x the similarity of the output layers' inputs
    x, y = live.data.train.x[:32], live.data.train.y[:32]
    live.model.eval()
    again = Distillation(live.config.train.distill)  # type: ignore[arg-type]
    again.fit_start(live.trainer)  # hooks on again, to read the features by hand
    with torch.no_grad():
        out = live.model(x)
        hidden = live.model.net[:-1](x)  # the inputs of the two output layers
        reference = teacher(x)
        teacher_hidden = teacher.classifier[:-1](teacher.pool(teacher.features(x)))
    expected = 0.5 * distillation_loss(out, reference, 2.0) + 0.5 * live.task.loss(out, y)
    expected = expected + 3.0 * similarity_loss(hidden, teacher_hidden)
    assert live.trainer.objective(live.model, (x, y)).item() == pytest.approx(expected.item())
    again.fit_end(live.trainer)


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
    with pytest.raises(ConfigError, match=r"train.method cannot be combined with train.distill"):
        load_config(both)
    teacher = run_training(load_config(tiny), tmp_path / "teacher").run_dir
    student["train"]["distill"] = {"teacher": str(teacher), "cache": True}
    exp = build_experiment(load_config(student), tmp_path / "s")  # tiny augments its digits
    with pytest.raises(ConfigError, match=r"cache cannot be combined with data\.augment"):
        exp.trainer.fit()
    attacked = {**student, "train": {**student["train"], "adversarial": {"eps": 0.1}}}
    exp = build_experiment(load_config(attacked), tmp_path / "s")
    with pytest.raises(ConfigError, match=r"cache cannot be combined with train\.adversarial"):
        exp.trainer.fit()
    bundle = Path(export_run(teacher, formats=["onnx"])["bundle"])
    student["train"]["distill"] = {"teacher": str(bundle), "features": 1.0}
    exp = build_experiment(load_config(student), tmp_path / "s")
    with pytest.raises(ConfigError, match="features needs the teacher's features"):
        exp.trainer.fit()
    private = {**student, "train": {**student["train"], "privacy": {"noise_multiplier": 1.0}}}
    with pytest.raises(ConfigError, match=r"train.privacy cannot be combined with train.distill"):
        load_config(private)
