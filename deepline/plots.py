"""Figures for evaluation and the run report, written as PNG files.

Every function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot``), so no
display is needed, no global figure state leaks between calls and threads may plot at once.

>>> import numpy as np, tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "cm.png"
>>> plot_confusion_matrix(np.array([[5, 1], [0, 4]]), ["cat", "dog"], out).name
'cm.png'
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

DPI = 100
_MAX_ANNOTATED_CLASSES = 20
_NOT_METRICS = {"step", "epoch", "time"}  # "lr" is plotted, these are axes


def plot_confusion_matrix(
    cm: np.ndarray, classes: list[str], path: Path, normalize: bool = True
) -> Path:
    """Heat map of a confusion matrix (rows = true class, columns = predicted).

    With ``normalize`` the colours show each row's fraction, so rare classes are as visible
    as common ones; the cells always show the raw counts (when there are <= 20 classes).
    """
    cm = np.asarray(cm)
    n = cm.shape[0]
    row_sums = cm.sum(axis=1, keepdims=True)
    # A class absent from the split has an all-zero row: show it as zeros, not NaN.
    shade = np.divide(cm, row_sums, out=np.zeros(cm.shape), where=row_sums > 0) if normalize else cm
    side = min(max(4.0, 0.45 * n + 2.0), 20.0)
    fig = Figure(figsize=(side + 1.0, side), dpi=DPI)
    ax = fig.add_subplot()
    image = ax.imshow(shade, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="row fraction" if normalize else "")
    labels = [plain_text(c) for c in classes]
    ax.set_xticks(range(n), labels, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix" + (" (colour: row-normalised)" if normalize else ""))
    if n <= _MAX_ANNOTATED_CLASSES:
        limit = 1.0 if normalize else max(float(shade.max()), 1.0)
        for i in range(n):
            for j in range(n):
                # White text on dark cells, dark text on light ones, for contrast.
                dark = shade[i, j] > 0.5 * limit
                ax.text(
                    j,
                    i,
                    f"{int(cm[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "#222222",
                )
    return save_figure(fig, path)


def plot_per_class(per_class: dict[str, list[float]], classes: list[str], path: Path) -> Path:
    """Grouped bars of precision, recall and F1 for each class (other keys are ignored)."""
    metrics = [m for m in ("precision", "recall", "f1") if m in per_class]
    n = len(classes)
    fig = Figure(figsize=(min(max(6.0, 0.6 * n + 2.0), 24.0), 4.0), dpi=DPI)
    ax = fig.add_subplot()
    width = 0.8 / max(len(metrics), 1)
    x = np.arange(n)
    for k, name in enumerate(metrics):
        ax.bar(x + (k - (len(metrics) - 1) / 2) * width, per_class[name][:n], width, label=name)
    ax.set_xticks(
        x,
        [plain_text(c) for c in classes],
        rotation=45 if n > 10 else 0,
        ha="right" if n > 10 else "center",
    )
    ax.set_ylim(0, 1.15)  # headroom so the legend sits above bars near 1.0
    ax.set_ylabel("score")
    ax.set_title("Per-class scores")
    ax.grid(axis="y", alpha=0.3)
    if metrics:
        ax.legend(loc="upper center", ncols=len(metrics), fontsize=8, frameon=False)
    return save_figure(fig, path)


def plot_ranking(metrics: dict[str, float], path: Path, ks: Iterable[int] = (5, 10, 20)) -> Path:
    """HR@K and NDCG@K side by side under the full-ranking and sampled protocols."""
    names = [f"{m}@{k}" for m in ("hr", "ndcg") for k in ks]
    fig = Figure(figsize=(7.0, 3.6), dpi=DPI)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for offset, protocol in ((-0.2, "full"), (0.2, "sampled")):
        values = [metrics.get(f"{protocol}/{n}", 0.0) for n in names]
        bars = ax.bar(x + offset, values, 0.4, label=protocol)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score")
    ax.set_title("Ranking of the held-out item")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return save_figure(fig, path)


def plot_histogram(values: list[float], label: str, path: Path, bins: int = 20) -> Path:
    """How many values fall in each of ``bins`` equal bins of [0, 1]; a dashed line at the
    mean."""
    fig = Figure(figsize=(6.0, 3.2), dpi=DPI)
    ax = fig.add_subplot()
    ax.hist(
        values, bins=np.linspace(0.0, 1.0, bins + 1).tolist(), color="#4c72b0", edgecolor="white"
    )
    mean = float(np.mean(values))
    ax.axvline(mean, color="#c44e52", linestyle="--", label=f"mean {mean:.3f}")
    ax.set_xlabel(label)
    ax.set_ylabel("count")
    ax.set_xlim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return save_figure(fig, path)


def save_mask_overlay(picture: np.ndarray, mask: np.ndarray, path: Path) -> Path:
    """An RGB (H, W, 3) uint8 picture with its (H, W) mask of class indices over it: each
    class above 0 tinted in its own colour at 45%, at the picture's own pixels."""
    from PIL import Image

    palette = np.array([(0, 0, 0), (255, 64, 64), (64, 160, 255), (64, 220, 96),
                        (255, 200, 0), (200, 80, 255)], dtype=np.float32)  # fmt: skip
    out = picture.astype(np.float32)
    for k in range(1, int(mask.max(initial=0)) + 1):
        where = mask == k
        out[where] = 0.55 * out[where] + 0.45 * palette[1 + (k - 1) % (len(palette) - 1)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out.clip(0, 255).astype(np.uint8)).save(path)
    return path


BOX_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6")


def save_box_overlay(source: Path, detections: list[dict], classes: list[str], path: Path) -> Path:
    """The image at ``source`` with each detection's box drawn in its class's colour and
    labelled with class and score, at the image's own pixels."""
    from PIL import Image, ImageDraw

    from deepline.data.readers import upright

    with Image.open(source) as img:
        picture = upright(img).convert("RGB")
    draw = ImageDraw.Draw(picture)
    thick = max(1, round(max(picture.size) / 300))
    for d in detections:
        index = classes.index(d["class"]) if d["class"] in classes else 0
        colour = BOX_COLOURS[index % len(BOX_COLOURS)]
        x1, y1, x2, y2 = d["box"]
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=thick)
        draw.text((x1 + 2, max(0.0, y1 - 11)), f"{d['class']} {d['score']:.2f}", fill=colour)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def plot_per_class_ap(per_class: dict[str, dict[str, float]], path: Path) -> Path:
    """AP at IoU 0.5 and over IoU 0.5 to 0.95 for each class, as bars."""
    names = list(per_class)
    fig = Figure(figsize=(max(4.0, 1.2 * len(names) + 2), 3.4), dpi=DPI)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for offset, key, label in ((-0.2, "ap_50", "AP@0.5"), (0.2, "ap", "AP@[.5:.95]")):
        bars = ax.bar(x + offset, [per_class[n][key] for n in names], 0.4, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(x, [plain_text(n) for n in names])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("average precision")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return save_figure(fig, path)


def plot_pr_curves(curves: dict[str, list[float]], path: Path) -> Path:
    """Precision against recall (101 COCO recall points) for each class."""
    fig = Figure(figsize=(5.0, 3.8), dpi=DPI)
    ax = fig.add_subplot()
    recall = np.linspace(0.0, 1.0, 101)
    for i, (name, precision) in enumerate(curves.items()):
        ax.plot(recall, precision, label=plain_text(name), color=BOX_COLOURS[i % len(BOX_COLOURS)])
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    return save_figure(fig, path)


def plot_recommendation_examples(rows: list[dict[str, str]], path: Path) -> Path:
    """A table of users: their latest items, the held-out one, and the top recommendations
    (the held-out item marked when recommended)."""
    lines = max([1, *(v.count("\n") + 1 for r in rows for v in r.values())])
    fig = Figure(figsize=(12.0, 0.6 + 0.17 * lines * max(1, len(rows))), dpi=DPI)
    ax = fig.add_subplot()
    ax.axis("off")
    cells = [[plain_text(r[k]) for k in ("user", "history", "target", "recommended")] for r in rows]
    table = ax.table(
        cellText=cells or [["", "", "", ""]],
        colLabels=["user", "latest items (oldest first)", "held out", "recommended (best first)"],
        colWidths=[0.05, 0.36, 0.21, 0.38],
        bbox=Bbox.from_bounds(0.0, 0.0, 1.0, 1.0),
        cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    return save_figure(fig, path)


def plot_learning_curves(records: list[dict], path: Path) -> Path:
    """Losses, validation metrics and learning rate against the step, from ``metrics.jsonl``.

    Step lines give ``train/loss`` and ``lr``; epoch lines give ``val/*`` and
    ``train/loss_epoch``. Validation scores in [0, 1] (accuracy, NDCG) and other values
    (perplexity, counts) get panels of their own, so neither flattens the other. Panels without
    data are left out; missing keys are skipped.
    """
    series = _series(records)
    losses = {k: v for k, v in series.items() if k.endswith(("loss", "loss_epoch"))}
    others = {k: v for k, v in series.items() if k.startswith("val/") and k not in losses}
    scores = {k: v for k, v in others.items() if all(0.0 <= x <= 1.0 for x in v[1])}
    unbounded = {k: v for k, v in others.items() if k not in scores}
    lr = {k: v for k, v in series.items() if k == "lr"}
    named = (("loss", losses), ("validation scores", scores), ("validation values", unbounded),
             ("learning rate", lr))  # fmt: skip
    panels = [(t, s) for t, s in named if s]
    if not panels:
        return save_figure(_message_figure("no metrics logged"), path)
    fig = Figure(figsize=(5.0 * len(panels), 3.8), dpi=DPI)
    for i, (title, panel) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        for name, (steps, values) in sorted(panel.items()):
            _plot_series(ax, steps, values, name)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        else:
            ax.legend(fontsize=7 if len(panel) > 6 else 8, ncols=2 if len(panel) > 6 else 1)
    return save_figure(fig, path)


def plot_client_labels(histogram: list[list[int]], classes: list[str], path: Path) -> Path:
    """Each federated client's examples per class: stacked bars (a heat map past 20 clients)."""
    counts = np.asarray(histogram, dtype=float)  # (clients, classes)
    names = [plain_text(c) for c in classes] or [str(i) for i in range(counts.shape[1])]
    fig = Figure(figsize=(min(12.0, 4.0 + 0.25 * len(counts)), 3.6), dpi=DPI)
    ax = fig.add_subplot()
    if len(counts) <= 20:
        bottom = np.zeros(len(counts))
        for k in range(counts.shape[1]):
            ax.bar(range(len(counts)), counts[:, k], bottom=bottom, label=names[k])
            bottom += counts[:, k]
        ax.set_ylabel("examples")
        ax.legend(fontsize=7, ncols=2, frameon=False, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    else:
        image = ax.imshow(counts.T, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(names)), names, fontsize=7)
        fig.colorbar(image, ax=ax, label="examples")
    ax.set_xlabel("client")
    ax.set_title("examples per class on each client")
    return save_figure(fig, path)


def plot_rounds(curves: dict[str, list[tuple[int, float]]], path: Path) -> Path:
    """Metrics against the federated round, one line each."""
    fig = Figure(figsize=(6.5, 3.8), dpi=DPI)
    ax = fig.add_subplot()
    for name, points in sorted(curves.items()):
        _plot_series(ax, [float(r) for r, _ in points], [v for _, v in points], name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_trade_off(points: dict[str, tuple[float, float]], metric: str, path: Path) -> Path:
    """Each compression stage as a point: its weights' compressed KiB against its score."""
    fig = Figure(figsize=(6.0, 3.8), dpi=DPI)
    ax = fig.add_subplot()
    for name, (size, score) in points.items():
        ax.scatter([size], [score], s=30)
        ax.annotate(plain_text(name), (size, score), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)  # fmt: skip
    ax.margins(x=0.2, y=0.15)  # room for the labels
    ax.set_xlabel("weights, gzip (KiB)")
    ax.set_ylabel(f"test {plain_text(metric)}")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_robustness(result: dict, path: Path) -> Path:
    """A metric against epsilon, one line per attack (``robustness.json``)."""
    metric = result["metric"]
    fig = Figure(figsize=(5.5, 3.8), dpi=DPI)
    ax = fig.add_subplot()
    for attack, points in sorted(result["curves"].items()):
        eps = [p["eps"] for p in points]
        ax.plot(eps, [p["metrics"][metric] for p in points], marker="o", label=attack.upper())
    ax.set_xlabel(f"epsilon ({result.get('norm', 'linf')})")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{metric} under attack ({result.get('n', '?')} {result.get('split', '')})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_fairness_tradeoff(result: dict, path: Path) -> Path:
    """Accuracy against the constrained disparity (``fairness.json``): the model's own
    decisions and each mitigation's."""
    mitigated = result["mitigations"]
    column, constraint = mitigated[0]["column"], mitigated[0]["constraint"]
    gap = f"{constraint}_difference"
    points = [("unmitigated", result["columns"][column]["disparities"][gap],
               mitigated[0]["accuracy_before"])]  # fmt: skip
    points += [(m["method"], m["report"]["disparities"][gap], m["accuracy_after"])
               for m in mitigated]  # fmt: skip
    fig = Figure(figsize=(5.5, 3.8), dpi=DPI)
    ax = fig.add_subplot()
    for name, d, accuracy in points:
        ax.errorbar([d["value"]], [accuracy], xerr=[[d["value"] - d["low"]],
                    [d["high"] - d["value"]]], marker="o", capsize=3, label=name)  # fmt: skip
    ax.set_xlabel(f"{constraint.replace('_', ' ')} difference by {column} (95% interval)")
    ax.set_ylabel(f"accuracy ({result.get('split', '')})")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_reliability(bins: dict, path: Path, title: str = "Reliability") -> Path:
    """Reliability diagrams: accuracy against confidence per bin, one panel per entry of
    ``bins`` (``{"before": {"confidence", "accuracy", "count"}, "after": ...}``)."""
    fig = Figure(figsize=(4.2 * len(bins), 4.0), dpi=DPI)
    for i, (name, b) in enumerate(bins.items(), start=1):
        ax = fig.add_subplot(1, len(bins), i)
        edges = np.linspace(0, 1, len(b["accuracy"]) + 1)
        centres, width = (edges[:-1] + edges[1:]) / 2, 1 / len(b["accuracy"])
        shown = np.asarray(b["count"]) > 0
        ax.bar(centres[shown], np.asarray(b["accuracy"])[shown], width=width, edgecolor="k",
               alpha=0.7, label="accuracy")  # fmt: skip
        ax.bar(centres[shown], (np.asarray(b["confidence"]) - np.asarray(b["accuracy"]))[shown],
               bottom=np.asarray(b["accuracy"])[shown], width=width, color="tab:red",
               alpha=0.3, label="gap to confidence")  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ece = b.get("ece")
        ax.set_title(f"{title}: {name}" + (f" (ECE {ece:.2%})" if ece is not None else ""))
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)


def plot_explanations(
    images: np.ndarray, heats: dict[str, np.ndarray], captions: list[str], path: Path
) -> Path:
    """One row per input: the input, then each method's attributions over it (heat in [0, 1],
    red where the prediction rests most). ``images`` (N, C, H, W) in [0, 1]; each heat
    (N, H, W)."""
    n, cols = len(images), 1 + len(heats)
    fig = Figure(figsize=(1.9 * cols, 1.9 * n + 0.3), dpi=DPI)
    for row in range(n):
        picture = np.transpose(images[row], (1, 2, 0))
        grey = picture[..., 0] if picture.shape[-1] == 1 else picture.mean(-1)
        ax = fig.add_subplot(n, cols, row * cols + 1)
        ax.imshow(picture if picture.shape[-1] == 3 else grey, cmap="gray", vmin=0, vmax=1)
        ax.set_title(plain_text(captions[row]), fontsize=7)
        ax.axis("off")
        for col, (name, heat) in enumerate(heats.items(), start=2):
            ax = fig.add_subplot(n, cols, row * cols + col)
            ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
            ax.imshow(heat[row], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if row == 0:
                ax.set_title(plain_text(name), fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_image_grid(images: np.ndarray, titles: list[str], path: Path, ncols: int = 8) -> Path:
    """A grid of images (N, C, H, W) in [0, 1], C = 1 (grey) or 3 (RGB), each with a title."""
    images = np.asarray(images, dtype=np.float32)
    n = images.shape[0] if images.ndim == 4 else 0
    if n == 0:
        return save_figure(_message_figure("no images"), path)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    _, _, h, w = images.shape
    # One mosaic in one axes: a subplot per image costs ~0.1 s each to draw.
    # Units are image pixels; each cell is the image plus a margin and a caption band.
    cell_inches = 1.6
    pad = max(1, round(0.1 * w))
    cap = math.ceil(0.25 * (w + pad) / cell_inches)  # ~0.25 inch of caption room
    cell_h, cell_w = h + pad + cap, w + pad
    rgb = np.repeat(images, 3, axis=1) if images.shape[1] == 1 else images[:, :3]
    mosaic = np.ones((nrows * cell_h, ncols * cell_w, 3), dtype=np.float32)  # white background
    fig = Figure(figsize=(cell_inches * ncols, cell_inches * cell_h / cell_w * nrows), dpi=DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    for i in range(n):
        top, left = (i // ncols) * cell_h + cap, (i % ncols) * cell_w
        mosaic[top : top + h, left : left + w] = np.clip(rgb[i], 0.0, 1.0).transpose(1, 2, 0)
        if i < len(titles):
            ax.text(
                left + w / 2, top - 0.5, plain_text(titles[i]), ha="center", va="bottom", fontsize=8
            )
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    return save_figure(fig, path)


def figure_to_base64_png(path_or_fig: str | Path | Figure) -> str:
    """Base64 text of a PNG file or figure, for a ``data:image/png;base64,`` URI."""
    if isinstance(path_or_fig, Figure):
        buffer = io.BytesIO()
        path_or_fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        data = buffer.getvalue()
    else:
        data = Path(path_or_fig).read_bytes()
    return base64.b64encode(data).decode("ascii")


def _series(records: Iterable[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Every numeric metric key mapped to its (steps, values), in log order."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for rec in records:
        step = rec.get("step")
        if not isinstance(step, (int, float)):
            continue
        for key, value in rec.items():
            if key in _NOT_METRICS or not _is_number(value):
                continue
            steps, values = out.setdefault(key, ([], []))
            steps.append(float(step))
            # A diverged (inf/NaN) value becomes NaN: a gap that leaves the axis scale alone.
            values.append(float(value) if math.isfinite(value) else math.nan)
    return out


def _plot_series(ax: Axes, steps: list[float], values: list[float], name: str) -> None:
    # Markers keep sparse series (epoch lines, a single record) visible as points.
    marker = "o" if len(steps) <= 50 else None
    ax.plot(steps, values, marker=marker, markersize=3, linewidth=1.2, label=plain_text(name))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plain_text(text: str) -> str:
    """Text as written: a ``$`` in a class name must not start matplotlib's math mode."""
    return str(text).replace("$", r"\$")


def _message_figure(message: str) -> Figure:
    """A small figure saying why there is nothing to plot, so callers always get a PNG."""
    fig = Figure(figsize=(4.0, 1.0), dpi=DPI)
    fig.text(0.5, 0.5, message, ha="center", va="center", color="#656d76")
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders made as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A message figure has no axes: cropping it tightly would leave only a sliver of text.
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight" if fig.axes else None)
    return path
