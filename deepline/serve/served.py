"""The models a server holds: each version with its Predictor, batcher and drift monitor."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from deepline.deploy.drift import DriftMonitor
from deepline.deploy.predictor import Predictor
from deepline.serve.batching import Arrivals, Batcher
from deepline.serve.errors import NotFound, ServeError
from deepline.serve.metrics import ServerMetrics
from deepline.serve.repository import Entry
from deepline.serve.settings import ServeSettings
from deepline.tasks import OutputSpec


@dataclass(eq=False)  # one object per served version: compared and hashed by identity
class ServedModel:
    name: str
    version: int
    predictor: Predictor
    timeout_s: float
    drift: DriftMonitor | None = None
    batcher: Batcher = field(init=False)
    ready: bool = True

    @classmethod
    def load(
        cls,
        entry: Entry,
        settings: ServeSettings,
        metrics: ServerMetrics,
        arrivals: Arrivals | None = None,
    ) -> ServedModel:
        """A repository entry with its engine, batcher and (when the bundle has a reference)
        drift monitor."""
        predictor = Predictor(entry.bundle(), settings.backend, settings.threads)
        reference = predictor.bundle.reference()
        drift = None
        if reference:
            summaries, signal = predictor.codec.summaries, predictor.task.drift_signal
            drift = DriftMonitor(reference, summaries, signal, settings.drift_window)
        model = cls(entry.name, entry.version, predictor, settings.timeout_s, drift)
        own = entry.batching  # the model's batching.yaml, else the server's settings
        delay_ms = settings.max_delay_ms if own.max_delay_ms is None else own.max_delay_ms
        model.batcher = Batcher(
            model.run_batch,
            own.max_batch_size or settings.max_batch_size,
            delay_ms / 1000,
            settings.workers,
            metrics.batch_observer(*model.labels),
            arrivals,
        )
        return model

    @property
    def labels(self) -> tuple[str, str]:
        return self.name, str(self.version)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """One model call (on an inference thread), watched for drift."""
        out = self.predictor.run(batch)
        if self.drift is not None:
            self.drift.observe(batch, out)
        return out

    @property
    def generates(self) -> bool:
        return self.predictor.generates

    @cached_property
    def card(self) -> dict[str, Any] | None:
        """The bundle's model card, checked against its weights once."""
        return self.predictor.bundle.card()

    @cached_property
    def outputs(self) -> list[OutputSpec]:
        """The task's named outputs (computed once: a request reads them)."""
        return self.predictor.task.outputs()

    @cached_property
    def output_dicts(self) -> list[dict[str, Any]]:
        """The named outputs as ``{"name", "datatype", "shape"}`` (V2's metadata form)."""
        return [spec.to_dict() for spec in self.outputs]

    @cached_property
    def output_classes(self) -> dict[str, tuple[str, ...]]:
        """Outputs that score classes, and their classes."""
        return {spec.name: spec.classes for spec in self.outputs if spec.classes}

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Model outputs for a model-ready batch, through the batcher, within the timeout."""
        return await self._within_timeout(self.batcher.submit(batch))

    async def generate(self, prompt: str, tokens: int, **sampling: Any) -> str:
        """Text written after ``prompt`` on a thread, stopped when the timeout ends the wait."""
        stop = threading.Event()  # set when the caller stops waiting: the thread stops too

        def write() -> str:
            pieces = []
            for piece in self.predictor.stream(prompt, tokens, **sampling):
                if stop.is_set():
                    break
                pieces.append(piece)
            return "".join(pieces)

        try:
            return await self._within_timeout(asyncio.to_thread(write))
        finally:
            stop.set()

    async def _within_timeout(self, work: Awaitable[Any]) -> Any:
        try:
            if sys.version_info >= (3, 11):  # no task per request
                async with asyncio.timeout(self.timeout_s):
                    return await work
            return await asyncio.wait_for(work, self.timeout_s)
        except asyncio.TimeoutError:
            raise ServeError(504, f"inference took longer than {self.timeout_s:g} s") from None

    def metadata(self) -> dict[str, Any]:
        return {"version": self.version, **self.predictor.describe()}


class ModelSet:
    """Every served model version, found by name and (optionally) version."""

    def __init__(
        self,
        entries: Sequence[Entry],
        settings: ServeSettings,
        metrics: ServerMetrics,
        arrivals: Arrivals | None = None,
    ) -> None:
        self.models: dict[str, dict[int, ServedModel]] = {}
        for entry in entries:
            served = ServedModel.load(entry, settings, metrics, arrivals)
            self.models.setdefault(entry.name, {})[entry.version] = served
        metrics.watch_drift(self.drift_reports)

    def __iter__(self) -> Iterator[ServedModel]:
        for versions in self.models.values():
            yield from versions.values()

    def get(self, name: str, version: int | str | None = None) -> ServedModel:
        """The named model at ``version``, or its latest version (404 when unknown)."""
        versions = self.models.get(name)
        if not versions:
            known = ", ".join(sorted(self.models)) or "none"
            raise NotFound(f"no model named '{name}' (served: {known})")
        if version is None:
            return versions[max(versions)]
        try:
            number = int(version)
        except ValueError:
            raise NotFound(f"version '{version}' of model '{name}' is not a number") from None
        if number not in versions:
            have = ", ".join(str(v) for v in sorted(versions))
            raise NotFound(f"model '{name}' has no version {number} (versions: {have})")
        return versions[number]

    def drift_reports(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for model in self:
            if model.drift is not None:
                yield model.name, str(model.version), model.drift.report()

    async def close(self) -> None:
        for model in self:
            await model.batcher.close()
