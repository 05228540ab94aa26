"""DP-SGD from the config: MNIST at epsilon 3 and UCI Adult at epsilon 1 and 8 next to
non-private training, each trained through ``deepline train`` on 2 CPU cores.

MNIST: the shipped ``mnist_dp`` config (Tramer & Boneh 2021's end-to-end CNN recipe; anchors:
their 98.1% at epsilon 2.93, Papernot et al. 2021's tempered-sigmoid CNN 98.1%, Opacus'
example 96.78% at epsilon 2.91), delta 1e-5. Adult: ``adult_mlp`` with ``train.privacy`` set
from the command line (batches of 512, clipping norm 1), delta 1e-5 (below 1 / 29,305
training rows), and the same config without privacy. Epsilon is the RDP accountant's (Opacus'
default), the PRV accountant's alongside; test accuracy of the last checkpoint.

Run: ``python benchmarks/privacy.py --data-dir ../shared/data`` (``--parts mnist,adult``;
``--quick``: one epoch each). Runs resume from their folders under ``--runs``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path
from typing import Any

from resumable_runs import machine, trained
from rich.console import Console
from rich.table import Table

from deepline.evaluate.evaluate import evaluate_trained
from deepline.evaluate.loading import load_trained

console = Console()
ADULT_DP = ["train.batch_size=512", "train.schedule={name: constant}"]


def adult_private(epsilon: float) -> list[str]:
    privacy = f"{{target_epsilon: {epsilon}, delta: 0.00001, max_grad_norm: 1.0}}"
    return [*ADULT_DP, f"train.privacy={privacy}"]


RUNS = {
    # name: (config, overrides, anchor)
    **{
        f"mnist_dp_seed{seed}": (
            "mnist_dp",
            [f"seed={seed}"],
            "98.1% at eps 2.93 (Tramer & Boneh 2021)",
        )
        for seed in (0, 1, 2)
    },
    "adult_eps1": ("adult_mlp", adult_private(1.0), ""),
    "adult_eps8": ("adult_mlp", adult_private(8.0), ""),
    "adult_private_off": ("adult_mlp", [], "0.852 (MLP)"),
}
PARTS = {
    "mnist": ["mnist_dp_seed0", "mnist_dp_seed1", "mnist_dp_seed2"],
    "adult": ["adult_eps1", "adult_eps8", "adult_private_off"],
}


def measure(name: str, runs: Path, data_dir: str, quick: bool) -> dict[str, Any]:
    config, overrides, anchor = RUNS[name]
    status = trained(config, runs / name, data_dir, [*overrides, *(["train.epochs=1"] * quick)])
    run = load_trained(runs / name, "last", data_dir)
    accuracy = evaluate_trained(run, "test", 0)["metrics"]["accuracy"]
    last = status.get("last", {})
    return {
        "accuracy": accuracy,
        "epsilon": last.get("privacy/epsilon"),
        "epsilon_prv": last.get("privacy/epsilon_prv"),
        "noise_multiplier": last.get("privacy/noise_multiplier"),
        "steps": status.get("steps"),
        "seconds": status.get("wall_time_s"),
        "anchor": anchor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/privacy"))
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--quick", action="store_true", help="one epoch each")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    results: dict[str, Any] = {"date": datetime.date.today().isoformat(), "machine": machine()}
    table = Table(title="DP-SGD (delta 1e-5): test accuracy and the privacy spent")
    for column in ("run", "test accuracy", "epsilon (RDP)", "epsilon (PRV)", "noise", "steps",
                   "training", "anchor"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("run", "anchor") else "right")
    for part in args.parts.split(","):
        for name in PARTS[part]:
            r = results[name] = measure(name, args.runs, args.data_dir, args.quick)
            private = r["epsilon"] is not None
            table.add_row(
                name, f"{r['accuracy']:.4f}", f"{r['epsilon']:.3f}" if private else "-",
                f"{r['epsilon_prv']:.3f}" if private else "-",
                f"{r['noise_multiplier']:.3f}" if private else "-", str(r["steps"]),
                f"{r['seconds']:.0f} s", r["anchor"],
            )  # fmt: skip
    console.print(table)
    console.print(machine(), highlight=False)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
