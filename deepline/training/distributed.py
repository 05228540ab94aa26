"""Distributed training on the engine the field trusts: torchrun + DistributedDataParallel.

``deepline train CONFIG --nproc N`` launches ``torchrun`` for the user; ``torchrun -m deepline
train CONFIG`` works as well, with every torchrun flag (``--nnodes``, ``--rdzv-endpoint``,
``--max-restarts``). The backend is NCCL when CUDA is available, gloo otherwise.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from deepline.errors import DeeplineError


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its rank among ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed() -> DistEnv:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = default_backend()
    if not dist.is_initialized():
        # DDP imports torch.distributed.nn.functional on first use, whose defaults
        # (``group=group.WORLD``) would pin the default group for good and keep cleanup() from
        # destroying it; imported now, while there is no group, they hold None
        import torch.distributed.nn.functional

        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        # torchrun's store outlives a restart; keys of this round under their own prefix keep
        # the new workers from dialling the addresses of the ones that died
        store, _, _ = next(dist.rendezvous("env://", rank, world_size))
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"deepline/restart-{restart}/", store)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size)
    return DistEnv(rank, world_size, local_rank, backend)


def current() -> DistEnv:
    if not (dist.is_available() and dist.is_initialized()):
        return DistEnv()
    return DistEnv(
        dist.get_rank(),
        dist.get_world_size(),
        int(os.environ.get("LOCAL_RANK", 0)),
        dist.get_backend(),
    )


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a few floats over every process (identity for one process)."""
    if not current().enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_tensor(total: torch.Tensor) -> torch.Tensor:
    """``total`` summed over every process, in place (itself for one process)."""
    if current().enabled:
        dist.all_reduce(total)
    return total


def broadcast(value: Any, src: int = 0) -> Any:
    """``value`` as rank ``src`` has it, on every process."""
    if not current().enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_to_main(value: Any) -> list[Any] | None:
    """Every rank's ``value`` on rank 0 (a list in rank order); ``None`` elsewhere."""
    env = current()
    if not env.enabled:
        return [value]
    out: list[Any] | None = [None] * env.world_size if env.is_main else None
    dist.gather_object(value, out, dst=0)
    return out


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def cleanup() -> None:
    """Destroy the process group, joining gloo's worker threads while Python is fully alive.

    Call it after the DDP model is released (DDP holds the group). Left to interpreter exit, a
    gloo worker still dropping a finished collective's tensors needs the GIL after finalization
    began; CPython then ends the thread inside a noexcept destructor: std::terminate, SIGABRT.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # a DDP wrapper in a reference cycle still holds the group
        dist.destroy_process_group()


def check_nproc(nproc: int) -> None:
    """A clear error when ``nproc`` is more than this machine runs for the chosen backend."""
    if nproc < 1:
        raise DeeplineError(f"--nproc must be at least 1, got {nproc}")
    if default_backend() == "nccl":
        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise DeeplineError(
                f"--nproc {nproc} needs {nproc} GPUs for NCCL; this machine has "
                f"{gpus}. Use --nproc {gpus} or fewer."
            )
        return
    cores = os.cpu_count() or 1
    if nproc > cores:
        raise DeeplineError(
            f"--nproc {nproc} is more than the {cores} CPU cores this machine has "
            f"for gloo; each process needs a core. Use --nproc {cores} or fewer."
        )


def launch(nproc: int, deepline_args: list[str], torchrun_args: list[str] | None = None) -> int:
    """Run ``torchrun --nproc-per-node N [torchrun args] -m deepline ARGS``; its exit code."""
    check_nproc(nproc)
    torchrun_args = list(torchrun_args or [])
    if not any(a.startswith(("--nnodes", "--rdzv")) for a in torchrun_args):
        # one machine: a c10d rendezvous on a free local port, fresh for every restart round
        # (with the static default, restarted workers can be handed the dead ones' addresses)
        torchrun_args.insert(0, "--standalone")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        *torchrun_args,
        "-m",
        "deepline",
        *deepline_args,
    ]
    threads = max(1, (os.cpu_count() or 1) // nproc)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}
    return subprocess.call(command, env=env)
