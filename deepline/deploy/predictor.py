"""Predict from a bundle: raw files in, class names with probabilities out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from deepline.data.readers import load_image
from deepline.deploy.bundle import Bundle, load_bundle
from deepline.deploy.onnx_export import onnx_session
from deepline.errors import DeeplineError, InputError

Backend = Literal["onnx", "torch"]


class Predictor:
    """Runs a bundle's model on ONNX Runtime (default) or PyTorch.

    >>> p = Predictor("runs/digits_lenet/<time>/bundle")            # doctest: +SKIP
    >>> p.predict_files(["seven.png"])[0][0]["class"]                 # doctest: +SKIP
    '7'
    """

    def __init__(self, bundle: str | Path | Bundle, backend: Backend = "onnx") -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.backend = backend
        self.task = self.bundle.task()
        pre = self.bundle.preprocessing
        self.channels, self.height, self.width = pre["input_shape"]
        self.mean = np.asarray(pre["mean"], dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(pre["std"], dtype=np.float32).reshape(-1, 1, 1)
        if backend == "onnx":
            path = self.bundle.file("onnx")
            if path is None or not path.is_file():
                raise DeeplineError(
                    f"bundle '{self.bundle.path}' has no ONNX model; "
                    "use --backend torch or export with export.onnx: true"
                )
            self.session = onnx_session(path)
        elif backend == "torch":
            self.model = self.bundle.torch_model()
        else:
            raise DeeplineError(f"unknown backend '{backend}'. Allowed: onnx, torch")

    def preprocess(self, images: list[np.ndarray]) -> np.ndarray:
        """Images in [0, 1], shape (C, H, W) -> one normalised float32 batch (N, C, H, W)."""
        batch = np.stack(images).astype(np.float32)
        return (batch - self.mean) / self.std

    def load(self, source: str | Path) -> np.ndarray:
        """A PNG/JPEG/NPY file as (C, H, W) floats in [0, 1] at the model's size."""
        path = Path(source)
        if path.suffix.lower() == ".npy":
            return self._load_npy(path)
        return load_image(path, self.channels, (self.height, self.width))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Model outputs for a preprocessed batch."""
        if self.backend == "onnx":
            return self.session.run(None, {"input": batch})[0]
        with torch.no_grad():
            return self.model(torch.from_numpy(batch)).numpy()

    def predict_files(self, files: list[str | Path], top_k: int | None = None) -> list[Any]:
        batch = self.preprocess([self.load(f) for f in files])
        return self.task.answers(torch.from_numpy(self.run(batch)), top_k)

    def _load_npy(self, path: Path) -> np.ndarray:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"'{path}' is not a readable .npy array ({err})") from None
        if array.dtype.kind not in "uif" or array.ndim not in (2, 3):
            raise InputError(
                f"'{path}': expected a 2-D or 3-D numeric array, got "
                f"{array.dtype} of shape {array.shape}"
            )
        x = torch.as_tensor(array.astype(np.float32))
        if array.dtype.kind in "ui":
            x = x / 255.0  # integers are 8-bit pixels
        if x.ndim == 2:
            x = x[None]
        elif x.shape[-1] in (1, 3, 4) and x.shape[0] not in (1, 3, 4):
            x = x.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
        x = x[:3]
        if x.shape[0] != self.channels:
            x = x.mean(0, keepdim=True) if self.channels == 1 else x[:1].expand(3, -1, -1)
        x = F.interpolate(
            x[None],
            size=(self.height, self.width),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0]
        return x.clamp(0, 1).numpy()
