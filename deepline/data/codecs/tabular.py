"""Rows of a table -> float32 (N, F) with the schema fitted on the training split.

An example is an object naming every input column (``{"age": 39, "workclass": "Private",
...}``; a sensitive column the model does not see may be given and is ignored), or a list of
values in column order. Protocols may send one tensor per column (KServe V2: BYTES for
categorical columns, numbers for numeric ones). A missing value (null, "", "?") is allowed; a
category training never saw, a missing or unknown column, or text in a numeric column is an
InputError naming it: a served row is answered only for values the model was trained on. See
``deepline.data.tabular`` for the encoding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepline.data.codecs.base import INPUT_NAME, InputCodec
from deepline.data.meta import DataMeta
from deepline.data.tabular import CATEGORICAL, Column, Table, encode, read_table
from deepline.errors import DataError, InputError
from deepline.registry import CODECS, did_you_mean

MAX_DRIFT_COLUMNS = 32


@CODECS.register("tabular", example="adult")
class TabularCodec(InputCodec):
    """Each column encoded as training fitted it (standardised, or a vocabulary index)."""

    name = "tabular"
    tensor_dtypes = ("float32", "float64", "int64", "int32")
    takes_bytes = True  # categorical columns arrive as BYTES tensors

    def __init__(self, preprocessing: Mapping[str, Any]) -> None:
        super().__init__(preprocessing)
        self.columns = [Column(**c) for c in preprocessing["columns"]]
        self.names = [c.name for c in self.columns]
        self.ignored = [s for s in preprocessing.get("sensitive", []) if s not in self.names]
        if len(self.columns) != self.input_shape[0]:
            raise InputError("tabular preprocessing: columns and input_shape differ")

    @classmethod
    def preprocessing_of(cls, meta: DataMeta) -> dict[str, Any]:
        return {
            "input_shape": list(meta.input_shape),
            "columns": list(meta.columns),
            "sensitive": list(meta.sensitive),
        }

    def input_spec(self) -> dict[str, Any]:
        return {"name": INPUT_NAME, "dtype": "float32", "shape": [-1, len(self.columns)]}

    def form(self) -> dict[str, Any]:
        fields: list[dict[str, Any]] = []
        for c in self.columns:
            if c.kind == CATEGORICAL:
                fields.append({"name": c.name, "options": c.vocabulary})
            else:
                fields.append({"name": c.name, "mean": c.mean, "std": c.std})
        return {"type": "fields", "fields": fields}

    # -- decoding -----------------------------------------------------------------------------

    def decode(self, items: Sequence[Any]) -> np.ndarray:
        if not len(items):
            raise InputError("no inputs given")
        rows = [self._row(item, i) for i, item in enumerate(items)]
        table = Table({name: [row[name] for row in rows] for name in self.names})
        return encode(table, self.columns, "input", strict=True)

    def decode_tensor(self, array: np.ndarray) -> np.ndarray:
        """Whole rows as numbers in column order (categorical columns as their values, which
        must then be numbers too)."""
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != len(self.names):
            raise InputError(
                f"a tensor of rows must be shaped [N, {len(self.names)}] (columns "
                f"{', '.join(self.names[:6])}{', ...' if len(self.names) > 6 else ''}), "
                f"got {list(array.shape)}"
            )
        return self.decode([dict(zip(self.names, row.tolist())) for row in array])

    def decode_named(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """One input of whole rows, or one tensor per column (every input column named)."""
        if set(inputs) in ({INPUT_NAME}, {""}):
            return super().decode_named(inputs)
        self._check_names(inputs, "the request")
        values = {name: _values(inputs[name]) for name in self.names}
        if len({len(v) for v in values.values()}) > 1:
            raise InputError("every column must have the same number of values")
        n = len(values[self.names[0]])
        return self.decode([{name: values[name][i] for name in self.names} for i in range(n)])

    def sample_inputs(self, n: int, seed: int = 0) -> list[Any]:
        """Objects naming every column: numbers around the training mean, frequent
        categories."""
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            row: dict[str, Any] = {}
            for c in self.columns:
                if c.kind == CATEGORICAL:
                    row[c.name] = c.vocabulary[int(rng.integers(min(3, len(c.vocabulary))))] \
                        if c.vocabulary else None  # fmt: skip
                else:
                    row[c.name] = round(float(c.mean + c.std * rng.standard_normal()), 3)
            out.append(row)
        return out

    def read_file(self, path: Path) -> list[tuple[str, Any]]:
        """The rows of a CSV or Parquet file with a header naming the columns (other columns
        are ignored), or of a JSON object or list of objects; each named ``file[i]``."""
        try:
            if path.suffix.lower() == ".json":
                doc = json.loads(path.read_text(encoding="utf-8"))
                rows = doc if isinstance(doc, list) else [doc]
            else:
                table = read_table(path)
                present = [n for n in (*self.names, *self.ignored) if n in table.columns]
                rows = [{n: table.columns[n][i] for n in present} for i in range(len(table))]
        except (OSError, UnicodeDecodeError, ValueError, DataError) as err:
            raise InputError(f"'{path}' is not readable as rows of a table ({err})") from None
        if not rows:
            raise InputError(f"'{path}' holds no rows")
        return [(f"{path}[{i}]", row) for i, row in enumerate(rows)]

    # -- for monitoring and people ------------------------------------------------------------

    def summaries(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Each column's encoded value: drift is watched column by column."""
        values = np.asarray(batch, dtype=np.float64)
        return {name: values[:, i] for i, name in enumerate(self.names[:MAX_DRIFT_COLUMNS])}

    # -- helpers ------------------------------------------------------------------------------

    def _row(self, item: Any, index: int) -> dict[str, Any]:
        if isinstance(item, Mapping):
            self._check_names(item, f"input {index}")
            return {name: item[name] for name in self.names}
        if isinstance(item, (list, tuple)) and len(item) == len(self.names):
            return dict(zip(self.names, item))
        raise InputError(
            f"input {index} must be an object naming the columns {', '.join(self.names[:6])}"
            f"{', ...' if len(self.names) > 6 else ''}, or a list of {len(self.names)} values"
        )

    def _check_names(self, given: Mapping[str, Any], what: str) -> None:
        unknown = [k for k in given if k not in self.names and k not in self.ignored]
        if unknown:
            raise InputError(
                f"{what} names an unknown column '{unknown[0]}'."
                f"{did_you_mean(unknown[0], self.names)} Columns: {', '.join(self.names)}"
            )
        missing = [n for n in self.names if n not in given]
        if missing:
            raise InputError(f"{what} lacks the column(s) {', '.join(missing[:8])}")


def _values(value: Any) -> list[Any]:
    """A column's values from a protocol: a list, or an array (BYTES elements decoded)."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1).tolist()
    elif not isinstance(value, list):
        value = [value]
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
