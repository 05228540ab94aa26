"""Attacks stay within their ball and the valid range, agree with an independent
implementation (IBM's Adversarial Robustness Toolbox), and robustness curves are honest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepline.attacks import AttackSpec, get_attack
from deepline.evaluate.loading import load_trained
from deepline.registry import ATTACKS
from deepline.trust.robustness import AttackPlan, attacked_metrics, masking_warnings


class PixelModel(nn.Module):
    """The run's model taking pixels in [0, 1] (as ART and papers give them)."""

    def __init__(self, model: nn.Module, space) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.model, self.space = model, space

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(self.space.from_unit(pixels))


@pytest.fixture(scope="module")
def trained(digits_run: Path):  # type: ignore[no-untyped-def]
    run = load_trained(digits_run)
    test = run.data.split("test")
    return run, test.x[:200], test.y[:200]


@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
@pytest.mark.parametrize("random_start", [False, True])
def test_attacks_stay_in_their_ball_and_the_pixel_range(
    trained, name: str, norm: str, eps: float, random_start: bool
) -> None:  # type: ignore[no-untyped-def]
    run, x, y = trained
    space = run.task.codec.unit_space()
    pixels = space.to_unit(x)
    model = PixelModel(run.model, space)
    spec = AttackSpec(eps, norm, steps=5, random_start=random_start)  # type: ignore[arg-type]
    adversarial = get_attack(name).perturb(model, run.task.loss, pixels, y, spec, 0.0, 1.0)
    delta = (adversarial - pixels).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
    with torch.no_grad():
        clean = run.task.loss(model(pixels), y)
        assert float(run.task.loss(model(adversarial), y)) > float(clean)
    assert torch.equal(get_attack(name).perturb(model, run.task.loss, pixels, y,
                       AttackSpec(0.0, norm), 0.0, 1.0), pixels)  # fmt: skip


def test_noise_fgsm_reaches_beyond_the_ball_by_its_noise_and_step(trained) -> None:  # type: ignore[no-untyped-def]
    """N-FGSM: the start is uniform in 2 eps and the step of eps is not projected, so the
    perturbation reaches past eps (up to 3 eps) but no further; pixels stay in range."""
    run, x, y = trained
    space = run.task.codec.unit_space()
    pixels, model = space.to_unit(x), PixelModel(run.model, space)
    spec = AttackSpec(0.1, alpha=0.1, random_start=True, noise=2.0, project=False)
    adversarial = get_attack("fgsm").perturb(model, run.task.loss, pixels, y, spec, 0.0, 1.0)
    size = (adversarial - pixels).abs().amax(1 if adversarial.dim() == 2 else (1, 2, 3))
    assert float(size.max()) > 0.2 and float(size.max()) <= 0.3 + 1e-5
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0


def test_the_wider_start_is_only_for_fast_fgsm() -> None:
    from pydantic import ValidationError

    from deepline.config import AdversarialConfig

    AdversarialConfig(attack="fgsm", eps=0.3, alpha=0.3, noise=2.0, project=False)
    with pytest.raises(ValidationError, match=r"train\.adversarial\.noise .* this attack is pgd"):
        AdversarialConfig(attack="pgd", eps=0.3, noise=2.0)
    with pytest.raises(ValidationError, match="random_start false"):
        AdversarialConfig(attack="fgsm", eps=0.3, project=False, random_start=False)


def test_an_epsilon_below_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="eps must be >= 0"):
        AttackSpec(-0.1)


@pytest.mark.parametrize(
    "attack,spec",
    [
        ("fgsm", AttackSpec(0.1)),
        ("pgd", AttackSpec(0.1, steps=10, alpha=0.025)),
        ("pgd", AttackSpec(1.0, "l2", steps=10, alpha=0.25)),
    ],
)
def test_accuracy_under_attack_agrees_with_the_adversarial_robustness_toolbox(
    trained, attack: str, spec: AttackSpec
) -> None:  # type: ignore[no-untyped-def]
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    run, x, y = trained
    ours = attacked_metrics(run.model, run.task, x, y, get_attack(attack), spec)["accuracy"]
    space = run.task.codec.unit_space()
    classifier = PyTorchClassifier(
        PixelModel(run.model, space), nn.CrossEntropyLoss(), tuple(x.shape[1:]), 10,
        clip_values=(0.0, 1.0),
    )  # fmt: skip
    norm = np.inf if spec.norm == "linf" else 2
    if attack == "fgsm":
        art = FastGradientMethod(classifier, norm=norm, eps=spec.eps)
    else:
        art = ProjectedGradientDescentPyTorch(
            classifier, norm=norm, eps=spec.eps, eps_step=spec.alpha, max_iter=spec.steps,
            num_random_init=0, verbose=False,
        )  # fmt: skip
    pixels = space.to_unit(x).numpy()
    adversarial = art.generate(pixels)
    theirs = float((classifier.predict(adversarial).argmax(1) == y.numpy()).mean())
    clean = float((classifier.predict(pixels).argmax(1) == y.numpy()).mean())
    assert theirs < clean - 0.05  # the attack does something
    assert abs(ours - theirs) <= 0.02, (ours, theirs)


def test_more_restarts_never_leave_more_examples_robust(trained) -> None:  # type: ignore[no-untyped-def]
    run, x, y = trained
    spec, attack = AttackSpec(0.15, steps=3, random_start=True), get_attack("pgd")
    found = []
    for restarts in (1, 3):
        torch.manual_seed(0)  # the first attempt is the same in both
        found.append(attacked_metrics(run.model, run.task, x, y, attack, spec, restarts))
    assert found[1]["accuracy"] <= found[0]["accuracy"]


def test_gradient_masking_is_flagged() -> None:
    def curve(values: list[float]) -> list[dict]:
        return [{"eps": e, "metrics": {"accuracy": v}} for e, v in zip([0, 0.1, 0.3], values)]

    honest = {"metric": "accuracy", "curves": {"fgsm": curve([0.99, 0.8, 0.15]),
                                               "pgd": curve([0.99, 0.7, 0.1])}}  # fmt: skip
    assert masking_warnings(honest) == []
    overfit = {"metric": "accuracy", "curves": {"fgsm": curve([0.98, 0.98, 0.98]),
                                                "pgd": curve([0.98, 0.96, 0.83])}}  # fmt: skip
    (warning,) = masking_warnings(overfit)  # fast FGSM's catastrophic overfitting, as measured
    assert "far above PGD's 0.8300" in warning
    masked = {"metric": "accuracy", "curves": {"fgsm": curve([0.99, 0.3, 0.6]),
                                               "pgd": curve([0.99, 0.5, 0.4])}}  # fmt: skip
    found = masking_warnings(masked)
    assert any("rises" in w for w in found) and any("one step beats many" in w for w in found)


def test_a_plan_names_bad_settings() -> None:
    from deepline.errors import ConfigError, DeeplineError

    with pytest.raises(ConfigError, match=r"--eps: epsilons must be >= 0, got -0.1"):
        AttackPlan(("pgd",), (0.1, -0.1))
    with pytest.raises(DeeplineError, match=r"unknown attack 'cw'\. Allowed: fgsm, pgd"):
        AttackPlan(("cw",), (0.1,))
