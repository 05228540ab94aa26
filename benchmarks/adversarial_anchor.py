"""The anchor's own MNIST models and attack next to ours: Wong, Rice and Kolter 2020
("Fast is better than free", github.com/locuslab/fast_adversarial) ship the weights of their
fast-FGSM and PGD-trained MNIST models and the attack that scored them (``evaluate_mnist.py``:
PGD, 50 steps of 0.01 at eps 0.3, 10 random restarts). This runs that attack, their code
unchanged on the CPU, and deepline's (``deepline attack``'s ``worst_case``) on their models and
on ours, on the same test images.

``--train-seeds 0,1,2`` also trains their fast-FGSM recipe once per seed with their
``train_mnist.py`` (unchanged: 10 epochs on all 60,000 training images, their cyclic rate, the
last epoch's weights; MNIST handed to it from deepline's catalog instead of downloaded) and
attacks those models too: how much the anchor's own recipe varies with the seed.

Run: ``git clone https://github.com/locuslab/fast_adversarial`` somewhere, then
``python benchmarks/adversarial_anchor.py --anchor-repo PATH --data-dir ../shared/data
--ours RUN_DIR[,RUN_DIR]`` (``--limit N``: the first N test images; ``--skip-released``;
``--attacks theirs|deepline|both``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch
from resumable_runs import machine
from rich.console import Console
from rich.table import Table
from torch import nn

from deepline.attacks import get_attack
from deepline.attacks.base import AttackSpec
from deepline.config import load_config
from deepline.data import load_data
from deepline.evaluate.loading import load_trained
from deepline.tasks import build_task
from deepline.trust.robustness import attacked_metrics

console = Console()
EPS, ALPHA, STEPS, RESTARTS = 0.3, 0.01, 50, 10
RELEASED = {"fgsm": "models/fgsm.pth", "pgd_madry": "models/pgd_madry.pth"}


def anchor_module(repo: Path, name: str) -> Any:
    """A module of the anchor's MNIST folder, imported as it is. Two things around it: this
    machine has no GPU, so ``.cuda()`` is a no-op; and torchvision, which their scripts use
    only to download MNIST in ``main()``, stands in as empty modules when it is not installed
    (the images come from deepline's catalog)."""
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    stubbed = importlib.util.find_spec("torchvision") is None
    if stubbed:
        stub = types.ModuleType("torchvision")
        for part in ("datasets", "transforms"):
            setattr(stub, part, types.ModuleType(f"torchvision.{part}"))
            sys.modules[f"torchvision.{part}"] = getattr(stub, part)
        sys.modules["torchvision"] = stub
    sys.path.insert(0, str(repo / "MNIST"))
    spec = importlib.util.spec_from_file_location(name, repo / "MNIST" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:  # other libraries probe for torchvision: the stand-in must not linger
        if stubbed:
            for key in ("torchvision", "torchvision.datasets", "torchvision.transforms"):
                sys.modules.pop(key, None)
    return module


class Normalised(nn.Module):
    """A model on pixels in [0, 1] seen through deepline's normalised inputs, or the reverse."""

    def __init__(self, model: nn.Module, mean: float, std: float, to_pixels: bool) -> None:
        super().__init__()
        self.model, self.mean, self.std, self.to_pixels = model, mean, std, to_pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.to_pixels:  # the model takes pixels; x is normalised
            return self.model(x * self.std + self.mean)
        return self.model((x - self.mean) / self.std)  # the model is normalised; x is pixels


def their_attack(evaluate: Any, model: nn.Module, pixels: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy under ``evaluate_mnist.attack_pgd``, batches of 100 as their script."""
    torch.manual_seed(0)
    right = 0
    for i in range(0, len(y), 100):
        x, t = pixels[i : i + 100], y[i : i + 100]
        delta = evaluate.attack_pgd(model, x, t, EPS, ALPHA, STEPS, RESTARTS)
        with torch.no_grad():
            right += int((model(x + delta).argmax(1) == t).sum())
    return right / len(y)


def train_theirs(repo: Path, pixels: torch.Tensor, labels: torch.Tensor, seed: int,
                 out: Path) -> Path:  # fmt: skip
    """Their ``train_mnist.py`` run as it is with ``--seed``, its MNIST download replaced by
    the 60,000 training images given (pixels in [0, 1], as ``ToTensor`` gives them). Kept in
    ``out`` and reused when there."""
    weights = out / f"anchor_fgsm_seed{seed}.pth"
    if weights.exists():
        return weights
    train = anchor_module(repo, "train_mnist")
    images = torch.utils.data.TensorDataset(pixels, labels)
    train.datasets = types.SimpleNamespace(MNIST=lambda *args, **kwargs: images)
    train.transforms = types.SimpleNamespace(ToTensor=lambda: None)
    out.mkdir(parents=True, exist_ok=True)
    argv, sys.argv = sys.argv, ["train_mnist.py", "--fname", str(weights), "--seed", str(seed)]
    start = time.perf_counter()
    try:
        train.main()
    finally:
        sys.argv = argv
    console.print(f"their recipe, seed {seed}: trained in {time.perf_counter() - start:.0f} s")
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--anchor-repo", type=Path, required=True)
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--ours", default="", help="comma-separated deepline run folders")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--train-seeds", default="", help="train their recipe with these seeds")
    parser.add_argument("--trained", type=Path, default=Path("runs/anchor_fgsm"),
                        help="where the models of --train-seeds are kept")  # fmt: skip
    parser.add_argument("--skip-released", action="store_true")
    parser.add_argument("--attacks", choices=["theirs", "deepline", "both"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    evaluate = anchor_module(args.anchor_repo, "evaluate_mnist")
    net = anchor_module(args.anchor_repo, "mnist_net")
    cfg = load_config("mnist_fast_fgsm", [f"data.data_dir={args.data_dir}"])
    data = load_data(cfg.data)
    task = build_task(cfg.task, data.meta)
    mean, std = data.meta.mean[0], data.meta.std[0]
    n = args.limit or len(data.test.y)
    x, y = data.test.x[:n], data.test.y[:n]
    pixels = x * std + mean
    files = {} if args.skip_released else {
        f"released {name}": args.anchor_repo / "MNIST" / file for name, file in RELEASED.items()
    }  # fmt: skip
    if args.train_seeds:
        train_pixels = torch.cat([data.train.x, data.val.x]) * std + mean  # all 60,000
        train_labels = torch.cat([data.train.y, data.val.y])
        for seed in map(int, args.train_seeds.split(",")):
            files[f"their recipe, seed {seed}"] = train_theirs(
                args.anchor_repo, train_pixels, train_labels, seed, args.trained
            )
    models: dict[str, tuple[nn.Module, nn.Module]] = {}  # name: (on pixels, on normalised)
    for name, file in files.items():
        theirs = net.mnist_net()
        theirs.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        theirs.eval()
        models[name] = (theirs, Normalised(theirs, mean, std, to_pixels=True))
    for run_dir in filter(None, args.ours.split(",")):
        ours = load_trained(run_dir, None, args.data_dir).model.eval()
        models[f"ours: {Path(run_dir).name}"] = (Normalised(ours, mean, std, False), ours)
    spec = AttackSpec(EPS, "linf", ALPHA, STEPS, True)
    table = Table(title=f"MNIST, first {n} test images: accuracy, eps {EPS}, PGD-{STEPS} x "
                  f"{RESTARTS} restarts")  # fmt: skip
    for column in ("model", "clean", "their attack", "deepline's attack", "seconds"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, (on_pixels, on_normalised) in models.items():
        start = time.perf_counter()
        with torch.no_grad():
            clean = float((on_pixels(pixels).argmax(1) == y).float().mean())
        theirs = ours = "-"
        if args.attacks in ("theirs", "both"):
            theirs = f"{their_attack(evaluate, on_pixels, pixels, y):.4f}"
        if args.attacks in ("deepline", "both"):
            attack = get_attack("pgd")
            metrics = attacked_metrics(on_normalised, task, x, y, attack, spec, RESTARTS)
            ours = f"{float(metrics['accuracy']):.4f}"
        seconds = f"{time.perf_counter() - start:.0f}"
        table.add_row(name, f"{clean:.4f}", theirs, ours, seconds)
        console.print(
            f"{name}: clean {clean:.4f}, their attack {theirs}, deepline's {ours} ({seconds} s)",
            highlight=False,
        )  # each as it comes: this takes long
    console.print(table)
    console.print(f"{datetime.date.today()} {machine()}", highlight=False)


if __name__ == "__main__":
    main()
