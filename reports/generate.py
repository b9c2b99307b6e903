"""Produce the three files of one report: HTML (with charts), PDF and XLSX."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from reports.html import render_html
from reports.model import ReportData
from reports.params import ReportParams
from reports.pdf import write_pdf
from reports.query import fetch_report_data
from reports.tables import build_report
from reports.xlsx import write_xlsx

__all__ = ["ReportFiles", "generate_report", "write_reports"]

log = logging.getLogger(__name__)


class ReportFiles(BaseModel):
    """Where the report's files were written."""

    model_config = ConfigDict(frozen=True)

    html: Path
    pdf: Path
    xlsx: Path


def write_reports(
    data: ReportData, params: ReportParams, out_dir: Path, now: datetime
) -> ReportFiles:
    """Build the tables from `data` and write `<stem>.html`, `.pdf` and `.xlsx` in `out_dir`."""
    report = build_report(data, params, now)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = params.file_stem
    files = ReportFiles(
        html=out_dir / f"{stem}.html", pdf=out_dir / f"{stem}.pdf", xlsx=out_dir / f"{stem}.xlsx"
    )
    page = render_html(report)
    files.html.write_text(page, encoding="utf-8")
    write_pdf(page, files.pdf)
    write_xlsx(report, files.xlsx)
    log.info(
        "report written",
        extra={
            "kind": params.period.kind.value,
            "period": params.period.label,
            "scope": params.scope.value,
            "value": params.value,
            "dir": str(out_dir),
        },
    )
    return files


def generate_report(dsn: str, params: ReportParams, out_dir: Path, now: datetime) -> ReportFiles:
    """Read the period's rows from the database at `dsn` and write the report's files."""
    return write_reports(fetch_report_data(dsn, params), params, out_dir, now)
