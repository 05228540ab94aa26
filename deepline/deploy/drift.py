"""Drift: how far live inputs and predictions have moved from the training data.

A bundle carries ``reference.json``: for each per-example summary of the inputs (the input
codec chooses them: the mean and standard deviation of an image, each feature of a table, the
length of a text) the bin edges of its training distribution (deciles) and the share of
training examples in each bin; and the same for the task's drift signal of the predictions (a
predicted class: the share of each class; a predicted value: deciles). A server keeps a sliding
window of live summaries and compares it with the population stability index (PSI): below 0.1
nothing moved, 0.1-0.25 a moderate shift, above 0.25 a real one.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

BINS = 10
EPSILON = 1e-4  # floor for empty bins, so the log stays finite
MODERATE, MAJOR = 0.1, 0.25
MIN_EXAMPLES = 100  # fewer live examples than this: PSI is mostly sampling noise, no verdict

Summaries = Callable[[np.ndarray], dict[str, np.ndarray]]  # model-ready batch -> per example
Signal = Callable[[np.ndarray], np.ndarray]  # raw model outputs -> one number per example


def reference_statistics(
    summaries: dict[str, np.ndarray], signal: np.ndarray, categories: int | None
) -> dict[str, Any]:
    """What ``reference.json`` holds: the training inputs' summaries and the drift signal of
    the model's outputs on them (``categories`` classes, or None for a continuous value)."""
    features = {name: _deciles(values) for name, values in summaries.items()}
    if categories is None:
        predictions = _deciles(np.asarray(signal, dtype=np.float64))
    else:
        counts = np.bincount(np.asarray(signal, dtype=np.int64), minlength=categories)
        predictions = {"shares": (counts / max(counts.sum(), 1)).tolist()}
    return {"examples": len(signal), "inputs": features, "predictions": predictions}


def _deciles(values: np.ndarray) -> dict[str, list[float]]:
    edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
    return {"edges": edges.tolist(), "shares": _shares(values, edges).tolist()}


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

    ``summaries`` and ``signal`` are the input codec's and the task's (what the reference was
    made with). Thread-safe: batches are observed from inference threads, reports read from
    the event loop.
    """

    def __init__(
        self, reference: dict[str, Any], summaries: Summaries, signal: Signal, window: int = 1000
    ) -> None:
        self.reference = reference
        self.window = window
        self._summarise, self._signal = summaries, signal
        self._summaries: dict[str, deque[float]] = {
            name: deque(maxlen=window) for name in reference["inputs"]
        }
        self._predictions: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def observe(self, inputs: np.ndarray, outputs: np.ndarray) -> None:
        summaries = self._summarise(inputs)
        signal = self._signal(outputs)
        with self._lock:
            for name, values in self._summaries.items():
                if name in summaries:  # a reference from an older codec may name others
                    values.extend(summaries[name].tolist())
            self._predictions.extend(signal.tolist())

    def report(self) -> dict[str, Any]:
        """PSI per input summary and for predictions, with the worst one as ``score``."""
        with self._lock:
            summaries = {name: np.array(v) for name, v in self._summaries.items() if v}
            predictions = np.array(self._predictions)
        n = len(predictions)
        scores: dict[str, float] = {}
        if n:
            for name, values in summaries.items():
                ref = self.reference["inputs"][name]
                scores[f"input_{name}"] = psi(ref["shares"], _shares(values, ref["edges"]))
            ref = self.reference["predictions"]
            if "edges" in ref:
                scores["predictions"] = psi(ref["shares"], _shares(predictions, ref["edges"]))
            else:
                shares = np.asarray(ref["shares"])
                counts = np.bincount(predictions.astype(np.int64), minlength=len(shares))
                scores["predictions"] = psi(shares, counts[: len(shares)] / n)
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
