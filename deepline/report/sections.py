"""Sections a feature adds to the run report and the model card: a title, paragraphs, tables,
figures and warnings, with no HTML of their own (the templates render them, escaped)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Section:
    """One titled part of a page. ``figures`` are (caption, base64 PNG); ``passed`` is the
    verdict of a check (None: no verdict)."""

    id: str
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    passed: bool | None = None
