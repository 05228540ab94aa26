"""The Python API, from one line to your own model.

>>> import deepline
>>> run = deepline.train("digits_lenet", overrides={"train.epochs": 1})   # doctest: +SKIP
>>> run.evaluate()["metrics"]["accuracy"]                                  # doctest: +SKIP
0.93...
>>> run.export()                                                           # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepline.config import ExperimentConfig, load_config
from deepline.data import DataSplits
from deepline.data.meta import DataMeta, Split
from deepline.errors import ConfigError
from deepline.evaluate.loading import TrainedRun, load_trained, run_device
from deepline.models.shapes import fit_to_weights
from deepline.runs import check_run_dir, read_json
from deepline.training.checkpoint import find_checkpoint, load_checkpoint, weights
from deepline.training.experiment import Experiment, run_training

# the input codec and task of the tensors ``fit`` takes, by their number of dimensions
TENSOR_LAYOUTS = {4: ("image", "image_classification"), 3: ("sequence", "sequence_classification")}


class Run:
    """A run folder, with the steps that follow training.

    ``Run("runs/digits_lenet/20261129-101500")`` opens an existing run.
    """

    def __init__(self, path: str | Path, experiment: Experiment | None = None) -> None:
        self.path = check_run_dir(path)
        self._experiment = experiment

    def __repr__(self) -> str:
        return f"Run('{self.path}', status={self.status.get('status')!r})"

    @property
    def config(self) -> ExperimentConfig:
        return load_config(self.path / "config.yaml")

    @property
    def status(self) -> dict[str, Any]:
        return read_json(self.path / "status.json", {}) or {}

    def _trained(self, checkpoint: str | None = None, device: str | None = "cpu") -> TrainedRun:
        exp = self._experiment
        if exp is None or exp.config.model.name != "custom":
            return load_trained(self.path, checkpoint, device=device)
        # a model the registry cannot rebuild: reuse the live module with the chosen weights
        cfg = exp.config
        which = checkpoint or cfg.eval.checkpoint
        path = find_checkpoint(self.path / "checkpoints", which, cfg.train.checkpoint.mode)
        state = weights(load_checkpoint(path)[0])
        fit_to_weights(exp.model, state)
        exp.model.load_state_dict(state)
        exp.model.to(run_device(cfg.train.device) if device is None else device)
        exp.model.eval()
        return TrainedRun(self.path, cfg, exp.data, exp.task, exp.model, path)

    def evaluate(
        self, split: str | None = None, checkpoint: str | None = None, device: str | None = None
    ) -> dict[str, Any]:
        """Metrics on ``split`` (default: the config's); writes eval.json and plots. Runs on
        ``device`` (default: the run's ``train.device`` when this machine has it)."""
        from deepline.evaluate.evaluate import evaluate_trained
        from deepline.runs import write_json

        run = self._trained(checkpoint, device)
        result = evaluate_trained(run, split or run.config.eval.split)
        write_json(self.path / "eval.json", result)
        return result

    def export(self, checkpoint: str | None = None) -> dict[str, Any]:
        """Write the bundle (RUN/bundle) and check ONNX against PyTorch."""
        from deepline.deploy.export import export_trained

        return export_trained(self._trained(checkpoint))

    def report(self) -> Path:
        from deepline.report import write_report

        return write_report(self.path)

    def predictor(self, backend: str = "onnx", device: str = "cpu") -> Any:
        """A Predictor of the run's bundle; ``device`` for the ``torch`` backend."""
        from deepline.deploy.predictor import Predictor

        return Predictor(self.path / "bundle", backend, device=device)


def train(
    config: str | Path | dict[str, Any] | ExperimentConfig,
    overrides: dict[str, Any] | list[str] | None = None,
    runs_dir: str | Path = "runs",
    data_dir: str | None = None,
    device: str | None = None,
) -> Run:
    """Train from a YAML path, a shipped config name, a dict or an ExperimentConfig;
    ``device`` overrides ``train.device`` (auto, cpu, cuda, cuda:N, mps)."""
    if isinstance(config, ExperimentConfig):
        config = config.model_dump()
    overrides = dict(overrides or {}) if not isinstance(overrides, list) else overrides
    if data_dir is not None:
        overrides = _with(overrides, "data.data_dir", data_dir)
    if device is not None:
        overrides = _with(overrides, "train.device", device)
    cfg = load_config(config, overrides)
    exp = run_training(cfg, runs_dir)
    return Run(exp.run_dir, exp)


def resume(run_dir: str | Path) -> Run:
    """Continue a run folder from its last complete checkpoint."""
    exp = run_training(None, run_dir=check_run_dir(run_dir))
    return Run(exp.run_dir, exp)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    validation_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    test_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    classes: list[str] | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adamw",
    name: str = "fit",
    runs_dir: str | Path = "runs",
    seed: int = 0,
    **train_options: Any,
) -> Run:
    """Keras-style training of your own classifier on tensors; you still get a run folder.

    ``x`` is (N, ...) float inputs as the model takes them, ``y`` (N,) class indices. Checkpoints,
    TensorBoard, metrics.jsonl and the report are written as for a config run.
    """
    if x.ndim not in TENSOR_LAYOUTS:
        raise ConfigError(
            f"fit takes images x (N, C, H, W) or sequences x (N, T, F), got shape {tuple(x.shape)}"
        )
    codec, task = TENSOR_LAYOUTS[x.ndim]
    n_classes = int(y.max()) + 1
    classes = classes or [str(i) for i in range(n_classes)]
    val = validation_data or (x[:0], y[:0])
    test = test_data or val
    meta = DataMeta(
        name="tensors",
        codec=codec,
        input_shape=tuple(x.shape[1:]),
        classes=classes,
        input_scale=1.0,
        mean=[0.0],
        std=[1.0],
        fingerprint="",
        sizes={"train": len(x), "val": len(val[0]), "test": len(test[0])},
        files=[],
    )
    data = DataSplits(
        Split(x.float(), y.long()),
        Split(val[0].float(), val[1].long()),
        Split(test[0].float(), test[1].long()),
        meta,
    )
    target = f"{type(model).__module__}:{type(model).__qualname__}"
    cfg = load_config(
        {
            "name": name,
            "seed": seed,
            "data": {"name": "tensors"},
            "model": {"name": "custom", "target": target},
            "task": {"name": task},
            "train": {
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "optimizer": optimizer,
                **train_options,
            },
        }
    )
    exp = run_training(cfg, runs_dir, data=data, model=model)
    return Run(exp.run_dir, exp)


def _with(overrides: dict[str, Any] | list[str], key: str, value: Any) -> Any:
    if isinstance(overrides, list):
        return [*overrides, f"{key}={value}"]
    return {**overrides, key: value}
