"""``deepline data``: list, inspect, verify and download the datasets of the catalog."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Column, Table

from deepline.cli import app, console
from deepline.data import check_file, dataset_names, ensure_file, get_spec
from deepline.data.catalog import DatasetSpec
from deepline.data.fetch import locate, mirror_base, search_dirs

data_app = typer.Typer(
    help="List, inspect, verify and download datasets. Files are looked up in --data-dir, "
    "$DEEPLINE_DATA_DIR, then the cache ($DEEPLINE_CACHE_DIR or ~/.cache/deepline).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

MAX_LISTED = 12  # files listed by `data info`; datasets of many files say how many more
NAME = typer.Argument(..., metavar="NAME", help="dataset name, as shown by `deepline data list`")
DATA_DIR = typer.Option(
    None, "--data-dir", help="folder searched first, holding `<dataset folder>/<file>`"
)


@data_app.command("list")
def list_datasets(data_dir: str | None = DATA_DIR) -> None:
    """List every dataset: its task, description, download size, splits, licence, files here."""
    table = Table("name", "task", "description", "size", "splits", "licence", "local")
    for name in dataset_names():
        spec = get_spec(name)
        cells = (name, spec.task, spec.description, _size(spec), _splits(spec), spec.licence)
        table.add_row(*map(escape, cells), _local(spec, data_dir))
    console.print(table)


@data_app.command("info")
def info(name: str = NAME, data_dir: str | None = DATA_DIR) -> None:
    """Show a dataset's classes, shapes, splits and files (URL, sha256, where found)."""
    spec = get_spec(name)
    shape = (
        "x".join(map(str, spec.input_shape)) + " (C x H x W)"
        if spec.input_shape
        else "set by the data and the config (data.path, data.context)"
    )
    rows = [
        ("description", spec.description),
        ("task", f"{spec.task} (what a config that names no task trains)"),
        ("licence", spec.licence),
        ("homepage", spec.homepage),
        ("citation", spec.citation),
        ("input shape", shape),
        ("classes", ", ".join(spec.classes) or "read from the data (none for language models)"),
        ("splits", _splits(spec)),
    ]
    for key, value in rows:
        if value:
            console.print(f"[bold]{key}:[/] {escape(value)}", highlight=False)
    if not spec.files:
        shipped = "files: none (the data ship inside an installed package)"
        console.print("files: yours, given as data.path" if spec.needs_path else shipped)
        return
    long = [_fold(h) for h in ("sha256", "url", "found at")]
    table = Table("file", "bytes", *long, title=f"folder '{spec.folder}'")
    shown = spec.files[:MAX_LISTED]
    for f in shown:
        path = locate(spec, f, data_dir)
        table.add_row(f.name, f"{f.size:,}", f.sha256, f.url,
                      escape(str(path)) if path else "[yellow]not found[/]")  # fmt: skip
    console.print(table)
    if len(spec.files) > len(shown):
        found = sum(locate(spec, f, data_dir) is not None for f in spec.files)
        console.print(f"... and {len(spec.files) - len(shown):,} more files "
                      f"({len(spec.files):,} in all, {found:,} found; `deepline data verify "
                      f"{name}` checks every one)", highlight=False)  # fmt: skip
    searched = ", ".join(str(d / spec.folder) for d in search_dirs(data_dir))
    console.print(f"searched: {escape(searched)}", highlight=False)
    if mirror_base():
        console.print(f"downloads come from the mirror {mirror_base()} (DEEPLINE_MIRROR)")


@data_app.command("verify")
def verify(name: str = NAME, data_dir: str | None = DATA_DIR) -> None:
    """Hash every file of a dataset against the catalog. Exits 1 if one is missing or corrupt."""
    spec = get_spec(name)
    if not spec.files:
        console.print(f"'{name}' has no files to verify.")
        return
    table = Table("file", "status", _fold("path"), _fold("detail"))
    statuses = [check_file(spec, f, data_dir) for f in spec.files]
    for s in statuses:
        colour = {"OK": "green", "MISSING": "yellow", "CORRUPT": "red"}[s.status]
        detail = ""
        if s.status == "CORRUPT":
            detail = f"sha256 {s.actual_sha256}, expected {s.file.sha256}"
        table.add_row(s.file.name, f"[{colour}]{s.status}[/]", escape(str(s.path or "-")), detail)
    console.print(table)
    problems = {s.status for s in statuses} - {"OK"}
    if "CORRUPT" in problems:
        console.print("Delete the CORRUPT files first (or replace them with good copies).")
    if problems:
        console.print(
            f"Run `deepline data fetch {name}` to download what is missing, or copy the "
            "files into one of: " + ", ".join(str(d / spec.folder) for d in search_dirs(data_dir)),
            highlight=False,
            markup=False,
        )
        raise typer.Exit(1)


@data_app.command("fetch")
def fetch(name: str = NAME, data_dir: str | None = DATA_DIR) -> None:
    """Download the files of a dataset that are not found locally into the cache, verified.

    Set DEEPLINE_MIRROR=http://host/path to download from a mirror laid out like a data dir.
    """
    spec = get_spec(name)
    if not spec.files:
        console.print(f"'{name}' has nothing to download.")
        return
    table = Table("file", _fold("path"), "")
    for f in spec.files:
        had = locate(spec, f, data_dir) is not None
        path = ensure_file(spec, f, data_dir)
        table.add_row(f.name, escape(str(path)), "present" if had else "[green]downloaded[/]")
    console.print(table)


def _fold(header: str) -> Column:
    """A column that wraps long paths and hashes instead of cutting them."""
    return Column(header, overflow="fold")


def _size(spec: DatasetSpec) -> str:
    if spec.needs_path:
        return "-"
    if not spec.files:
        return "bundled"
    return f"{spec.total_bytes / 1e6:.1f} MB"


def _splits(spec: DatasetSpec) -> str:
    return " / ".join(f"{k} {v:,}" for k, v in spec.splits.items())


def _local(spec: DatasetSpec, data_dir: str | None) -> str:
    if not spec.files:
        return "-" if spec.needs_path else "yes"
    present = sum(locate(spec, f, data_dir) is not None for f in spec.files)
    return "yes" if present == len(spec.files) else f"{present}/{len(spec.files)}"
