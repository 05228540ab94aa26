"""Sequences of numbers: (T, F) per example -> normalised float32 (N, T, F).

Whole numbers are raw values (divided by the dataset's ``input_scale``, 255 for MNIST rows);
fractions are taken as already scaled to [0, 1]. The statistics are the training split's.
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
    check_tensor_shape,
    finite_float32,
    stack,
)
from deepline.data.meta import DataMeta
from deepline.errors import InputError
from deepline.registry import CODECS


@CODECS.register("sequence", example="sequential-digits")
class SequenceCodec(InputCodec):
    """``(raw / input_scale - mean) / std`` for every value of a (T, F) sequence."""

    name = "sequence"
    tensor_dtypes = ("float32", "float64", "float16", "int64", "int32", "uint8")

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        super().__init__(preprocessing)
        self.features = self.input_shape[-1]
        self.input_scale = float(preprocessing.get("input_scale", 1.0))
        # one value for every feature, or one per feature: either broadcasts over (N, T, F)
        self.mean = np.asarray(preprocessing.get("mean") or [0.0], dtype=np.float32)
        self.std = np.asarray(preprocessing.get("std") or [1.0], dtype=np.float32)

    @classmethod
    def preprocessing_of(cls, meta: DataMeta) -> dict[str, Any]:
        return {
            "input_shape": list(meta.input_shape),
            "input_scale": meta.input_scale,
            "mean": list(meta.mean),
            "std": list(meta.std),
        }

    def input_spec(self) -> dict[str, Any]:
        # batch and length are dynamic: a model that cannot take other lengths says so at export
        return {"name": INPUT_NAME, "dtype": "float32", "shape": [-1, -1, self.features]}

    def form(self) -> dict[str, Any]:
        return {"type": "array", "shape": [-1, self.features],
                "example": [[0.0] * self.features] * 3}  # fmt: skip

    def decode(self, items: Sequence[Any]) -> np.ndarray:
        if not len(items):
            raise InputError("no inputs given")
        return self._normalise(stack([self._sequence(item) for item in items]))

    def decode_tensor(self, array: np.ndarray) -> np.ndarray:
        check_tensor_shape(array, self.input_spec()["shape"])
        return self._normalise(self._scaled(array))

    def sample_inputs(self, n: int, seed: int = 0) -> list[Any]:
        """Sequences of 5 steps, values in [0, 1]."""
        rng = np.random.default_rng(seed)
        return [rng.random((5, self.features)).round(3).tolist() for _ in range(n)]

    def _sequence(self, item: Any) -> np.ndarray:
        values = self._scaled(item)
        if values.ndim == 1 and self.features == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[1] != self.features or len(values) < 1:
            raise InputError(
                f"a sequence must be (T, {self.features}) numbers, got shape {list(values.shape)}"
            )
        return values

    def _scaled(self, item: Any) -> np.ndarray:
        array = as_numbers(item)
        values = finite_float32(array)
        return values / self.input_scale if array.dtype.kind in "ui" else values

    def _normalise(self, batch: np.ndarray) -> np.ndarray:
        return finite_float32((batch - self.mean) / self.std)

    def show(self, batch: torch.Tensor) -> torch.Tensor:
        """A (T, F) sequence shows as a T x F grey picture."""
        return self.unit_space().to_unit(batch.float().cpu())[:, None].clamp(0, 1)

    def unit_space(self) -> UnitSpace:
        """The values before normalisation (after ``input_scale``), unbounded."""
        return UnitSpace(torch.from_numpy(self.std), torch.from_numpy(self.mean))
