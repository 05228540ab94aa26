"""Images: encoded files (PNG, JPEG, ...) or pixels of any size -> normalised (N, C, H, W).

Pixel rule, the same in every protocol: whole numbers are 0..255, fractions lie in [0, 1];
anything else is refused with the reason, never silently misread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepline.data.codecs.base import (
    INPUT_NAME,
    InputCodec,
    UnitSpace,
    as_numbers,
    check_tensor_shape,
    finite_float32,
)
from deepline.data.meta import DataMeta
from deepline.data.readers import image_dimensions, load_image
from deepline.errors import InputError
from deepline.registry import CODECS

PIXEL_SLACK = 1e-3  # rounding tolerance around [0, 1] for fractional pixels


@CODECS.register("image", example="digits")
class ImageCodec(InputCodec):
    """``(raw / 255 - mean) / std`` per channel, after converting to the model's channels and
    resizing to its (H, W) bilinearly with antialiasing."""

    name = "image"
    tensor_dtypes = ("float32", "float64", "float16", "uint8")
    takes_bytes = True  # encoded images

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        super().__init__(preprocessing)
        self.channels, self.height, self.width = self.input_shape
        self.mean = np.asarray(preprocessing["mean"], dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(preprocessing["std"], dtype=np.float32).reshape(-1, 1, 1)

    @classmethod
    def preprocessing_of(cls, meta: DataMeta) -> dict[str, Any]:
        c, h, w = meta.input_shape
        return {
            "input_shape": [c, h, w],
            "input_scale": meta.input_scale,
            "mean": list(meta.mean),
            "std": list(meta.std),
            "channels": c,
            "image_size": [h, w],
        }

    def input_spec(self) -> dict[str, Any]:
        return {"name": INPUT_NAME, "dtype": "float32", "shape": [-1, *self.input_shape]}

    def form(self) -> dict[str, Any]:
        return {"type": "image", "channels": self.channels, "height": self.height,
                "width": self.width}  # fmt: skip

    def decode(self, items: Sequence[Any]) -> np.ndarray:
        if not len(items):
            raise InputError("no inputs given")
        return self.normalise(np.stack([self.picture(item) for item in items]))

    def decode_tensor(self, array: np.ndarray) -> np.ndarray:
        if self.channels == 1 and array.ndim == 3:
            array = array[:, None]  # (N, H, W) for grey
        check_tensor_shape(array, self.input_spec()["shape"])
        return self.normalise(pixels(array))

    def source_sizes(self, items: Sequence[Any]) -> list[tuple[int, ...]]:
        """(H, W) of each image as given: from an encoded file's header, or a pixel array's
        shape read as :meth:`picture` reads it."""
        return [image_size(item) for item in items]

    def sample_inputs(self, n: int, seed: int = 0) -> list[Any]:
        """Whole-number pixels (C, H, W) in 0..255."""
        rng = np.random.default_rng(seed)
        return [rng.integers(0, 256, self.input_shape).tolist() for _ in range(n)]

    def read_file(self, path: Path) -> list[tuple[str, Any]]:
        """A PNG/JPEG holds one image; a .npy one ((H, W), (C, H, W) or (H, W, C)) or a batch
        ((N, H, W) with N not 1, 3 or 4, or (N, C, H, W)), named ``file[i]``."""
        if path.suffix.lower() != ".npy":
            return [(str(path), path)]
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"'{path}' is not a readable .npy array ({err})") from None
        batch = array.ndim == 4 or (
            array.ndim == 3 and array.shape[0] not in (1, 3, 4) and array.shape[-1] not in (1, 3, 4)
        )
        if batch:
            return [(f"{path}[{i}]", image) for i, image in enumerate(array)]
        return [(str(path), array)]

    def normalise(self, batch: np.ndarray) -> np.ndarray:
        """Pixels in [0, 1], (N, C, H, W) -> the model's normalised float32 input (pixels in
        [0, 1] and a positive std cannot overflow)."""
        out = ((batch.astype(np.float32, copy=False) - self.mean) / self.std).astype(
            np.float32, copy=False
        )
        if not np.isfinite(out).all():
            raise InputError("inputs contain NaN, infinity or numbers too large for float32")
        return out

    def picture(self, item: Any) -> np.ndarray:
        """One image (encoded bytes, a file path, or pixels) as (C, H, W) in [0, 1]."""
        size = (self.height, self.width)
        if isinstance(item, (bytes, bytearray)):
            return load_image(bytes(item), self.channels, size)
        if isinstance(item, Path):
            return load_image(item, self.channels, size)
        values = pixels(as_numbers(item))
        if values.ndim not in (2, 3):
            raise InputError(
                f"an image must be 2-D (H, W) or 3-D (C, H, W) / (H, W, C), got shape "
                f"{list(values.shape)}"
            )
        x = torch.from_numpy(values)
        if x.ndim == 2:
            x = x[None]
        elif x.shape[-1] in (1, 3, 4) and x.shape[0] not in (1, 3, 4):
            x = x.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
        x = x[:3]
        if x.shape[0] != self.channels:
            x = x.mean(0, keepdim=True) if self.channels == 1 else x[:1].expand(3, -1, -1)
        if x.shape[1:] != size:
            x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True,
                              align_corners=False)[0]  # fmt: skip
        return x.clamp(0, 1).numpy()

    def show(self, batch: torch.Tensor) -> torch.Tensor:
        return self.unit_space().to_unit(batch.float().cpu()).clamp(0, 1)

    def unit_space(self) -> UnitSpace:
        """Pixels in [0, 1]."""
        return UnitSpace(torch.from_numpy(self.std), torch.from_numpy(self.mean), 0.0, 1.0)


def image_size(item: Any) -> tuple[int, int]:
    """(H, W) of one image: encoded bytes or a file (its header only, turned as its EXIF
    orientation says), or pixels (H, W), (C, H, W) or (H, W, C)."""
    if isinstance(item, (bytes, bytearray, Path)):
        try:
            return image_dimensions(bytes(item) if isinstance(item, bytearray) else item)
        except (OSError, ValueError, SyntaxError) as err:
            raise InputError(f"{item if isinstance(item, Path) else 'an image'} is not a "
                             f"readable image ({err})") from None  # fmt: skip
    shape = np.shape(item)
    if len(shape) == 3 and shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
        return int(shape[0]), int(shape[1])  # (H, W, C)
    return int(shape[-2]), int(shape[-1])


def pixels(array: np.ndarray) -> np.ndarray:
    """Pixels -> float32 in [0, 1]: whole numbers must lie in 0..255, fractions in [0, 1]."""
    array = as_numbers(array)
    values = finite_float32(array)
    low, high = float(values.min()), float(values.max())
    if array.dtype.kind in "ui":
        if low < 0 or high > 255:
            raise InputError(f"whole-number pixels must lie in 0..255, got {low:g}..{high:g}")
        return np.asarray(values / 255.0)
    if low < -PIXEL_SLACK or high > 1 + PIXEL_SLACK:
        raise InputError(
            f"pixels given as fractions must lie in [0, 1], got {low:g}..{high:g}: send "
            "whole numbers for 0..255 pixels, or divide by 255"
        )
    return values
