"""``deepline attack | calibrate | explain | audit``: how far a trained model can be trusted."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from deepline.cli import app, console

DEVICE_HELP = "where to run the model (default: the run's train.device when present)"


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{option} takes numbers separated by commas, got {text!r}"
        ) from None


@app.command()
def attack(
    run_dir: Path = typer.Argument(..., help="a run folder"),
    attack_: str = typer.Option(
        "pgd", "--attack", help="fgsm, pgd, or both (fgsm,pgd) to compare them"
    ),
    eps: str = typer.Option(
        "0.05,0.1,0.2,0.3",
        help="epsilons, comma-separated, in the inputs' unit space (pixels in [0, 1] for "
        "images); 0 (clean) is always added",
    ),
    norm: str = typer.Option("linf", help="linf or l2"),
    steps: int = typer.Option(10, help="pgd: steps per attempt"),
    alpha: float = typer.Option(None, help="step size (default fgsm eps, pgd 2.5 eps / steps)"),
    restarts: int = typer.Option(1, help="attempts per example, each from a random start"),
    random_start: bool = typer.Option(
        None, "--random-start/--no-random-start", help="default: pgd yes, fgsm no"
    ),
    split: str = typer.Option("test", help="val or test"),
    limit: int = typer.Option(None, min=1, help="attack only the first N examples"),
    batch_size: int = typer.Option(1000, min=1, help="examples attacked at once"),
    checkpoint: str = typer.Option(None, help="best or last (default: the config's)"),
    data_dir: str = typer.Option(None, help="look for dataset files here first"),
    device: str = typer.Option(None, help=DEVICE_HELP),
) -> None:
    """Attack a trained model: its metric against epsilon, as a table, robustness.json,
    plots/robustness.png and a section of the report.

    Attacks come from Captum (captum.robust). With --restarts N an example counts as robust
    only if none of N attempts fools it. Curves that look like gradient masking are flagged.
    """
    from deepline.errors import ConfigError
    from deepline.evaluate.loading import load_trained
    from deepline.report import write_report
    from deepline.trust.robustness import AttackPlan, robustness_curves, write_robustness

    if split not in ("val", "test"):
        raise typer.BadParameter(f"--split must be val or test, got {split!r}")
    if norm not in ("linf", "l2"):
        raise ConfigError(f"--norm: unknown norm {norm!r}. Allowed: linf, l2")
    plan = AttackPlan(
        tuple(a.strip() for a in attack_.split(",") if a.strip()), _floats(eps, "--eps"),
        norm, steps, alpha, restarts, random_start,
    )  # fmt: skip
    run = load_trained(run_dir, checkpoint, data_dir, device=device)
    result = robustness_curves(run, plan, split, limit, batch_size)
    plot = write_robustness(run.run_dir, result)
    metric = result["metric"]
    table = Table(title=f"{metric} under attack: {result['n']} {split} examples, {norm}")
    table.add_column("eps", justify="right")
    for name in result["curves"]:
        table.add_column(name.upper(), justify="right")
        table.add_column("s", justify="right", style="dim")
    for i, point in enumerate(next(iter(result["curves"].values()))):
        cells = [f"{point['eps']:g}"]
        for points in result["curves"].values():
            cells += [f"{points[i]['metrics'][metric]:.4f}", f"{points[i]['seconds']:.1f}"]
        table.add_row(*cells)
    console.print(table)
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"wrote {run.run_dir / 'robustness.json'}, {plot}, {write_report(run.run_dir)}")


@app.command()
def calibrate(
    run_dir: Path = typer.Argument(..., help="a run folder"),
    split: str = typer.Option("test", help="where ECE is measured before and after: val or test"),
    checkpoint: str = typer.Option(None, help="best or last (default: the config's)"),
    data_dir: str = typer.Option(None, help="look for dataset files here first"),
    device: str = typer.Option(None, help=DEVICE_HELP),
) -> None:
    """Fit a softmax temperature on the validation split (temperature scaling): ECE and MCE
    before and after, calibration.json, a reliability diagram, a report section. The next
    `deepline export` puts the temperature into the bundle, where every protocol applies it."""
    from deepline.evaluate.loading import load_trained
    from deepline.report import write_report
    from deepline.trust.calibration import calibrate_run, write_calibration

    if split not in ("val", "test"):
        raise typer.BadParameter(f"--split must be val or test, got {split!r}")
    run = load_trained(run_dir, checkpoint, data_dir, device=device)
    result = calibrate_run(run, split)
    plot = write_calibration(run.run_dir, result)
    table = Table(title=f"temperature {result['temperature']:.3f} (fitted on val), {split} split")
    for column in ("", "ECE", "MCE", "NLL", "accuracy"):
        table.add_column(column, justify="right")
    for name in ("before", "after"):
        r = result[name]
        table.add_row(name, f"{r['ece']:.2%}", f"{r['mce']:.2%}", f"{r['nll']:.4f}",
                      f"{r['accuracy']:.4f}")  # fmt: skip
    console.print(table)
    console.print(f"wrote {run.run_dir / 'calibration.json'}, {plot}, {write_report(run.run_dir)}")
    console.print(f"next:  deepline export {run.run_dir}   (the bundle applies the temperature)")


@app.command()
def explain(
    path: Path = typer.Argument(..., help="a run folder or a bundle folder"),
    files: list[Path] = typer.Argument(
        None,
        help="inputs to explain, in files the model reads (images, .npy, text); none: test "
        "predictions of a run, right and wrong, for its report",
    ),
    method: str = typer.Option(
        "saliency,integrated_gradients",
        help="comma-separated: saliency, integrated_gradients, gradcam (convolutional models), "
        "attention (transformer, gpt: attention rollout)",
    ),
    target: str = typer.Option(None, help="the class to explain (default: each prediction)"),
    out: Path = typer.Option(None, help="folder for overlays and explanations.json"),
    sanity: int = typer.Option(
        100, min=0, help="examples for the model-randomisation and deletion checks (0: skip)"
    ),
    data_dir: str = typer.Option(None, help="runs: look for dataset files here first"),
    device: str = typer.Option(None, help=DEVICE_HELP),
) -> None:
    """Explain predictions: which input elements each one rests on (Captum), drawn over the
    inputs (PNG; coloured text for text models) with the attributions as JSON.

    Every run also checks that the explanations depend on the model: their rank correlation
    with a randomised model's (Adebayo et al. 2018; passes at <= 0.3) and the deletion curve
    (removing the most attributed elements first must hurt accuracy: area <= 0.7 of random).
    """
    from deepline.trust.explanations import explain_files, explain_run

    methods = [m.strip() for m in method.split(",") if m.strip()]
    if files:
        result = explain_files(path, files, methods, target, out, sanity, data_dir, device)
        for record in result["inputs"]:
            shown = ", ".join(e.get("overlay", "-") for e in record["methods"].values())
            console.print(
                f"{record['input']}: {record['predicted']} ({record['probability']:.2f}), "
                f"explained for {record['target']}: {shown}",
                highlight=False,
            )
    else:
        if (path / "bundle.json").is_file():
            raise typer.BadParameter("give FILES to explain with a bundle")
        if target is not None:
            raise typer.BadParameter("--target needs FILES")
        from deepline.report import write_report

        result = explain_run(path, methods, sanity=sanity, data_dir=data_dir, device=device)
        console.print(f"wrote {result.get('grid', '-')}, {write_report(path)}")
    _sanity_table(result["sanity"])


def _sanity_table(sanity: dict) -> None:
    if not sanity:
        return
    table = Table(title="do the explanations depend on the model?")
    for column in ("method", "rank corr. with random model", "deletion AUC / random", "passed"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, checks in sanity.items():
        r, d = checks["randomisation"], checks["deletion"]
        deletion = f"{d['auc_attributed']:.3f} / {d['auc_random']:.3f}" if d else "-"
        passed = r["passed"] and (d is None or d["passed"])
        mark = "[green]yes[/]" if passed else "[red]no[/]"
        table.add_row(name, f"{r['spearman']:.3f} (<= {r['threshold']})", deletion, mark)
    console.print(table)


@app.command()
def audit(
    paths: list[Path] = typer.Argument(
        ..., help="a run folder or a bundle; with --verify: a model_card.json and a bundle"
    ),
    checks: str = typer.Option(
        None,
        help="comma-separated trust checks (default: every one that fits the model): "
        "calibration, robustness, explanations",
    ),
    verify: bool = typer.Option(
        False, "--verify", help="say whether CARD still describes BUNDLE (exit 1 if not)"
    ),
    data_dir: str = typer.Option(None, help="look for dataset files here first"),
    device: str = typer.Option(None, help=DEVICE_HELP),
) -> None:
    """Write a model card: intended use and limitations (the config's card: section), data,
    metrics, every trust check, export parity, in model_card.html and model_card.json.

    The card is bound to the sha256 of the weights and the data fingerprint; it is copied into
    the bundle it describes, and a server shows it at GET /models/{name}/card. Checks whose
    results the run folder holds for these weights are reused; the others run now with their
    defaults (deepline calibrate, attack, explain set them yourself).
    """
    from deepline.trust.audit import audit as write_card
    from deepline.trust.audit import card_sections, verify_card

    if verify:
        if len(paths) != 2:
            raise typer.BadParameter("--verify takes two paths: CARD BUNDLE")
        problems = verify_card(*paths)
        for problem in problems:
            console.print(f"[red]{problem}[/]", highlight=False)
        if problems:
            raise typer.Exit(1)
        console.print(f"[green]{paths[0]} describes {paths[1]}[/]", highlight=False)
        return
    if len(paths) != 1:
        raise typer.BadParameter("give one run folder or bundle (or --verify CARD BUNDLE)")
    wanted = None if checks is None else [c.strip() for c in checks.split(",") if c.strip()]
    card = write_card(paths[0], wanted, data_dir, device)
    table = Table(title=f"model card: {card.content['name']}")
    for column in ("check", "passed"):
        table.add_column(column)
    for section in card_sections(card.content):
        if section.passed is not None:
            mark = "[green]yes[/]" if section.passed else "[red]no[/]"
            table.add_row(section.title, mark)
    for name, why in card.content["skipped"].items():
        table.add_row(name, f"[dim]left out: {why}[/]")
    console.print(table)
    console.print(f"weights sha256 {card.content['bound_to']['weights_sha256']}")
    shown = f"{card.html_path}, {card.json_path}"
    if card.copied_to is not None:
        shown += f" (copied into {card.copied_to})"
    console.print(f"wrote {shown}", highlight=False)


@app.command()
def fairness(
    run_dir: Path = typer.Argument(..., help="a run folder"),
    sensitive: str = typer.Option(
        None, help="comma-separated sensitive columns (default: all of data.sensitive)"
    ),
    split: str = typer.Option("test", help="val or test"),
    bootstrap: int = typer.Option(200, min=0, help="resamples for the 95% intervals"),
    mitigate: str = typer.Option(
        None,
        help="also mitigate for this constraint on the first sensitive column: "
        "demographic_parity or equalized_odds; shows the decisions before and after",
    ),
    method: str = typer.Option(
        "thresholds",
        help="comma-separated mitigation methods: thresholds (group thresholds fitted on the "
        "validation split, Fairlearn ThresholdOptimizer; export puts them into the bundle) "
        "and reductions (Fairlearn ExponentiatedGradient retraining the model with example "
        "weights: slow, one training per iteration)",
    ),
    epochs: int = typer.Option(
        None, min=1, help="reductions: epochs per training (default: the run's)"
    ),
    max_iter: int = typer.Option(50, min=1, help="reductions: at most this many iterations"),
    checkpoint: str = typer.Option(None, help="best or last (default: the config's)"),
    data_dir: str = typer.Option(None, help="look for dataset files here first"),
    device: str = typer.Option(None, help=DEVICE_HELP),
) -> None:
    """How a two-class model's decisions differ between groups (Fairlearn): accuracy,
    selection rate, true and false positive rates by group; demographic parity and equalized
    odds differences and ratios with bootstrap intervals. fairness.json and a report section.
    """
    from deepline.evaluate.loading import load_trained
    from deepline.report import write_report
    from deepline.trust.fairness import fairness_of_run, write_fairness

    if split not in ("val", "test"):
        raise typer.BadParameter(f"--split must be val or test, got {split!r}")
    wanted = [s.strip() for s in sensitive.split(",") if s.strip()] if sensitive else None
    run = load_trained(run_dir, checkpoint, data_dir, device=device)
    methods = [m.strip() for m in method.split(",") if m.strip()]
    result = fairness_of_run(run, wanted, split, bootstrap, mitigate, methods, epochs=epochs,
                             max_iter=max_iter)  # fmt: skip
    reports = dict(result["columns"])
    for m in result.get("mitigations", []):
        reports[f"{m['column']}, after {m['method']} for {m['constraint']}"] = m["report"]
    for column, report in reports.items():
        table = Table(title=f"decisions by {column} ({result['split']}, positive: "
                      f"{result['positive']})")  # fmt: skip
        for name in ("group", "count", "accuracy", "selection rate", "TPR", "FPR"):
            table.add_column(name, justify="left" if name == "group" else "right")
        for group, m in report["by_group"].items():
            table.add_row(group, f"{m['count']:,.0f}", f"{m['accuracy']:.4f}",
                          f"{m['selection_rate']:.4f}", f"{m['true_positive_rate']:.4f}",
                          f"{m['false_positive_rate']:.4f}")  # fmt: skip
        console.print(table)
        for name, d in report["disparities"].items():
            console.print(f"  {name.replace('_', ' ')}: {d['value']:.4f} "
                          f"[{d['low']:.4f}, {d['high']:.4f}]", highlight=False)  # fmt: skip
    for m in result.get("mitigations", []):
        console.print(f"accuracy {m['accuracy_before']:.4f} -> {m['accuracy_after']:.4f} with "
                      f"{m['method']}", highlight=False)  # fmt: skip
    path = write_fairness(run.run_dir, result)
    console.print(f"wrote {path}, {write_report(run.run_dir)}")
