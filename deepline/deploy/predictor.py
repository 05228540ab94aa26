"""One Predictor for every task that serves: raw inputs in, answers out.

Raw inputs are what a person or a client has: encoded images (PNG/JPEG bytes), numbers (pixels
in [0, 1] or 0..255, sequences), text. The Predictor turns them into the model's input with the
bundle's own preprocessing, runs one of the bundle's engines and returns answers (classes with
probabilities, or generated text). It reads only the bundle: no pickles, no training code.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from deepline.data.readers import load_image
from deepline.deploy.bundle import Bundle, load_bundle
from deepline.deploy.onnx_export import onnx_session
from deepline.errors import DeeplineError, InputError
from deepline.tasks.generation import generate

Backend = Literal["onnx", "torch", "torchscript", "int8"]
BACKENDS: tuple[str, ...] = ("onnx", "torch", "torchscript", "int8")
Engine = Callable[[np.ndarray], np.ndarray]
PIXEL_SLACK = 1e-3  # rounding tolerance around [0, 1] for fractional pixels


class Predictor:
    """Runs a bundle on ONNX Runtime (default), PyTorch, TorchScript or its int8 model.

    >>> p = Predictor("runs/digits_lenet/<time>/bundle")              # doctest: +SKIP
    >>> p.predict([open("seven.png", "rb").read()])[0][0]["class"]    # doctest: +SKIP
    '7'
    >>> lm = Predictor("runs/shakespeare_char/<time>/bundle")         # doctest: +SKIP
    >>> "".join(lm.stream("ROMEO:", tokens=50))                     # doctest: +SKIP
    """

    def __init__(
        self, bundle: str | Path | Bundle, backend: str = "onnx", threads: int | None = None
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.backend = backend
        self.task = self.bundle.task()
        self.signature: dict[str, Any] = self.bundle.spec["signature"]
        pre = self.bundle.preprocessing
        self.kind: str = pre["kind"]
        self.input_shape: tuple[int, ...] = tuple(pre["input_shape"])
        self.input_scale = float(pre.get("input_scale", 1.0))
        self.mean = np.asarray(pre.get("mean", [0.0]), dtype=np.float32)
        self.std = np.asarray(pre.get("std", [1.0]), dtype=np.float32)
        if self.kind == "image":  # per channel
            self.mean, self.std = self.mean.reshape(-1, 1, 1), self.std.reshape(-1, 1, 1)
        self.engine = self._engine(backend, threads)

    # -- what it is ----------------------------------------------------------------------------

    @property
    def generates(self) -> bool:
        """True for language models: they answer a prompt with text."""
        return self.task.name == "language_modelling"

    @property
    def classes(self) -> list[str]:
        return [] if self.generates else self.bundle.classes

    @property
    def input_dtype(self) -> str:
        return str(self.signature["inputs"][0]["dtype"])

    def describe(self) -> dict[str, Any]:
        """What clients need to know: task, kind of input, signature, classes."""
        return {
            "name": self.bundle.spec.get("name"),
            "task": self.task.name,
            "input_kind": self.kind,
            "input_shape": list(self.input_shape),
            "signature": self.signature,
            "classes": self.classes,
            "backend": self.backend,
            "metrics": self.bundle.spec.get("metrics", {}),
        }

    # -- raw inputs -> model inputs -------------------------------------------------------------

    def prepare(self, inputs: Sequence[Any]) -> np.ndarray:
        """Raw inputs -> one model-ready batch.

        Images: encoded bytes or arrays of pixels ((H, W), (C, H, W) or (H, W, C); floats in
        [0, 1] or integers 0..255), any size. Sequences: (T, F) numbers. Token models: text.
        """
        if not len(inputs):
            raise InputError("no inputs given")
        if self.kind == "image":
            return self.normalise(np.stack([self._image(item) for item in inputs]))
        if self.kind == "sequence":
            return self.normalise(_stack([self._sequence(item) for item in inputs]))
        if self.kind == "tokens":
            return self._texts(inputs)
        raise InputError(f"a {self.task.name} model answers prompts: use generate()")

    def prepare_tensor(self, array: np.ndarray) -> np.ndarray:
        """A whole batch of raw numbers shaped like the signature -> model-ready batch.

        Checks the shape first (InputError naming expected and given shapes). Pixels and
        sequence values are scaled like ``prepare``; token ids pass through.
        """
        expected = self.signature["inputs"][0]["shape"]
        shape = tuple(array.shape)
        if self.kind == "image" and self.input_shape[0] == 1 and len(shape) == 3:
            array, shape = array[:, None], (shape[0], 1, *shape[1:])  # (N, H, W) for grey
        if len(shape) != len(expected) or any(
            want not in (-1, got) for want, got in zip(expected, shape)
        ):
            raise InputError(f"input shape {list(shape)} does not match the model's {expected}")
        if shape[0] < 1:
            raise InputError("the batch is empty")
        if self.kind in ("tokens", "text"):
            return self._token_ids(array)
        return self.normalise(self._scaled(array))

    def normalise(self, batch: np.ndarray) -> np.ndarray:
        """Values in [0, 1] -> the model's normalised float32 input."""
        with np.errstate(over="ignore", invalid="ignore"):
            out = ((batch.astype(np.float32) - self.mean) / self.std).astype(np.float32)
        if not np.isfinite(out).all():
            raise InputError("inputs contain NaN, infinity or numbers too large for float32")
        return out

    def load(self, source: str | Path) -> list[tuple[str, np.ndarray]]:
        """The images a file holds, named, in [0, 1] at the model's size (C, H, W).

        A PNG/JPEG holds one; a .npy holds one image ((H, W), (C, H, W) or (H, W, C)) or a batch
        ((N, H, W) with N not 1, 3 or 4, or (N, C, H, W)), named ``file[i]``.
        """
        path = Path(source)
        if path.suffix.lower() != ".npy":
            return [(str(path), self._image(path))]
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"'{path}' is not a readable .npy array ({err})") from None
        batch = array.ndim == 4 or (
            array.ndim == 3 and array.shape[0] not in (1, 3, 4) and array.shape[-1] not in (1, 3, 4)
        )
        try:
            if batch:
                return [(f"{path}[{i}]", self._image(image)) for i, image in enumerate(array)]
            return [(str(path), self._image(array))]
        except InputError as err:
            raise InputError(f"'{path}': {err}") from None

    # -- running --------------------------------------------------------------------------------

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Model outputs for a model-ready batch."""
        return self.engine(batch)

    def answers(self, outputs: np.ndarray, top_k: int | None = None) -> list[Any]:
        return self.task.answers(torch.from_numpy(np.asarray(outputs)), top_k)

    def predict(self, inputs: Sequence[Any], top_k: int | None = None) -> list[Any]:
        """Raw inputs -> answers, one per input (see ``prepare``)."""
        return self.answers(self.run(self.prepare(inputs)), top_k)

    def predict_files(
        self, files: Sequence[str | Path], top_k: int | None = None
    ) -> list[tuple[str, Any]]:
        """(name, answers) for every image in ``files`` (see ``load``)."""
        images = [named for f in files for named in self.load(f)]
        batch = self.normalise(np.stack([image for _, image in images]))
        answers = self.answers(self.run(batch), top_k)
        return [(name, answer) for (name, _), answer in zip(images, answers)]

    def stream(
        self,
        prompt: str,
        tokens: int,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = 0,
    ) -> Iterator[str]:
        """Text a language model writes after ``prompt``, piece by piece (whole characters,
        also for byte-level BPE)."""
        if not self.generates:
            raise DeeplineError(
                f"bundle '{self.bundle.path}' is a {self.task.name} model, not a language model"
            )
        tokenizer = self.task.tokenizer  # type: ignore[attr-defined]
        ids = tokenizer.encode(prompt)  # InputError for characters it cannot encode
        context = int(self.input_shape[0])

        def forward(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(self.run(x.numpy().astype(np.int64)))

        new: list[int] = []
        shown = ""
        fixed = self.backend != "torch"  # exported graphs take exactly `context` tokens
        for token in generate(
            forward, ids, tokens, context, temperature, top_k, top_p, seed, fixed
        ):
            new.append(token)
            text = tokenizer.decode(new)
            if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                yield text[len(shown) :]
                shown = text

    def generate(self, prompt: str, tokens: int, **sampling: Any) -> str:
        return "".join(self.stream(prompt, tokens, **sampling))

    # -- internals ------------------------------------------------------------------------------

    def _engine(self, backend: str, threads: int | None) -> Engine:
        if backend == "torch":
            model = self.bundle.torch_model()
            return _torch_engine(model)
        if backend not in BACKENDS:
            raise DeeplineError(f"unknown backend '{backend}'. Allowed: {', '.join(BACKENDS)}")
        role = backend
        runtime = "onnxruntime" if backend == "onnx" else "torchscript"
        if backend == "int8":
            runtime = str(self.bundle.spec.get("int8", {}).get("runtime", ""))
        path = self.bundle.file(role)
        if path is None or not path.is_file():
            raise DeeplineError(
                f"bundle '{self.bundle.path}' has no {backend} model; add it with "
                f"`deepline export {self.bundle.path} --format {backend}` or pick another backend"
            )
        if runtime == "onnxruntime":
            session = onnx_session(path, threads)
            return lambda batch: session.run(None, {"input": batch})[0]
        from deepline.deploy.torchscript_export import load_torchscript

        if backend == "int8":  # torch warns at every call that its quantized ops are deprecated
            warnings.filterwarnings("ignore", message=".*quantize_per_(tensor|channel).*")
        return _torch_engine(load_torchscript(path))

    def _scaled(self, array: Any) -> np.ndarray:
        """Numbers -> float32 in [0, 1] units before normalisation.

        Integers are raw values (image pixels 0..255, sequences 0..``input_scale``); floats are
        taken as already scaled, and image pixels given as floats must lie in [0, 1].
        """
        try:
            array = np.asarray(array)
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
        scale = 255.0 if self.kind == "image" else self.input_scale
        with np.errstate(over="ignore", invalid="ignore"):
            values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise InputError("inputs contain NaN, infinity or numbers too large for float32")
        low, high = float(values.min()), float(values.max())
        if array.dtype.kind in "ui":
            if self.kind == "image" and (low < 0 or high > 255):
                raise InputError(f"whole-number pixels must lie in 0..255, got {low:g}..{high:g}")
            values /= scale
        elif self.kind == "image" and (low < -PIXEL_SLACK or high > 1 + PIXEL_SLACK):
            raise InputError(
                f"pixels given as fractions must lie in [0, 1], got {low:g}..{high:g}: send "
                "whole numbers for 0..255 pixels, or divide by 255"
            )
        return values

    def _image(self, item: Any) -> np.ndarray:
        channels, height, width = self.input_shape
        if isinstance(item, (bytes, bytearray, Path)):
            return load_image(
                bytes(item) if not isinstance(item, Path) else item, channels, (height, width)
            )
        x = torch.from_numpy(self._scaled(item))
        if x.ndim not in (2, 3):
            raise InputError(
                f"an image must be 2-D (H, W) or 3-D (C, H, W) / (H, W, C), got shape "
                f"{list(x.shape)}"
            )
        if x.ndim == 2:
            x = x[None]
        elif x.shape[-1] in (1, 3, 4) and x.shape[0] not in (1, 3, 4):
            x = x.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
        x = x[:3]
        if x.shape[0] != channels:
            x = x.mean(0, keepdim=True) if channels == 1 else x[:1].expand(3, -1, -1)
        if x.shape[1:] != (height, width):
            x = F.interpolate(
                x[None],
                size=(height, width),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )[0]
        return x.clamp(0, 1).numpy()

    def _sequence(self, item: Any) -> np.ndarray:
        values = self._scaled(item)
        features = self.input_shape[-1]
        if values.ndim == 1 and features == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[1] != features or len(values) < 1:
            raise InputError(
                f"a sequence must be (T, {features}) numbers, got shape {list(values.shape)}"
            )
        return values

    def _token_ids(self, array: np.ndarray) -> np.ndarray:
        if array.dtype.kind not in "ui":
            raise InputError(f"token ids must be integers, got {array.dtype}")
        context = int(self.input_shape[0])
        length = array.shape[1]
        if not 1 <= length <= context:
            raise InputError(f"sequences must hold 1 to {context} tokens, got {length}")
        vocab = int(self.bundle.preprocessing.get("vocab_size") or 0)
        if vocab and (array.min() < 0 or array.max() >= vocab):
            raise InputError(f"token ids must lie in [0, {vocab - 1}]")
        return array.astype(np.int64)

    def _texts(self, inputs: Sequence[Any]) -> np.ndarray:
        from deepline.data.sequences import encode_texts
        from deepline.data.tokenizers import load_tokenizer

        if not all(isinstance(t, str) for t in inputs):
            raise InputError("this model reads text: give strings")
        if not hasattr(self, "_tokenizer"):
            self._tokenizer = load_tokenizer(self.bundle.tokenizer_json())
        return encode_texts(self._tokenizer, list(inputs), int(self.input_shape[0])).numpy()


def _stack(items: list[np.ndarray]) -> np.ndarray:
    shapes = {item.shape for item in items}
    if len(shapes) > 1:
        raise InputError(f"inputs in one request must have the same shape, got {sorted(shapes)}")
    return np.stack(items)


def _torch_engine(model: torch.nn.Module) -> Engine:
    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    return run
