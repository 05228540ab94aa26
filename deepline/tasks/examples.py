"""The best and worst examples of an evaluation, drawn for the report (segmentation masks,
detected boxes): kept as the batches go by, drawn only when they enter either list."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepline.tasks.base import Figure

SHOWN = 4  # best and worst examples each


class ExtremeExamples:
    """The ``keep`` highest- and lowest-scoring examples seen, each drawn as an RGB picture."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.best: list[tuple[float, int, np.ndarray]] = []  # (score, index, picture)
        self.worst: list[tuple[float, int, np.ndarray]] = []

    def offer(self, score: float, index: int, draw: Callable[[], np.ndarray | None]) -> None:
        """Example ``index`` scored ``score``; ``draw`` gives its (H, W, 3) uint8 picture
        (called once, and only when the example enters a list)."""
        picture: np.ndarray | None = None
        for kept, better in ((self.best, True), (self.worst, False)):
            if len(kept) >= self.keep:
                edge = kept[-1][0]
                if score <= edge if better else score >= edge:
                    continue
            picture = draw() if picture is None else picture
            if picture is None:
                return
            kept.append((score, index, picture))
            kept.sort(key=lambda e: e[0], reverse=better)
            del kept[self.keep :]

    def details(self, score_name: str) -> list[dict[str, Any]]:
        """JSON-able: kind, score, index and the picture as base64 PNG, best ones first."""
        return [
            {"kind": kind, score_name: score, "index": index, "overlay_png": png(picture)}
            for kind, kept in (("best", self.best), ("worst", self.worst))
            for score, index, picture in kept
        ]


def examples_figure(
    examples: list[dict[str, Any]], score_name: str, label: str, caption: str
) -> Figure:
    """A grid of the examples ``details`` gave, titled with their kind and score."""
    from deepline import plots

    pictures = np.stack([_png_array(e["overlay_png"]) for e in examples]).transpose(0, 3, 1, 2)
    titles = [f"{e['kind']}: {label} {e[score_name]:.2f}" for e in examples]

    def draw(path: Path) -> Path:
        return plots.plot_image_grid(pictures / 255.0, titles, path, ncols=SHOWN)

    return Figure("Best and worst images", caption, draw)


def png(array: np.ndarray) -> str:
    """An (H, W) or (H, W, 3) uint8 array as a base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _png_array(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
