"""The README performance table, generated from `bench/results/*.json` (pure, no I/O).

The table sits between `<!-- bench:start -->` and `<!-- bench:end -->`; rows are
`| benchmark | figure | value | notes |`, one per figure (figures sharing `row` are merged),
in a fixed benchmark order. A note above the table names the machine and versions, so a
figure never travels without them.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.results import BenchResult, Figure, Machine, Versions

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
HEADER = "| benchmark | figure | value | notes |\n|---|---|---|---|"
ORDER = ("decode", "fuzz", "encode", "gateway", "baselines", "pipeline")


def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _with_unit(text: str, unit: str) -> str:
    if unit == "x":
        return f"{text}×"
    return f"{text} {unit}" if unit else text


def format_value(fig: Figure) -> str:
    """`1,234 frames/s`, `0.04×`, `12.5 %`."""
    return _with_unit(_number(fig.value, fig.digits), fig.unit)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _notes(notes: str, runs: int) -> str:
    parts = [notes] if notes else []
    if runs > 1:
        parts.append(f"median of {runs} runs")
    return "; ".join(parts)


def _groups(figures: Sequence[Figure]) -> list[list[Figure]]:
    """Consecutive figures with the same `row` form one group; others are alone."""
    groups: list[list[Figure]] = []
    for fig in figures:
        if groups and fig.row is not None and groups[-1][0].row == fig.row:
            groups[-1].append(fig)
        else:
            groups.append([fig])
    return groups


def result_rows(result: BenchResult) -> list[str]:
    """The markdown rows of one benchmark."""
    rows: list[str] = []
    for group in _groups(result.figures):
        first = group[0]
        if len(group) == 1 and first.row is None:
            label, value = first.figure, format_value(first)
        else:
            label = first.row or first.figure
            joined = " / ".join(_number(f.value, f.digits) for f in group)
            value = _with_unit(joined, first.unit)
        notes = _notes(next((f.notes for f in group if f.notes), ""), len(first.runs))
        rows.append(f"| {_cell(result.title)} | {_cell(label)} | {_cell(value)} | {_cell(notes)} |")
    return rows


def _sorted(results: Sequence[BenchResult]) -> list[BenchResult]:
    def rank(r: BenchResult) -> tuple[int, str]:
        return (ORDER.index(r.name) if r.name in ORDER else len(ORDER), r.name)

    return sorted(results, key=rank)


def _versions(results: Sequence[BenchResult]) -> Versions:
    """First known value of each version over the results (they ran in one environment)."""
    merged: dict[str, str | None] = {}
    for r in results:
        for key, value in r.versions.model_dump().items():
            if merged.get(key) is None:
                merged[key] = value
    return Versions.model_validate(merged)


def _machine_text(m: Machine, load: float | None) -> str:
    cores = f"{m.logical_cores} logical cores"
    text = f"{m.cpu_model} ({m.arch}, {cores}, {m.ram_gb:g} GB RAM)"
    if load is not None:
        text += f", load average up to {load:g} at the start of a benchmark"
    return text


def note_line(results: Sequence[BenchResult]) -> str:
    """Who/where/with what: dates, machine, versions, quick mode."""
    ordered = _sorted(results)
    dates = sorted({r.measured_at.date().isoformat() for r in ordered})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    loads = [r.machine.load_avg_1m for r in ordered if r.machine.load_avg_1m is not None]
    machines = {r.machine.cpu_model for r in ordered}
    where = _machine_text(ordered[-1].machine, max(loads) if loads else None)
    if len(machines) > 1:
        where += " (NOTE: the results come from different machines)"
    v = _versions(ordered)
    names = (("python", ""), ("faust_streaming", "faust-streaming "), ("aiokafka", "aiokafka "),
             ("psycopg", "psycopg "), ("tansu", "Tansu "), ("postgresql", "PostgreSQL "))
    dumped = v.model_dump()
    libs = ", ".join(f"{prefix}{dumped[key]}" for key, prefix in names if dumped.get(key))
    quick = any(r.quick for r in ordered)
    mode = (" Quick mode (`--quick`): few, short runs — indicative only." if quick else "")
    return (f"_Measured {when} on {where}; {libs}.{mode} Generated from `bench/results/*.json` "
            f"by `stackwatch bench table`._")


def render_block(results: Sequence[BenchResult]) -> str:
    """The whole README block, markers included."""
    if not results:
        return f"{START}\n_No benchmark results yet: run `stackwatch bench run all`._\n{END}"
    rows = [row for r in _sorted(results) for row in result_rows(r)]
    table = "\n".join([HEADER, *rows])
    return f"{START}\n{note_line(results)}\n\n{table}\n{END}"


def replace_block(text: str, block: str) -> str:
    """`text` with the block between the markers replaced (ValueError if they are missing)."""
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise ValueError(f"the README has no {START} … {END} block")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return head + block + tail
