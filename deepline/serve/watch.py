"""What ``deepline monitor`` shows: a server's models with traffic, latency and drift."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

from deepline.errors import DeeplineError

SHORT = {"input_mean": "mean", "input_std": "std", "predictions": "pred"}  # narrow terminals
STATUS_STYLE = {"stable": "green", "moderate": "yellow", "drift": "bold red"}


def _get(url: str, headers: dict[str, str], timeout: float = 5.0) -> bytes:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        reason = err.read().decode(errors="replace")[:200]
        raise DeeplineError(f"{url} answered {err.code}: {reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise DeeplineError(f"cannot reach {url} ({err})") from None


def fetch_status(base: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per model version: its drift report and its request counts and latency."""
    if not base.startswith(("http://", "https://")):
        raise DeeplineError(f"'{base}' is not an http(s) URL")
    base = base.rstrip("/")
    headers = headers or {}
    traffic = _traffic(_get(f"{base}/metrics", headers).decode())
    rows = []
    for model in json.loads(_get(f"{base}/models", headers))["models"]:
        for version in model["versions"]:
            drift = json.loads(_get(f"{base}/monitor/{model['name']}?version={version}", headers))
            rows.append(
                {
                    "model": model["name"],
                    "version": version,
                    "drift": drift,
                    **traffic.get((model["name"], str(version)), {}),
                }
            )
    return rows


def _traffic(text: str) -> dict[tuple[str, str], dict[str, float]]:
    """Requests (ok and failed) and mean latency per (model, version) from /metrics."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.labels.get("model", ""), sample.labels.get("version", ""))
            row = out.setdefault(key, {"ok": 0.0, "failed": 0.0, "seconds": 0.0, "count": 0.0})
            if sample.name == "deepline_requests_total":
                ok = sample.labels.get("status", "").startswith("2")
                row["ok" if ok else "failed"] += sample.value
            elif sample.name == "deepline_request_seconds_sum":
                row["seconds"] += sample.value
            elif sample.name == "deepline_request_seconds_count":
                row["count"] += sample.value
    return out


def status_table(base: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{base}  (PSI < 0.1 stable, 0.1-0.25 moderate, > 0.25 drift)")
    for column in ("model", "version", "requests", "failed", "mean ms", "window", "PSI", "drift"):
        table.add_column(column, justify="right" if column not in ("model", "drift") else "left")
    for row in rows:
        drift = row["drift"]
        psi = drift.get("psi") or {}
        detail = " ".join(f"{SHORT.get(k, k)} {v:.2f}" for k, v in psi.items()) or "-"
        status = drift.get("status", "-")
        mean = row["seconds"] / row["count"] * 1000 if row.get("count") else None
        table.add_row(
            row["model"],
            str(row["version"]),
            f"{row.get('ok', 0):.0f}",
            f"{row.get('failed', 0):.0f}",
            f"{mean:.1f}" if mean is not None else "-",
            f"{drift.get('window', 0)}",
            detail,
            f"[{STATUS_STYLE.get(status, '')}]{status}[/]" if status in STATUS_STYLE else status,
        )
    return table
