"""Tensors to and from safetensors files, including tied weights.

safetensors refuses two names for one storage (a GPT's embedding tied to its output layer), so
each shared tensor is written once and its other names are recorded as aliases.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, str]:
    """Write ``tensors``; returns {alias: name written} for tensors that share storage."""
    written: dict[tuple[int, int, tuple[int, ...]], str] = {}
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, tensor in tensors.items():
        key = (
            tensor.untyped_storage().data_ptr(),
            int(tensor.storage_offset()),
            tuple(tensor.shape),
        )
        if tensor.numel() and key in written:
            aliases[name] = written[key]
            continue
        written[key] = name
        unique[name] = tensor.detach().contiguous().cpu()
    save_file(unique, str(path), metadata={f"alias:{a}": n for a, n in aliases.items()})
    os.chmod(path, 0o666 & ~_umask())  # as any file written with open(), not owner-only
    return aliases


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """A digest of the values that does not depend on the file they came from: per name, in
    sorted order, the name, dtype, shape and bytes (so a checkpoint and the bundle exported
    from it agree, and any changed weight changes it)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a file written by ``save_tensors`` (or any safetensors file), aliases restored."""
    from safetensors import safe_open

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    for key, name in metadata.items():
        if key.startswith("alias:"):
            tensors[key.removeprefix("alias:")] = tensors[name]
    return tensors
