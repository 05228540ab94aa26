"""Quantization-aware training (``train.qat``; Jacob et al. 2018): the model trains as its int8
form will compute, so the weights learn to live with the rounding.

While training, every convolution and linear layer rounds its weights per output channel to 7
signed bits (what ONNX Runtime's static int8 export uses on CPUs: ``reduce_range``) and its
input to 8 bits over the input's range, tracked as a moving minimum and maximum (after
``observe_steps`` of tracking only). ``torch.fake_quantize_*`` round in the forward pass and
pass the gradient straight through (zero outside the range). Validation rounds too, so the
checkpoint kept as best is the best int8 one.

The layers change only their class while training (their weights and names stay, so
checkpoints, the moving average and every loader see the ordinary model); the tracked ranges
resume with the run. The ``int8`` export then quantizes the trained weights with ONNX Runtime
(per channel, calibrated on training inputs as the ranges were tracked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from deepline.config import QATConfig
from deepline.training.events import Callback

if TYPE_CHECKING:
    from deepline.training.loop import Trainer

WEIGHT_RANGE = (-64, 63)  # 7 signed bits: ONNX Runtime's reduce_range int8 weights
INPUT_RANGE = (0, 255)  # 8 unsigned bits per tensor: its activations
QUANTIZED = (nn.Conv1d, nn.Conv2d, nn.Linear)


class InputRange:
    """The moving range of one layer's input (kept on the input's device: no host read per
    batch), shared by the model and its moving average."""

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum
        self.bounds: torch.Tensor | None = None  # [low, high]
        self.rounding = False

    def observe(self, x: torch.Tensor) -> None:
        seen = torch.stack([x.detach().min(), x.detach().max()]).float()
        if self.bounds is None:
            self.bounds = seen
        else:
            self.bounds = self.bounds.to(seen.device).lerp(seen, self.momentum)

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        if training:
            self.observe(x)
        if not self.rounding or self.bounds is None:
            return x
        low = self.bounds[0].clamp(max=0.0).to(x.device)  # zero stays exact
        high = self.bounds[1].clamp(min=0.0).to(x.device)
        scale = ((high - low) / (INPUT_RANGE[1] - INPUT_RANGE[0])).clamp_min(1e-8).reshape(1)
        zero = (-low / scale).round().clamp(*INPUT_RANGE).to(torch.int32).reshape(1)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, *INPUT_RANGE)


def rounded_weight(weight: torch.Tensor) -> torch.Tensor:
    """Weights rounded per output channel to 7 signed bits (straight-through gradient)."""
    reach = weight.detach().abs().amax(dim=tuple(range(1, weight.dim())))
    scale = (reach / WEIGHT_RANGE[1]).clamp_min(1e-8).float()
    zeros = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zeros, 0, *WEIGHT_RANGE)


class RoundedLinear(nn.Linear):
    input_range: InputRange

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_range(x, self.training), rounded_weight(self.weight), self.bias)


class RoundedConv1d(nn.Conv1d):
    input_range: InputRange

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_range(x, self.training)
        return self._conv_forward(x, rounded_weight(self.weight), self.bias)


class RoundedConv2d(nn.Conv2d):
    input_range: InputRange

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_range(x, self.training)
        return self._conv_forward(x, rounded_weight(self.weight), self.bias)


ROUNDED: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: RoundedLinear, nn.Conv1d: RoundedConv1d, nn.Conv2d: RoundedConv2d,
}  # fmt: skip


class QuantizationAware(Callback):
    """Makes the layers round while training; tracks and resumes their inputs' ranges."""

    order = 5  # before the other callbacks see a batch

    def __init__(self, config: QATConfig) -> None:
        self.config = config
        self.ranges: dict[str, InputRange] = {}
        self.steps = 0
        self._restore: list[tuple[nn.Module, type[nn.Module]]] = []

    def fit_start(self, trainer: Trainer) -> None:
        for model in {id(m): m for m in (trainer.model, trainer.eval_model)}.values():
            for name, module in model.named_modules():
                rounded = ROUNDED.get(type(module))
                if rounded is None:
                    continue
                if name not in self.ranges:
                    self.ranges[name] = InputRange(self.config.momentum)
                self._restore.append((module, type(module)))
                module.__class__ = rounded
                module.input_range = self.ranges[name]
        self._set_rounding()

    def step_end(self, trainer: Trainer) -> None:
        self.steps += 1
        self._set_rounding()

    def fit_end(self, trainer: Trainer) -> None:
        for module, cls in self._restore:  # the ordinary model again, for what follows
            module.__class__ = cls
            del module.input_range
        self._restore.clear()

    def _set_rounding(self) -> None:
        for tracked in self.ranges.values():
            tracked.rounding = self.steps >= self.config.observe_steps

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "ranges": {name: None if r.bounds is None else r.bounds.tolist()
                       for name, r in self.ranges.items()},
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))
        for name, bounds in state.get("ranges", {}).items():
            tracked = self.ranges.setdefault(name, InputRange(self.config.momentum))
            tracked.bounds = None if bounds is None else torch.tensor(bounds)
        self._set_rounding()
