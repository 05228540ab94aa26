"""``deepline audit``: a model card bound to the weights, verified against bundles, served."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from deepline.deploy.bundle import load_bundle
from deepline.deploy.export import export_run
from deepline.errors import DeeplineError
from deepline.runs import read_json
from deepline.serve.app import create_app
from deepline.serve.repository import add_bundle
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from deepline.tensor_files import load_tensors, save_tensors, tensors_sha256
from deepline.trust.audit import audit, verify_card
from tests.cli.test_cli import deepline

CARD = {"intended_use": "Reading handwritten digits in tests.", "limitations": "8x8 scans only."}


@pytest.fixture(scope="module")
def audited(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the digits run with a card: section, exported, then audited."""
    run = tmp_path_factory.mktemp("audited") / "run"
    shutil.copytree(digits_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "card": CARD}))
    for stale in ("calibration.json", "robustness.json", "explanations.json", "export.json"):
        (run / stale).unlink(missing_ok=True)  # written for the shared run's other tests
    export_run(run)
    audit(run)
    return run


def test_the_card_binds_every_section_to_the_weights(audited: Path) -> None:
    card = read_json(audited / "model_card.json")
    bundle = load_bundle(audited / "bundle")
    assert card["bound_to"]["weights_sha256"] == bundle.weights_sha256()
    assert card["bound_to"]["data_fingerprint"] == bundle.spec["data_fingerprint"]
    assert card["card"]["intended_use"] == CARD["intended_use"]
    assert set(card["checks"]) == {"calibration", "robustness", "explanations"}
    calibration = card["checks"]["calibration"]
    assert calibration["after"]["ece"] <= calibration["before"]["ece"]
    assert card["export"]["onnx"]["ok"] is True
    assert card["data"]["sizes"]["test"] > 0 and card["evaluation"]["metrics"]["accuracy"] > 0.5
    page = (audited / "model_card.html").read_text()
    for shown in ("8x8 scans only.", "Calibration", "Robustness", "Explanations",
                  "Export parity", card["bound_to"]["weights_sha256"]):  # fmt: skip
        assert shown in page
    assert read_json(audited / "bundle" / "model_card.json") == card  # the bundle's copy
    assert bundle.spec["card"] == {**CARD, "notes": ""}  # export carries the card section


def test_a_card_whose_weights_changed_fails_verify(
    audited: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card, bundle = audited / "model_card.json", tmp_path / "bundle"
    shutil.copytree(audited / "bundle", bundle)
    assert verify_card(card, bundle) == []
    code, out, _ = deepline(["audit", "--verify", str(card), str(bundle)], capsys)
    assert code == 0 and "describes" in out
    weights = load_tensors(bundle / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1e-6
    save_tensors(weights, bundle / "model.safetensors")
    problems = verify_card(card, bundle)
    assert len(problems) == 1 and problems[0].startswith("weights differ")
    code, out, _ = deepline(["audit", "--verify", str(card), str(bundle)], capsys)
    assert code == 1 and "weights differ" in out
    with pytest.raises(DeeplineError, match="holds other weights"):
        audit(bundle)  # a bundle is audited through its run: the weights must be the run's


def test_a_card_says_which_temperature_its_bundle_applies(audited: Path, tmp_path: Path) -> None:
    """The fixture exported before calibrating: its bundle applies no temperature. Exported
    again (calibration.json now exists), the bundle applies one, so the card no longer
    describes it until the run is audited again."""
    card = read_json(audited / "model_card.json")
    assert card["bundle_calibration"]["applied"] is False
    assert "the bundle applies a temperature" in (audited / "model_card.html").read_text()
    run = tmp_path / "run"
    shutil.copytree(audited, run)
    export_run(run)
    assert load_bundle(run / "bundle").spec["calibration"]["applied"] is True
    problems = verify_card(run / "model_card.json", run / "bundle")
    assert len(problems) == 1 and problems[0].startswith("calibration differs"), problems
    assert verify_card(audit(run).json_path, run / "bundle") == []


def test_weights_digest_ignores_order_and_sees_every_value() -> None:
    import torch

    a = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3, dtype=torch.bfloat16)}
    assert tensors_sha256(a) == tensors_sha256(dict(reversed(list(a.items()))))
    assert tensors_sha256(a) != tensors_sha256({**a, "w": a["w"].reshape(3, 2)})
    assert tensors_sha256(a) != tensors_sha256({**a, "b": a["b"].float()})


def test_a_served_model_shows_its_card(audited: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(audited / "bundle", plain)
    (plain / "model_card.json").unlink()
    repository = tmp_path / "models"
    add_bundle(audited / "bundle", repository, "carded")
    add_bundle(plain, repository, "plain")
    app = create_app(repository, ServeSettings())
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.get("/models/carded/card")
        assert answer.status_code == 200
        body = answer.json()
        assert body["describes_this_bundle"] is True and body["version"] == 1
        assert body["card"]["limitations"] == CARD["limitations"] and body["problems"] == []
        assert "run" not in body["bound_to"]  # no local paths leave the server
        assert all("attributions" not in m for r in body["checks"]["explanations"]["inputs"]
                   for m in r["methods"].values())  # fmt: skip
        missing = client.get("/models/plain/card")
        assert missing.status_code == 404 and "deepline audit" in missing.json()["error"]
        assert client.get("/models/nope/card").status_code == 404


@pytest.mark.parametrize(
    "args,message",
    [
        (["audit", "{digits}", "--checks", "fairnes"], "unknown check 'fairnes'"),
        (["audit", "{romeo}", "--checks", "robustness"], "robustness does not fit this model"),
        (["audit", "--verify", "{digits}"], "--verify takes two paths: CARD BUNDLE"),
        (["audit", "--verify", "{romeo}/config.yaml", "{digits}"], "is not a deepline model card"),
        (["audit", "--verify", "{romeo}/nothing.json", "{digits}"], "model card not found"),
        (["audit", "{digits}", "--checks", ",,"], "--checks names no check"),
    ],
)
def test_bad_audits_get_one_clear_error(
    args: list[str],
    message: str,
    digits_run: Path,
    language_run: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = {"digits": digits_run, "romeo": language_run}
    code, out, err = deepline([a.format(**paths) for a in args], capsys)
    assert code == 2, out + err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err
