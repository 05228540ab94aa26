"""Errors a user can act on: the CLI prints them as one paragraph, without a traceback."""

from __future__ import annotations


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
