"""``deepline audit``: one model card for one set of weights.

The card (``model_card.json`` and ``model_card.html``) says what the config's ``card:`` section
says (intended use, limitations), what the model was trained and tested on (the data's
fingerprint, splits and sizes), its metrics, the result of every trust check that fits the
model (``deepline.trust.checks``: calibration, robustness, explanations, and whatever later
features register) and the export parity of its bundle. It is bound to the sha256 of the
weights (``tensors_sha256``) and the data fingerprint: ``verify_card`` says whether a card
still describes a bundle, and a server shows the card of each bundle it serves.

>>> card = audit("runs/mnist_lenet/<time>")  # doctest: +SKIP
>>> verify_card(card.json_path, "runs/mnist_lenet/<time>/bundle")  # doctest: +SKIP
[]
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deepline import __version__
from deepline.deploy.bundle import CARD_FILE, Bundle, load_bundle
from deepline.errors import ConfigError, DeeplineError, did_you_mean
from deepline.evaluate.evaluate import evaluate_trained
from deepline.evaluate.loading import TrainedRun, load_trained
from deepline.report import render_page
from deepline.report.sections import Section, Table
from deepline.runs import read_json, write_json
from deepline.tensor_files import tensors_sha256
from deepline.trust.checks import Subject, check_names, get_check

CARD_FORMAT = "deepline-card/1"
CARD_PAGE = "model_card.html"


@dataclass
class Card:
    """A written card: its content and where it went."""

    content: dict[str, Any]
    json_path: Path
    html_path: Path
    copied_to: Path | None = None  # the bundle that got a copy


def audit(
    path: str | Path,
    checks: Sequence[str] | None = None,
    data_dir: str | None = None,
    device: str | None = None,
) -> Card:
    """Audit a run folder (its configured checkpoint) or a bundle (the run and checkpoint it
    was exported from) and write the card into the run folder, and into the bundle whose
    weights it describes. ``checks``: names from ``check_names()`` (default: every check that
    fits the model; naming one that does not fit is an error)."""
    run, bundle = open_audited(Path(path), data_dir, device)
    digest = tensors_sha256(run.model.state_dict())
    if bundle is None:
        own = run.run_dir / "bundle"
        if (own / "bundle.json").is_file():
            candidate = load_bundle(own)
            bundle = candidate if candidate.weights_sha256() == digest else None
    results, skipped = run_checks(run, checks)
    compact = {name: get_check(name).for_card(result) for name, result in results.items()}
    content = {
        "format": CARD_FORMAT,
        "name": run.config.name,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "deepline_version": __version__,
        "bound_to": {
            "weights_sha256": digest,
            "data_fingerprint": run.data.meta.fingerprint,
            "checkpoint": run.checkpoint.name,
            "run": str(run.run_dir),
        },
        "card": run.config.card.model_dump(),
        "model": model_facts(run),
        "data": data_facts(run),
        "evaluation": evaluation_of(run),
        "checks": compact,
        "skipped": skipped,
        "export": export_parity(run),
        # what the bundle audited with the run applies (None: the run has no such bundle)
        "bundle_calibration": bundle.spec.get("calibration") if bundle is not None else None,
        "bundle_thresholds": bundle.spec.get("thresholds") if bundle is not None else None,
    }
    json_path = run.run_dir / CARD_FILE
    write_json(json_path, content)
    html_path = render_card(content, run.run_dir / CARD_PAGE, results)
    card = Card(content, json_path, html_path)
    if bundle is not None:
        shutil.copy2(json_path, bundle.path / CARD_FILE)
        shutil.copy2(html_path, bundle.path / CARD_PAGE)
        card.copied_to = bundle.path
    return card


def open_audited(
    path: Path, data_dir: str | None, device: str | None
) -> tuple[TrainedRun, Bundle | None]:
    """The run to audit and, for a bundle, the bundle (its weights must be the run's)."""
    if not (path / "bundle.json").is_file() and path.name != "bundle.json":
        return load_trained(path, None, data_dir, device=device), None
    bundle = load_bundle(path)
    source = Path(str(bundle.spec.get("source_run", "")))
    if not (source / "config.yaml").is_file():
        raise DeeplineError(
            f"bundle '{bundle.path}' was exported from '{source}', which is not here: the "
            "checks need the run's data and splits. Audit the run folder where it exists"
        )
    run = load_trained(source, bundle.spec.get("checkpoint"), data_dir, device=device)
    if tensors_sha256(run.model.state_dict()) != bundle.weights_sha256():
        raise DeeplineError(
            f"bundle '{bundle.path}' holds other weights than {run.checkpoint} of its run: "
            "re-export the run, or audit the run folder"
        )
    return run, bundle


def run_checks(
    run: TrainedRun, wanted: Sequence[str] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """({check: result}, {check: why it was left out}) for the wanted or fitting checks."""
    names = check_names()
    if wanted is not None and not wanted:
        raise ConfigError(f"--checks names no check. Allowed: {', '.join(names)}")
    for name in wanted or ():
        if name not in names:
            raise ConfigError(
                f"--checks: unknown check '{name}'. Allowed: {', '.join(names)}."
                + did_you_mean(name, names)
            )
    results, skipped = {}, {}
    subject = Subject(run)
    for name in names:
        if wanted is not None and name not in wanted:
            skipped[name] = "not asked for (--checks)"
            continue
        check = get_check(name)
        why = check.unfit(run)
        if why is not None and wanted is not None:
            raise ConfigError(f"--checks: {name} does not fit this model: {why}")
        if why is not None:
            skipped[name] = why
            continue
        results[name] = check.result_for(subject)
    return results, skipped


def model_facts(run: TrainedRun) -> dict[str, Any]:
    return {
        "name": run.config.model.name,
        "task": run.task.name,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "config": run.config.model.model_dump(),
    }


def data_facts(run: TrainedRun) -> dict[str, Any]:
    meta = run.data.meta
    return {
        "name": meta.name,
        "fingerprint": meta.fingerprint,
        "sizes": {name: len(run.data.split(name)) for name in ("train", "val", "test")},
        "classes": [str(c) for c in meta.classes],
    }


def evaluation_of(run: TrainedRun) -> dict[str, Any]:
    """The run's ``eval.json`` when it is for these weights, else a fresh evaluation."""
    found = read_json(run.run_dir / "eval.json", None)
    if isinstance(found, dict) and found.get("checkpoint") == run.checkpoint.name:
        return {"split": found.get("split"), "metrics": found.get("metrics", {})}
    split = run.config.eval.split if len(run.data.split(run.config.eval.split)) else "val"
    result = evaluate_trained(run, split, keep_mistakes=0)
    write_json(run.run_dir / "eval.json", result)
    return {"split": split, "metrics": result["metrics"]}


def export_parity(run: TrainedRun) -> dict[str, Any] | None:
    """Each exported format's check (difference from eager PyTorch, int8's metric change) when
    the run's bundle was exported from these weights."""
    found = read_json(run.run_dir / "export.json", None)
    if not isinstance(found, dict) or found.get("checkpoint") != run.checkpoint.name:
        return None
    return {name: entry for name, entry in found.get("formats", {}).items() if "ok" in entry}


def verify_card(card_path: str | Path, bundle_path: str | Path) -> list[str]:
    """Why the card no longer describes the bundle (empty: it does)."""
    if not Path(card_path).is_file():
        raise DeeplineError(f"model card not found: '{card_path}'")
    card = read_json(Path(card_path), None)
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise DeeplineError(f"'{card_path}' is not a deepline model card ({CARD_FORMAT})")
    return load_bundle(bundle_path).card_problems(card)


# ------------------------------------------------------------------------------- the page


def render_card(content: dict[str, Any], out: Path, results: dict[str, Any] | None = None) -> Path:
    """``model_card.html`` from the card's JSON, with the checks' full ``results`` (their
    figures) when given."""
    return render_page(
        "model_card.html.j2",
        {"card": content, "sections": card_sections(content, results)},
        out,
    )


def card_sections(content: dict[str, Any], results: dict[str, Any] | None = None) -> list[Section]:
    sections = [_model_section(content), _data_section(content), _metrics_section(content)]
    for name, result in (results or content.get("checks", {})).items():
        try:
            sections.append(get_check(name).section(result))
        except (KeyError, TypeError, ValueError, IndexError):  # another version's result
            sections.append(Section(name, name.title(), ["Written by another version."]))
    export = _export_section(content)
    if export is not None:
        sections.append(export)
    return sections


def _model_section(content: dict[str, Any]) -> Section:
    model, bound = content["model"], content["bound_to"]
    rows = [
        ["model", model["name"]],
        ["task", model["task"]],
        ["parameters", f"{model['parameters']:,}"],
        ["checkpoint", bound["checkpoint"]],
        ["weights sha256", bound["weights_sha256"]],
    ]
    applied = content.get("bundle_calibration")
    if applied is not None:
        rows.append(["the bundle applies a temperature",
                     f"yes, T = {applied['temperature']:.3f}" if applied.get("applied")
                     else f"no ({applied.get('why', 'not calibrated')})"])  # fmt: skip
    thresholds = content.get("bundle_thresholds")
    if thresholds is not None:
        decides = (
            f"yes, for {thresholds['constraint']} on {thresholds['column']}"
            if thresholds.get("applied")
            else f"no ({thresholds.get('why')})"
        )
        rows.append(["the bundle decides by group thresholds", decides])
    return Section("model", "Model", tables=[Table(["", ""], rows)])


def _data_section(content: dict[str, Any]) -> Section:
    data = content["data"]
    rows = [[split, f"{n:,}"] for split, n in data["sizes"].items()]
    text = [f"Dataset {data['name']}, fingerprint {data['fingerprint']}."]
    if data["classes"]:
        text.append(f"{len(data['classes'])} classes: {', '.join(data['classes'][:20])}.")
    return Section("data", "Data", text, [Table(["split", "examples"], rows)])


def _metrics_section(content: dict[str, Any]) -> Section:
    evaluation = content["evaluation"]
    rows = [
        [name, f"{value:.4f}" if isinstance(value, (int, float)) else str(value)]
        for name, value in evaluation["metrics"].items()
    ]
    text = [f"On the {evaluation['split']} split."]
    return Section("metrics", "Metrics", text, [Table(["metric", "value"], rows)])


def _export_section(content: dict[str, Any]) -> Section | None:
    export = content.get("export")
    if not export:
        return None
    rows = []
    for name, entry in export.items():
        diff = entry.get("max_abs_diff")
        change = entry.get("change")
        rows.append([
            name,
            f"{diff:.2e}" if diff is not None else "-",
            f"{change:+.4f} {entry.get('metric', '')}" if change is not None else "-",
            "yes" if entry.get("ok") else "no",
        ])  # fmt: skip
    return Section(
        "export",
        "Export parity",
        ["Each exported format against eager PyTorch on the bundle's test inputs."],
        [Table(["format", "max |diff|", "metric change", "passed"], rows)],
        passed=all(entry.get("ok") for entry in export.values()),
    )
