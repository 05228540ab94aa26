"""Export formats: one module each, registered in ``EXPORTERS`` (``export.formats`` names them,
and each is a Predictor backend). Importing this package registers them."""

from deepline.deploy.formats.base import Engine, ExportFormat, ExportJob
from deepline.registry import import_modules

import_modules(__name__)  # each module registers its format

__all__ = ["Engine", "ExportFormat", "ExportJob", "export_format", "format_names"]


def export_format(name: str) -> ExportFormat:
    """The registered format ``name`` (an error listing the formats when unknown)."""
    from deepline.registry import EXPORTERS

    fmt: ExportFormat = EXPORTERS.get(name)()
    return fmt


def format_names() -> list[str]:
    """Every format, in the order they are exported (a format's sources first)."""
    from deepline.registry import EXPORTERS

    return sorted(EXPORTERS.names(), key=lambda n: EXPORTERS.meta(n)["order"])
