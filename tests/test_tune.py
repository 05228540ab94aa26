"""Hyper-parameter search: a real Optuna study on SQLite, shared by two worker processes."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from deepline.config import load_config
from deepline.errors import ConfigError, DeeplineError
from deepline.tune.space import load_space
from deepline.tune.study import TuneSettings, make_pruner, open_study, run_study
from tests.conftest import tiny_config

SPACE = {
    "metric": "val/accuracy",
    "direction": "maximize",
    "params": {
        "train.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
        "train.optimizer": {"type": "categorical", "choices": ["adamw", "sgd"]},
        "train.momentum": {
            "type": "float",
            "low": 0.8,
            "high": 0.95,
            "when": {"train.optimizer": "sgd"},
        },
    },
}


def write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.multiproc
def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    from deepline.tune.report import write_outputs

    base = load_config(tiny_config(epochs=2))
    space = load_space(write(tmp_path, "space.yaml", SPACE), base)
    settings = TuneSettings(
        trials=6,
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        study_name="t",
        workers=2,
        pruner="median",
    )
    study = run_study(settings, base, space, tmp_path / "trials")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) >= 6
    assert len({t.user_attrs["pid"] for t in finished}) == 2  # both workers ran trials
    for t in finished:
        assert (Path(t.user_attrs["run_dir"]) / "config.yaml").is_file()  # a normal run
    for t in study.trials:  # conditional parameter sampled only with its condition
        assert ("train.momentum" in t.params) == (t.params.get("train.optimizer") == "sgd")
    report = write_outputs(study, base, space, tmp_path)
    assert "Best trials" in report.read_text()
    best = load_config(tmp_path / "best_config.yaml")
    assert best.train.lr == pytest.approx(study.best_trial.params["train.lr"])


def test_unknown_parameter_path(tmp_path: Path) -> None:
    space = {**SPACE, "params": {"train.lrr": {"type": "float", "low": 0.1, "high": 1.0}}}
    with pytest.raises(ConfigError, match=r"parameter 'train\.lrr'.*Did you mean 'lr'"):
        load_space(write(tmp_path, "s.yaml", space), load_config(tiny_config()))


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ({"type": "float", "low": 0.5, "high": 0.5}, "empty range"),
        ({"type": "int", "low": 3, "high": 1}, "empty range"),
        ({"type": "categorical", "choices": []}, "non-empty 'choices'"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log range needs low > 0"),
    ],
)
def test_bad_ranges(tmp_path: Path, param: dict, message: str) -> None:
    space = {**SPACE, "params": {"train.lr": param}}
    with pytest.raises(ConfigError, match=message):
        load_space(write(tmp_path, "s.yaml", space), load_config(tiny_config()))


def test_unreachable_storage(tmp_path: Path) -> None:
    base = load_config(tiny_config())
    space = load_space(write(tmp_path, "s.yaml", SPACE), base)
    settings = TuneSettings(
        trials=1, storage="postgresql+psycopg2://nobody@127.0.0.1:1/none", study_name="x"
    )
    with pytest.raises(DeeplineError, match="cannot open the study storage"):
        open_study(settings, space, 1)
    settings.storage = f"sqlite:///{tmp_path}/missing-folder/study.db"
    with pytest.raises(DeeplineError, match="cannot open the study storage"):
        open_study(settings, space, 1)


def test_grid_sampler_needs_values(tmp_path: Path) -> None:
    from deepline.tune.study import make_sampler

    base = load_config(tiny_config())
    space = load_space(write(tmp_path, "s.yaml", SPACE), base)
    with pytest.raises(ConfigError, match="grid search needs 'choices'"):
        make_sampler("grid", space, 0)
    assert isinstance(make_sampler("random", space, 0), optuna.samplers.RandomSampler)


def test_cli_reports_space_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli.test_cli import deepline

    config = write(tmp_path, "c.yaml", tiny_config())
    space = write(
        tmp_path,
        "s.yaml",
        {**SPACE, "params": {"train.lr": {"type": "float", "low": 1, "high": 0}}},
    )
    code, _, err = deepline(
        ["tune", str(config), "--space", str(space), "--out", str(tmp_path / "out")], capsys
    )
    assert code == 2 and "Traceback" not in err
    assert "empty range" in " ".join(err.split())


@pytest.mark.parametrize(("epochs", "warmup"), [(3, 2), (10, 2), (200, 20)])
def test_the_median_pruner_waits_a_tenth_of_the_epochs(epochs: int, warmup: int) -> None:
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", epochs))
    for value in (0.5, 0.6, 0.7):  # three complete trials set the medians
        trial = study.ask()
        for epoch in range(1, epochs + 1):  # epochs are reported from 1, as training does
            trial.report(value, epoch)
        study.tell(trial, value)
    slow = study.ask()
    for epoch in range(1, warmup):
        slow.report(0.0, epoch)
        assert not slow.should_prune()  # far below every median, but still warming up
    slow.report(0.0, warmup)
    assert slow.should_prune()


def test_a_resumed_study_does_not_repeat_its_first_draws(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, "space.yaml", SPACE), load_config(tiny_config()))

    def settings(name: str) -> TuneSettings:
        return TuneSettings(trials=4, storage=f"sqlite:///{tmp_path / name}", study_name="t")

    def draw(study: optuna.Study) -> float:
        trial = study.ask()
        value = trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, value)
        return value

    first = open_study(settings("study.db"), space, 2)
    before = [draw(first) for _ in range(2)]
    resumed = open_study(settings("study.db"), space, 2)  # the command run again
    after = [draw(resumed) for _ in range(2)]
    assert not set(before) & set(after)
    fresh = open_study(settings("other.db"), space, 2)
    assert draw(fresh) == before[0]  # a new study starts as reproducibly as before
