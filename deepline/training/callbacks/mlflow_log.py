"""Optional MLflow logging: parameters, metrics and the run's config, when mlflow is installed.

Turn it on with ``train.mlflow: true``. The tracking server comes from ``MLFLOW_TRACKING_URI``
(for example ``sqlite:///mlflow.db``, or a server URL); the experiment is the config's ``name``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepline.errors import ConfigError
from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer


class MLflowLogger(Callback):
    order = 25
    main_only = True

    def __init__(
        self, run_dir: Path, experiment: str, params: dict[str, Any], every_steps: int = 50
    ) -> None:
        try:
            import mlflow
        except ImportError:
            raise ConfigError(
                "train.mlflow is true but mlflow is not installed: "
                "pip install mlflow (or mlflow-skinny)"
            ) from None
        self.mlflow = mlflow
        self.run_dir, self.experiment, self.params = run_dir, experiment, params
        self.every_steps = every_steps
        self.run_id: str | None = None

    def fit_start(self, trainer: Trainer) -> None:
        self.mlflow.set_experiment(self.experiment)
        # a resumed deepline run continues the same MLflow run
        run = self.mlflow.start_run(run_id=self.run_id, run_name=self.run_dir.name)
        self.run_id = run.info.run_id
        if trainer.step == 0:
            self.mlflow.log_params(self.params)
            self.mlflow.set_tag("deepline.run_dir", str(self.run_dir))

    def step_end(self, trainer: Trainer) -> None:
        if trainer.step % self.every_steps == 0 and "train/loss" in trainer.logs:
            self.mlflow.log_metrics(
                {"train/loss": trainer.logs["train/loss"], "lr": trainer.lr}, step=trainer.step
            )

    def epoch_end(self, trainer: Trainer) -> None:
        metrics = {k: v for k, v in trainer.logs.items() if k.startswith(("val/", "train/"))}
        self.mlflow.log_metrics(metrics, step=trainer.step)

    def fit_end(self, trainer: Trainer) -> None:
        config = self.run_dir / "config.yaml"
        if config.is_file():
            self.mlflow.log_artifact(str(config))
        status = "FINISHED" if trainer.stop_reason is None else "KILLED"
        self.mlflow.end_run(status=status)

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id")
