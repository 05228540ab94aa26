"""Differentially private training (DP-SGD, Abadi et al. 2016) through Opacus.

``train.privacy`` turns a run into DP-SGD: every batch is Poisson-sampled (each training
example joins each batch independently with probability ``q = batch_size / N``), each
example's gradient is clipped to ``max_grad_norm`` (Opacus' ``GradSampleModule`` and
``DPOptimizer``) and Gaussian noise of std ``noise_multiplier * max_grad_norm`` is added to
their sum. The accountants (RDP, Opacus' default, and PRV) turn (q, noise, steps) into
(epsilon, delta)-DP with respect to one training example. Their history lives in the
checkpoint, so a killed run resumes with the epsilon it had spent.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from deepline.config import PrivacyConfig
from deepline.data.loaders import BatchLoader
from deepline.errors import ConfigError
from deepline.training.events import Callback, StopTraining

if TYPE_CHECKING:
    from deepline.training.loop import Trainer

ACCOUNTANTS = ("rdp", "prv")
# Opacus' RDP orders, extended to 256 (as Google's dp-accounting): small epsilons need large ones
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 257))


class PoissonLoader(BatchLoader):
    """Batches of a random size: each example in each batch with probability ``q``, drawn
    from a generator seeded by (seed, epoch, position), so a resumed epoch draws the same."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:  # fmt: skip
        super().__init__(x, y, batch_size, shuffle=False, seed=seed, rank=rank,
                         world_size=world_size)  # fmt: skip
        self.sample_rate = min(1.0, batch_size * world_size / max(1, len(y)))

    def batch(self, epoch: int, position: int, order: torch.Tensor) -> tuple[torch.Tensor, ...]:
        chosen = torch.rand(len(order), generator=self.draws(epoch, position)) < self.sample_rate
        idx = order[chosen.to(order.device)]
        return self.x[idx], self.y[idx]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return super().__iter__()


def accountant(name: str) -> Any:
    from opacus.accountants import PRVAccountant, RDPAccountant

    return RDPAccountant() if name == "rdp" else PRVAccountant()


def epsilon_of(a: Any, delta: float) -> float:
    """An accountant's epsilon at ``delta`` (RDP over ``RDP_ORDERS``); infinite when the noise
    is too weak for the accountant to bound it."""
    from opacus.accountants import RDPAccountant

    try:
        if isinstance(a, RDPAccountant):
            return float(a.get_epsilon(delta, alphas=RDP_ORDERS))
        return float(a.get_epsilon(delta))
    except (ValueError, OverflowError, MemoryError):  # noise too weak for the method's domain
        return float("inf")


def noise_for(config: PrivacyConfig, sample_rate: float, steps: int) -> float:
    """The noise multiplier: given, or the smallest that keeps ``target_epsilon`` after
    ``steps`` steps (Opacus' search with the headline accountant)."""
    if config.noise_multiplier is not None:
        return config.noise_multiplier
    from opacus.accountants.utils import get_noise_multiplier

    assert config.target_epsilon is not None
    return float(
        get_noise_multiplier(
            target_epsilon=config.target_epsilon, target_delta=config.delta,
            sample_rate=sample_rate, steps=steps, accountant=config.accountant,
            **({"alphas": RDP_ORDERS} if config.accountant == "rdp" else {}),
        )
    )  # fmt: skip


def check_layers(model: torch.nn.Module) -> None:
    """A ConfigError naming each layer DP-SGD cannot train and the fix (Opacus' validator)."""
    from opacus.validators import ModuleValidator

    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        batch_norm = any("BatchNorm" in type(m).__name__ for m in model.modules())
        fix = (
            " Use GroupNorm instead of BatchNorm (a model without batch norm, or Opacus'"
            " ModuleValidator.fix)."
            if batch_norm
            else ""
        )
        raise ConfigError(
            "train.privacy: the model has layers DP-SGD cannot train: "
            + "; ".join(str(p) for p in problems[:3])
            + "."
            + fix
        )


class DifferentialPrivacy(Callback):
    """Wraps the model and optimizer for DP-SGD at the start of training, steps the
    accountants after every update, logs ``privacy/epsilon`` (and the other accountant's as
    ``privacy/epsilon_<name>``) after every epoch and stops before the target would be passed."""

    order = 1

    def __init__(self, config: PrivacyConfig) -> None:
        self.config = config
        self.accountants = {name: accountant(name) for name in ACCOUNTANTS}
        self.noise_multiplier: float | None = None
        self.sample_rate = 0.0

    def fit_start(self, trainer: Trainer) -> None:
        """Per-example gradients, clipping and noise (Opacus). On several processes each
        clips its own Poisson share of the batch, the first adds the noise, and the sums are
        all-reduced (Opacus' DPDDP and DistributedDPOptimizer): one DP-SGD step over the
        global batch."""
        from opacus import GradSampleModule
        from opacus.distributed import DifferentiallyPrivateDistributedDataParallel
        from opacus.optimizers import DistributedDPOptimizer, DPOptimizer

        loader = trainer.train_loader
        if not isinstance(loader, PoissonLoader):
            raise ConfigError("train.privacy needs Poisson-sampled batches of examples")
        check_layers(trainer.model)
        # Opacus computes a convolution's per-example gradients right only in the default
        # (NCHW) memory layout: channels-last gives wrong norms, so wrong clipping
        trainer.memory_format = torch.contiguous_format
        trainer.model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        for module in trainer.model.modules():  # per-example hooks see every activation
            if getattr(module, "inplace", False):
                module.inplace = False  # type: ignore[assignment]
        self.sample_rate = loader.sample_rate
        self.noise_multiplier = noise_for(self.config, self.sample_rate, trainer.total_steps)
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # Opacus'
        model, optimizer = trainer.forward_model, DPOptimizer
        if trainer.dist.enabled:  # the same start everywhere, then gradients summed over all
            model = DifferentiallyPrivateDistributedDataParallel(model)
            optimizer = DistributedDPOptimizer
        trainer.forward_model = GradSampleModule(model, loss_reduction="mean")
        trainer.optimizer = optimizer(
            trainer.optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.config.max_grad_norm,
            expected_batch_size=loader.batch_size,
        )
        trainer.logs["privacy/noise_multiplier"] = self.noise_multiplier

    def step_end(self, trainer: Trainer) -> None:
        for a in self.accountants.values():
            a.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def epoch_start(self, trainer: Trainer) -> None:
        target = self.config.target_epsilon
        if target is None or trainer.step == 0:
            return
        steps = min(len(trainer.train_loader), trainer.total_steps - trainer.step)
        projected = accountant(self.config.accountant)
        spent = self.accountants[self.config.accountant].history
        projected.history = [*spent, (self.noise_multiplier, self.sample_rate, steps)]
        if epsilon_of(projected, self.config.delta) > target * 1.01:
            raise StopTraining(f"privacy budget: another epoch would pass epsilon {target:g}")

    def epoch_end(self, trainer: Trainer) -> None:
        trainer.logs.update(self.spent())

    def spent(self) -> dict[str, float]:
        """Epsilon so far by each accountant (the headline one as ``privacy/epsilon``)."""
        out = {}
        for name, a in self.accountants.items():
            key = "privacy/epsilon" if name == self.config.accountant else f"privacy/epsilon_{name}"
            out[key] = epsilon_of(a, self.config.delta) if a.history else 0.0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": {n: [list(h) for h in a.history] for n, a in self.accountants.items()},
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, history in state.get("history", {}).items():
            if name in self.accountants:
                self.accountants[name].history = [tuple(h) for h in history]
