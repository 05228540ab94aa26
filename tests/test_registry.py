"""The registry: lookups, errors that name the choices, and imports that fail loudly."""

from __future__ import annotations

import sys

import pytest

from deepline.errors import DeeplineError
from deepline.registry import Registry


def test_unknown_names_list_the_choices_and_a_close_one() -> None:
    colours = Registry[str]("colour")
    colours.register("red")("#f00")
    colours.register("green")("#0f0")
    with pytest.raises(DeeplineError, match=r"unknown colour 'gren'. Allowed: green, red. Did you"):
        colours.get("gren")
    with pytest.raises(ValueError, match="registered twice"):
        colours.register("red")("#e00")
    colours.unregister("red")
    assert colours.names() == ["green"]
    with pytest.raises(DeeplineError, match="unknown colour 'red'"):
        colours.unregister("red")


def test_a_failing_import_surfaces_at_every_lookup(tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_components.py").write_text("raise ImportError('a missing library')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = Registry[str]("component", "broken_components")
    for _ in range(2):  # not "unknown component" the second time
        with pytest.raises(ImportError, match="a missing library"):
            broken.get("anything")
    sys.modules.pop("broken_components", None)
