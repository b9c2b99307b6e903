"""The README's configuration table, generated from the settings model so it cannot drift.

    .venv/bin/python -m stackwatch.settings_doc          # print the markdown table
    .venv/bin/python -m stackwatch.settings_doc --write  # replace it in README.md

A unit test compares the README's table with this output.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from stackwatch.settings import Settings

START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def _default(field: FieldInfo) -> str:
    value: Any = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g} s"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, frozenset | set):
        return ", ".join(sorted(str(v) for v in value)) or "(empty)"
    if isinstance(value, dict):
        return "(empty)" if not value else ", ".join(f"{k}={v}" for k, v in value.items())
    if value is None:
        return "(none)"
    return str(value).replace("|", "\\|")


def rows(model: type[BaseModel], prefix: str = "STACKWATCH_", depth: int = 0) -> list[str]:
    """One markdown row per leaf setting, nested groups flattened with `__`."""
    out: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        env = f"{prefix}{name.upper()}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(rows(annotation, env + "__", depth + 1))
            continue
        doc = (field.description or "").replace("\n", " ").replace("|", "\\|")
        out.append(f"| `{env}` | {_default(field)} | {doc} |")
    return out


def table() -> str:
    """The whole markdown table."""
    header = "| environment variable | default | meaning |\n|---|---|---|"
    return "\n".join([header, *rows(Settings)])


def write(readme: Path) -> None:
    """Replace the block between the markers in `readme`."""
    text = readme.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{table()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write(Path(__file__).resolve().parents[1] / "README.md")
    else:
        print(table())
