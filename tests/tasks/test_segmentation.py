"""Segmentation: Dice and IoU as written by hand, masks mapped back to each image's own size,
served answers equal to offline ones in every protocol, drawn overlays, clear errors."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from deepline.data.meta import DataMeta
from deepline.deploy.predictor import Predictor
from deepline.serve.app import create_app
from deepline.serve.repository import add_bundle
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from deepline.tasks import build_task
from deepline.tasks.segmentation import Segmentation, SegmentationConfig

NAME = "polyps"


def task(classes: int = 2, size: int = 8) -> Segmentation:
    meta = DataMeta("m", "image", (3, size, size), [f"c{i}" for i in range(classes)], 255.0,
                    [0.0] * 3, [1.0] * 3, "f" * 64, {}, [])  # fmt: skip
    built = build_task(SegmentationConfig(), meta)
    assert isinstance(built, Segmentation)
    return built


def by_hand(predicted: np.ndarray, truth: np.ndarray, classes: int) -> tuple[float, float]:
    """Mean over foreground classes of Dice and IoU; a class absent from both scores 1."""
    dice, iou = [], []
    for k in range(1, classes):
        p, t = predicted == k, truth == k
        both, either = (p & t).sum(), (p | t).sum()
        dice.append(1.0 if p.sum() + t.sum() == 0 else 2 * both / (p.sum() + t.sum()))
        iou.append(1.0 if either == 0 else both / either)
    return float(np.mean(dice)), float(np.mean(iou))


@pytest.mark.parametrize("classes", [2, 3])
def test_dice_and_iou_agree_with_a_hand_computation(classes: int) -> None:
    rng = np.random.default_rng(classes)
    truth = rng.integers(0, classes, (6, 8, 8))
    truth[0] = 0  # nothing to find ...
    logits = rng.normal(size=(6, classes, 8, 8)).astype(np.float32)
    logits[0, 0] += 10  # ... and nothing found: a perfect image
    logits[1, 0] += 10  # something to find, nothing found: zero
    predicted = logits.argmax(1)
    evaluator = task(classes).evaluator()
    targets = torch.from_numpy(truth).to(torch.uint8)
    evaluator.update(torch.zeros(6), torch.from_numpy(logits), targets)
    scores, details = evaluator.compute(), evaluator.details()
    hand = [by_hand(p, t, classes) for p, t in zip(predicted, truth)]
    assert details["per_image"]["dice"] == pytest.approx([h[0] for h in hand])
    assert details["per_image"]["iou"] == pytest.approx([h[1] for h in hand])
    assert details["per_image"]["dice"][0] == 1.0 and details["per_image"]["dice"][1] == 0.0
    assert scores["dice"] == pytest.approx(np.mean([h[0] for h in hand]))
    fg_p, fg_t = predicted > 0, truth > 0
    both = ((predicted == truth) & fg_t).sum()
    assert scores["dice_overall"] == pytest.approx(2 * both / (fg_p.sum() + fg_t.sum()))
    assert scores["pixel_accuracy"] == pytest.approx((predicted == truth).mean())


def test_masks_are_mapped_back_to_each_images_size() -> None:
    seg = task(size=8)
    logits = np.zeros((2, 2, 8, 8), np.float32)
    logits[:, 1, 2:6, 4:8] = 5.0  # a block in the right half
    named = seg.named_outputs(logits)
    answers = seg.answers_at(named, None, [(37, 53), (8, 8)])
    assert answers[0]["size"] == [37, 53] and answers[1]["size"] == [8, 8]
    big = np.asarray(Image.open(io.BytesIO(base64.b64decode(answers[0]["mask_png"]))))
    assert big.shape == (37, 53) and big[:, :20].max() == 0 and big[18, 40] == 1
    assert answers[0]["shares"]["c1"] == pytest.approx(big.mean())
    small = np.asarray(Image.open(io.BytesIO(base64.b64decode(answers[1]["mask_png"]))))
    assert np.array_equal(small, named["mask"][1])


# ---------------------------------------------------------------------------- a served model


@pytest.fixture(scope="module")
def server(segmenter_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repository = tmp_path_factory.mktemp("segmentation-repo")
    add_bundle(segmenter_bundle, repository, NAME)
    with BackgroundServer(create_app(repository, ServeSettings(max_batch_size=4))) as running:
        yield running.url


def png(rows: int, cols: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    picture = np.random.default_rng(seed).integers(0, 255, (rows, cols, 3), dtype=np.uint8)
    Image.fromarray(picture).save(buffer, "PNG")
    return buffer.getvalue()


def test_served_answers_equal_offline_ones(segmenter_bundle: Path, server: str) -> None:
    local = Predictor(segmenter_bundle)
    images = [png(30, 34, 1), png(32, 32, 2), png(50, 21, 3)]
    want = local.predict(images)
    assert [a["size"] for a in want] == [[30, 34], [32, 32], [50, 21]]
    with httpx.Client(base_url=server, timeout=30) as client:
        inputs = [{"b64": base64.b64encode(i).decode()} for i in images]
        ours = client.post(f"/predict/{NAME}", json={"inputs": inputs})
        assert ours.status_code == 200, ours.text
        assert ours.json()["predictions"] == want
        tf = client.post(f"/v1/models/{NAME}:predict", json={"instances": inputs})
        assert tf.status_code == 200, tf.text
        named = local.named_outputs(local.run(local.prepare(images)))  # at the model's size
        for row, mask in zip(tf.json()["predictions"], named["mask"], strict=True):
            assert row["mask"] == mask.tolist()
        pixels = np.random.default_rng(4).integers(0, 255, (2, 3, 32, 32))
        v2 = {"inputs": [{"name": "input", "shape": list(pixels.shape), "datatype": "UINT8",
                          "data": pixels.reshape(-1).tolist()}]}  # fmt: skip
        kserve = client.post(f"/v2/models/{NAME}/infer", json=v2)
        assert kserve.status_code == 200, kserve.text
        outputs = {o["name"]: o for o in kserve.json()["outputs"]}
        assert outputs["mask"]["shape"] == [2, 32, 32] and outputs["mask"]["datatype"] == "UINT8"
        offline = local.named_outputs(local.run(local.codec.decode_tensor(pixels.astype(np.uint8))))
        assert outputs["mask"]["data"] == offline["mask"].reshape(-1).tolist()
        wrong = {"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "UINT8",
                             "data": [0] * 192}]}  # fmt: skip
        refused = client.post(f"/v2/models/{NAME}/infer", json=wrong)
        assert refused.status_code == 400 and "32" in refused.json()["error"]
        assert client.get(f"/v2/models/{NAME}/ready").status_code == 200  # still up


def test_predict_draws_masks_at_the_images_size(
    segmenter_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.serve.test_recommend import deepline

    picture = tmp_path / "scan.png"
    picture.write_bytes(png(41, 29, 5))
    args = ["predict", str(segmenter_bundle), str(picture), "--out", str(tmp_path / "drawn")]
    code, out = deepline(args, capsys)
    assert code == 0, out
    drawn = tmp_path / "drawn" / "scan.png"
    assert "background" in out and drawn.is_file()
    assert Image.open(drawn).size == (29, 41)


def test_the_report_draws_the_best_and_worst_images() -> None:
    seg = task(size=8)
    rng = np.random.default_rng(0)
    truth = torch.from_numpy(rng.integers(0, 2, (10, 8, 8))).to(torch.uint8)
    logits = torch.from_numpy(rng.normal(size=(10, 2, 8, 8)).astype(np.float32))
    logits[:3, 1] += 20 * (truth[:3].float() - 0.5)  # three perfect images
    evaluator = seg.evaluator(keep_mistakes=32)
    for start in (0, 5):  # two batches: the lists are kept across them
        sl = slice(start, start + 5)
        evaluator.update(torch.rand(5, 3, 8, 8), logits[sl], truth[sl])
    details = evaluator.details()
    dice = details["per_image"]["dice"]
    best = [e for e in details["examples"] if e["kind"] == "best"]
    worst = [e for e in details["examples"] if e["kind"] == "worst"]
    assert [e["dice"] for e in best] == sorted(dice, reverse=True)[:4]
    assert [e["dice"] for e in worst] == sorted(dice)[:4]
    assert all(dice[e["index"]] == e["dice"] for e in best + worst)
    assert set(seg.figures(details)) == {"dice_histogram", "examples"}
