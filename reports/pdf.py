"""The PDF report: the HTML page laid out by WeasyPrint (CSS paged media, pango text layout).

The stylesheet's `@page` rules give A4 pages with running title, scope and page numbers; the
CJK font is found through fontconfig (WenQuanYi Micro Hei), so 中文 is embedded, not tofu.
"""

from __future__ import annotations

import logging
from pathlib import Path

from weasyprint import HTML

__all__ = ["write_pdf"]

log = logging.getLogger(__name__)
# WeasyPrint narrates every layout step at INFO; the report logs its own summary instead.
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)


def write_pdf(html: str, target: Path) -> None:
    """Render `html` (self-contained: inline CSS, data-URI images) to the PDF `target`."""
    HTML(string=html, base_url=str(target.parent)).write_pdf(target)
    log.info("pdf written", extra={"path": str(target), "bytes": target.stat().st_size})
