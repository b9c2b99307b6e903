"""What a report is asked for: a period and a scope (one stack, a plant, a city or all)."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, model_validator

from stackwatch.report_period import ReportPeriod

__all__ = ["ReportParams", "Scope"]

#: Characters a file name should not carry (path separators, shell and Windows specials).
_UNSAFE = re.compile(r"[\s/\\:*?\"<>|]+")


class Scope(StrEnum):
    """Which stacks a report covers; plant and city are the registry's `stacks` columns."""

    STACK = "stack"
    PLANT = "plant"
    CITY = "city"
    ALL = "all"


SCOPE_LABELS: dict[Scope, tuple[str, str]] = {
    Scope.STACK: ("排放口", "stack"),
    Scope.PLANT: ("企业", "plant"),
    Scope.CITY: ("城市", "city"),
    Scope.ALL: ("全部排放口", "all stacks"),
}


class ReportParams(BaseModel):
    """A report request; `value` names the stack id, plant or city (None for all)."""

    model_config = ConfigDict(frozen=True)

    period: ReportPeriod
    scope: Scope = Scope.ALL
    value: str | None = None

    @model_validator(mode="after")
    def _value_matches_scope(self) -> ReportParams:
        if self.scope is Scope.ALL and self.value is not None:
            raise ValueError("a report of all stacks takes no stack, plant or city")
        if self.scope is not Scope.ALL and not (self.value or "").strip():
            raise ValueError(f"a {self.scope.value} report needs the {self.scope.value} name")
        return self

    @property
    def scope_text(self) -> tuple[str, str]:
        """(中文, English) description of the scope, e.g. ("企业：甲水泥", "plant: 甲水泥")."""
        zh, en = SCOPE_LABELS[self.scope]
        if self.value is None:
            return zh, en
        return f"{zh}：{self.value}", f"{en}: {self.value}"

    @property
    def file_stem(self) -> str:
        """`report-monthly-2024-06-plant-甲水泥`: kind, period and scope, safe as a file name."""
        parts = ["report", self.period.kind.value, self.period.label, self.scope.value]
        if self.value is not None:
            parts.append(_UNSAFE.sub("_", self.value.strip()))
        return "-".join(parts)
