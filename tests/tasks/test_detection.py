"""Detection: boxes stay on their objects through every augmentation, mAP agrees with an
independent implementation, decoding and NMS do what they say, served answers equal offline
ones in every protocol, and bad annotations name their file and line."""

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

from deepline.config import AugmentConfig, DataConfig
from deepline.data import load_data
from deepline.data.boxes import read_kitti, read_voc, targets
from deepline.data.loaders import BatchLoader
from deepline.data.transforms import BatchAugment
from deepline.deploy.predictor import Predictor
from deepline.errors import DataError
from deepline.serve.app import create_app
from deepline.serve.repository import add_bundle
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from deepline.tasks.detection import coco_scores, decode, heatmap_targets, nms

NAME = "cells"


def drawn(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with two filled rectangles each, and their box rows (padded to 3)."""
    rng = np.random.default_rng(seed)
    x = torch.zeros(n, 3, size, size)
    y = torch.full((n, 3, 5), -1.0)
    for i in range(n):
        for j in range(2):
            x1, y1 = rng.integers(0, size - 10, 2)
            w, h = rng.integers(3, 10, 2)
            x[i, j, y1 : y1 + h, x1 : x1 + w] = 1.0  # channel j holds box j
            y[i, j] = torch.tensor([x1, y1, x1 + w, y1 + h, j], dtype=torch.float32)
    return x, y


def box_of(channel: torch.Tensor) -> list[float] | None:
    rows, cols = torch.nonzero(channel > 0.5, as_tuple=True)
    if not len(rows):
        return None
    return [float(cols.min()), float(rows.min()), float(cols.max()) + 1, float(rows.max()) + 1]


@pytest.mark.parametrize(
    "augment",
    [AugmentConfig(shift=8), AugmentConfig(flip=True), AugmentConfig(vflip=True),
     AugmentConfig(shift=12, flip=True, vflip=True)],
)  # fmt: skip
def test_every_augmentation_keeps_boxes_on_their_objects(augment: AugmentConfig) -> None:
    """Draw a box, transform, check: each box is exactly the drawn pixels' extent after the
    same shift and flips; a box shifted out of the picture becomes padding."""
    x, y = drawn(48)
    loader = BatchLoader(x, y, 16, shuffle=True, augment=BatchAugment(augment), geometry="boxes")
    dropped = 0
    for batch_x, batch_y in loader:
        for image, rows in zip(batch_x, batch_y, strict=True):
            for j in range(2):
                seen = box_of(image[j])
                if seen is None:
                    assert rows[j, 4] == -1  # gone with its object
                    dropped += 1
                else:
                    assert rows[j, 4] == j and rows[j, :4].tolist() == seen
            assert rows[2, 4] == -1  # padding stays padding
    if augment.shift:
        assert dropped < 48  # most boxes survive a shift


def test_rotation_and_zoom_keep_boxes_around_their_objects() -> None:
    """Rotated and zoomed, each box encloses its object's moved corners: the drawn pixels'
    extent, to the pixel that interpolation blurs; padding stays padding."""
    x, y = drawn(48, size=48)
    x = torch.nn.functional.pad(x, (0, 24))  # wider than high: 72 x 48
    augment = BatchAugment(AugmentConfig(rotate=30, scale=0.2))
    moved_x, moved_y = augment(x, torch.Generator().manual_seed(0), y, "boxes")
    assert not torch.equal(moved_y, y)
    checked = 0
    for image, rows in zip(moved_x, moved_y, strict=True):
        assert rows[2, 4] == -1
        for j in range(2):
            seen = box_of(image[j])
            if seen is None or rows[j, 4] == -1:
                assert seen is None or (rows[j, :4] == 0).all()  # no box kept without pixels
                continue
            box = rows[j, :4].tolist()
            assert rows[j, 4] == j
            if min(box[:2]) > 0 and box[2] < 72 and box[3] < 48:  # not clipped
                assert np.allclose(box, seen, atol=1.5), (box, seen)
                checked += 1
            else:  # clipped: the moved corners outside the picture widen the box
                assert box[0] - 1.5 <= seen[0] and seen[2] <= box[2] + 1.5
                assert box[1] - 1.5 <= seen[1] and seen[3] <= box[3] + 1.5
    assert checked > 60  # most boxes stay wholly in the picture


def ap_by_hand(found: list[tuple[int, float, list[float]]], truth: dict[int, list[list[float]]],
               iou: float = 0.5) -> float:  # fmt: skip
    """Average precision of one class as COCO defines it, written from its description:
    detections by score, greedy matching at IoU >= ``iou``, precision made monotone, then
    read at 101 recall points."""

    def overlap(a: list[float], b: list[float]) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union

    total = sum(len(v) for v in truth.values())
    used = {image: [False] * len(v) for image, v in truth.items()}
    hits = []
    for image, _, box in sorted(found, key=lambda f: -f[1]):
        best, which = iou, -1
        for k, t in enumerate(truth.get(image, [])):
            if not used[image][k] and overlap(box, t) >= best:
                best, which = overlap(box, t), k
        if which >= 0:
            used[image][which] = True
        hits.append(which >= 0)
    tp = np.cumsum(hits)
    recall = tp / total
    precision = tp / np.arange(1, len(hits) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    points = [precision[np.searchsorted(recall, r, side="left")] if r <= recall[-1] else 0.0
              for r in np.linspace(0, 1, 101)]  # fmt: skip
    return float(np.mean(points))


def test_map_agrees_with_an_independent_implementation() -> None:
    rng = np.random.default_rng(3)
    truths, detections = [], []
    for _ in range(6):
        boxes = []
        for _ in range(rng.integers(1, 5)):
            x1, y1 = rng.uniform(0, 80, 2)
            boxes.append(
                [x1, y1, x1 + rng.uniform(8, 30), y1 + rng.uniform(8, 30), rng.integers(0, 2)]
            )
        truth = np.asarray(boxes, np.float32)
        noisy = truth[:, :4] + rng.normal(0, 3, truth[:, :4].shape)
        extra = rng.uniform(0, 90, (2, 4)).cumsum(1)[:, [0, 1, 2, 3]]
        found_boxes = np.concatenate([noisy, np.sort(extra.reshape(2, 2, 2), 1).reshape(2, 4)])
        classes = np.concatenate([truth[:, 4], rng.integers(0, 2, 2)]).astype(np.int64)
        scores = rng.uniform(0.1, 1.0, len(found_boxes))
        truths.append(truth)
        detections.append({"boxes": found_boxes.astype(np.float32), "scores": scores,
                           "classes": classes})  # fmt: skip
    coco = coco_scores(detections, truths, ["a", "b"])
    for c, name in enumerate(("a", "b")):
        found = [(i, float(s), b.tolist()) for i, d in enumerate(detections)
                 for b, s, k in zip(d["boxes"], d["scores"], d["classes"]) if k == c]  # fmt: skip
        truth = {i: [t[:4].tolist() for t in tr if t[4] == c] for i, tr in enumerate(truths)}
        assert coco["per_class"][name]["ap_50"] == pytest.approx(ap_by_hand(found, truth), abs=1e-6)
    assert coco["metrics"]["map_50"] == pytest.approx(
        np.mean([coco["per_class"][n]["ap_50"] for n in ("a", "b")]), abs=1e-6
    )


def test_targets_decode_back_to_their_boxes() -> None:
    """A heatmap and regression written from the targets decode to the same boxes."""
    boxes = torch.tensor([[[8.0, 12.0, 28.0, 30.0, 0], [40.0, 4.0, 60.0, 20.0, 1],
                           [0, 0, 0, 0, -1]]])  # fmt: skip
    truth = heatmap_targets(boxes, 2, (16, 16), 4.0)
    raw = torch.full((1, 6, 16, 16), 0.0)
    raw[:, :2] = torch.logit(truth["heatmap"].clamp(1e-4, 1 - 1e-4))
    for (b, r, c), off, size in zip(truth["objects"], truth["offsets"], truth["sizes"]):
        raw[b, 2:4, r, c], raw[b, 4:, r, c] = off, size
    found = decode(raw, 2, 4.0, 10, 0.6, 0.5)[0]
    order = found["classes"].argsort()
    assert torch.allclose(found["boxes"][order], boxes[0, :2, :4], atol=1e-4)


def test_decoding_keeps_peaks_only() -> None:
    raw = torch.randn((1, 5, 8, 8), generator=torch.Generator().manual_seed(0))
    raw[0, 0, 2, 3] = 9.0  # one strong peak of class 0
    found = decode(raw, 1, 4.0, 100, 1.0, 0.0)[0]  # threshold 0, no NMS, room for 100
    assert 1 < len(found["scores"]) < 64 and (found["scores"] > 0).all()  # local peaks only
    heat = torch.sigmoid(raw[0, 0])
    assert found["scores"][0] == heat.max() and found["classes"][0] == 0


def test_gradcam_explains_the_detectors_heatmap(detector_bundle: Path) -> None:
    from deepline.evaluate.loading import load_trained
    from deepline.trust.explain import get_explainer

    run = load_trained(detector_bundle.parent, "last")
    x = run.data.test.x[:2]
    target, _ = run.task.explained_class(run.model(x))
    cam = get_explainer("gradcam").attribute(run.model, run.task, x, target).values
    assert cam.shape == x.shape and float(cam.abs().sum()) > 0


def test_nms_keeps_the_best_of_overlapping_boxes_of_a_class() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [30, 30, 40, 40.0]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.3])
    classes = torch.tensor([0, 0, 1, 0])
    assert nms(boxes, scores, classes, 0.5).tolist() == [1, 2, 3]
    assert nms(boxes, scores, classes, 1.0).tolist() == [1, 0, 2, 3]


def test_ignored_regions_do_not_count_as_background() -> None:
    boxes = torch.tensor([[[0.0, 0.0, 16.0, 16.0, -2], [20, 20, 30, 30, 0]]])
    truth = heatmap_targets(boxes, 1, (8, 8), 4.0)
    assert truth["weight"][0, 0, :4, :4].eq(0).all() and truth["weight"][0, 0, 5:, 5:].eq(1).all()
    assert truth["objects"].tolist() == [[0, 6, 6]]


# ---------------------------------------------------------------------------- annotations


def voc(path: Path, body: str, width: int = 40, height: int = 30) -> Path:
    path.write_text(f"<annotation>\n<size><width>{width}</width><height>{height}</height>"
                    f"</size>\n{body}\n</annotation>\n", encoding="utf-8")  # fmt: skip
    return path


def test_bad_annotation_files_name_the_file_and_line(tmp_path: Path) -> None:
    obj = ("<object><name>cell</name><bndbox><xmin>{}</xmin><ymin>2</ymin><xmax>{}</xmax>"
           "<ymax>9</ymax></bndbox></object>")  # fmt: skip
    broken = voc(tmp_path / "a.xml", obj.format(1, 5) + "\n<object><name>x</name>")
    with pytest.raises(DataError, match=r"a\.xml, line \d+: not valid XML"):
        read_voc(broken)
    outside = read_voc(voc(tmp_path / "b.xml", obj.format(1, 5) + "\n" + obj.format(20, 60)))
    with pytest.raises(DataError, match=r"b\.xml, line 4: the box \(20, 2, 60, 9\) lies outside"):
        outside.check(40, 30)
    not_number = voc(tmp_path / "c.xml", obj.format("one", 5))
    with pytest.raises(DataError, match=r"c\.xml, line 3: a <bndbox> value is not a number"):
        read_voc(not_number)
    doctype = tmp_path / "d.xml"
    doctype.write_text('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY e "RBC">]>\n<annotation>'
                       "<object><name>&e;</name></object></annotation>")  # fmt: skip
    with pytest.raises(DataError, match=r"d\.xml, line 2: a <!DOCTYPE> is not allowed"):
        read_voc(doctype)
    inverted = read_voc(voc(tmp_path / "e.xml", obj.format(30, 5)))
    with pytest.raises(DataError, match=r"e\.xml, line 3: the box .* ends before it starts"):
        targets([inverted], ["cell"], [(1.0, 1.0)])
    kitti = tmp_path / "000001.txt"
    kitti.write_text("Car 0 0 0 1 2 3 4 1 1 1 1 1 1 0\nCar 0 0 0 1 2 3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"000001\.txt, line 2: a KITTI label has 15 fields"):
        read_kitti(kitti)


def voc_folder(root: Path, names: list[str]) -> Path:
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    obj = ("<object><name>{}</name><bndbox><xmin>4</xmin><ymin>4</ymin><xmax>12</xmax>"
           "<ymax>10</ymax></bndbox></object>")  # fmt: skip
    for i, name in enumerate(names):
        Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        voc(root / "Annotations" / f"{i}.xml", obj.format(name))
    (root / "ImageSets/Main/train.txt").write_text("\n".join(map(str, range(len(names)))))
    return root


def test_an_unknown_class_names_its_file_and_line(tmp_path: Path) -> None:
    from deepline.data.datasets.detection import voc_split

    root = voc_folder(tmp_path / "mine", ["cell", "cell", "virus"])
    files = {str(p.relative_to(tmp_path)): p for p in root.rglob("*") if p.is_file()}
    with pytest.raises(DataError, match=r"2\.xml, line 3: unknown class 'virus'; the classes"):
        voc_split(Path("mine"), files, "train", (32, 32), ["cell"])
    data = load_data(DataConfig(name="voc", path=str(root), image_size=(32, 32),
                                val_fraction=0.34, test_fraction=0.0))  # fmt: skip
    assert data.meta.classes == ["cell", "virus"]


# ---------------------------------------------------------------------------- a served model


@pytest.fixture(scope="module")
def server(detector_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repository = tmp_path_factory.mktemp("detection-repo")
    add_bundle(detector_bundle, repository, NAME)
    with BackgroundServer(create_app(repository, ServeSettings(max_batch_size=4))) as running:
        yield running.url


def jpeg(rows: int, cols: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    picture = np.random.default_rng(seed).integers(0, 255, (rows, cols, 3), dtype=np.uint8)
    picture[rows // 4 : rows // 2, cols // 4 : cols // 2] = 240
    Image.fromarray(picture).save(buffer, "JPEG")
    return buffer.getvalue()


def test_served_answers_equal_offline_ones(detector_bundle: Path, server: str) -> None:
    local = Predictor(detector_bundle)
    images = [jpeg(32, 40, 1), jpeg(64, 64, 2)]
    want = local.predict(images)
    assert [a["size"] for a in want] == [[32, 40], [64, 64]]
    named = local.named_outputs(local.run(local.prepare(images)))
    model_size = local.task.answers(named)
    for scaled, small in zip(want, model_size, strict=True):  # boxes in each image's pixels
        sy, sx = scaled["size"][0] / 32, scaled["size"][1] / 32
        for a, b in zip(scaled["detections"], small["detections"], strict=True):
            scale = [sx, sy, sx, sy]
            assert a["box"] == pytest.approx([v * f for v, f in zip(b["box"], scale)], abs=0.02)
    with httpx.Client(base_url=server, timeout=30) as client:
        inputs = [{"b64": base64.b64encode(i).decode()} for i in images]
        ours = client.post(f"/predict/{NAME}", json={"inputs": inputs})
        assert ours.status_code == 200, ours.text
        assert ours.json()["predictions"] == want
        tf = client.post(f"/v1/models/{NAME}:predict", json={"instances": inputs})
        assert tf.status_code == 200, tf.text
        for row, n, boxes in zip(tf.json()["predictions"], named["num_detections"], named["boxes"]):
            assert row["num_detections"] == n and np.allclose(row["boxes"], boxes, atol=1e-5)
        pixels = np.random.default_rng(4).integers(0, 255, (2, 3, 32, 32))
        v2 = {"inputs": [{"name": "input", "shape": list(pixels.shape), "datatype": "UINT8",
                          "data": pixels.reshape(-1).tolist()}]}  # fmt: skip
        kserve = client.post(f"/v2/models/{NAME}/infer", json=v2)
        assert kserve.status_code == 200, kserve.text
        outputs = {o["name"]: o for o in kserve.json()["outputs"]}
        assert outputs["boxes"]["shape"] == [2, 10, 4] and outputs["num_detections"]["shape"] == [2]
        offline = local.named_outputs(local.run(local.codec.decode_tensor(pixels.astype(np.uint8))))
        assert outputs["num_detections"]["data"] == offline["num_detections"].tolist()
        assert outputs["labels"]["datatype"] == "BYTES"
        bad = client.post(f"/predict/{NAME}", json={"inputs": [{"b64": "bm90IGFuIGltYWdl"}]})
        assert bad.status_code == 400 and "image" in bad.json()["error"]
        assert client.get(f"/v2/models/{NAME}/ready").status_code == 200  # still up


def test_image_f1_matches_each_true_box_once() -> None:
    from deepline.tasks.detection import image_f1

    truth = torch.tensor([[0, 0, 10, 10, 0], [20, 20, 30, 30, 1], [60, 60, 90, 90, -2.0]])
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30.0]])
    found = {"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7]),
             "classes": torch.tensor([0, 0, 0])}  # fmt: skip
    assert image_f1(found, truth) == pytest.approx(2 * 1 / (3 + 2))  # one hit; wrong class
    inside = {"boxes": torch.tensor([[62, 62, 68, 68.0]]), "scores": torch.tensor([0.9]),
              "classes": torch.tensor([1])}  # fmt: skip
    assert image_f1(inside, truth[2:]) == 1.0  # in an ignored region: neither hit nor miss
    nothing = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "classes": torch.zeros(0)}
    assert image_f1(nothing, truth[2:]) == 1.0 and image_f1(nothing, truth) == 0.0
