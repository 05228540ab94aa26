"""Object detection: images (B, C, H, W) -> boxes with a class and a score.

Targets are padded box rows ``[x1, y1, x2, y2, class]`` in input pixels
(``deepline.data.boxes``). The model answers as CenterNet does: (B, K + 4, h, w) per-class
heatmap logits, then each cell's centre offset and box size in cells, at a stride the task
reads from the shapes. Training uses CenterNet's penalty-reduced focal loss on elliptical
Gaussian heatmaps (TTFNet's) and L1 on offsets and sizes; regions marked ignored count as
neither object nor background. Decoding takes the heatmap's 3x3 peaks, then class-wise NMS.
mAP@0.5 and mAP@[.5:.95] are COCO's (faster-coco-eval).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from deepline.config import ModelConfig, TaskConfig
from deepline.data.boxes import IGNORE, PADDING
from deepline.registry import TASKS
from deepline.tasks.base import Evaluator, Figure, OutputSpec, Task, image_model
from deepline.tasks.examples import SHOWN, ExtremeExamples, examples_figure

GAUSSIAN_ALPHA = 0.54  # TTFNet: sigma = alpha * side / 6


class DetectionConfig(TaskConfig):
    name: Literal["detection"] = "detection"
    max_detections: int = Field(
        100, ge=1, le=1000, description="boxes kept per image (COCO's mAP counts the best 100)"
    )
    score_threshold: float = Field(
        0.3, ge=0.0, lt=1.0, description="answers and num_detections count boxes scoring at "
        "least this (mAP uses every box)"
    )  # fmt: skip
    nms_iou: float = Field(0.6, gt=0.0, le=1.0, description="class-wise NMS overlap (1: none)")
    size_weight: float = Field(0.1, ge=0.0, description="weight of the L1 loss on box sizes")
    offset_weight: float = Field(1.0, ge=0.0, description="weight of the L1 loss on offsets")


@TASKS.register(
    "detection",
    config=DetectionConfig,
    example={"data": {"name": "voc"},
             "model": {"name": "centernet", "width": 4, "blocks": [1, 1, 1, 1], "head": 8}},
)  # fmt: skip
class Detection(Task):
    """Inputs (B, C, H, W) normalised floats; answers are boxes in the input's own pixels,
    each with a class of ``meta.classes`` and a score."""

    name = "detection"
    config: DetectionConfig
    target_geometry = "boxes"

    @property
    def num_classes(self) -> int:
        return len(self.meta.classes)

    def build_model(self, model_config: ModelConfig) -> nn.Module:
        return image_model(model_config, self.meta)

    def stride(self, outputs: torch.Tensor | np.ndarray) -> float:
        """Input pixels per output cell."""
        return float(self.meta.input_shape[1] / outputs.shape[-2])

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs, targets = outputs.float(), targets.float()
        k, stride = self.num_classes, self.stride(outputs)
        heat, regression = outputs[:, :k], outputs[:, k:]
        truth = heatmap_targets(targets, k, heat.shape[-2:], stride)
        focal = focal_loss(heat, truth["heatmap"], truth["weight"])
        objects = truth["objects"]  # (n, 3): image, row, column of each object's cell
        if not len(objects):
            return focal + 0.0 * regression.sum()
        b, y, x = objects.unbind(1)
        predicted = regression[b, :, y, x]  # (n, 4): offset x, y, size w, h
        offset = F.l1_loss(predicted[:, :2], truth["offsets"])
        size = F.l1_loss(predicted[:, 2:], truth["sizes"])
        return focal + self.config.offset_weight * offset + self.config.size_weight * size

    def class_scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Each class's highest heatmap logit: how sure the model is that one is there."""
        return outputs[:, : self.num_classes].flatten(2).amax(-1)

    def explained_class(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The class of the most confident detection, and its score (the heatmaps are
        independent sigmoids, not a softmax over classes)."""
        score, index = torch.sigmoid(self.class_scores(outputs).float()).max(-1)
        return index, score

    def evaluator(self, keep_mistakes: int = 0) -> DetectionEvaluator:
        return DetectionEvaluator(self, keep_mistakes)

    def monitor_default(self) -> tuple[str, str]:
        return "val/map_50", "max"

    def decode(self, raw: torch.Tensor, threshold: float = 0.0) -> list[dict[str, torch.Tensor]]:
        """Raw outputs -> per image ``boxes`` (n, 4) in input pixels, ``scores`` (n,) and
        ``classes`` (n,), best first: 3x3 heatmap peaks, the ``max_detections`` best, then
        class-wise NMS; only scores of at least ``threshold`` are kept."""
        return decode(raw.float(), self.num_classes, self.stride(raw),
                      self.config.max_detections, self.config.nms_iou, threshold)  # fmt: skip

    # -- serving ------------------------------------------------------------------------------

    def signature(self) -> dict[str, Any]:
        cells = [-1, self.num_classes + 4, -1, -1]
        return {"inputs": [self.codec.input_spec()],
                "outputs": [{"name": "heads", "dtype": "float32", "shape": cells}]}  # fmt: skip

    def outputs(self) -> list[OutputSpec]:
        d = self.config.max_detections
        return [
            OutputSpec("boxes", "FP32", (-1, d, 4)),
            OutputSpec("scores", "FP32", (-1, d)),
            OutputSpec("classes", "INT64", (-1, d)),
            OutputSpec("labels", "BYTES", (-1, d)),
            OutputSpec("num_detections", "INT32", (-1,)),
        ]

    def named_outputs(
        self, raw: np.ndarray, inputs: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """As TensorFlow's detection models answer: ``max_detections`` rows per image, best
        first, the ``num_detections`` scoring at least ``score_threshold`` then padding
        (score 0, class -1, label "")."""
        found = self.decode(torch.from_numpy(np.asarray(raw, np.float32)),
                            self.config.score_threshold)  # fmt: skip
        b, d = len(found), self.config.max_detections
        boxes, scores = np.zeros((b, d, 4), np.float32), np.zeros((b, d), np.float32)
        classes, labels = np.full((b, d), -1, np.int64), np.full((b, d), "", dtype=object)
        counts = np.zeros(b, np.int32)
        names = np.asarray(self.meta.classes, dtype=object)
        for i, f in enumerate(found):
            n = len(f["scores"])
            counts[i] = n
            boxes[i, :n], scores[i, :n] = f["boxes"].numpy(), f["scores"].numpy()
            classes[i, :n] = f["classes"].numpy()
            labels[i, :n] = names[classes[i, :n]]
        return {"boxes": boxes, "scores": scores, "classes": classes, "labels": labels,
                "num_detections": counts}  # fmt: skip

    def answers(self, named: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
        """Per image: its detections (class, score, box x1 y1 x2 y2 in pixels), best first."""
        return self.answers_at(named, top_k, None)

    def answers_at(
        self,
        named: dict[str, np.ndarray],
        top_k: int | None,
        sizes: Sequence[tuple[int, ...]] | None,
    ) -> list[Any]:
        """As :meth:`answers`, each box scaled to its image's own size."""
        _, h, w = self.meta.input_shape
        answers = []
        for i, n in enumerate(named["num_detections"].tolist()):
            sy, sx = (1.0, 1.0) if sizes is None else (sizes[i][0] / h, sizes[i][1] / w)
            scale = np.array([sx, sy, sx, sy], np.float32)
            answers.append({
                "size": [h, w] if sizes is None else [int(s) for s in sizes[i][:2]],
                "detections": [
                    {"class": str(named["labels"][i, j]), "score": float(named["scores"][i, j]),
                     "box": [round(float(v), 2) for v in named["boxes"][i, j] * scale]}
                    for j in range(n)
                ],
            })  # fmt: skip
        return answers

    def answer_form(self) -> dict[str, Any]:
        return {"type": "boxes", "classes": list(self.meta.classes)}

    def answer_cells(self, answer: Any) -> list[str]:
        counts: dict[str, int] = {}
        for d in answer["detections"]:
            counts[d["class"]] = counts.get(d["class"], 0) + 1
        return [f"{name} x{n}" for name, n in counts.items()] or ["nothing found"]

    def drift_signal(self, raw: np.ndarray) -> np.ndarray:
        """How many objects each image holds (detections scoring at least the threshold)."""
        return self.named_outputs(raw)["num_detections"].astype(np.float64)

    def draw_answer(self, source: Path, answer: Any, out: Path) -> Path:
        from deepline import plots

        return plots.save_box_overlay(source, answer["detections"], list(self.meta.classes), out)

    def figures(self, evaluation: dict[str, Any]) -> dict[str, Figure]:
        from deepline import plots

        per_class, curves = evaluation.get("per_class_ap"), evaluation.get("pr_curves")
        figures = {}
        if per_class:
            figures["per_class_ap"] = Figure(
                "AP per class", "Average precision of each class at IoU 0.5 and averaged over "
                "IoU 0.5 to 0.95 (COCO).", lambda p: plots.plot_per_class_ap(per_class, p),
            )  # fmt: skip
        if evaluation.get("examples"):
            figures["examples"] = examples_figure(
                evaluation["examples"], "f1", "F1",
                "The test images with the best and worst F1 at IoU 0.5 (detections scoring at "
                "least task.score_threshold): true boxes in green, detected ones in red.",
            )  # fmt: skip
        if curves:
            figures["pr_curves"] = Figure(
                "Precision-recall at IoU 0.5", "COCO's interpolated precision at each recall, "
                "per class.", lambda p: plots.plot_pr_curves(curves, p),
            )  # fmt: skip
        return figures


# ---------------------------------------------------------------------------- training


def heatmap_targets(
    boxes: torch.Tensor, k: int, shape: Sequence[int], stride: float
) -> dict[str, torch.Tensor]:
    """Box rows (B, M, 5) -> the heatmap (B, K, h, w) with a Gaussian peak of 1 at each
    object's centre cell, the weight of each cell's background loss (0 inside ignored
    regions), each object's cell (n, 3: image, row, column), offset and size in cells."""
    h, w = int(shape[0]), int(shape[1])
    device = boxes.device
    label = boxes[..., 4]
    cells = boxes[..., :4] / stride
    centre = torch.stack(
        [(cells[..., 0] + cells[..., 2]) / 2, (cells[..., 1] + cells[..., 3]) / 2], -1
    )
    size = cells[..., 2:] - cells[..., :2]
    cell = centre.floor().clamp_min(0)
    cell = torch.minimum(cell, torch.tensor([w - 1.0, h - 1.0], device=device))
    valid = label >= 0
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, 1, w)
    sigma = (GAUSSIAN_ALPHA * size / 6).clamp_min(0.3)  # (B, M, 2)
    gx = ((xs - cell[..., 0, None, None]) ** 2) / (2 * sigma[..., 0, None, None] ** 2)
    gy = ((ys - cell[..., 1, None, None]) ** 2) / (2 * sigma[..., 1, None, None] ** 2)
    gauss = torch.exp(-(gx + gy)) * valid[..., None, None]  # (B, M, h, w)
    onehot = F.one_hot(label.clamp_min(0).long(), k).float() * valid[..., None]  # (B, M, K)
    heatmap = (gauss[:, :, None] * onehot[..., None, None]).amax(1)  # (B, K, h, w)
    ignored = label == IGNORE
    x1, y1, x2, y2 = (cells[..., i, None, None] for i in range(4))
    inside = (xs + 0.5 >= x1) & (xs + 0.5 <= x2) & (ys + 0.5 >= y1) & (ys + 0.5 <= y2)
    weight = 1.0 - (inside & ignored[..., None, None]).any(1, keepdim=True).float()  # (B, 1, h, w)
    index = valid.nonzero()  # (n, 2): image, box
    at = cell[index[:, 0], index[:, 1]].long()
    objects = torch.stack([index[:, 0], at[:, 1], at[:, 0]], 1)
    offsets = centre[index[:, 0], index[:, 1]] - at.float()
    return {"heatmap": heatmap, "weight": weight, "objects": objects, "offsets": offsets,
            "sizes": size[index[:, 0], index[:, 1]]}  # fmt: skip


def focal_loss(logits: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """CornerNet's penalty-reduced focal loss (alpha 2, beta 4) per object: peaks (truth 1)
    learn to be 1, other cells to be 0, less so near a peak; ``weight`` scales the latter."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    peak = truth.eq(1).float()
    positive = -F.logsigmoid(logits) * (1 - p) ** 2 * peak
    negative = -F.logsigmoid(-logits) * p**2 * (1 - truth) ** 4 * (1 - peak) * weight
    return (positive.sum() + negative.sum()) / peak.sum().clamp_min(1.0)


# ---------------------------------------------------------------------------- decoding


def decode(
    raw: torch.Tensor, k: int, stride: float, most: int, nms_iou: float, threshold: float
) -> list[dict[str, torch.Tensor]]:
    """See :meth:`Detection.decode`."""
    b, _, h, w = raw.shape
    heat = torch.sigmoid(raw[:, :k])
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    scores, index = peaks.flatten(1).topk(min(most, k * h * w))
    classes, cell = index // (h * w), index % (h * w)
    row, col = cell // w, cell % w
    regression = raw[:, k:].flatten(2)  # (B, 4, h * w)
    picked = regression.gather(2, cell[:, None, :].expand(-1, 4, -1))  # (B, 4, D)
    cx = (col.float() + picked[:, 0]) * stride
    cy = (row.float() + picked[:, 1]) * stride
    half_w, half_h = picked[:, 2].clamp_min(0) * stride / 2, picked[:, 3].clamp_min(0) * stride / 2
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], -1)
    height, width = h * stride, w * stride
    limit = torch.tensor([width, height, width, height], device=boxes.device)
    boxes = torch.minimum(boxes.clamp_min(0), limit)
    out = []
    for i in range(b):
        keep = (scores[i] >= threshold) & (scores[i] > 0)  # top-k may reach non-peaks (0)
        kept = nms(boxes[i][keep], scores[i][keep], classes[i][keep], nms_iou)
        out.append({"boxes": boxes[i][keep][kept], "scores": scores[i][keep][kept],
                    "classes": classes[i][keep][kept]})  # fmt: skip
    return out


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4): (n, m)."""
    area_a = (a[:, 2] - a[:, 0]).clamp_min(0) * (a[:, 3] - a[:, 1]).clamp_min(0)
    area_b = (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)
    low = torch.maximum(a[:, None, :2], b[None, :, :2])
    high = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low).clamp_min(0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp_min(1e-9)


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou: float
) -> torch.Tensor:
    """Greedy class-wise non-maximum suppression: indices of the boxes kept, best first."""
    order = scores.argsort(descending=True)
    if iou >= 1.0 or len(order) < 2:
        return order
    overlap = box_iou(boxes[order], boxes[order]) > iou
    overlap &= classes[order][:, None] == classes[order][None, :]
    keep = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1 :] &= ~overlap[i, i + 1 :]
    return order[keep]


# ---------------------------------------------------------------------------- evaluation


class DetectionEvaluator(Evaluator):
    """Detections of every image (all of them, down to score 0) and its true boxes, scored at
    the end by COCO's evaluation: mAP@[.5:.95], mAP@0.5, mAP@0.75, AP per class and
    precision-recall curves at IoU 0.5; plus the mean loss."""

    def __init__(self, task: Detection, keep_mistakes: int = 0) -> None:
        super().__init__()
        import torchmetrics

        self.task = task
        self.detections: list[dict[str, np.ndarray]] = []
        self.truths: list[np.ndarray] = []
        self.mean_loss = torchmetrics.MeanMetric()  # a metric, so processes reduce it too
        self.examples = ExtremeExamples(min(keep_mistakes, SHOWN))

    @torch.no_grad()
    def update(self, x: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.mean_loss.update(self.task.loss(outputs, targets).detach(), len(targets))
        found = self.task.decode(outputs.cpu())
        for i, (boxes, truth) in enumerate(zip(found, targets.cpu(), strict=True)):
            truth = truth[truth[:, 4] != PADDING]
            if self.examples.keep:
                shown = boxes["scores"] >= self.task.config.score_threshold
                kept = {k: v[shown] for k, v in boxes.items()}

                def draw(i: int = i, kept: dict = kept, truth: torch.Tensor = truth) -> Any:
                    picture = self.task.show_inputs(x[i : i + 1].cpu())
                    return None if picture is None else draw_boxes(picture[0], kept, truth)

                self.examples.offer(image_f1(kept, truth), len(self.truths), draw)
            self.detections.append({k: v.numpy() for k, v in boxes.items()})
            self.truths.append(truth.numpy())

    def compute(self) -> dict[str, float]:
        """COCO's scores over every process's images (each validates its share)."""
        detections, truths = everyone(self.detections), everyone(self.truths)
        self._coco = coco_scores(detections, truths, self.task.meta.classes)
        return {"loss": float(self.mean_loss.compute()), **self._coco["metrics"]}

    def details(self) -> dict[str, Any]:
        coco = getattr(self, "_coco", None) or coco_scores(
            self.detections, self.truths, self.task.meta.classes
        )
        return {"n": len(self.truths), "classes": list(self.task.meta.classes),
                "per_class_ap": coco["per_class"], "pr_curves": coco["curves"],
                "examples": self.examples.details("f1")}  # fmt: skip


def everyone(items: list[Any]) -> list[Any]:
    """``items`` of every process of a distributed run, concatenated (this process's alone
    otherwise)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return items
    parts: list[list[Any]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]


def image_f1(found: dict[str, torch.Tensor], truth: torch.Tensor, iou: float = 0.5) -> float:
    """F1 of one image's detections: each true box matched greedily, best detection first, by
    one of its class at IoU >= ``iou``; detections mostly inside an ignored region count
    neither way (as COCO's crowd regions); 1 when both are empty."""
    ignored = truth[truth[:, 4] == IGNORE, :4]
    if len(ignored) and len(found["scores"]):
        boxes = found["boxes"]
        low = torch.maximum(boxes[:, None, :2], ignored[None, :, :2])
        high = torch.minimum(boxes[:, None, 2:], ignored[None, :, 2:])
        inside = (high - low).clamp_min(0).prod(-1)  # (n, r)
        area = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1e-9).prod(-1)
        kept = (inside / area[:, None]).amax(1) < 0.5
        found = {k: v[kept] for k, v in found.items()}
    truth = truth[truth[:, 4] >= 0]
    if not len(truth) and not len(found["scores"]):
        return 1.0
    overlaps = box_iou(found["boxes"], truth[:, :4])
    same = found["classes"][:, None] == truth[None, :, 4].long()
    free = torch.ones(len(truth), dtype=torch.bool)
    hits = 0
    for row in range(len(found["scores"])):  # decode gives them best first
        candidates = (overlaps[row] >= iou) & same[row] & free
        if candidates.any():
            free[int(torch.where(candidates, overlaps[row], -1).argmax())] = False
            hits += 1
    return 2 * hits / (len(found["scores"]) + len(truth))


def draw_boxes(
    picture: torch.Tensor, found: dict[str, torch.Tensor], truth: torch.Tensor
) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8 with the true boxes in green and the detected
    ones in red."""
    from PIL import Image, ImageDraw

    rgb = picture.expand(3, -1, -1) if picture.shape[0] == 1 else picture[:3]
    image = Image.fromarray((rgb.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy())
    pen = ImageDraw.Draw(image)
    for boxes, colour in ((truth[truth[:, 4] >= 0, :4], (40, 220, 60)),
                          (found["boxes"], (240, 40, 40))):  # fmt: skip
        for x1, y1, x2, y2 in boxes.tolist():
            pen.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=colour)
    return np.asarray(image)


def coco_scores(
    detections: list[dict[str, np.ndarray]], truths: list[np.ndarray], classes: Sequence[str]
) -> dict[str, Any]:
    """COCO bbox evaluation (faster-coco-eval, the pycocotools algorithm) of detections
    against true boxes; regions of class IGNORE are COCO's crowd regions."""
    from faster_coco_eval import COCO, COCOeval_faster

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i, truth in enumerate(truths):
        images.append({"id": i + 1, "width": 1, "height": 1})
        for x1, y1, x2, y2, label in truth.tolist():
            crowd = label == IGNORE
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1,
                "category_id": 1 if crowd else int(label) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(crowd), "ignore": int(crowd),
            })  # fmt: skip
            if crowd:  # a crowd region for every class
                for c in range(1, len(classes)):
                    annotations.append({**annotations[-1], "id": len(annotations) + 1,
                                        "category_id": c + 1})  # fmt: skip
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(classes)]
    truth_api = COCO({"images": images, "annotations": annotations, "categories": categories})
    found = [
        {"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
        for i, d in enumerate(detections)
        for b, s, c in zip(d["boxes"], d["scores"], d["classes"])
    ]  # fmt: skip
    names = ("map", "map_50", "map_75")
    if not found or not annotations:
        return {"metrics": dict.fromkeys(names, 0.0), "per_class": {}, "curves": {}}
    evaluation = COCOeval_faster(truth_api, truth_api.loadRes(found), "bbox",
                                 print_function=lambda *a, **k: None)  # fmt: skip
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    metrics = {name: max(0.0, float(v)) for name, v in zip(names, evaluation.stats[:3])}
    precision = evaluation.eval["precision"]  # (IoU 10, recall 101, class, area 4, maxDets 3)
    per_class, curves = {}, {}
    for c, name in enumerate(classes):
        at_50 = precision[0, :, c, 0, -1]
        every = precision[:, :, c, 0, -1]
        per_class[name] = {"ap_50": _mean_valid(at_50), "ap": _mean_valid(every)}
        curves[name] = [max(0.0, float(p)) for p in at_50]
        metrics[f"ap_50/{name}"] = per_class[name]["ap_50"]
    return {"metrics": metrics, "per_class": per_class, "curves": curves}


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else 0.0
