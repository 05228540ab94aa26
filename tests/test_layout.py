"""The architecture holds: imports point down the layers (DESIGN.md), and nothing outside
``tasks/`` and the codecs asks which task or kind of input it is handling (docs/extending.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deepline.registry import CODECS, TASKS

PACKAGE = Path(__file__).resolve().parents[1] / "deepline"
# each package, and the packages of deepline it may import (its own layer and those below)
BASE = {"__version__", "config", "registry", "runs", "errors", "plots", "tensor_files"}
# attacks sit beside models (torch and Captum only): training attacks batches with them
# (adversarial training) and trust measures robustness with them
LOWER = {"data", "models", "attacks", "tasks", "training"}
LAYERS: dict[str, set[str]] = {
    "data": BASE,
    "models": BASE,
    "attacks": BASE,
    "tasks": BASE | {"data", "models"},
    "training": BASE | {"data", "models", "attacks", "tasks"},
    "evaluate": BASE | LOWER,
    "deploy": BASE | LOWER | {"evaluate"},
    "report": BASE | LOWER | {"evaluate"},
    "federated": BASE | LOWER | {"evaluate", "deploy", "report"},
    "compress": BASE | LOWER | {"evaluate", "deploy"},
    "trust": BASE | LOWER | {"evaluate", "deploy", "report", "federated", "compress"},
    "tune": BASE | LOWER | {"evaluate", "report"},
    "serve": BASE | {"data", "models", "tasks", "deploy"},
}
IMPORT = re.compile(
    r"^\s*(?:from deepline\.(\w+)|import deepline\.(\w+)|from deepline import (\w+))"
)


def _modules(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_point_down(package: str) -> None:
    allowed = LAYERS[package] | {package}
    wrong = []
    for path in _modules(package):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = IMPORT.match(line)
            imported = match and next(g for g in match.groups() if g)
            if imported and imported not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not wrong, f"{package} may import only {sorted(allowed)}:\n" + "\n".join(wrong)


def test_nothing_outside_tasks_and_codecs_asks_which_it_is() -> None:
    """No comparison with a registered task's or codec's name outside their own packages,
    in Python or in the web page's script (a model's ``output == "sequence"`` mode is not one)."""
    names = "|".join(map(re.escape, [*TASKS.names(), *CODECS.names()]))
    compared = re.compile(rf"(?<!output)(?<!output )(===?|!==?)\s*[\"']({names})[\"']")
    found = []
    for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.js")]:
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("tasks/", "data/codecs/")):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if compared.search(line):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "let the task or codec answer instead:\n" + "\n".join(found)
