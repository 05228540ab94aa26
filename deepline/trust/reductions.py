"""In-training fairness mitigation: Fairlearn's reductions approach (Agarwal et al. 2018).

``ExponentiatedGradient`` turns a fairness constraint into a sequence of weighted
classification problems and solves each with a learner that accepts ``sample_weight``; the
answer is a randomised mixture of the models it trained. Here the learner is deepline's own
trainer on the run's config (``TrainerClassifier``): each fit trains a fresh model, drawing
its batches with probability proportional to the weights (``WeightedLoader``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepline.config import ExperimentConfig
from deepline.data.loaders import WeightedLoader
from deepline.data.meta import DataMeta
from deepline.errors import ConfigError
from deepline.evaluate.loading import TrainedRun, predict_batches

CONSTRAINTS = {"demographic_parity": "DemographicParity", "equalized_odds": "EqualizedOdds"}
DIFFERENCE_BOUND = 0.01  # Fairlearn's default slack on the constraint


def trainer_classifier(config: ExperimentConfig, meta: DataMeta, epochs: int) -> Any:
    """The run's trainer as a fresh scikit-learn classifier (see ``TrainerClassifier``)."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class TrainerClassifier(ClassifierMixin, BaseEstimator):
        """``fit(X, y, sample_weight)`` trains a new model of ``config`` for ``epochs`` epochs
        on encoded rows; ``predict`` gives its most likely class."""

        def __init__(self, config: ExperimentConfig, meta: DataMeta, epochs: int) -> None:
            self.config, self.meta, self.epochs = config, meta, epochs

        def fit(self, x: Any, y: Any, sample_weight: Any = None) -> TrainerClassifier:
            from deepline.tasks import build_task
            from deepline.training.loop import Trainer

            x_ = torch.from_numpy(np.array(x, dtype=np.float32))  # copies: fits never share
            y_ = torch.from_numpy(np.array(y, dtype=np.int64))
            weights = torch.ones(len(y_)) if sample_weight is None else torch.from_numpy(
                np.array(sample_weight, dtype=np.float64)
            )  # fmt: skip
            seed = self.config.seed
            task = build_task(self.config.task, self.meta)
            torch.manual_seed(seed)
            self.model_ = task.build_model(self.config.model)
            batches = WeightedLoader(x_, y_, weights, self.config.train.batch_size, seed)
            train = self.config.train.model_copy(update={"epochs": self.epochs, "max_steps": None})
            Trainer(self.model_, task, batches, None, train, [], seed=seed).fit()
            self.model_.eval()
            self.classes_ = np.arange(len(self.meta.classes))
            return self

        def predict(self, x: Any) -> np.ndarray:
            with torch.no_grad():
                rows = torch.as_tensor(np.asarray(x), dtype=torch.float32)
                return predict_batches(self.model_, rows).argmax(1).numpy()

    return TrainerClassifier(config, meta, epochs)


def reductions_mitigation(
    run: TrainedRun, column: str, constraint: str, split: str, epochs: int, max_iter: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Fit ``ExponentiatedGradient`` for ``constraint`` on ``column`` over the training split
    (each oracle call trains for ``epochs`` epochs, at most ``max_iter`` iterations); the
    summary and the mixture's decisions on ``split`` (drawn from a generator seeded by the
    run's seed, in the split's row order)."""
    import fairlearn.reductions as reductions

    if constraint not in CONSTRAINTS:
        raise ConfigError(f"--mitigate: unknown '{constraint}'. Allowed: {', '.join(CONSTRAINTS)}")
    moment = getattr(reductions, CONSTRAINTS[constraint])(difference_bound=DIFFERENCE_BOUND)
    learner = trainer_classifier(run.config, run.data.meta, epochs)
    mitigator = reductions.ExponentiatedGradient(learner, moment, max_iter=max_iter)
    train = run.data.train
    mitigator.fit(train.x.numpy(), train.y.numpy(), sensitive_features=train.groups[column])
    data = run.data.split(split)
    decided = np.asarray(mitigator.predict(data.x.numpy(), random_state=run.config.seed))
    weights = np.asarray(mitigator.weights_)
    summary = {
        "method": "reductions",
        "constraint": constraint,
        "column": column,
        "difference_bound": DIFFERENCE_BOUND,
        "epochs_per_fit": epochs,
        "iterations": len(mitigator.lambda_vecs_EG_.columns),
        "models_trained": int(mitigator.n_oracle_calls_),
        "models_in_mixture": int((weights > 0).sum()),
    }
    return summary, decided.astype(np.int64)
