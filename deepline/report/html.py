"""One static HTML page per run: everything embedded, opens from disk, prints cleanly.

The page reads only the run folder (see DESIGN.md): any file may be absent, and a section
whose inputs are missing says so instead of failing the whole report.

>>> from deepline.report import write_report
>>> write_report("runs/digits/0001")  # doctest: +SKIP
PosixPath('runs/digits/0001/report.html')
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from jinja2 import Environment, PackageLoader, Undefined

from deepline import plots
from deepline.runs import read_json

MAX_MISTAKES = 32  # enough to see a pattern; more only makes the page heavy
_DISPLAY_METRICS = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "auroc_macro",
    "loss",
)
_ENV_FIRST = (
    "python",
    "torch",
    "deepline",
    "platform",
    "seed",
    "git_commit",
    "num_threads",
    "started_at",
)


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from whatever the run folder holds and return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: run_dir={str(run_dir)!r}")
    return render_page("report.html.j2", build_context(run_dir), run_dir / "report.html")


def render_page(template: str, context: dict[str, Any], out: Path) -> Path:
    """Render one of deepline's page templates (shared stylesheet, autoescaped) to ``out``."""
    out.write_text(_environment().get_template(template).render(**context), encoding="utf-8")
    return out


def build_context(run_dir: Path) -> dict[str, Any]:
    """Everything the template shows, read from the run folder (None where missing)."""
    config_text = _read_text(run_dir / "config.yaml")
    config = _parse_yaml(config_text)
    env = _read_json(run_dir / "environment.json")
    data = _read_json(run_dir / "data.json")
    status = _read_json(run_dir / "status.json")
    evaluation = _read_json(run_dir / "eval.json")
    records = _read_jsonl(run_dir / "metrics.jsonl")
    classes = [
        str(c) for c in (evaluation or {}).get("classes") or (data or {}).get("classes") or []
    ]
    with tempfile.TemporaryDirectory() as tmp:
        # Figures are drawn from the JSON into a scratch folder and embedded, so the report
        # never overwrites the evaluator's plots/ and always matches the numbers shown.
        images = _figures(Path(tmp), run_dir, records, classes)
        task_figures = _task_figures(Path(tmp), config, data, evaluation)
    return {
        "title": _get(config, "name") or run_dir.name,
        "run_dir": str(run_dir),
        "status": status,
        "started_at": _get(env, "started_at"),
        "task": _get(config, "task", "name"),
        "model": _get(config, "model", "name"),
        "dataset": _get(data, "name") or _get(config, "data", "name"),
        "config_text": config_text,
        "data": data,
        "classes": classes,
        "metrics": _metrics_table(evaluation, records),
        "evaluation": evaluation,
        "per_class": _per_class_rows(evaluation, classes),
        "export": _read_json(run_dir / "export.json"),
        "samples": _read_jsonl(run_dir / "samples.jsonl"),
        "env": _env_rows(env),
        "images": images,
        "task_figures": task_figures,
        "sections": trust_sections(run_dir),
        "fmt": _fmt,
    }


def trust_sections(run_dir: Path) -> list[Any]:
    """The sections of the trust checks whose results the run folder holds (calibration,
    robustness, explanations, ...), in their order; one that cannot be read is left out."""
    from deepline.registry import TRUST_CHECKS

    sections = []
    for name in sorted(TRUST_CHECKS.names(), key=lambda n: TRUST_CHECKS.meta(n)["order"]):
        check = TRUST_CHECKS.get(name)()
        result = check.read(run_dir)
        if result is None:
            continue
        try:
            sections.append(check.section(result))
        except (KeyError, TypeError, ValueError, IndexError):
            continue  # written by another version: the rest of the report still shows
    return sections


def _figures(tmp: Path, run_dir: Path, records: list[dict], classes: list[str]) -> dict[str, str]:
    """Base64 PNGs by name, for each figure whose inputs exist (a failing one is skipped)."""
    jobs: dict[str, Callable[[Path], Path]] = {}
    if records:
        jobs["learning_curves"] = lambda p: plots.plot_learning_curves(records, p)
    mistakes = _read_mistakes(run_dir / "mistakes.npz", classes)
    if mistakes is not None:
        jobs["mistakes"] = lambda p: plots.plot_image_grid(mistakes[0], mistakes[1], p)
    out: dict[str, str] = {}
    for name, job in jobs.items():
        png = _draw(job, tmp / f"{name}.png")
        if png is not None:
            out[name] = png
    return out


def _task_figures(
    tmp: Path, config: dict | None, data: dict | None, evaluation: dict | None
) -> list[dict[str, str]]:
    """The task's own figures of the evaluation (a confusion matrix, predicted against true):
    title, caption and base64 PNG each. None when the run's task cannot be rebuilt."""
    if not (config and data and evaluation):
        return []
    from deepline.config import task_config
    from deepline.data.meta import DataMeta
    from deepline.errors import DeeplineError
    from deepline.tasks import build_task

    try:
        task = build_task(task_config(config.get("task") or {}), DataMeta.from_dict(data))
        figures = task.figures(evaluation)
    except (DeeplineError, ValueError, TypeError, KeyError):
        return []  # a run folder from another version: the rest of the report still shows
    shown = []
    for name, figure in figures.items():
        png = _draw(figure.draw, tmp / f"task-{name}.png")
        if png is not None:
            shown.append({"name": name, "title": figure.title, "caption": figure.caption,
                          "png": png})  # fmt: skip
    return shown


def _draw(job: Callable[[Path], Path], path: Path) -> str | None:
    try:
        return plots.figure_to_base64_png(job(path))
    except (ValueError, TypeError, IndexError, KeyError):
        return None  # malformed inputs: leave this one figure out, keep the report


def _metrics_table(evaluation: dict | None, records: list[dict]) -> dict[str, Any] | None:
    """Eval metrics, or the last epoch line's ``val/*`` metrics when there was no evaluation."""
    if evaluation and isinstance(evaluation.get("metrics"), dict):
        metrics = evaluation["metrics"]
        order = [k for k in _DISPLAY_METRICS if k in metrics]
        order += sorted(k for k in metrics if k not in _DISPLAY_METRICS)
        split, ckpt = evaluation.get("split", "?"), evaluation.get("checkpoint", "?")
        source = f"{split} split, checkpoint {ckpt}"
        # what the task compares the model with on the same examples (a forecaster's baselines)
        baselines = evaluation.get("baselines") or {}
        rows = [(k, metrics[k], [b.get(k) for b in baselines.values()]) for k in order]
        return {"source": source, "rows": rows, "baselines": list(baselines)}
    for rec in reversed(records):
        val = {k: v for k, v in rec.items() if k.startswith("val/")}
        if val:
            source = f"last validation (epoch {rec.get('epoch', '?')}, step {rec.get('step', '?')})"
            return {"source": source, "rows": [(k, v, []) for k, v in sorted(val.items())],
                    "baselines": []}  # fmt: skip
    return None


def _per_class_rows(evaluation: dict | None, classes: list[str]) -> list[dict[str, Any]]:
    per_class = (evaluation or {}).get("per_class") or {}
    rows = []
    for i, name in enumerate(classes):
        row: dict[str, Any] = {"class": name}
        for key in ("precision", "recall", "f1", "support"):
            values = per_class.get(key) or []
            row[key] = values[i] if i < len(values) else None
        rows.append(row)
    return rows if per_class else []


def _env_rows(env: dict | None) -> list[tuple[str, Any]]:
    """Versions, seed and commit first, then any other field, then the other packages."""
    if not env:
        return []
    keys = [k for k in _ENV_FIRST if k in env]
    keys += [k for k in env if k not in keys and not isinstance(env[k], (dict, list))]
    packages = env.get("packages")
    if not isinstance(packages, dict):
        packages = {}
    return [(k, env[k]) for k in keys] + sorted(
        (k, v) for k, v in packages.items() if k not in keys
    )


def _read_mistakes(path: Path, classes: list[str]) -> tuple[np.ndarray, list[str]] | None:
    """The first misclassified images and their "true → predicted (confidence)" captions."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = npz["images"][:MAX_MISTAKES]  # (N, C, H, W)
            true, pred = npz["true"][:MAX_MISTAKES], npz["pred"][:MAX_MISTAKES]
            prob = npz["prob"][:MAX_MISTAKES] if "prob" in npz else None
    except (OSError, ValueError, KeyError):
        return None
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        return None  # not pictures (e.g. tabular rows): nothing to show as a grid

    def name(i: int) -> str:
        return classes[i] if 0 <= i < len(classes) else str(i)

    confidence = [f" ({float(p):.2f})" for p in prob] if prob is not None else [""] * len(true)
    captions = [
        f"{name(int(t))} → {name(int(p))}{c}"
        for t, p, c in zip(true, pred, confidence, strict=False)
    ]
    return images, captions


def _fmt(value: Any) -> str:
    """Numbers as a person reads them: 4 significant digits, small ones in e-notation."""
    if value is None or isinstance(value, Undefined):  # Undefined: a key the file lacks
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3e}" if value != 0 and abs(value) < 1e-3 else f"{value:.4g}"
    return str(value)


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _read_json(path: Path) -> dict | None:
    value = read_json(path)
    return value if isinstance(value, dict) else None


def _read_jsonl(path: Path) -> list[dict]:
    """The parseable object lines; a line cut short by a crash is skipped."""
    records = []
    for line in (_read_text(path) or "").splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def _parse_yaml(text: str | None) -> dict | None:
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return None
    return value if isinstance(value, dict) else None


def _environment() -> Environment:
    # autoescape=True for every template: everything shown comes from files on disk.
    return Environment(
        loader=PackageLoader("deepline.report"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
