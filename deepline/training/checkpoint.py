"""Atomic, full-state checkpoints as safetensors + JSON.

A checkpoint is a folder ``checkpoints/step-00000420/`` holding ``model.safetensors``,
``state.safetensors`` (optimizer tensors, RNG states) and ``state.json`` (everything else, plus the
sha256 of both tensor files). It is written under a temporary name and renamed, so a kill at any
instant leaves the previous checkpoints intact; a file damaged afterwards fails its checksum and
loading falls back to the previous complete checkpoint, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from deepline.errors import CheckpointError
from deepline.tensor_files import load_tensors, save_tensors

PREFIX = "step-"


def save_checkpoint(
    directory: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]], state: dict[str, Any]
) -> Path:
    """Write ``tensors`` ({"model": ..., "state": ...}) and ``state`` as one atomic checkpoint."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(step)
    tmp = directory / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    digests = {}
    for name, group in tensors.items():
        path = tmp / f"{name}.safetensors"
        save_tensors(group, path)
        digests[path.name] = _sha256(path)
    (tmp / "state.json").write_text(json.dumps({**state, "step": step, "files": digests}))
    for path in tmp.iterdir():
        _fsync(path)
    if final.exists():  # the same step saved twice (epoch end after a step save): replace
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(directory)
    return final


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def load_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read and verify one checkpoint folder; raise CheckpointError if anything is damaged."""
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint '{path}': state.json is unreadable ({err})") from None
    tensors = {}
    for filename, digest in state.get("files", {}).items():
        file = path / filename
        if not file.is_file() or _sha256(file) != digest:
            raise CheckpointError(
                f"checkpoint '{path}': {filename} is missing or damaged (expected sha256 {digest})"
            )
        tensors[filename.removesuffix(".safetensors")] = load_tensors(file)
    return tensors, state


def weights(tensors: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint offers for inference: the moving average when training kept
    one (``train.ema``), else the trained weights."""
    return tensors.get("ema", tensors["model"])


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (temporary folders are never listed)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def load_latest(directory: Path) -> tuple[Path, dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """The newest checkpoint that passes verification, warning about each damaged one skipped."""
    for path in reversed(list_checkpoints(directory)):
        try:
            tensors, state = load_checkpoint(path)
        except CheckpointError as err:
            warnings.warn(f"{err}; falling back to the previous checkpoint", stacklevel=2)
            continue
        return path, tensors, state
    raise CheckpointError(f"no complete checkpoint in '{directory}'")


def find_checkpoint(directory: Path, which: str, monitor_mode: str = "min") -> Path:
    """'last', 'best' (by the metric recorded at save time) or a folder name."""
    checkpoints = list_checkpoints(directory)
    if not checkpoints:
        raise CheckpointError(f"no checkpoint in '{directory}'")
    if which == "last":
        return checkpoints[-1]
    if which == "best":
        scored = [(s, p) for p in checkpoints if (s := _score(p)) is not None]
        if not scored:
            return checkpoints[-1]
        pick = min if monitor_mode == "min" else max
        return pick(scored, key=lambda sp: sp[0])[1]
    path = directory / which
    if path in checkpoints:
        return path
    raise CheckpointError(f"no checkpoint '{which}' in '{directory}' (use best, last or a folder)")


def prune_checkpoints(directory: Path, keep_last: int, keep: Path | None = None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints and ``keep`` (the best one)."""
    for path in list_checkpoints(directory)[:-keep_last]:
        if path != keep:
            shutil.rmtree(path, ignore_errors=True)
    for tmp in directory.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _score(path: Path) -> float | None:
    try:
        value = json.loads((path / "state.json").read_text()).get("monitor_value")
    except (OSError, ValueError):
        return None
    return float(value) if value is not None else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
