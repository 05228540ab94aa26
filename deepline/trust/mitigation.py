"""Post-processing for fairness: group-specific thresholds (Fairlearn's ``ThresholdOptimizer``,
Hardt et al. 2016) fitted on the validation split, kept as plain JSON and applied with
decisions randomised per input from a seed derived from the input itself, so the same input
always gets the same decision, offline or served.

The rule is applied by ``deepline.tasks.thresholds`` (which tasks and serving use).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deepline.errors import ConfigError

CONSTRAINTS = ("demographic_parity", "equalized_odds")


def _scores_estimator() -> Any:
    """The model's positive-class probability, already computed (column 0 of X), as a fitted
    sklearn classifier for ThresholdOptimizer with ``prefit=True``."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Scores(ClassifierMixin, BaseEstimator):
        def fit(self, x: np.ndarray, y: np.ndarray) -> Scores:
            self.classes_ = np.array([0, 1])
            return self

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            s = np.asarray(x)[:, 0]
            return np.stack([1 - s, s], axis=1)

        def predict(self, x: np.ndarray) -> np.ndarray:
            return (np.asarray(x)[:, 0] > 0.5).astype(int)

    return Scores().fit(np.zeros((1, 1)), np.zeros(1))


def fit_thresholds(
    scores: np.ndarray, y: np.ndarray, groups: Sequence[str], constraint: str
) -> dict[str, list[dict[str, Any]]]:
    """The rule that ``ThresholdOptimizer`` fits to satisfy ``constraint`` on these examples."""
    from fairlearn.postprocessing import ThresholdOptimizer

    if constraint not in CONSTRAINTS:
        raise ConfigError(
            f"--constraint: unknown '{constraint}'. Allowed: {', '.join(CONSTRAINTS)}"
        )
    optimizer = ThresholdOptimizer(
        estimator=_scores_estimator(),
        constraints=constraint,
        prefit=True,
        predict_method="predict_proba",
    )
    optimizer.fit(np.asarray(scores)[:, None], np.asarray(y), sensitive_features=np.asarray(groups))
    rule = {}
    for group, found in optimizer.interpolated_thresholder_.interpolation_dict.items():
        rule[str(group)] = [
            {"p": float(found[f"p{i}"]), "operator": str(found[f"operation{i}"]._operator),
             "threshold": _finite(float(found[f"operation{i}"]._threshold))}
            for i in (0, 1)
        ]  # fmt: skip
    return rule


def _finite(threshold: float) -> float:
    """A threshold on a probability, with Fairlearn's infinities ("always", "never") as -1
    and 2: the same decisions, and strict JSON."""
    return min(max(threshold, -1.0), 2.0)
