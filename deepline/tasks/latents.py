"""What a generator reads: a latent vector per image, made from a seed (or given noise) and a
class.

The model input is (B, latent_dim + K) float32: the noise, then the class one-hot (K = the
number of classes of a conditional generator, 0 otherwise). People and clients give a seed
and a class; the noise of a seed is ``numpy.random.default_rng(seed).standard_normal``, so the
same seed and class give the same image offline, through every backend and every protocol.

>>> codec = LatentCodec.for_generator(latent_dim=4, classes=["cat", "dog"])
>>> codec.decode([{"seed": 7, "class": "dog"}]).shape
(1, 6)
>>> codec.decode_named({"seed": np.array([7]), "class": np.array([1])})[0, 4:].tolist()
[0.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepline.data.codecs.base import (
    INPUT_NAME,
    InputCodec,
    as_numbers,
    check_tensor_shape,
    finite_float32,
)
from deepline.data.meta import DataMeta
from deepline.errors import InputError

FIELDS = ("seed", "class", "noise")
MAX_SEED = 2**63 - 1


def seeded_noise(seed: int, latent_dim: int) -> np.ndarray:
    """The noise vector (latent_dim,) float32 of ``seed``."""
    return np.random.default_rng(seed).standard_normal(latent_dim).astype(np.float32)


class LatentCodec(InputCodec):
    """Seeds or noise, and classes -> latents; see the module docstring."""

    name = "latent"
    tensor_dtypes = ("float32", "float64", "int64", "int32")
    takes_bytes = True  # class names

    def __init__(self, preprocessing: Mapping[str, Any]) -> None:
        super().__init__(preprocessing)
        self.latent_dim = int(preprocessing["latent_dim"])
        self.classes = [str(c) for c in preprocessing.get("classes", [])]

    @classmethod
    def for_generator(cls, latent_dim: int, classes: Sequence[str]) -> LatentCodec:
        width = latent_dim + len(classes)
        return cls({"codec": cls.name, "input_shape": [width], "latent_dim": latent_dim,
                    "classes": list(classes)})  # fmt: skip

    @classmethod
    def preprocessing_of(cls, meta: DataMeta) -> dict[str, Any]:
        raise InputError("a latent input belongs to a generator's task, not to a dataset")

    def input_spec(self) -> dict[str, Any]:
        return {"name": INPUT_NAME, "dtype": "float32", "shape": [-1, self.input_shape[0]]}

    def form(self) -> dict[str, Any]:
        return {"type": "latent", "latent_dim": self.latent_dim, "classes": self.classes}

    def named_inputs(self) -> list[dict[str, Any]]:
        """The whole latents, or a seed or the noise per image, with its class."""
        seeds = [{"name": "seed", "dtype": "int64", "shape": [-1]},
                 {"name": "noise", "dtype": "float32", "shape": [-1, self.latent_dim]}]  # fmt: skip
        classes = [{"name": "class", "dtype": "bytes", "shape": [-1]}] if self.classes else []
        return [self.input_spec(), *seeds, *classes]

    # -- decoding -----------------------------------------------------------------------------

    def latents(self, seeds: Sequence[int], classes: Sequence[int]) -> np.ndarray:
        """Model-ready latents of seeds and class indices (classes ignored, and may be empty,
        for an unconditional generator)."""
        noise = np.stack([seeded_noise(int(s), self.latent_dim) for s in seeds])
        return self._with_classes(noise, classes)

    def decode(self, items: Sequence[Any]) -> np.ndarray:
        """Objects ``{"seed": 3, "class": "7"}`` (or ``"noise": [...]`` instead of the seed);
        a conditional generator needs the class, by name or index."""
        if not items:
            raise InputError("no inputs")
        noise, classes = [], []
        for item in items:
            if not isinstance(item, Mapping):
                raise InputError(
                    f"a generator's input is an object such as {self.sample_inputs(1)[0]}, "
                    f"not {type(item).__name__}"
                )
            unknown = sorted(set(map(str, item)) - set(FIELDS))
            if unknown:
                raise InputError(f"unknown field '{unknown[0]}'; a generator reads {FIELDS}")
            noise.append(self._noise(item.get("seed"), item.get("noise")))
            classes.append(self._class(item.get("class")))
        return self._with_classes(np.stack(noise), classes)

    def decode_tensor(self, array: np.ndarray) -> np.ndarray:
        """Whole latents (B, latent_dim + K), as the model reads them."""
        array = as_numbers(array)
        check_tensor_shape(array, self.input_spec()["shape"])
        return finite_float32(array)

    def decode_named(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """The one ``input`` (whole latents or objects), or columns ``seed`` or ``noise``
        (B, latent_dim) and ``class`` (indices or names), each with one row per image."""
        if set(inputs) <= {INPUT_NAME, ""}:
            return super().decode_named(inputs)
        unknown = sorted(set(inputs) - set(FIELDS))
        if unknown:
            raise InputError(
                f"unknown input '{unknown[0] or '(unnamed)'}'; a generator takes 'seed' or "
                "'noise', and 'class' when conditional (or one 'input' of latents)"
            )
        columns = {key: _rows(value) for key, value in inputs.items()}
        counts = {len(rows) for rows in columns.values()}
        if len(counts) != 1:
            raise InputError(f"inputs have different numbers of rows: {sorted(counts)}")
        (n,) = counts
        return self.decode([{key: rows[i] for key, rows in columns.items()} for i in range(n)])

    def sample_inputs(self, n: int, seed: int = 0) -> list[Any]:
        return [
            {"seed": seed * 1000 + i, **({"class": self.classes[i % len(self.classes)]}
                                        if self.classes else {})}
            for i in range(n)
        ]  # fmt: skip

    def summaries(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The noise's mean and spread per example (classes left out)."""
        noise = np.asarray(batch, dtype=np.float64)[:, : self.latent_dim]
        return {"mean": noise.mean(1), "std": noise.std(1)}

    # -- internals ------------------------------------------------------------------------------

    def _noise(self, seed: Any, noise: Any) -> np.ndarray:
        if (seed is None) == (noise is None):
            raise InputError("give each image either a 'seed' or its 'noise', not both")
        if noise is not None:
            values = finite_float32(as_numbers(noise)).reshape(-1)
            if values.shape != (self.latent_dim,):
                raise InputError(f"'noise' must be {self.latent_dim} numbers, got {values.size}")
            return values
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, float, np.number)):
            raise InputError(f"'seed' must be a whole number, got {seed!r}")
        if not (math.isfinite(seed) and float(seed).is_integer() and 0 <= seed <= MAX_SEED):
            raise InputError(f"'seed' must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
        return seeded_noise(int(seed), self.latent_dim)

    def _class(self, given: Any) -> int:
        if not self.classes:
            if given is not None:
                raise InputError("this generator is not conditional: it takes no 'class'")
            return -1
        if isinstance(given, bytes):
            given = given.decode("utf-8", "replace")
        if isinstance(given, str) and given in self.classes:
            return self.classes.index(given)
        if isinstance(given, str) and given.isdigit():  # an index typed as text
            given = int(given)
        number = isinstance(given, (int, float, np.number)) and not isinstance(given, np.bool_)
        if number and float(given).is_integer() and 0 <= given < len(self.classes):
            return int(given)
        if given is None:
            raise InputError(f"this generator is conditional: give a 'class' of {self.classes}")
        raise InputError(f"unknown class {given!r}; the classes are {self.classes}")

    def _with_classes(self, noise: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        if not self.classes:
            return noise.astype(np.float32)
        one_hot = np.eye(len(self.classes), dtype=np.float32)[np.asarray(classes, dtype=np.int64)]
        return np.concatenate([noise, one_hot], 1).astype(np.float32)


def _rows(value: Any) -> list[Any]:
    """A column of a protocol's named inputs as one Python value per row."""
    array = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=object)
    if array.ndim == 0:
        raise InputError("each input needs one row per image")
    if array.dtype.kind in "iuf":
        return [row.tolist() if row.ndim else row.item() for row in array]
    return [row.tolist() if isinstance(row, np.ndarray) else row for row in array]
