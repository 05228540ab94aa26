"""Explanations of image, sequence and text models; the sanity checks behave as their papers
say on cases with a known answer; Grad-CAM and attention refuse models they do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deepline.errors import ConfigError
from deepline.evaluate.loading import load_trained
from deepline.trust.explain import Attribution, get_explainer
from deepline.trust.explain.attention import rollout
from deepline.trust.explain.sanity import deletion_check, rank_correlation
from deepline.trust.explanations import explain_files, explain_run


def test_a_run_is_explained_for_its_report(digits_run: Path) -> None:
    result = explain_run(digits_run, ["saliency", "integrated_gradients", "gradcam"], sanity=40)
    assert (digits_run / "explanations" / "grid.png").is_file()
    saved = json.loads((digits_run / "explanations.json").read_text())
    assert saved["methods"] == ["saliency", "integrated_gradients", "gradcam"]
    predicted = [r["predicted"] == r["target"] for r in saved["inputs"]]
    assert all(predicted)  # each explained for its own prediction
    for method, checks in result["sanity"].items():
        assert checks["deletion"]["auc_random"] > 0, method
    # |sum of attributions - score difference|, against logits of about 10
    assert abs(result["sanity"]["integrated_gradients"]["convergence_delta"]) < 0.5
    # saliency of a trained model does not look like that of a random one (Adebayo et al.)
    assert result["sanity"]["saliency"]["randomisation"]["passed"]


def test_image_files_get_overlays_and_attributions(digits_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    run = load_trained(digits_run)
    image = (run.task.show_inputs(run.data.test.x[:1])[0, 0].numpy() * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "digit.png")
    result = explain_files(
        digits_run, [tmp_path / "digit.png"], ["gradcam"], target="3", out=tmp_path / "out",
        sanity=0,
    )  # fmt: skip
    record = result["inputs"][0]
    assert record["target"] == "3" and Path(record["methods"]["gradcam"]["overlay"]).is_file()
    assert np.asarray(record["methods"]["gradcam"]["attributions"]).shape == (1, 8, 8)


def test_attention_rollout_explains_a_sequence_transformer(sequence_run: Path) -> None:
    run = load_trained(sequence_run)
    x = run.data.test.x[:5]
    values = get_explainer("attention").attribute(run.model, run.task, x, run.data.test.y[:5])
    assert values.values.shape == x.shape
    shares = values.values[:, :, 0].sum(1)  # of the [CLS] row; the rest stays on [CLS]
    assert (values.values > 0).all() and (shares > 0.2).all() and (shares <= 1 + 1e-6).all()


def test_rollout_of_identity_attention_keeps_each_position_to_itself() -> None:
    eye = torch.eye(4).expand(2, 3, 4, 4)  # (N, heads, T, T)
    assert torch.allclose(rollout([eye, eye]), torch.eye(4).expand(2, 4, 4))


def test_text_models_get_per_token_attributions(language_run: Path, tmp_path: Path) -> None:
    (tmp_path / "prompt.txt").write_text("ROMEO: what")
    result = explain_files(
        language_run, [tmp_path / "prompt.txt"], ["saliency", "integrated_gradients",
        "attention"], out=tmp_path / "out", sanity=8,
    )  # fmt: skip
    record = result["inputs"][0]
    for method, entry in record["methods"].items():
        pieces = "".join(p for p, _ in entry["tokens"])
        assert pieces == "ROMEO: what", method
        assert Path(entry["overlay"]).read_text().startswith("<p><span"), method


@pytest.mark.parametrize("run_fixture,method,message", [
    ("language_run", "gradcam", "gradcam explains convolutional networks"),
    ("digits_run", "attention", "attention explains attention models"),
])  # fmt: skip
def test_methods_refuse_models_they_do_not_fit(
    request: pytest.FixtureRequest, run_fixture: str, method: str, message: str
) -> None:
    run = load_trained(request.getfixturevalue(run_fixture))
    with pytest.raises(ConfigError, match=message):
        get_explainer(method).check(run.model, run.task)


def test_rank_correlation_is_one_for_the_same_map_and_nan_for_a_constant_one() -> None:
    a = torch.rand(3, 1, 8, 8)
    assert rank_correlation(a, a * 2) == pytest.approx([1.0, 1.0, 1.0])
    assert all(np.isnan(rank_correlation(a, torch.ones_like(a))))


def test_deletion_of_the_pixels_that_matter_hurts_more_than_random(digits_run: Path) -> None:
    run = load_trained(digits_run)
    x, y = run.data.test.x[:60], run.data.test.y[:60]
    truth = get_explainer("saliency").attribute(run.model, run.task, x, y)
    informed = deletion_check(run.model, run.task, x, y, truth)
    noise = Attribution(torch.rand_like(x))
    blind = deletion_check(run.model, run.task, x, y, noise)
    assert informed is not None and blind is not None
    assert informed["ratio"] < blind["ratio"]
    assert informed["curves"]["attributed"][0] == informed["curves"]["random"][0]  # nothing gone


def test_deletion_breaks_ties_at_random_not_by_position(digits_run: Path) -> None:
    """A map that ranks nothing (all equal) removes pixels in the random order exactly, not
    row by row from the top left."""
    run = load_trained(digits_run)
    x, y = run.data.test.x[:60], run.data.test.y[:60]
    flat = deletion_check(run.model, run.task, x, y, Attribution(torch.ones_like(x)))
    assert flat is not None
    assert flat["curves"]["attributed"] == flat["curves"]["random"] and flat["ratio"] == 1.0
