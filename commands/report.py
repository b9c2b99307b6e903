"""`stackwatch report daily|monthly`: the 日报 / 月报 of a stack, a plant, a city or all stacks.

Writes `<stem>.html` (charts), `<stem>.pdf` and `<stem>.xlsx` to `--out`, from the rows the
sinks stored (docs/reports.md). The rendering and the database access live in `reports/`
and are imported inside the command, so the other commands never load a database driver.
The database is `--dsn`, else STACKWATCH_DATABASE_URL, else the
embedded PostgreSQL 18 of `stackwatch services up`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from commands.options import DsnOption, fail
from stackwatch.report_period import ReportKind, ReportPeriod, default_period, parse_period
from stackwatch.settings import get_settings

app = typer.Typer(help="Daily and monthly reports (HTML with charts, PDF, XLSX).")
console = Console()

StackOption = Annotated[
    str | None, typer.Option("--stack", help="One stack (its stack id).", show_default=False)
]
PlantOption = Annotated[
    str | None, typer.Option("--plant", help="Every stack of a plant.", show_default=False)
]
CityOption = Annotated[
    str | None, typer.Option("--city", help="Every stack of a city.", show_default=False)
]
OutOption = Annotated[
    Path, typer.Option("--out", help="Directory for the .html, .pdf and .xlsx files.")
]


def _run(
    kind: ReportKind,
    when: str | None,
    stack: str | None,
    plant: str | None,
    city: str | None,
    out: Path,
    dsn: str | None,
) -> None:
    import psycopg

    from embedded import ServiceError, resolve_database_url
    from reports.generate import generate_report
    from reports.params import ReportParams, Scope
    from reports.query import ScopeNotFoundError

    chosen = [(s, v) for s, v in ((Scope.STACK, stack), (Scope.PLANT, plant),
                                  (Scope.CITY, city)) if v is not None]
    if len(chosen) > 1:
        raise fail("give at most one of --stack, --plant and --city (none: all stacks)")
    scope, value = chosen[0] if chosen else (Scope.ALL, None)
    now = datetime.now(UTC)
    try:
        period: ReportPeriod = parse_period(kind, when) if when else default_period(kind, now)
        params = ReportParams(period=period, scope=scope, value=value)
    except (ValueError, ValidationError) as exc:
        raise fail(str(exc)) from None
    try:
        db = dsn or resolve_database_url(get_settings())
    except (ServiceError, OSError) as exc:
        raise fail(str(exc)) from None
    try:
        files = generate_report(db, params, out, now)
    except ScopeNotFoundError as exc:
        raise fail(str(exc)) from None
    except psycopg.Error as exc:
        raise fail(f"database: {exc}") from None
    console.print(
        f"[bold]{params.period.kind.value} report {params.period.label}[/bold] · "
        f"{' / '.join(params.scope_text)}",
        highlight=False,
    )
    for fmt, path in (("HTML", files.html), ("PDF", files.pdf), ("XLSX", files.xlsx)):
        # soft_wrap: a long path stays one line, so it can be copied
        console.print(f"  {fmt:<4}  {path}", highlight=False, soft_wrap=True)


DayOption = Annotated[
    str | None,
    typer.Option("--date", help="Beijing day YYYY-MM-DD (default: yesterday).",
                 show_default=False),
]
MonthOption = Annotated[
    str | None,
    typer.Option("--month", help="Beijing month YYYY-MM (default: last month).",
                 show_default=False),
]


def _command(kind: ReportKind, when_option: object, doc: str) -> Callable[..., None]:
    """The command of one report kind: its period option (`when_option`) and the shared
    scope, output and database options."""

    def command(
        when: str | None = None,
        stack: StackOption = None,
        plant: PlantOption = None,
        city: CityOption = None,
        out: OutOption = Path("."),
        dsn: DsnOption = None,
    ) -> None:
        _run(kind, when, stack, plant, city, out, dsn)

    command.__annotations__["when"] = when_option  # typer reads the option from here
    command.__doc__ = doc
    return command


daily = app.command("daily")(
    _command(ReportKind.DAILY, DayOption, "日报: one Beijing calendar day (00:00–24:00 UTC+8).")
)
monthly = app.command("monthly")(
    _command(ReportKind.MONTHLY, MonthOption, "月报: one Beijing calendar month.")
)
