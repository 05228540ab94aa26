"""Registries: one per kind of component, so adding one is a new file and a decorator.

>>> from deepline.registry import Registry
>>> COLOURS = Registry("colour")
>>> @COLOURS.register("red")
... def red() -> str:
...     return "#f00"
>>> COLOURS.get("red")()
'#f00'
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from deepline.errors import DeeplineError, did_you_mean

__all__ = [
    "ATTACKS",
    "CODECS",
    "DATASETS",
    "EXPLAINERS",
    "EXPORTERS",
    "MODELS",
    "PROTOCOLS",
    "TASKS",
    "TRUST_CHECKS",
    "Registry",
    "did_you_mean",
]

T = TypeVar("T")


def import_modules(package: str) -> None:
    """Import every module of ``package`` (each registers its components as it loads), so a
    new component is a new file: no list of modules to keep."""
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


class Registry(Generic[T]):
    """A name -> component table. Entries may carry metadata (for example a config class).

    ``package`` names the package whose import registers the built-in entries; it is imported
    on the first lookup, so the registry (and the config that uses it) stays import-light.
    """

    def __init__(
        self, kind: str, package: str | None = None, requires: tuple[str, ...] = ()
    ) -> None:
        self.kind = kind
        self.package = package
        self.requires = requires  # metadata every entry must give (what its contract test reads)
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def _load(self) -> dict[str, T]:
        if self.package is not None:
            # Forgotten only once imported: a failing import raises here, and again at the
            # next lookup, instead of leaving a half-filled registry that calls names unknown.
            importlib.import_module(self.package)
            self.package = None
        return self._entries

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            missing = [key for key in self.requires if key not in meta]
            if missing:
                raise ValueError(
                    f"{self.kind} '{name}' is registered without {', '.join(missing)}: its "
                    "contract test needs them (see docs/extending.md)"
                )
            self._entries[name] = obj
            self._meta[name] = meta
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Remove an entry (a plugin unloading, a test's own entry)."""
        self._load()
        if name not in self._entries:
            raise DeeplineError(self.unknown_message(name))
        del self._entries[name], self._meta[name]

    def get(self, name: str) -> T:
        if name not in self._load():
            raise DeeplineError(self.unknown_message(name))
        return self._entries[name]

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._meta[name]

    def unknown_message(self, name: str) -> str:
        allowed = ", ".join(self.names())
        return (
            f"unknown {self.kind} '{name}'. Allowed: {allowed}.{did_you_mean(name, self.names())}"
        )

    def names(self) -> list[str]:
        return sorted(self._load())

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._load())


# The registries of deepline. Components register themselves when their package is imported.
# Each entry gives what its contract test (tests/contracts/) needs: a dataset writes a sample of
# its files; a codec names a dataset whose data it reads; models and tasks give a small
# experiment (data, model and task settings) that exercises them.
DATASETS: Registry[Any] = Registry("dataset", "deepline.data.datasets", ("spec", "sample"))
CODECS: Registry[Any] = Registry("input codec", "deepline.data.codecs", ("example",))
MODELS: Registry[Any] = Registry("model", "deepline.models", ("config", "example"))
TASKS: Registry[Any] = Registry("task", "deepline.tasks", ("config", "example"))
EXPORTERS: Registry[Any] = Registry("export format", "deepline.deploy.formats", ("order",))
ATTACKS: Registry[Any] = Registry("attack", "deepline.attacks")
# A trust check (calibration, robustness, explanations, ...) is a section of the run report and
# of the model card; ``artifact`` names the JSON file it leaves in a run folder.
TRUST_CHECKS: Registry[Any] = Registry(
    "trust check", "deepline.trust.checks", ("artifact", "order", "example")
)
EXPLAINERS: Registry[Any] = Registry("explanation method", "deepline.trust.explain", ("example",))
# A protocol is a FastAPI router and the path prefixes it answers (for its request metrics).
PROTOCOLS: Registry[Any] = Registry("protocol", "deepline.serve.protocols", ("prefixes",))
