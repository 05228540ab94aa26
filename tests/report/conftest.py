"""Fixtures for the report tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.report.synthetic_run import write_run


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """``make_run(name=..., omit=(...))`` writes a run folder under ``tmp_path``."""
    counter = iter(range(1000))
    return lambda **kw: write_run(tmp_path / f"run{next(counter)}", **kw)
