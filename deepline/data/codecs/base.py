"""The input codec contract: raw inputs in, model inputs out, described for clients and people.

A codec is bound to one dataset's (or bundle's) preprocessing: the numbers and files that turn
what a person or client has (encoded images, pixels, texts, named numbers) into exactly what
the model was trained on. It also says what it accepts (for each protocol's metadata and
checks), how people give such an input (the web page), how to summarise a batch for drift
monitoring, and how to show inputs to people.

>>> from deepline.config import DataConfig
>>> from deepline.data import load_data
>>> from deepline.data.codecs import codec_for
>>> codec = codec_for(load_data(DataConfig(name="digits")).meta)
>>> codec.decode([[[0, 16, 255]] * 3]).shape   # one 3x3 picture of whole pixels, resized
(1, 1, 8, 8)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from deepline.data.meta import DataMeta
from deepline.errors import InputError

INPUT_NAME = "input"  # the model input's name in every exported graph and protocol


@dataclass(frozen=True)
class UnitSpace:
    """The values people read behind model inputs, where attacks measure their epsilon:
    ``unit = x * scale + shift`` (pixels in [0, 1] for images), kept within ``low``..``high``
    when those are set. ``scale`` and ``shift`` broadcast over one example."""

    scale: torch.Tensor
    shift: torch.Tensor
    low: float | None = None
    high: float | None = None

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.device) + self.shift.to(x.device)

    def from_unit(self, unit: torch.Tensor) -> torch.Tensor:
        return (unit - self.shift.to(unit.device)) / self.scale.to(unit.device)


class InputCodec(ABC):
    """Decodes raw inputs into one model-ready batch; see the module docstring.

    Subclasses set ``name`` (their registry name), ``tensor_dtypes`` (numpy dtypes of whole
    tensors a client may send, for KServe V2 metadata and checks) and ``takes_bytes`` (whether
    inputs may be bytes or text: encoded images, texts), and implement the abstract methods.
    """

    name: ClassVar[str]
    tensor_dtypes: ClassVar[tuple[str, ...]] = ()
    takes_bytes: ClassVar[bool] = False
    # preprocessing a bundle keeps elsewhere (a file of its own, the data's meta), so
    # bundle.json's "preprocessing" leaves it out
    kept_elsewhere: ClassVar[tuple[str, ...]] = ()

    def __init__(self, preprocessing: Mapping[str, Any]) -> None:
        self.preprocessing = dict(preprocessing)
        self.input_shape: tuple[int, ...] = tuple(int(n) for n in preprocessing["input_shape"])

    @classmethod
    def from_meta(cls, meta: DataMeta) -> InputCodec:
        return cls({"codec": cls.name, **cls.preprocessing_of(meta)})

    # -- what it is ---------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def preprocessing_of(cls, meta: DataMeta) -> dict[str, Any]:
        """What a bundle keeps to decode inputs later (JSON-able; ``input_shape`` included)."""

    @abstractmethod
    def input_spec(self) -> dict[str, Any]:
        """The model input: ``{"name", "dtype", "shape"}``, -1 for dynamic axes."""

    def named_inputs(self) -> list[dict[str, Any]]:
        """Every input a protocol may send by name (``{"name", "dtype", "shape"}``; dtype
        ``bytes`` for BYTES): the model input itself, and any alternative forms the codec
        builds it from."""
        return [self.input_spec()]

    @abstractmethod
    def form(self) -> dict[str, Any]:
        """How people give this input (the web page renders it): ``{"type": ...}`` and what
        that type needs (an image's size, a list of named fields, ...)."""

    # -- decoding -----------------------------------------------------------------------------

    @abstractmethod
    def decode(self, items: Sequence[Any]) -> np.ndarray:
        """Raw inputs, one per example (bytes, texts, nested lists or arrays of numbers,
        objects) -> one model-ready batch. Raises InputError naming what is wrong."""

    def decode_tensor(self, array: np.ndarray) -> np.ndarray:
        """One tensor of numbers holding a whole batch, shaped like ``input_spec`` -> the
        model-ready batch (InputError naming expected and given shapes when it does not fit)."""
        raise InputError(f"a {self.name} input is not given as a tensor of numbers")

    def decode_named(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """Named inputs as a protocol parsed them -> the model-ready batch.

        Each value is a tensor of numbers (a whole batch), or raw inputs one per example (a
        list, or an object array of BYTES elements). The key ``""`` is the one unnamed input.
        """
        value = self.named_items(inputs)
        if isinstance(value, np.ndarray):
            return self.decode_tensor(value)
        return self.decode(value)

    def named_items(self, inputs: Mapping[str, Any]) -> np.ndarray | list[Any]:
        """The one input of named inputs: a tensor of numbers, or raw inputs one per example."""
        expected = self.input_spec()["name"]
        if set(inputs) not in ({expected}, {""}):
            given = ", ".join(sorted(k or "(unnamed)" for k in inputs)) or "none"
            raise InputError(f"the model takes one input named '{expected}', got: {given}")
        value = inputs.get(expected, inputs.get(""))
        if isinstance(value, np.ndarray) and value.dtype.kind != "O":
            return value
        if isinstance(value, (str, bytes)):
            return [value]
        return list(value.reshape(-1)) if isinstance(value, np.ndarray) else list(value)

    def source_sizes(self, items: Sequence[Any]) -> list[tuple[int, ...]] | None:
        """The size each raw input has before decoding fits it to the model (an image's
        (H, W)), so answers in pixels can be mapped back; None for inputs without one."""
        return None

    def source_sizes_named(self, inputs: Mapping[str, Any]) -> list[tuple[int, ...]] | None:
        """:meth:`source_sizes` of named inputs; a tensor already has the model's size."""
        value = self.named_items(inputs)
        return None if isinstance(value, np.ndarray) else self.source_sizes(value)

    @abstractmethod
    def sample_inputs(self, n: int, seed: int = 0) -> list[Any]:
        """``n`` valid raw inputs as a client sends them in JSON (for examples and tests)."""

    def model_input(self, item: Any) -> np.ndarray:
        """One raw input as the model reads it, batch axis left out (to explain the model's
        answer to it)."""
        return self.decode([item])[0]

    def max_length(self) -> int:
        """The longest a dynamic length axis of the model input (axis 1) may be."""
        return int(self.input_shape[0])

    def pieces(self, ids: np.ndarray) -> list[str] | None:
        """The text each position of a token input stands for, or None for inputs that are
        not tokens."""
        return None

    def read_file(self, path: Path) -> list[tuple[str, Any]]:
        """The named raw inputs a file holds (for ``deepline predict FILE``)."""
        raise InputError(f"a {self.name} model does not read files; give its inputs directly")

    # -- for monitoring and people ------------------------------------------------------------

    def summaries(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Per-example numbers that drift monitoring compares with the training data: by
        default the mean and standard deviation of each model-ready input."""
        flat = np.asarray(batch, dtype=np.float64).reshape(len(batch), -1)
        return {"mean": flat.mean(1), "std": flat.std(1)}

    def show(self, batch: torch.Tensor) -> torch.Tensor | None:
        """Model inputs (N, ...) as images (N, C, H, W) in [0, 1] for people, or None."""
        return None

    def unit_space(self) -> UnitSpace | None:
        """Where inputs may be perturbed continuously (attacks, adversarial training), or
        None for discrete inputs such as tokens."""
        return None


def as_numbers(value: Any) -> np.ndarray:
    """Nested lists or an array of numbers -> an array, or InputError saying what they are."""
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        raise InputError(
            "inputs must be rectangular arrays of numbers: some rows have different lengths"
        ) from None
    if array.dtype.kind not in "uif":
        kind = {"U": "text", "S": "bytes", "b": "true/false", "O": "mixed values"}
        raise InputError(
            f"inputs must be numbers, got {kind.get(array.dtype.kind, str(array.dtype))}"
        )
    if array.size == 0:
        raise InputError("an input is empty")
    return array


def finite_float32(array: np.ndarray) -> np.ndarray:
    """``array`` as float32, or InputError when a value is NaN, infinite or too large."""
    array = np.asarray(array)
    if array.dtype == np.float32:
        values = array  # nothing to cast, nothing to overflow
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            values = np.asarray(array.astype(np.float32))  # 0-d stays an array
    if not np.isfinite(values).all():
        raise InputError("inputs contain NaN, infinity or numbers too large for float32")
    return values


def stack(items: list[np.ndarray]) -> np.ndarray:
    """Examples of one request -> a batch; InputError when their shapes differ."""
    shapes = {item.shape for item in items}
    if len(shapes) > 1:
        raise InputError(f"inputs in one request must have the same shape, got {sorted(shapes)}")
    return np.stack(items)


def check_tensor_shape(array: np.ndarray, expected: Sequence[int]) -> None:
    """InputError unless ``array`` has ``expected``'s rank and sizes (-1: any) and a batch."""
    shape = tuple(array.shape)
    if len(shape) != len(expected) or any(
        want not in (-1, got) for want, got in zip(expected, shape)
    ):
        raise InputError(f"input shape {list(shape)} does not match the model's {list(expected)}")
    if shape[0] < 1:
        raise InputError("the batch is empty")


def as_text(item: Any) -> str:
    """A text input: a string, or UTF-8 bytes."""
    if isinstance(item, (bytes, bytearray)):
        try:
            return bytes(item).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("a text input is not UTF-8") from None
    if not isinstance(item, str):
        raise InputError(f"this model reads text: give strings, not {type(item).__name__}")
    return item
