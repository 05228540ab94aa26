"""Where training runs and in what precision: devices, autocast and the gradient scaler, data
kept on the device or copied ahead of use, and host reads counted.

``train.device`` is ``auto`` (CUDA, then MPS, then the CPU), ``cpu``, ``cuda``, ``cuda:N`` or
``mps``; under torchrun each process takes its ``LOCAL_RANK`` GPU. ``train.precision`` is
``32``, ``bf16`` (autocast on CUDA and the CPU) or ``fp16`` (autocast with a GradScaler whose
state the checkpoint keeps).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import torch

from deepline.errors import ConfigError

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
Batch = tuple[torch.Tensor, ...]
ON_DEVICE_SHARE = 0.5  # a split kept on the device may take this share of its free memory


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """The device ``train.device`` names, checked to exist (ConfigError saying why not).

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if not DEVICE_PATTERN.fullmatch(spec):
        raise ConfigError(
            f"train.device: unknown device {spec!r}. Allowed: auto, cpu, cuda, cuda:N, mps"
        )
    cuda = torch.cuda.is_available()
    if spec == "auto":
        if cuda:
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if spec.startswith("cuda"):
        if not cuda:
            built = "with" if torch.version.cuda else "without"
            raise ConfigError(
                f"train.device: {spec!r} was asked for, but torch {torch.__version__} (built "
                f"{built} CUDA) sees no CUDA device here. Use train.device=cpu, or auto to "
                "take a GPU when there is one"
            )
        index = int(spec.split(":")[1]) if ":" in spec else local_rank
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device: {spec!r} names GPU {index}, but this machine has "
                f"{torch.cuda.device_count()} (cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
        return torch.device("cuda", index)
    if spec == "mps" and not _mps_available():
        raise ConfigError("train.device: 'mps' was asked for, but this machine has no MPS device")
    return torch.device(spec)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


class Precision:
    """Autocast for ``bf16`` and ``fp16``, and the gradient scaler ``fp16`` needs."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision, self.device = precision, device
        if precision == "fp16" and device.type == "mps":
            raise ConfigError("train.precision: fp16 is not supported on MPS; use 32 or bf16")
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        # a disabled scaler passes everything through, so the loop has one code path
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    @property
    def scaling(self) -> bool:
        return self.scaler.is_enabled()

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def grad_norm(parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    """The 2-norm of all gradients, on their device (no host read): inf or NaN when any is."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)  # one fused kernel per device, as clip_grad_norm_ does
    return torch.linalg.vector_norm(torch.stack(norms))


def fits_on_device(tensors: list[torch.Tensor], device: torch.device) -> bool:
    """Whether ``tensors`` take at most ``ON_DEVICE_SHARE`` of the device's free memory."""
    if device.type != "cuda":
        return device.type == "cpu"  # already in memory; MPS shares it: copy per batch
    free, _ = torch.cuda.mem_get_info(device)
    return sum(t.numel() * t.element_size() for t in tensors) <= ON_DEVICE_SHARE * free


class Prefetcher:
    """The batches of ``loader`` on ``device``: on CUDA, copied from pinned memory on a side
    stream one batch ahead; elsewhere, moved as they are reached.

    Its ``epoch``, ``position`` and ``state_dict`` are those of the batch last handed out, not of
    the one read ahead, so a checkpoint resumes where training is (the loader's batches are pure
    functions of (epoch, position)).
    """

    def __init__(self, loader: Any, device: torch.device) -> None:
        self.loader, self.device = loader, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.epoch, self.position = loader.epoch, loader.position

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)
        self.epoch, self.position = self.loader.epoch, self.loader.position

    def state_dict(self) -> dict[str, Any]:
        return {**self.loader.state_dict(), "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)
        self.epoch, self.position = self.loader.epoch, self.loader.position

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        ahead: tuple[Batch, int, int] | None = None
        for batch in self.loader:
            copied = (self._copy(batch), self.loader.epoch, self.loader.position)
            if ahead is not None:
                yield self._hand_out(ahead)
            ahead = copied
        if ahead is not None:
            yield self._hand_out(ahead)
        self.epoch, self.position = self.loader.epoch, self.loader.position

    def _hand_out(self, item: tuple[Batch, int, int]) -> Batch:
        batch, self.epoch, self.position = item
        if self.stream is not None:  # the copy must be done before the batch is used
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            for t in batch:
                t.record_stream(current)
        return batch

    def _copy(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if self.stream is None:
            return tuple(t.to(self.device) for t in batch)
        with torch.cuda.stream(self.stream):
            return tuple(t.pin_memory().to(self.device, non_blocking=True) for t in batch)
