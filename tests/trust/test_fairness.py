"""Fairness numbers against a hand computation, and ``deepline fairness`` as a user runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepline.trust.fairness import disparities, fairlearn_disparities, group_report
from tests.cli.test_cli import deepline

# eight people in two groups: a gets 3 of 4 positive decisions, b 1 of 4
Y_TRUE = np.array([1, 1, 0, 0, 1, 0, 0, 0])
Y_PRED = np.array([1, 1, 1, 0, 1, 0, 0, 0])
GROUPS = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])


def test_group_metrics_and_gaps_match_a_hand_computation() -> None:
    report = group_report(Y_TRUE, Y_PRED, GROUPS, bootstrap=20)
    a, b = report["by_group"]["a"], report["by_group"]["b"]
    assert a["selection_rate"] == 0.75 and b["selection_rate"] == 0.25
    assert a["true_positive_rate"] == 1.0 and b["true_positive_rate"] == 1.0
    assert a["false_positive_rate"] == 0.5 and b["false_positive_rate"] == 0.0
    assert a["accuracy"] == 0.75 and b["accuracy"] == 1.0 and a["count"] == 4
    gaps = {k: v["value"] for k, v in report["disparities"].items()}
    assert gaps["demographic_parity_difference"] == pytest.approx(0.5)  # 0.75 - 0.25
    assert gaps["demographic_parity_ratio"] == pytest.approx(1 / 3)  # 0.25 / 0.75
    assert gaps["equalized_odds_difference"] == pytest.approx(0.5)  # FPR 0.5 vs 0
    assert gaps["equalized_odds_ratio"] == pytest.approx(0.0)  # FPR 0 / 0.5
    assert report["disparities"]["demographic_parity_difference"]["low"] <= 0.5


def test_the_bootstrap_definitions_are_fairlearns() -> None:
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    groups = rng.choice(["x", "y", "z"], 300)
    ours, theirs = (
        disparities(y_true, y_pred, groups),
        fairlearn_disparities(y_true, y_pred, groups),
    )
    assert ours == pytest.approx(theirs)


@pytest.mark.parametrize(
    "args,message",
    [
        (["fairness", "{digits}"], "fairness needs sensitive columns: declare them"),
        (["fairness", "{digits}", "--split", "train"], "--split must be val or test"),
    ],
)
def test_bad_fairness_requests_get_one_clear_error(
    args: list[str], message: str, digits_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = deepline([a.format(digits=digits_run) for a in args], capsys)
    assert code == 2, out + err
    assert message in " ".join(err.split()), err


def test_thresholds_equalise_selection_rates_and_decide_each_input_the_same_way() -> None:
    from deepline.tasks.thresholds import apply_thresholds, input_seeds
    from deepline.trust.mitigation import fit_thresholds

    rng = np.random.default_rng(0)
    groups = rng.choice(["a", "b"], 2000)
    scores = rng.random(2000) ** np.where(groups == "a", 0.5, 2.0)  # a is selected far more
    y = (scores + rng.normal(0, 0.15, 2000) > 0.5).astype(int)
    rule = fit_thresholds(scores, y, groups, "demographic_parity")
    inputs = rng.normal(size=(2000, 3)).astype(np.float32)
    after = apply_thresholds(rule, scores, groups, input_seeds(inputs))
    before = disparities(y, (scores > 0.5).astype(int), groups)["demographic_parity_difference"]
    assert disparities(y, after, groups)["demographic_parity_difference"] < before / 5
    alone = apply_thresholds(rule, scores[7:8], groups[7:8], input_seeds(inputs[7:8]))
    assert alone[0] == after[7]  # a served input gets the decision it got offline
    with pytest.raises(Exception, match="none for 'c'"):
        apply_thresholds(rule, scores[:1], np.array(["c"]), input_seeds(inputs[:1]))


def test_fairness_with_mitigation_from_the_command_line(
    people_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table_run = people_run
    code, out, err = deepline(["fairness", str(table_run), "--mitigate", "demographic_parity",
                               "--bootstrap", "20"], capsys)  # fmt: skip
    assert code == 0, err
    assert "decisions by group" in out and "after thresholds for demographic_parity" in out
    assert "Fairness" in (table_run / "report.html").read_text()
    code, out, err = deepline(["fairness", str(table_run), "--sensitive", "age"], capsys)
    assert code == 2 and "'age' is not a sensitive column of this run" in " ".join(err.split())
    code, out, err = deepline(["fairness", str(table_run), "--mitigate", "parity"], capsys)
    assert code == 2 and "unknown 'parity'" in " ".join(err.split())


def test_in_training_mitigation_retrains_with_example_weights(
    people_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    code, out, err = deepline(["fairness", str(people_run), "--mitigate", "demographic_parity",
                               "--method", "thresholds,reductions", "--epochs", "2",
                               "--max-iter", "5", "--bootstrap", "20"], capsys)  # fmt: skip
    assert code == 0, err
    assert "after reductions for demographic_parity" in out
    result = json.loads((people_run / "fairness.json").read_text())
    before = result["columns"]["group"]["disparities"]["demographic_parity_difference"]["value"]
    reductions = result["mitigations"][1]
    assert reductions["method"] == "reductions" and reductions["models_trained"] >= 2
    after = reductions["report"]["disparities"]["demographic_parity_difference"]["value"]
    assert after < before / 2
    assert "after reductions (demographic_parity)" in (people_run / "report.html").read_text()
    code, out, err = deepline(["fairness", str(people_run), "--mitigate", "demographic_parity",
                               "--method", "magic"], capsys)  # fmt: skip
    assert code == 2 and "--method: unknown 'magic'" in " ".join(err.split())


def test_the_trainer_as_an_estimator_follows_its_sample_weights(people_run: Path) -> None:
    """Half the rows say 1 and half say 0 for the same inputs: the weighted half wins."""
    from deepline.evaluate.loading import load_trained
    from deepline.trust.reductions import trainer_classifier

    run = load_trained(people_run)
    x = np.concatenate([run.data.train.x.numpy()] * 2)
    y = np.concatenate([np.ones(len(run.data.train.y)), np.zeros(len(run.data.train.y))])
    for favoured in (0, 1):
        weights = np.where(y == favoured, 1.0, 0.0)
        learner = trainer_classifier(run.config, run.data.meta, epochs=10)
        predicted = learner.fit(x, y.astype(int), sample_weight=weights).predict(x)
        assert (predicted == favoured).mean() > 0.95


def test_weighted_batches_draw_examples_in_proportion_to_their_weights() -> None:
    import torch

    from deepline.data.loaders import WeightedLoader

    weights = torch.tensor([0.0, 1.0, 3.0, 0.0])
    loader = WeightedLoader(torch.arange(4.0)[:, None], torch.arange(4), weights, 2000, seed=1)
    drawn = next(iter(loader))[1]
    assert set(drawn.tolist()) == {1, 2}
    assert (drawn == 2).float().mean().item() == pytest.approx(0.75, abs=0.04)
    with pytest.raises(ValueError, match="non-negative"):
        WeightedLoader(torch.zeros(2, 1), torch.zeros(2), torch.tensor([1.0, -1.0]), 2)
