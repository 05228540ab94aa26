"""Prometheus metrics of one server: requests, latency, queueing, batch sizes and drift."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

disable_created_metrics()  # no *_created series: they double the scrape for nothing here


class _DriftCollector(Collector):
    """Drift scores, computed when Prometheus scrapes."""

    def __init__(self, reports: Callable[[], Iterable[tuple[str, str, dict[str, Any]]]]) -> None:
        self.reports = reports

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "deepline_drift_psi",
            "Population stability index of live traffic against the training reference",
            labels=["model", "version", "signal"],
        )
        for name, version, report in self.reports():
            if not report["enough"]:  # too few examples for a meaningful score
                continue
            for signal, value in report["psi"].items():
                family.add_metric([name, version, signal], value)
        yield family


class ServerMetrics:
    """All metrics live in their own registry, so several servers can share a process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deepline_requests",
            "Requests answered, by model, version, protocol and HTTP status",
            ["model", "version", "protocol", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "deepline_request_seconds",
            "Time from request to answer",
            ["model", "version", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue = Histogram(
            "deepline_queue_seconds",
            "Time a request waited for its batch to start",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "deepline_batch_size",
            "Rows per model call",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

    def watch_drift(self, reports: Callable[[], Iterable[tuple[str, str, dict[str, Any]]]]) -> None:
        self.drift = _DriftCollector(reports)
        self.registry.register(self.drift)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format: this process's, or, when several worker
        processes serve (``PROMETHEUS_MULTIPROC_DIR`` set), every worker's requests, latencies
        and batches summed, with this worker's drift scores."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        drift = getattr(self, "drift", None)
        if drift is not None:
            merged.register(drift)
        return generate_latest(merged)

    def batch_observer(self, model: str, version: str) -> Callable[[int, list[float]], None]:
        batch = self.batch_size.labels(model, version)
        queue = self.queue.labels(model, version)

        def observe(rows: int, waits: list[float]) -> None:
            batch.observe(rows)
            for wait in waits:
                queue.observe(wait)

        return observe

    def record_request(
        self, model: str, version: str, protocol: str, status: int, seconds: float
    ) -> None:
        key = (model, version, protocol, status)
        children = self._children.get(key)
        if children is None:  # label lookups take a lock and join strings: once per series
            children = self._children[key] = (
                self.requests.labels(model, version, protocol, str(status)),
                self.latency.labels(model, version, protocol),
            )
        children[0].inc()
        children[1].observe(seconds)
