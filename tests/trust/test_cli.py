"""``deepline attack | calibrate | explain`` as a user runs them: tables and files on success,
one clear error for each bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepline.runs import read_json
from tests.cli.test_cli import deepline


def test_attack_prints_the_curve_and_writes_it(
    digits_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = deepline(["attack", str(digits_run), "--attack", "fgsm,pgd", "--eps",
                               "0.1,0.2", "--limit", "100", "--steps", "5"], capsys)  # fmt: skip
    assert code == 0, err
    assert "FGSM" in out and "PGD" in out and "accuracy under attack" in out
    result = read_json(digits_run / "robustness.json")
    assert [p["eps"] for p in result["curves"]["pgd"]] == [0.0, 0.1, 0.2]
    assert (digits_run / "plots" / "robustness.png").is_file()
    assert "Robustness" in (digits_run / "report.html").read_text()


def test_calibrate_prints_ece_before_and_after(
    digits_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = deepline(["calibrate", str(digits_run)], capsys)
    assert code == 0, err
    assert "ECE" in out and "before" in out and "after" in out
    assert read_json(digits_run / "calibration.json")["temperature"] > 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["attack", "{digits}", "--eps", "0.1,-0.1"], "--eps: epsilons must be >= 0, got -0.1"),
        (["attack", "{digits}", "--eps", "0.1,big"], "--eps takes numbers separated by commas"),
        (["attack", "{digits}", "--attack", "cw"], "unknown attack 'cw'. Allowed: fgsm, pgd"),
        (["attack", "{digits}", "--eps", "nan"], "--eps: epsilons must be finite numbers"),
        (["attack", "{digits}", "--eps", "inf"], "--eps: epsilons must be finite numbers"),
        (["attack", "{digits}", "--alpha", "-1"], "--alpha: the step size must be a number > 0"),
        (["attack", "{digits}", "--steps", "0"], "--steps must be at least 1, got 0"),
        (["explain", "{digits}", "{digit}", "--out", "{digit}"], "--out: cannot write"),
        (["attack", "{digits}", "--norm", "l3"], "unknown norm 'l3'. Allowed: linf, l2"),
        (["attack", "{romeo}"], "inputs of a language_modelling model are discrete"),
        (["explain", "{digits}", "--method", "shap"], "unknown explanation method 'shap'"),
        (["explain", "{digits}", "--method", "attention"], "attention explains attention models"),
        (["explain", "{romeo}", "{prompt}", "--method", "gradcam"],
         "gradcam explains convolutional networks"),
        (["explain", "{digits}", "{digit}", "--target", "11"], "--target: unknown class '11'"),
        (["calibrate", "{romeo}"], "the language_modelling task has no class probabilities"),
    ],
)  # fmt: skip
def test_bad_inputs_get_one_clear_error(
    args: list[str],
    message: str,
    digits_run: Path,
    language_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "prompt.txt").write_text("ROMEO:")
    (tmp_path / "digit.npy").write_bytes(b"")
    import numpy as np

    np.save(tmp_path / "digit.npy", np.zeros((8, 8), dtype=np.uint8))
    paths = {"digits": digits_run, "romeo": language_run, "prompt": tmp_path / "prompt.txt",
             "digit": tmp_path / "digit.npy"}  # fmt: skip
    code, out, err = deepline([a.format(**paths) for a in args], capsys)
    assert code == 2, out + err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err
