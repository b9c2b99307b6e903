"""`stackwatch limits …`: browse and validate the limit catalogue.

For plant managers and inspectors: which limits apply to a stack on a given day, on which
O2 basis, from which document, and how well the value is sourced (docs/limits.md#status-of-a-value).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from stackwatch.limits import (
    CatalogueError,
    LimitCatalogue,
    LimitRule,
    O2Basis,
    Status,
    UnknownPointError,
    UnknownProgramError,
    load_catalogue,
)

app = typer.Typer(help="Emission-limit catalogue (ultra-low targets and standards).")

_STATUS_STYLE = {
    Status.CONFIRMED: "green",
    Status.SECONDARY: "cyan",
    Status.UNCONFIRMED: "bold yellow",
    Status.CONFIGURED: "magenta",
}

FileOption = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="Catalogue YAML (default: the shipped catalogue)."),
]


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    return typer.Exit(code=1)


def _load(path: Path | None) -> LimitCatalogue:
    try:
        return load_catalogue(path)
    except CatalogueError as exc:
        raise _fail(str(exc)) from None


def _ref_o2(rule: LimitRule) -> str:
    if rule.o2_basis is O2Basis.REFERENCE:
        return f"{rule.ref_o2:g} %"
    return "meas." if rule.o2_basis is O2Basis.MEASURED else "not stated"


def _validity(rule: LimitRule) -> str:
    end = rule.valid_to.isoformat() if rule.valid_to else "open"
    return f"{rule.valid_from.isoformat()} → {end}"


def _status(rule: LimitRule) -> str:
    return f"[{_STATUS_STYLE[rule.status]}]{rule.status.value}[/]"


def _limit(value: float) -> str:
    return f"{value:g}"


def _rules_table(rules: Iterable[LimitRule], *, title: str, point_column: bool) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("Row")
    if point_column:
        table.add_column("Sector/process")
    table.add_column("Factor")
    table.add_column("Limit mg/m³", justify="right")
    table.add_column("Warn", justify="right")
    table.add_column("Ref O2")
    table.add_column("Program")
    table.add_column("Kind")
    table.add_column("Valid")
    table.add_column("Jurisdiction")
    table.add_column("Status")
    for rule in rules:
        limit = _limit(rule.limit_mg_m3)
        if rule.catalogue_limit_mg_m3 is not None:
            limit += f" (catalogue {_limit(rule.catalogue_limit_mg_m3)})"
        cells = [rule.row_id]
        if point_column:
            cells.append(f"{rule.sector}/{rule.process}")
        cells += [
            f"{rule.factor} {rule.factor_name}",
            limit,
            _limit(round(rule.warning_mg_m3, 6)),
            _ref_o2(rule),
            rule.program,
            rule.kind.value,
            _validity(rule),
            rule.jurisdiction,
            _status(rule),
        ]
        table.add_row(*cells)
    return table


@app.command("list")
def list_rules(
    sector: Annotated[str | None, typer.Option(help="Only this sector (e.g. cement).")] = None,
    status: Annotated[Status | None, typer.Option(help="Only rules with this status.")] = None,
    file: FileOption = None,
) -> None:
    """List every catalogue rule (optionally one sector / status)."""
    catalogue = _load(file)
    try:
        rules = catalogue.select(sector=sector, status=status)
    except UnknownPointError as exc:
        raise _fail(str(exc)) from None
    console = Console()
    console.print(
        _rules_table(rules, title=f"Limit catalogue ({len(rules)} rules)", point_column=True)
    )


@app.command("show")
def show(
    sector: Annotated[str, typer.Argument(help="Sector id, e.g. cement.")],
    process: Annotated[str, typer.Argument(help="Process id, e.g. kiln_tail.")],
    at: Annotated[
        datetime | None,
        typer.Option("--date", formats=["%Y-%m-%d"], help="Day to evaluate (default today)."),
    ] = None,
    jurisdiction: Annotated[
        str | None, typer.Option(help="'China', 'Henan' or 'Henan/Sanmenxia' (default: all).")
    ] = None,
    program: Annotated[str | None, typer.Option(help="Ultra-low program of the stack.")] = None,
    file: FileOption = None,
) -> None:
    """Show the rules in force at one monitored point on one day."""
    catalogue = _load(file)
    day: date = at.date() if at is not None else date.today()
    try:
        rules = catalogue.applicable(
            sector, process, day, program=program, jurisdiction=jurisdiction
        )
        point_type = catalogue.point_type(sector, process)
    except (UnknownPointError, UnknownProgramError) as exc:
        raise _fail(str(exc)) from None
    console = Console()
    where = jurisdiction or "all jurisdictions"
    title = f"{sector}/{process} ({point_type.value}) on {day.isoformat()}, {where}"
    if not rules:
        console.print(f"{title}: no rule in force.")
        return
    console.print(_rules_table(rules, title=title, point_column=False))
    conditions = dict.fromkeys(
        (r.row_id, r.program, r.applies_if) for r in rules if r.applies_if is not None
    )
    for row_id, prog, condition in conditions:
        console.print(f"  {row_id} {prog}: applies if {condition}", highlight=False)


@app.command("validate")
def validate(path: Annotated[Path, typer.Argument(help="Catalogue YAML file to check.")]) -> None:
    """Validate a catalogue file; exit 1 with the reasons when it is invalid."""
    catalogue = _load(path)
    unconfirmed = sum(1 for r in catalogue.rules if r.status is Status.UNCONFIRMED)
    Console().print(
        f"{path}: {len(catalogue.rules)} rules valid ({unconfirmed} unconfirmed)", highlight=False
    )
