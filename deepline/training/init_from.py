"""Start a model from another run's weights (``model.init_from``): a pre-trained encoder
under a new head, a model trained on other data fine-tuned on this one."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from deepline.config import load_config
from deepline.data.meta import DataMeta
from deepline.errors import ConfigError
from deepline.models.shapes import fit_to_weights
from deepline.tasks import build_task
from deepline.training.checkpoint import find_checkpoint, load_checkpoint, weights


def load_initial_weights(model: nn.Module, run_dir: str | Path) -> tuple[list[str], list[str]]:
    """Copy the tensors of ``run_dir``'s checkpoint (the one it evaluates: ``eval.checkpoint``,
    best by default) that ``model`` has under the same name and shape; (loaded, fresh) names.
    The output layer (the last with parameters) may differ in shape, as a new head for other
    classes does; a ConfigError names the first other tensor whose shape differs, or says that
    the two models share no tensor."""
    folder = Path(run_dir)
    if not (folder / "config.yaml").is_file():
        raise ConfigError(f"model.init_from={str(run_dir)!r} is not a run folder")
    source_config = load_config(folder / "config.yaml")
    which, mode = source_config.eval.checkpoint, source_config.train.checkpoint.mode
    tensors, _ = load_checkpoint(find_checkpoint(folder / "checkpoints", which, mode))
    source = weights(tensors)
    head = [n for n, _ in model.named_parameters()][-1].rpartition(".")[0]
    if narrowed(folder, source):  # its channels were pruned: take its widths, except those
        built = model.state_dict()  # of a new head (one that answers other classes)
        in_head = {k for k in source if k.rpartition(".")[0] == head and k in built}
        new_head = any(source[k].shape[:1] != built[k].shape[:1] for k in in_head)
        fit_to_weights(model, {k: v for k, v in source.items() if not (new_head and k in in_head)})
    target = model.state_dict()
    for name, tensor in target.items():
        differs = name in source and source[name].shape != tensor.shape
        if differs and name.rpartition(".")[0] == head:
            del source[name]  # a new output layer starts fresh
        elif differs:
            raise ConfigError(
                f"model.init_from={str(run_dir)!r}: tensor {name} is "
                f"{tuple(source[name].shape)} there and {tuple(tensor.shape)} here: the "
                "architectures differ"
            )
    loaded = [name for name in target if name in source]
    if not loaded:
        raise ConfigError(
            f"model.init_from={str(run_dir)!r} shares no tensor with this model (there: "
            f"{next(iter(source), '-')}, ...; here: {next(iter(target), '-')}, ...)"
        )
    model.load_state_dict({**target, **{name: source[name] for name in loaded}})
    return loaded, [name for name in target if name not in source]


def narrowed(run_dir: Path, state: dict[str, torch.Tensor]) -> bool:
    """Whether a run's weights are narrower than its own config builds (channels pruned)."""
    if not (run_dir / "data.json").is_file():
        return False
    config = load_config(run_dir / "config.yaml")
    meta = DataMeta.from_dict(json.loads((run_dir / "data.json").read_text()))
    built = build_task(config.task, meta).build_model(config.model).state_dict()
    return any(k in built and built[k].shape != v.shape for k, v in state.items())


def freeze(model: nn.Module, names: list[str]) -> int:
    """Stop training the parameters named by ``names`` (names or dotted prefixes); how many
    tensors were frozen. A batch norm whose parameters are all frozen stops updating its
    running statistics too (it always runs as in evaluation). A ConfigError names a prefix
    that matches nothing."""
    params = dict(model.named_parameters())
    frozen = 0
    for prefix in names:
        matched = [n for n in params if n == prefix or n.startswith(prefix + ".")]
        if not matched:
            raise ConfigError(
                f"model.freeze: {prefix!r} names no parameter of this model (its first: "
                f"{', '.join(list(params)[:4])}, ...)"
            )
        for name in matched:
            params[name].requires_grad_(False)
            frozen += 1
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in own
        ):
            module.register_forward_pre_hook(_as_in_evaluation)
    return frozen


def _as_in_evaluation(module: nn.Module, inputs: object) -> None:
    module.train(False)
