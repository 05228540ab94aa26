"""``deepline explain``: attributions of a model's predictions, drawn over its inputs, each
method checked for depending on the model at all (``explain.sanity``).

For a run without files it explains test predictions, right and wrong ones, into
``RUN/explanations/`` and ``RUN/explanations.json`` (the report shows the grid and the checks);
for files it writes one overlay per input and method, and the attributions as JSON.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepline.errors import ConfigError, InputError
from deepline.evaluate.loading import TrainedRun, load_trained
from deepline.runs import write_json
from deepline.tasks import Task
from deepline.trust.explain import Attribution, get_explainer
from deepline.trust.explain.base import is_tokens
from deepline.trust.explain.sanity import deletion_check, randomisation_check

EXAMPLES = 8  # explained test predictions shown in the report: half right, half wrong
SANITY_EXAMPLES = 100


@dataclass
class Source:
    """Where explanations come from: a model, its task, and labelled examples for the sanity
    checks."""

    model: nn.Module
    task: Task
    x: torch.Tensor
    y: torch.Tensor
    out: Path  # where explanations are written
    checkpoint: str | None = None  # the weights' checkpoint, for a run


def load_subject(
    path: str | Path, data_dir: str | None = None, device: str | None = None
) -> Source:
    """A run folder (its test split) or a bundle (the test examples it was checked on)."""
    path = Path(path)
    if (path / "bundle.json").is_file():
        from deepline.deploy.bundle import load_bundle

        bundle = load_bundle(path)
        examples = bundle.examples()
        return Source(
            bundle.torch_model(), bundle.task(), examples["test_x"], examples["test_y"],
            Path("explanations"),
        )  # fmt: skip
    return run_source(load_trained(path, data_dir=data_dir, device=device))


def run_source(run: TrainedRun) -> Source:
    """A loaded run's model with the first examples of its test split (else val)."""
    test = run.data.split("test") if len(run.data.test) else run.data.split("val")
    x, y = run.task.example_batch(test, max(SANITY_EXAMPLES, 512))
    return Source(run.model, run.task, x, y, run.run_dir / "explanations", run.checkpoint.name)


def check_methods(methods: Sequence[str], model: nn.Module, task: Task) -> None:
    if not methods:
        raise ConfigError("--method names no method")
    for name in methods:
        get_explainer(name).check(model, task)


def resolve_target(task: Task, target: str | None, predicted: torch.Tensor) -> torch.Tensor:
    """``target`` (a class name or index) for every example, else each one's prediction."""
    if target is None:
        return predicted
    classes = [str(c) for c in task.meta.classes]
    if target in classes:
        index = classes.index(target)
    elif target.lstrip("-").isdigit() and 0 <= int(target) < max(len(classes), 1):
        index = int(target)
    else:
        shown = ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else "")
        raise ConfigError(f"--target: unknown class {target!r}. Allowed: {shown}")
    return torch.full_like(predicted, index)


def predictions(model: nn.Module, task: Task, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the class explained by default, how sure the model is of it) per example, as the
    task reads its outputs."""
    with torch.no_grad():
        return task.explained_class(model(x))


def attribute(
    methods: Sequence[str], model: nn.Module, task: Task, x: torch.Tensor, target: torch.Tensor
) -> dict[str, Attribution]:
    return {name: get_explainer(name).attribute(model, task, x, target) for name in methods}


def sanity_checks(source: Source, methods: Sequence[str], n: int) -> dict[str, Any]:
    """Each method's model-randomisation and deletion checks on ``n`` labelled examples."""
    x, y = source.x[:n], source.y[:n]
    target, _ = predictions(source.model, source.task, x)
    found: dict[str, Any] = {}
    for name in methods:
        explainer = get_explainer(name)
        trained = explainer.attribute(source.model, source.task, x, target)
        found[name] = {
            "randomisation": randomisation_check(
                explainer, source.model, source.task, x, target, trained
            ),
            "deletion": deletion_check(source.model, source.task, x, y, trained),
        }
        if trained.delta is not None:
            found[name]["convergence_delta"] = float(trained.delta.abs().mean())
    return found


# ------------------------------------------------------------------------------ drawing
def heat_maps(values: torch.Tensor) -> np.ndarray | None:
    """Attributions as (N, H, W) pictures scaled to [0, 1] per example, or None for tokens."""
    if values.dim() == 4:
        heat = values.abs().sum(1)
    elif values.dim() == 3:  # (N, T, F) sequences, shown as T x F pictures
        heat = values.abs()
    else:
        return None
    heat = heat.float().cpu()
    peak = heat.flatten(1).max(1).values.clamp_min(1e-12)
    return (heat / peak[:, None, None]).numpy()


def token_html(pieces: list[str], weights: np.ndarray) -> str:
    """Coloured text: each token's background is red for positive, blue for negative weight."""
    peak = float(np.abs(weights).max()) or 1.0
    spans = []
    for piece, w in zip(pieces, weights):
        if not piece:
            continue
        alpha = min(abs(float(w)) / peak, 1.0)
        colour = f"rgba(220,40,40,{alpha:.2f})" if w >= 0 else f"rgba(40,90,220,{alpha:.2f})"
        spans.append(
            f'<span style="background:{colour}" title="{w:.4g}">{html.escape(piece)}</span>'
        )
    return "".join(spans)


def _rounded(values: torch.Tensor) -> Any:
    return np.round(values.detach().float().cpu().numpy(), 6).tolist()


def explain_inputs(
    source: Source,
    x: torch.Tensor,
    names: list[str],
    methods: Sequence[str],
    target: str | None,
    out: Path,
) -> list[dict[str, Any]]:
    """Explain each input: an overlay per method (PNG; coloured text for tokens) in ``out``,
    and a JSON-able record with the prediction, the target and the attributions."""
    from deepline import plots

    model, task = source.model, source.task
    device = next(model.parameters()).device
    x = x.to(device)
    predicted, confidence = predictions(model, task, x)
    targets = resolve_target(task, target, predicted)
    found = attribute(methods, model, task, x, targets)
    classes = [str(c) for c in task.meta.classes]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out: cannot write explanations to '{out}' ({err.strerror})") from None
    images = task.show_inputs(x.cpu())
    records = []
    for i, name in enumerate(names):
        stem = Path(name).stem or f"input-{i}"
        record: dict[str, Any] = {
            "input": name,
            "predicted": _class(classes, int(predicted[i])),
            "probability": float(confidence[i]),
            "target": _class(classes, int(targets[i])),
            "methods": {},
        }
        for method, attribution in found.items():
            entry: dict[str, Any] = {"attributions": _rounded(attribution.values[i])}
            if attribution.delta is not None:
                entry["convergence_delta"] = float(attribution.delta[i])
            heat = heat_maps(attribution.values[i : i + 1])
            if heat is not None and images is not None:
                png = out / f"{stem}.{method}.png"
                title = f"{method}: {record['target']}"
                plots.plot_explanations(images[i : i + 1].numpy(), {title: heat}, [name], png)
                entry["overlay"] = str(png)
            pieces = task.codec.pieces(x[i].cpu().numpy()) if is_tokens(x) else None
            if pieces is not None:
                weights = attribution.values[i].float().cpu().numpy()
                entry["tokens"] = [[p, float(w)] for p, w in zip(pieces, weights) if p]
                page = out / f"{stem}.{method}.html"
                page.write_text(f"<p>{token_html(pieces, weights)}</p>\n", encoding="utf-8")
                entry["overlay"] = str(page)
            record["methods"][method] = entry
        records.append(record)
    return records


def _class(classes: list[str], index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else str(index)


def explain_files(
    path: str | Path,
    files: Sequence[Path],
    methods: Sequence[str],
    target: str | None = None,
    out: Path | None = None,
    sanity: int = SANITY_EXAMPLES,
    data_dir: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Explain the inputs in ``files`` with a run's or a bundle's model; writes overlays and
    ``explanations.json`` into ``out`` (default: ``RUN/explanations`` or ``./explanations``)."""
    source = load_subject(path, data_dir, device)
    check_methods(methods, source.model, source.task)
    named = [item for f in files for item in source.task.codec.read_file(Path(f))]
    if not named:
        raise InputError("no inputs in the files given")
    batch = np.stack([source.task.codec.model_input(raw) for _, raw in named])
    out = out or source.out
    records = explain_inputs(
        source, torch.from_numpy(batch), [n for n, _ in named], methods, target, out
    )
    result = {
        "inputs": records,
        "sanity": sanity_checks(source, methods, sanity) if sanity else {},
    }
    write_json(out / "explanations.json", result)
    return result


def explain_run(
    run: str | Path | TrainedRun,
    methods: Sequence[str],
    examples: int = EXAMPLES,
    sanity: int = SANITY_EXAMPLES,
    data_dir: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Explain test predictions (half right, half wrong when there are wrong ones) into
    ``RUN/explanations/``: a grid for the report, the checks in ``RUN/explanations.json``.
    ``run``: a run folder, or a run already loaded (with the checkpoint to explain)."""
    from deepline import plots

    loaded = isinstance(run, TrainedRun)
    source = run_source(run) if loaded else load_subject(run, data_dir, device)  # type: ignore[arg-type]
    check_methods(methods, source.model, source.task)
    device_ = next(source.model.parameters()).device
    x, y = source.x.to(device_), source.y.to(device_)
    picked = _right_and_wrong(source, x, y, examples)
    names = [f"test-{int(i)}" for i in picked]
    records = explain_inputs(source, x[picked], names, methods, None, source.out)
    result: dict[str, Any] = {
        "checkpoint": source.checkpoint,
        "methods": list(methods),
        "inputs": records,
        "sanity": sanity_checks(source, methods, sanity) if sanity else {},
    }
    images = source.task.show_inputs(x[picked].cpu())
    if images is not None:
        found = attribute(methods, source.model, source.task, x[picked],
                          predictions(source.model, source.task, x[picked])[0])  # fmt: skip
        heats = {m: h for m, a in found.items() if (h := heat_maps(a.values)) is not None}
        labels = [str(c) for c in source.task.meta.classes]
        answered = [f"{r['predicted']} ({r['probability']:.2f})" for r in records]
        captions = (  # a true class where targets are classes (not masks or boxes)
            [f"{_class(labels, int(t))} → {a}" for t, a in zip(y[picked].tolist(), answered)]
            if y.dim() == 1 else answered
        )  # fmt: skip
        if heats:
            grid = plots.plot_explanations(images.numpy(), heats, captions, source.out / "grid.png")
            result["grid"] = str(grid)
    write_json(source.out.parent / "explanations.json", result)
    return result


def _right_and_wrong(source: Source, x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of up to n/2 wrong and the rest right predictions (the first n otherwise)."""
    with torch.no_grad():
        wrong = source.task.wrong(source.model(x), y)
    if wrong is None or y.dim() > 1:
        return torch.arange(min(n, len(x)))
    bad = wrong.nonzero().flatten()[: n // 2]
    good = (~wrong).nonzero().flatten()[: n - len(bad)]
    return torch.cat([good, bad]).cpu()
