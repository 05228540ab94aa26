"""A history of a time series -> its last ``context`` values, float32 (N, context, F).

An example is the history: a list of numbers (the target alone) or of rows ``[target,
covariate, ...]``, oldest first, at least ``context`` long (longer histories are cut to their
end). Values stay in their own units: a forecaster scales each window by its own past.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from deepline.data.codecs.base import (
    INPUT_NAME,
    InputCodec,
    UnitSpace,
    as_numbers,
    finite_float32,
)
from deepline.data.meta import DataMeta
from deepline.errors import InputError
from deepline.registry import CODECS


@CODECS.register("series", example="series-csv")
class SeriesCodec(InputCodec):
    """The last ``context`` steps of each history, as they are."""

    name = "series"
    tensor_dtypes = ("float32", "float64", "int64", "int32")

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        super().__init__(preprocessing)
        self.context, self.features = (int(n) for n in self.input_shape)
        self.columns: list[str] = list(preprocessing.get("columns") or [])
        self.example = np.asarray(preprocessing.get("example") or [], dtype=np.float32)

    @classmethod
    def preprocessing_of(cls, meta: DataMeta) -> dict[str, Any]:
        return {"input_shape": list(meta.input_shape), "columns": list(meta.feature_names),
                "example": meta.series.get("example", [])}  # fmt: skip

    def input_spec(self) -> dict[str, Any]:
        return {"name": INPUT_NAME, "dtype": "float32", "shape": [-1, self.context, self.features]}

    def form(self) -> dict[str, Any]:
        example = self.example[:, 0] if self.features == 1 else self.example
        return {"type": "array", "shape": [-1, self.features], "min_length": self.context,
                "columns": self.columns, "example": np.round(example, 4).tolist()}  # fmt: skip

    def decode(self, items: Sequence[Any]) -> np.ndarray:
        if not len(items):
            raise InputError("no inputs given")
        return np.stack([self._history(as_numbers(item)) for item in items])

    def decode_tensor(self, array: np.ndarray) -> np.ndarray:
        array = as_numbers(array)
        if array.ndim == 2 and self.features == 1:
            array = array[..., None]  # (N, T) histories of the target alone
        if array.ndim != 3:
            raise InputError(f"histories must be (N, T, {self.features}), got {list(array.shape)}")
        return np.stack([self._history(h) for h in array])

    def sample_inputs(self, n: int, seed: int = 0) -> list[Any]:
        """The end of the training series, each value moved by up to 5%."""
        rng = np.random.default_rng(seed)
        base = self.example if len(self.example) else np.ones((self.context, self.features))
        histories = base * (1 + 0.05 * rng.uniform(-1, 1, (n, *base.shape)))
        if self.features == 1:
            return [h[:, 0].round(4).tolist() for h in histories]
        return [h.round(4).tolist() for h in histories]

    def summaries(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The last value and the mean of each history's target (what drift watches)."""
        values = np.asarray(batch, dtype=np.float64)[:, :, 0]
        return {"last": values[:, -1], "mean": values.mean(1)}

    def unit_space(self) -> UnitSpace:
        return UnitSpace(torch.ones(()), torch.zeros(()))

    def _history(self, values: np.ndarray) -> np.ndarray:
        values = finite_float32(values)
        if values.ndim == 1 and self.features == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[1] != self.features:
            shape = "numbers" if self.features == 1 else f"rows of {self.features} numbers"
            raise InputError(f"a history must be a list of {shape}, got shape "
                             f"{list(values.shape)}")  # fmt: skip
        if len(values) < self.context:
            raise InputError(
                f"a history of {len(values)} values is shorter than the model's context: it "
                f"reads the last {self.context}"
            )
        return values[-self.context :]
