"""Bundles: what leaves the lab. ``model.safetensors`` + ``bundle.json`` + the exported formats.

``bundle.json``'s ``files`` maps a role to a file of the folder: ``weights``, ``examples`` (the
inputs export checked on), ``reference`` (drift statistics), ``tokenizer`` (text models), and
per exported format ``onnx``, ``torchscript``, ``int8`` (``model.int8.onnx`` for ONNX Runtime or
``model.int8.pt`` for TorchScript, as ``bundle.json``'s ``int8.runtime`` says).

Reading a bundle never unpickles anything and never touches training code: the model is rebuilt
from the model registry and its config, and the weights come from safetensors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepline.config import task_config
from deepline.data.meta import DataMeta
from deepline.errors import DeeplineError
from deepline.runs import read_json
from deepline.tasks import Task, build_task
from deepline.tasks.saved import rebuild_model
from deepline.tensor_files import load_tensors, tensors_sha256

BUNDLE_FORMAT = "deepline-bundle/1"
CARD_FILE = "model_card.json"


@dataclass
class Bundle:
    path: Path
    spec: dict[str, Any]

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.spec["preprocessing"])

    @property
    def classes(self) -> list[str]:
        return list(self.spec["data"]["classes"])

    def file(self, key: str) -> Path | None:
        name = self.spec.get("files", {}).get(key)
        return self.path / name if name else None

    def examples(self) -> dict[str, torch.Tensor]:
        """The inputs export checked the bundle on: ``test_x``, ``test_y``, ``calibration``."""
        path = self.file("examples")
        if path is None or not path.is_file():
            raise DeeplineError(
                f"bundle '{self.path}' has no examples.safetensors (exported before bundles "
                "kept their check inputs); re-export the run with `deepline export RUN_DIR`"
            )
        return load_tensors(path)

    def reference(self) -> dict[str, Any] | None:
        """The drift reference (``reference.json``), or None for a bundle without one."""
        path = self.file("reference")
        if path is None or not path.is_file():
            return None
        reference = read_json(path)
        if not isinstance(reference, dict):
            raise DeeplineError(f"'{path}' is not a readable drift reference (JSON object)")
        return reference

    def task(self) -> Task:
        meta = DataMeta.from_dict(self.spec["data"])
        if self.file("tokenizer") is not None:
            meta.tokenizer = self.tokenizer_json()
        return build_task(task_config(self.spec["task"]), meta)

    def tokenizer_json(self) -> str:
        """The bundle's tokenizer, verified against the sha256 that bundle.json records."""
        path = self.file("tokenizer")
        if path is None or not path.is_file():
            raise DeeplineError(f"bundle '{self.path}' has no tokenizer file")
        text = path.read_text()
        expected = self.spec.get("tokenizer_sha256")
        if sha256_text(text) != expected:
            raise DeeplineError(
                f"'{path}' does not match this bundle: its sha256 is {sha256_text(text)}, "
                f"bundle.json expects {expected}. Restore the bundle's own tokenizer.json "
                "(re-export the run)"
            )
        return text

    def weights_sha256(self) -> str:
        """The digest a model card is bound to (``tensors_sha256`` of the weights file)."""
        weights = self.file("weights")
        if weights is None or not weights.is_file():
            raise DeeplineError(f"bundle '{self.path}' has no weights file")
        return tensors_sha256(load_tensors(weights))

    def card(self) -> dict[str, Any] | None:
        """``model_card.json`` (``deepline audit``) with ``describes_this_bundle``: whether
        its weights digest and data fingerprint are this bundle's; None when there is none."""
        card = read_json(self.path / CARD_FILE, None)
        if not isinstance(card, dict):
            return None
        problems = self.card_problems(card)
        bound = {k: v for k, v in card.get("bound_to", {}).items() if k != "run"}  # local path
        return {**card, "bound_to": bound, "describes_this_bundle": not problems,
                "problems": problems}  # fmt: skip

    def card_problems(self, card: dict[str, Any]) -> list[str]:
        """Why a model card does not describe this bundle (empty: it does): other weights,
        other data, or another temperature than the bundle applies."""
        bound, problems = card.get("bound_to", {}), []
        actual = self.weights_sha256()
        if bound.get("weights_sha256") != actual:
            problems.append(
                f"weights differ: the card describes sha256 {bound.get('weights_sha256')}, the "
                f"bundle holds {actual}"
            )
        fingerprint = self.spec.get("data_fingerprint")
        if bound.get("data_fingerprint") != fingerprint:
            problems.append(
                f"data differ: the card's fingerprint is {bound.get('data_fingerprint')}, the "
                f"bundle's {fingerprint}"
            )
        described, applied = card.get("bundle_calibration"), self.spec.get("calibration")
        if described is not None and _temperature(described) != _temperature(applied):
            problems.append(
                f"calibration differs: the card describes a bundle applying temperature "
                f"{_temperature(described)}, this bundle applies {_temperature(applied)}"
            )
        described, applied = card.get("bundle_thresholds"), self.spec.get("thresholds")
        if "bundle_thresholds" in card and _rule(described) != _rule(applied):
            problems.append(
                "group thresholds differ: the card describes a bundle deciding by "
                f"{_rule(described) or 'no thresholds'}, this bundle by "
                f"{_rule(applied) or 'no thresholds'}"
            )
        return problems

    def torch_model(self) -> nn.Module:
        """The model with its weights, in eval mode."""
        return rebuild_model(self.task(), self.spec["model"], self.file("weights"), self.path)


def _temperature(calibration: Any) -> float | None:
    """The temperature a bundle's calibration block applies (None: none)."""
    if isinstance(calibration, dict) and calibration.get("applied"):
        return float(calibration["temperature"])
    return None


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def load_bundle(path: str | Path) -> Bundle:
    """Open a bundle folder (or its ``bundle.json``), checking its format."""
    path = Path(path)
    if path.name == "bundle.json":
        path = path.parent
    spec = read_json(path / "bundle.json")
    if not isinstance(spec, dict) or spec.get("format") != BUNDLE_FORMAT:
        raise DeeplineError(
            f"'{path}' is not a deepline bundle (expected {path / 'bundle.json'} "
            f"with format {BUNDLE_FORMAT}); create one with `deepline export RUN_DIR`"
        )
    return Bundle(path, spec)


def _rule(thresholds: Any) -> str | None:
    """What a bundle's thresholds block decides by (None: nothing)."""
    if isinstance(thresholds, dict) and thresholds.get("applied"):
        return f"{thresholds['constraint']} on {thresholds['column']} {thresholds['rule']}"
    return None
