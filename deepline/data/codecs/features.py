"""Named numbers: a flat vector of features per example -> standardised float32 (N, F).

An example is a list of F numbers in the model's feature order, or an object naming every
feature (``{"age": 59, "bmi": 32.1, ...}``); protocols may also send one tensor per feature.
Standardisation uses the training split's mean and standard deviation of each feature.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepline.data.codecs.base import (
    INPUT_NAME,
    InputCodec,
    UnitSpace,
    as_numbers,
    check_tensor_shape,
    finite_float32,
)
from deepline.data.meta import DataMeta
from deepline.errors import InputError
from deepline.registry import CODECS, did_you_mean

MAX_DRIFT_FEATURES = 32  # features watched one by one for drift; beyond, the first 32


@CODECS.register("features", example="diabetes")
class FeaturesCodec(InputCodec):
    """``(value - mean) / std`` for each named feature."""

    name = "features"
    tensor_dtypes = ("float32", "float64", "int64", "int32")

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        super().__init__(preprocessing)
        self.names: list[str] = list(preprocessing["feature_names"])
        self.mean = np.asarray(preprocessing["mean"], dtype=np.float32)
        self.std = np.asarray(preprocessing["std"], dtype=np.float32)
        if not len(self.names) == len(self.mean) == len(self.std) == self.input_shape[0]:
            raise InputError("features preprocessing: names, mean and std differ in length")

    @classmethod
    def preprocessing_of(cls, meta: DataMeta) -> dict[str, Any]:
        return {
            "input_shape": list(meta.input_shape),
            "feature_names": list(meta.feature_names),
            "mean": list(meta.mean),
            "std": list(meta.std),
        }

    def input_spec(self) -> dict[str, Any]:
        return {"name": INPUT_NAME, "dtype": "float32", "shape": [-1, len(self.names)]}

    def form(self) -> dict[str, Any]:
        fields = [
            {"name": n, "mean": float(m), "std": float(s)}
            for n, m, s in zip(self.names, self.mean, self.std)
        ]
        return {"type": "fields", "fields": fields}

    def decode(self, items: Sequence[Any]) -> np.ndarray:
        if not len(items):
            raise InputError("no inputs given")
        rows = [self._row(item) for item in items]
        return self._standardise(np.stack(rows))

    def decode_tensor(self, array: np.ndarray) -> np.ndarray:
        if array.ndim == 1:
            array = array[None]  # one example
        check_tensor_shape(array, self.input_spec()["shape"])
        return self._standardise(finite_float32(as_numbers(array)))

    def decode_named(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """One input holding whole rows, or one tensor per feature (every feature named)."""
        if set(inputs) in ({INPUT_NAME}, {""}):
            return super().decode_named(inputs)
        self._check_names(inputs, "inputs")
        columns = [finite_float32(as_numbers(inputs[n])).reshape(-1) for n in self.names]
        if len({len(c) for c in columns}) > 1:
            raise InputError("every feature must have the same number of values")
        return self._standardise(np.stack(columns, axis=1))

    def sample_inputs(self, n: int, seed: int = 0) -> list[Any]:
        """Objects naming every feature, values drawn around the training mean."""
        rng = np.random.default_rng(seed)
        values = self.mean + self.std * rng.standard_normal((n, len(self.names)))
        return [{name: round(float(v), 4) for name, v in zip(self.names, row)} for row in values]

    def read_file(self, path: Path) -> list[tuple[str, Any]]:
        """Rows of a CSV with a header naming the features (other columns are ignored), or a
        JSON object or list of objects naming them; each row named ``file[i]``."""
        try:
            if path.suffix.lower() == ".json":
                doc = json.loads(path.read_text(encoding="utf-8"))
                rows = doc if isinstance(doc, list) else [doc]
            else:
                with path.open(newline="", encoding="utf-8-sig") as fh:
                    rows = [
                        {k: _number(v, path) for k, v in row.items() if k in self.names}
                        for row in csv.DictReader(fh)
                    ]
        except (OSError, UnicodeDecodeError, ValueError, csv.Error) as err:
            raise InputError(f"'{path}' is not readable as rows of features ({err})") from None
        if not rows:
            raise InputError(f"'{path}' holds no rows")
        return [(f"{path}[{i}]", row) for i, row in enumerate(rows)]

    def summaries(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Each feature's (standardised) value: drift is watched feature by feature."""
        values = np.asarray(batch, dtype=np.float64)
        return {name: values[:, i] for i, name in enumerate(self.names[:MAX_DRIFT_FEATURES])}

    def unit_space(self) -> UnitSpace:
        """Standardised features: an epsilon is in standard deviations of each."""
        return UnitSpace(torch.ones(()), torch.zeros(()))

    def _row(self, item: Any) -> np.ndarray:
        if isinstance(item, Mapping):
            self._check_names(item, "an input")
            item = [item[name] for name in self.names]
        values = finite_float32(as_numbers(item)).reshape(-1)
        if len(values) != len(self.names):
            raise InputError(
                f"an input must hold {len(self.names)} numbers ({', '.join(self.names[:8])}"
                f"{', ...' if len(self.names) > 8 else ''}), got {len(values)}"
            )
        return values

    def _check_names(self, given: Mapping[str, Any], what: str) -> None:
        unknown = [k for k in given if k not in self.names]
        if unknown:
            raise InputError(
                f"{what} names an unknown feature '{unknown[0]}'."
                f"{did_you_mean(unknown[0], self.names)} Features: {', '.join(self.names)}"
            )
        missing = [n for n in self.names if n not in given]
        if missing:
            raise InputError(f"{what} lacks the feature(s) {', '.join(missing[:8])}")

    def _standardise(self, rows: np.ndarray) -> np.ndarray:
        return finite_float32((rows - self.mean) / self.std)


def _number(text: str | None, path: Path) -> float:
    try:
        return float(text or "")
    except ValueError:
        raise InputError(f"'{path}': {text!r} is not a number") from None
