"""Tables, target lines and the RESULTS.md block of ``serving.py`` (its results, not its load)."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 120)  # logs: no wrapped tables

NAMES = {
    "a": "(a) deepline batched",
    "b": "(b) deepline unbatched",
    "c": "(c) naive",
    "d": "(d) ORT in-process, batch 64",
    "e": "(e) = (a), KServe V2 binary",
}


@dataclass
class Point:
    """One contender at one concurrency."""

    name: str
    concurrency: int
    rate: float
    p50: float
    p99: float
    errors: int
    first_error: str = ""
    mean_batch: float = float("nan")  # rows per model call (deepline servers)
    batch_buckets: dict[str, float] = field(default_factory=dict)
    loop_ms: float = float("nan")  # server CPU per request on its event loop thread
    other_ms: float = float("nan")  # ... and on all its other threads
    client_cpu: float = float("nan")  # share of one core the load generator used
    sent: int = 0  # requests sent, the warm-up's included


@dataclass
class Soak:
    requests: int
    rss_mib: list[tuple[str, float]]
    errors: int
    first_error: str
    rates: list[float]


# ------------------------------------------------------------------------- reporting
def machine(threads: int, delay_ms: float) -> str:
    import fastapi
    import onnxruntime
    import torch
    import uvicorn

    return (
        f"{os.cpu_count()} CPU cores ({platform.machine()}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"FastAPI {fastapi.__version__}, Uvicorn {uvicorn.__version__}; "
        f"{threads} ORT/torch thread(s) per server, batching delay {delay_ms:g} ms"
    )


def batch_sizes(point: Point) -> str:
    """Model calls by rows per call, from the cumulative histogram's deltas."""
    edges = sorted((float(k), v) for k, v in point.batch_buckets.items())
    calls = edges[-1][1] if edges else 0.0
    if not calls:
        return "-"
    parts, below, low = [], 0.0, 0.0
    for edge, cumulative in edges:
        if cumulative - below > 0:
            rows = f"{low + 1:g}-{edge:g}" if edge > low + 1 else f"{edge:g}"
            parts.append(f"{rows}: {(cumulative - below) / calls:.0%}")
        below, low = cumulative, edge
    return ", ".join(parts)


def target_lines(points: list[Point], ceil: dict[int, float]) -> list[str]:
    at = {(p.name, p.concurrency): p for p in points}
    a, c = at.get((NAMES["a"], 32)), at.get((NAMES["c"], 32))
    lines = []
    if a and c:
        lines.append(f"(a)/(c) throughput at concurrency 32 = {a.rate / c.rate:.2f} (target >= 3)")
        lines.append(f"(a) p99 < (c) p99 at 32: {'yes' if a.p99 < c.p99 else 'no'}")
    if a and ceil:
        best = max(ceil, key=lambda t: ceil[t])  # the machine's ceiling, whichever thread count
        lines.append(
            f"(a) at 32 / (d) = {a.rate / ceil[best]:.2f} (target >= 0.5; (d) = "
            f"{ceil[best]:,.0f} images/s on {best} thread(s))"
        )
    return lines


def print_tables(points: list[Point], ceil: dict[int, float]) -> None:
    for c in sorted({p.concurrency for p in points}):
        table = Table(title=f"concurrency {c}")
        for column in (
            "contender",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "rows/call",
            "CPU ms/req loop+rest",
            "client CPU",
        ):
            table.add_column(column, justify="right")
        for p in (p for p in points if p.concurrency == c):
            batch = "-" if p.mean_batch != p.mean_batch else f"{p.mean_batch:.1f}"
            table.add_row(
                p.name,
                f"{p.rate:.0f}",
                f"{p.p50:.1f}",
                f"{p.p99:.1f}",
                str(p.errors),
                batch,
                f"{p.loop_ms:.2f} + {p.other_ms:.2f}",
                f"{p.client_cpu:.0%}",
            )
        console.print(table)
    for t, rate in ceil.items():
        console.print(f"{NAMES['d']}, {t} thread(s): {rate:,.0f} images/s", highlight=False)
    for p in points:
        if p.batch_buckets:
            console.print(f"{p.name}, c={p.concurrency}: calls by rows {batch_sizes(p)}")
        if p.first_error:
            console.print(f"{p.name}, c={p.concurrency}: first error {p.first_error}")


def print_soak(s: Soak) -> None:
    table = Table(title=f"soak: (a), {s.requests:,} requests at concurrency 32, twice")
    for column in ("when", "server RSS MiB", "growth MiB"):
        table.add_column(column, justify="right")
    for i, (when, rss) in enumerate(s.rss_mib):
        table.add_row(when, f"{rss:.1f}", f"{rss - s.rss_mib[i - 1][1]:+.1f}" if i else "")
    console.print(table)
    console.print(
        f"soak errors: {s.errors} (zero required: {'yes' if s.errors == 0 else 'NO'}); "
        f"req/s {' / '.join(f'{r:.0f}' for r in s.rates)}"
        + (f"; first error {s.first_error}" if s.first_error else "")
    )


def markdown(
    args: argparse.Namespace,
    points: list[Point],
    ceil: dict[int, float],
    targets: list[str],
    s: Soak | None,
) -> str:
    command = "python benchmarks/serving.py " + " ".join(sys.argv[1:])
    out = [
        "## Serving: deepline's server under load vs a naive FastAPI app vs ORT alone",
        "",
        f"`{command.strip()}` — {datetime.date.today().isoformat()}. "
        f"{machine(args.threads, args.max_delay_ms)}. {args.seconds:g} s per point after "
        f"{args.warmup:g} s warm-up; closed loop, one keep-alive connection per request in "
        "flight; one MNIST test digit per request (JSON, 28x28 uint8).",
        "",
        "| concurrency | contender | req/s | p50 ms | p99 ms | errors | rows/call | "
        "server CPU ms/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in sorted(points, key=lambda p: (p.concurrency, p.name)):
        batch = "-" if p.mean_batch != p.mean_batch else f"{p.mean_batch:.1f}"
        out.append(
            f"| {p.concurrency} | {p.name} | {p.rate:.0f} | {p.p50:.1f} | {p.p99:.1f} | "
            f"{p.errors} | {batch} | {p.loop_ms + p.other_ms:.2f} |"
        )
    out.append("")
    out += [f"- {NAMES['d']}, {t} thread(s): {r:,.0f} images/s" for t, r in ceil.items()]
    out += [f"- {line}" for line in targets]
    if s is not None:
        rss = ", ".join(f"{when} {mib:.1f} MiB" for when, mib in s.rss_mib)
        out.append(
            f"- soak, {s.requests:,} requests at concurrency 32 to (a), twice: {s.errors} errors; "
            f"server RSS {rss}"
        )
    return "\n".join(out)


PROFILE_GROUPS = (  # (group, substrings of a function's file or of a builtin's name)
    ("HTTP: uvicorn + h11", ("uvicorn", "h11", "httptools", "'send' of '_socket", "'recv'")),
    ("FastAPI + Starlette", ("fastapi", "starlette", "anyio", "typing.py")),
    ("pydantic", ("pydantic",)),
    ("metrics", ("prometheus_client",)),
    ("deepline", ("deepline/",)),
    ("torch + numpy", ("torch", "numpy")),
    ("asyncio, threads, futures", ("asyncio", "selectors", "concurrent", "threading", "queue")),
)


def print_profile(name: str, path: str, requests: int) -> None:
    """Where a server's event loop thread spent its CPU time (cProfile, so every Python call
    costs more than unprofiled; the shares and calls per request are what to read)."""
    import pstats

    stats: dict[Any, Any] = pstats.Stats(path).stats  # type: ignore[attr-defined]
    groups: dict[str, list[float]] = {}
    for (file, _, function), (_, calls, own, _, _) in stats.items():
        where = f"{file} {function}"
        group = next(
            (g for g, keys in PROFILE_GROUPS if any(k in where for k in keys)),
            "builtins (isinstance, len, ...)" if file == "~" else "other",
        )
        groups.setdefault(group, [0.0, 0.0])
        groups[group][0] += own
        groups[group][1] += calls
    total = sum(v[0] for v in groups.values())
    table = Table(title=f"{name}: event loop thread CPU by package, {requests:,} requests profiled")
    for column in ("package", "share", "µs/request", "Python calls/request"):
        table.add_column(column, justify="right")
    for group, (own, calls) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        table.add_row(
            group, f"{own / total:.0%}", f"{own * 1e6 / requests:.0f}", f"{calls / requests:.0f}"
        )
    console.print(table)
