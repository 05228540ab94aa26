"""Errors a user can act on: the CLI prints them as one paragraph, without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class DeeplineError(Exception):
    """Base class of every error deepline raises about the user's input or files."""


class ConfigError(DeeplineError):
    """An invalid experiment configuration; the message names each bad field."""


class DataError(DeeplineError):
    """A dataset that is missing, corrupt or malformed; the message names the file."""


class CheckpointError(DeeplineError):
    """A checkpoint that is missing or fails its integrity check."""


class ExportError(DeeplineError):
    """An export whose result disagrees with eager PyTorch, or cannot be written."""


class InputError(DeeplineError):
    """An input given to `predict` (or a server) that cannot be turned into a tensor."""


def did_you_mean(name: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """A ' Did you mean ...?' suffix for a misspelt name, or '' when nothing is close.

    Catches typos (``optimiser``), and long forms of short names (``learning_rate`` -> ``lr``).
    """
    name = str(name)
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    initials = "".join(part[:1] for part in name.replace("-", "_").split("_"))
    close = close or [c for c in sorted(choices) if len(c) > 1 and c == initials]
    return f" Did you mean '{close[0]}'?" if close else ""


AllowedKeys = Callable[[tuple[Any, ...]], list[str]]  # a section's path -> its field names


def describe_problem(error: Mapping[str, Any], allowed: AllowedKeys | None = None) -> str:
    """One of pydantic's errors as ``path: what is wrong (got value)``; an unknown key lists
    the keys ``allowed`` there. Used for configs and for every protocol's request bodies."""
    loc = tuple(error.get("loc", ()))
    path = ".".join(str(p) for p in loc if not str(p).startswith("function-")) or "body"
    kind, value = error.get("type"), error.get("input")
    if kind == "extra_forbidden":
        keys = allowed(loc[:-1]) if allowed else []
        if not keys:
            return f"{path}: unknown key"
        hint = did_you_mean(str(loc[-1]), keys)
        return f"{path}: unknown key. Allowed here: {', '.join(keys)}.{hint}"
    if kind == "missing":
        return f"{path}: required, but missing"
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    if isinstance(value, (dict, list)) or "input" not in error:  # a whole section or list
        return f"{path}: {message}"
    shown = repr(value)
    return f"{path}: {message} (got {shown if len(shown) <= 60 else shown[:57] + '...'})"


def validation_problems(errors: Sequence[Mapping[str, Any]], limit: int = 5) -> str:
    """The first ``limit`` of pydantic's errors on one line (a request body's problems)."""
    parts = [describe_problem(e) for e in errors[:limit]]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more
