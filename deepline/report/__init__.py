"""deepline.report: a static, self-contained HTML page for a run (``report.html``)."""

from deepline.report.html import build_context, render_page, write_report

__all__ = ["build_context", "render_page", "write_report"]
