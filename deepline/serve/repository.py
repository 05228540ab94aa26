"""A model repository: ``ROOT/NAME/VERSION/`` bundle folders, as TF Serving and Triton lay out.

A single bundle folder is a repository of one model (its config name, version 1). A model may
have its own dynamic batching settings in ``ROOT/NAME/batching.yaml`` (``max_batch_size``,
``max_delay_ms``), as Triton keeps them in each model's config; the server's are the default.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepline.config import format_validation_error
from deepline.deploy.bundle import Bundle, load_bundle
from deepline.errors import DeeplineError

BATCHING_FILE = "batching.yaml"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Batching(BaseModel):
    """A model's own dynamic batching settings (``NAME/batching.yaml``)."""

    model_config = ConfigDict(extra="forbid")
    max_batch_size: int | None = Field(None, ge=1, le=4096, description="1: no batching")
    max_delay_ms: float | None = Field(None, ge=0.0, le=10_000.0)


@dataclass(frozen=True)
class Entry:
    name: str
    version: int
    path: Path
    batching: Batching = field(default_factory=Batching)

    def bundle(self) -> Bundle:
        return load_bundle(self.path)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise DeeplineError(
            f"model name '{name}' is not allowed: use letters, digits, '_', '.' and '-' "
            "(up to 64, starting with a letter or digit)"
        )
    return name


def scan(path: str | Path) -> list[Entry]:
    """Every model version under ``path`` (or the bundle ``path`` itself), sorted."""
    root = Path(path)
    if (root / "bundle" / "bundle.json").is_file() and (root / "config.yaml").is_file():
        root = root / "bundle"  # a run folder: serve its bundle
    if (root / "bundle.json").is_file():
        bundle = load_bundle(root)
        return [Entry(check_name(str(bundle.spec.get("name") or root.name)), 1, root)]
    if not root.is_dir():
        raise DeeplineError(f"'{root}' is neither a bundle nor a model repository folder")
    entries = [
        Entry(model.name, int(version.name), version, read_batching(model))
        for model in root.iterdir()
        if model.is_dir() and NAME.match(model.name)
        for version in model.iterdir()
        if version.name.isdigit() and (version / "bundle.json").is_file()
    ]
    if not entries:
        raise DeeplineError(
            f"no models in '{root}': expected NAME/VERSION/bundle.json folders "
            "(add one with `deepline repo add BUNDLE --name NAME`) or a bundle folder"
        )
    return sorted(entries, key=lambda e: (e.name, e.version))


def add_bundle(
    bundle: str | Path, repository: str | Path, name: str, batching: Batching | None = None
) -> Entry:
    """Copy a bundle into ``REPOSITORY/NAME/<next version>/`` (atomically) and return it;
    ``batching`` settings, when given, become the model's ``batching.yaml``."""
    check_name(name)
    load_bundle(bundle)  # refuses folders that are not bundles
    model_dir = Path(repository) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    versions = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()]
    version = max(versions, default=0) + 1
    target = model_dir / str(version)
    tmp = model_dir / f".{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(Path(bundle), tmp)
    tmp.rename(target)
    if batching is not None:
        write_batching(model_dir, batching)
    return Entry(name, version, target, read_batching(model_dir))


def read_batching(model_dir: Path) -> Batching:
    path = model_dir / BATCHING_FILE
    if not path.is_file():
        return Batching()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return Batching.model_validate(raw)
    except (yaml.YAMLError, OSError) as err:
        raise DeeplineError(f"'{path}' could not be read ({err})") from None
    except ValidationError as err:
        raise DeeplineError(format_validation_error(err, str(path), raw)) from None


def write_batching(model_dir: Path, batching: Batching) -> None:
    values = batching.model_dump(exclude_none=True)
    if values:
        (model_dir / BATCHING_FILE).write_text(yaml.safe_dump(values, sort_keys=False))
