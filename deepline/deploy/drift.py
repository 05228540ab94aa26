"""Drift: how far live inputs and predictions have moved from the training data.

A bundle carries ``reference.json``: for each summary of the inputs (per-example mean and
standard deviation of the model-ready tensor) the bin edges of its training distribution
(deciles) and the share of training examples in each bin, and the share of each predicted class.
A server keeps a sliding window of live summaries and compares it with the population stability
index (PSI): below 0.1 nothing moved, 0.1-0.25 a moderate shift, above 0.25 a real one.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

BINS = 10
EPSILON = 1e-4  # floor for empty bins, so the log stays finite
MODERATE, MAJOR = 0.1, 0.25
MIN_EXAMPLES = 100  # fewer live examples than this: PSI is mostly sampling noise, no verdict


def input_summaries(inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-example summaries of a model-ready batch: ``mean`` and ``std`` over all but axis 0."""
    flat = np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1)
    return {"mean": flat.mean(1), "std": flat.std(1)}


def predicted_classes(outputs: np.ndarray) -> np.ndarray:
    """The top class of each example (for sequence outputs, at the last position)."""
    outputs = np.asarray(outputs)
    if outputs.ndim > 2:
        outputs = outputs[:, -1]
    return outputs.argmax(-1)


def reference_statistics(inputs: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """What ``reference.json`` holds, from training inputs and the model's outputs on them."""
    features = {}
    for name, values in input_summaries(inputs).items():
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
        features[name] = {"edges": edges.tolist(), "shares": _shares(values, edges).tolist()}
    num_classes = int(np.asarray(outputs).shape[-1])
    counts = np.bincount(predicted_classes(outputs), minlength=num_classes)
    return {
        "examples": len(inputs),
        "inputs": features,
        "predictions": {"shares": (counts / max(counts.sum(), 1)).tolist()},
    }


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two distributions over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def verdict(score: float) -> str:
    return "stable" if score < MODERATE else "moderate" if score < MAJOR else "drift"


def _shares(values: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


class DriftMonitor:
    """A sliding window of live input summaries and predictions, scored against a reference.

    Thread-safe: batches are observed from inference threads, reports read from the event loop.
    """

    def __init__(self, reference: dict[str, Any], window: int = 1000) -> None:
        self.reference = reference
        self.window = window
        self._summaries: dict[str, deque[float]] = {
            name: deque(maxlen=window) for name in reference["inputs"]
        }
        self._predictions: deque[int] = deque(maxlen=window)
        self._lock = threading.Lock()

    def observe(self, inputs: np.ndarray, outputs: np.ndarray) -> None:
        summaries = input_summaries(inputs)
        classes = predicted_classes(outputs)
        with self._lock:
            for name, values in self._summaries.items():
                values.extend(summaries[name].tolist())
            self._predictions.extend(classes.tolist())

    def report(self) -> dict[str, Any]:
        """PSI per input summary and for predictions, with the worst one as ``score``."""
        with self._lock:
            summaries = {name: np.array(v) for name, v in self._summaries.items()}
            predictions = np.array(self._predictions, dtype=np.int64)
        n = len(predictions)
        scores: dict[str, float] = {}
        if n:
            for name, values in summaries.items():
                ref = self.reference["inputs"][name]
                scores[f"input_{name}"] = psi(ref["shares"], _shares(values, ref["edges"]))
            ref_shares = np.asarray(self.reference["predictions"]["shares"])
            counts = np.bincount(predictions, minlength=len(ref_shares))[: len(ref_shares)]
            scores["predictions"] = psi(ref_shares, counts / n)
        score = max(scores.values(), default=0.0)
        needed = min(MIN_EXAMPLES, self.window)
        return {
            "window": n,
            "window_size": self.window,
            "reference_examples": self.reference.get("examples"),
            "psi": scores,
            "score": score,
            "enough": n >= needed,
            "status": verdict(score) if n >= needed else f"collecting ({n}/{needed})",
        }
