"""``deepline fairness``: how a binary classifier's decisions differ between groups (Fairlearn).

For each sensitive column the data config declares (``data.sensitive``), on the test split:
Fairlearn's ``MetricFrame`` by group (accuracy, selection rate, true and false positive rates,
count), and the demographic parity and equalized odds differences and ratios, each with a
bootstrap 95% interval (test rows resampled with replacement). The positive decision is the
second class (``>50K`` for Adult).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepline.errors import ConfigError
from deepline.evaluate.loading import TrainedRun, predict_batches
from deepline.runs import write_json

BOOTSTRAP = 200
MITIGATIONS = ("thresholds", "reductions")
DISPARITIES = (
    "demographic_parity_difference", "demographic_parity_ratio",
    "equalized_odds_difference", "equalized_odds_ratio",
)  # fmt: skip


def sensitive_columns(run: TrainedRun, wanted: Sequence[str] | None) -> list[str]:
    """The sensitive columns to report: ``wanted`` (each declared), else every declared one."""
    declared = list(run.data.meta.sensitive)
    if not declared:
        raise ConfigError(
            "fairness needs sensitive columns: declare them in data.sensitive (a table's "
            "columns, e.g. [sex, race]) and train again"
        )
    for name in wanted or ():
        if name not in declared:
            raise ConfigError(
                f"--sensitive: '{name}' is not a sensitive column of this run. Declared in "
                f"data.sensitive: {', '.join(declared)}"
            )
    return list(wanted) if wanted else declared


def decisions(run: TrainedRun, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) class indices on ``split`` of a two-class model."""
    y, scores = positive_scores(run, split)
    return y, (scores > 0.5).astype(np.int64)


def served_temperature(run: TrainedRun) -> float:
    """The temperature a bundle of this checkpoint applies (1 when not calibrated for it)."""
    from deepline.deploy.export import calibration_of

    calibration = calibration_of(run)
    return float(calibration["temperature"]) if calibration["applied"] else 1.0


def positive_scores(run: TrainedRun, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(true class indices, probability of the positive class) on ``split``, as a bundle of
    this checkpoint computes it (at its fitted temperature, if any)."""
    classes = run.data.meta.classes
    if len(classes) != 2:
        raise ConfigError(
            f"fairness compares yes/no decisions: a model with two classes, not {len(classes)}"
        )
    data = run.data.split(split)
    logits = predict_batches(run.model, data.x) / served_temperature(run)
    return data.y.numpy(), logits.softmax(1)[:, 1].numpy()


def threshold_mitigation(
    run: TrainedRun, column: str, constraint: str, split: str
) -> tuple[dict[str, Any], np.ndarray]:
    """Group thresholds fitted on the validation split for ``constraint`` on ``column``: the
    rule and its decisions on ``split`` (randomised, seeded by each input)."""
    from deepline.tasks.thresholds import apply_thresholds, input_seeds
    from deepline.trust.mitigation import fit_thresholds

    if not len(run.data.val):
        raise ConfigError("threshold mitigation is fitted on the validation split: set "
                          "data.val_fraction")  # fmt: skip
    y_val, s_val = positive_scores(run, "val")
    rule = fit_thresholds(s_val, y_val, run.data.val.groups[column], constraint)
    _, scores = positive_scores(run, split)
    data = run.data.split(split)
    decided = apply_thresholds(rule, scores, data.groups[column], input_seeds(data.x.numpy()))
    summary = {"method": "thresholds", "constraint": constraint, "column": column, "rule": rule,
               "temperature": served_temperature(run)}  # fmt: skip
    return summary, decided


def mitigations(
    run: TrainedRun,
    column: str,
    constraint: str,
    methods: Sequence[str],
    split: str,
    bootstrap: int,
    epochs: int | None = None,
    max_iter: int = 50,
) -> list[dict[str, Any]]:
    """Each mitigation method's decisions on ``split``: accuracy before and after, and the
    group report of ``column`` after. ``thresholds``: post-processing (ThresholdOptimizer);
    ``reductions``: in training (ExponentiatedGradient over our trainer, ``epochs`` per fit,
    by default the run's)."""
    unknown = [m for m in methods if m not in MITIGATIONS]
    if unknown:
        raise ConfigError(f"--method: unknown '{unknown[0]}'. Allowed: {', '.join(MITIGATIONS)}")
    if "reductions" in methods and run.config.train.privacy is not None:
        raise ConfigError(
            "--method reductions retrains the model without differential privacy: not for a "
            "run with train.privacy (use thresholds, fitted on the private model's outputs)"
        )
    y, before = decisions(run, split)
    groups = run.data.split(split).groups[column]
    out = []
    for method in methods:
        if method == "thresholds":
            summary, decided = threshold_mitigation(run, column, constraint, split)
        else:
            from deepline.trust.reductions import reductions_mitigation

            summary, decided = reductions_mitigation(
                run, column, constraint, split, epochs or run.config.train.epochs or 10, max_iter
            )
        out.append({
            **summary,
            "accuracy_before": float((before == y).mean()),
            "accuracy_after": float((decided == y).mean()),
            "report": group_report(y, decided, groups, bootstrap),
        })  # fmt: skip
    return out


def group_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: Sequence[str],
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """One sensitive column's MetricFrame by group and the disparities with 95% intervals."""
    import fairlearn.metrics as fm
    from sklearn.metrics import accuracy_score

    group_of = np.asarray(groups)
    frame = fm.MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            "selection_rate": fm.selection_rate,
            "true_positive_rate": fm.true_positive_rate,
            "false_positive_rate": fm.false_positive_rate,
            "count": fm.count,
        },
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=group_of,
    )
    by_group = {
        str(group): {k: float(v) for k, v in row.items()}
        for group, row in frame.by_group.to_dict(orient="index").items()
    }
    point = fairlearn_disparities(y_true, y_pred, group_of)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):  # the same definitions in numpy: Fairlearn's calls are slow
        rows = rng.integers(0, len(y_true), len(y_true))
        draws.append(disparities(y_true[rows], y_pred[rows], group_of[rows]))
    intervals = {}
    for name in DISPARITIES:
        values = np.array([d[name] for d in draws], dtype=float)
        values = values[np.isfinite(values)]
        low, high = np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan)
        intervals[name] = {"value": point[name], "low": float(low), "high": float(high)}
    overall = {k: float(v) for k, v in frame.overall.items()}
    return {"by_group": by_group, "overall": overall, "disparities": intervals}


def fairlearn_disparities(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray
) -> dict[str, float]:
    import fairlearn.metrics as fm

    return {
        name: float(getattr(fm, name)(y_true, y_pred, sensitive_features=groups))
        for name in DISPARITIES
    }


def disparities(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Fairlearn's definitions: demographic parity compares selection rates across groups,
    equalized odds the worse of the true and false positive rates (difference: largest minus
    smallest; ratio: smallest over largest). NaN where a group lacks an outcome."""
    rates: dict[str, list[float]] = {"selection": [], "tpr": [], "fpr": []}
    for group in np.unique(groups):
        t, p = y_true[groups == group], y_pred[groups == group]
        rates["selection"].append(p.mean())
        rates["tpr"].append(p[t == 1].mean() if (t == 1).any() else np.nan)
        rates["fpr"].append(p[t == 0].mean() if (t == 0).any() else np.nan)
    r = {k: np.asarray(v, dtype=float) for k, v in rates.items()}

    def difference(v: np.ndarray) -> float:
        return float(v.max() - v.min())

    def ratio(v: np.ndarray) -> float:
        return float(v.min() / v.max()) if v.max() > 0 else float("nan")

    return {
        "demographic_parity_difference": difference(r["selection"]),
        "demographic_parity_ratio": ratio(r["selection"]),
        "equalized_odds_difference": max(difference(r["tpr"]), difference(r["fpr"])),
        "equalized_odds_ratio": min(ratio(r["tpr"]), ratio(r["fpr"])),
    }


def fairness_of_run(
    run: TrainedRun,
    sensitive: Sequence[str] | None = None,
    split: str = "test",
    bootstrap: int = BOOTSTRAP,
    mitigate: str | None = None,
    methods: Sequence[str] = ("thresholds",),
    **reductions: Any,
) -> dict[str, Any]:
    """Every requested sensitive column's report on ``split``; with ``mitigate`` (a constraint
    such as ``demographic_parity``), also the first column's decisions after each mitigation
    method (see ``mitigations``; ``reductions``: its ``epochs`` and ``max_iter``)."""
    columns = sensitive_columns(run, sensitive)
    y_true, y_pred = decisions(run, split)
    groups = run.data.split(split).groups
    result = {
        "checkpoint": run.checkpoint.name,
        "split": split,
        "n": len(y_true),
        "positive": run.data.meta.classes[1],
        "bootstrap": bootstrap,
        "accuracy": float((y_true == y_pred).mean()),
        "columns": {c: group_report(y_true, y_pred, groups[c], bootstrap) for c in columns},
    }
    if mitigate:
        result["mitigations"] = mitigations(
            run, columns[0], mitigate, methods, split, bootstrap, **reductions
        )
    return result


def write_fairness(run_dir: Path, result: dict[str, Any]) -> Path:
    """``fairness.json``; with a threshold mitigation also ``thresholds.json``, the rule that
    ``deepline export`` puts into the bundle for this checkpoint."""
    path = run_dir / "fairness.json"
    write_json(path, result)
    for m in result.get("mitigations", []):
        if m["method"] == "thresholds":
            kept = {k: m[k] for k in ("column", "constraint", "rule", "temperature")}
            write_json(run_dir / "thresholds.json", {
                "checkpoint": result["checkpoint"], **kept, "fitted_on": "val",
                "accuracy": {"split": result["split"], "before": m["accuracy_before"],
                             "after": m["accuracy_after"]},
            })  # fmt: skip
    return path
