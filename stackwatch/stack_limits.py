"""The limits that apply to one stack on one day, adapted for the compliance checks.

Bridges the limit catalogue (`stackwatch.limits`) and the checks (`stackwatch.compliance`):
resolves the stack's program, jurisdiction (province/city) and per-stack overrides once per
(stack, day) and caches the answer, because the stream processor asks for every hour.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stackwatch.compliance import Limit
from stackwatch.compliance import LimitKind as ComplianceKind
from stackwatch.limits.catalogue import LimitCatalogue
from stackwatch.limits.models import Averaging, LimitKind, LimitRule, O2Basis, Status
from stackwatch.registry import PermitCap, StackInfo


class StackLimits(BaseModel):
    """Limits of one stack on one day, per factor, and the reference O2 of its conversion.

    `by_factor` holds every limit in force (each program, kind and averaging, each on its own
    O2 basis); `governing` the one hourly target the centre watches per factor (the provisional
    rolling alarm and the hour rows' `limit_mg_m3`). `ref_o2` is the reference the normaliser
    converts to: the governing targets' (other bases are derived from it, eq. 28 is linear).
    """

    model_config = ConfigDict(frozen=True)

    ref_o2: float | None = Field(
        description="Reference O2 (%) for converted values; None = measured."
    )
    by_factor: dict[str, tuple[Limit, ...]] = Field(default_factory=dict)
    governing: dict[str, Limit] = Field(default_factory=dict)
    permit_caps: tuple[PermitCap, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _default_governing(cls, data: Any) -> Any:
        """Without an explicit `governing`, each factor's strictest hourly ultra-low (or
        workshop) limit governs: the resolver knows jurisdictions, a hand-built set does not."""
        if not isinstance(data, dict) or data.get("governing") is not None:
            return data
        governing: dict[str, Limit] = {}
        for factor, limits in (data.get("by_factor") or {}).items():
            targets = [
                lim
                for lim in limits
                if isinstance(lim, Limit)
                and lim.averaging == "hour"
                and lim.kind in (ComplianceKind.ULTRA_LOW, ComplianceKind.FUGITIVE)
            ]
            if targets:
                governing[factor] = min(targets, key=lambda lim: lim.limit_mg_m3)
        return {**data, "governing": governing}

    def ultra_low(self, factor: str) -> Limit | None:
        """The governing hourly target of a factor (ultra-low, or the workshop value)."""
        return self.governing.get(factor)


NO_LIMITS = StackLimits(ref_o2=None)
"""No limit applies (a stack whose sector is not known): values stay on the measured basis."""


def _adapt(rule: LimitRule) -> Limit:
    return Limit(
        limit_mg_m3=rule.limit_mg_m3,
        warning_fraction=rule.warning_fraction,
        kind=ComplianceKind(rule.kind.value),
        program=rule.program,
        ref_o2=rule.ref_o2,
        row_id=rule.row_id,
        unconfirmed=rule.status is Status.UNCONFIRMED or rule.o2_basis is O2Basis.NOT_STATED,
        averaging=rule.averaging.value,
        o2_from_row=rule.o2_from_row,
    )


def _governing(rules: list[LimitRule]) -> LimitRule | None:
    """The hourly target the centre watches: the most specific, most recent ultra-low (or
    fugitive) rule, the stricter on a tie; None when only a standard applies."""
    targets = [
        r
        for r in rules
        if r.averaging is Averaging.HOUR and r.kind in (LimitKind.ULTRA_LOW, LimitKind.FUGITIVE)
    ]
    if not targets:
        return None
    return max(targets, key=lambda r: (r.jurisdiction_depth, r.valid_from, -r.limit_mg_m3))


class LimitResolver:
    """Cached (stack, day) → `StackLimits` over one catalogue."""

    def __init__(self, catalogue: LimitCatalogue) -> None:
        self.catalogue = catalogue
        self._cache: dict[tuple[str, date], StackLimits] = {}

    def for_stack(self, stack: StackInfo, day: date) -> StackLimits:
        """Limits in force for `stack` on `day`: its place, its program schedule, overrides."""
        if stack.auto:
            # An auto-registered logger's sector and process are placeholders: judging it
            # against them would raise alarms nobody can stand behind. Data and quality only.
            return NO_LIMITS
        key = (stack.stack_id, day)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if len(self._cache) > 10_000:
            self._cache.clear()
        rules = self.catalogue.for_stack(stack, day)
        by_rule: dict[str, list[LimitRule]] = {}
        for rule in rules:
            by_rule.setdefault(rule.factor, []).append(rule)
        governing = {f: g for f, rs in by_rule.items() if (g := _governing(rs)) is not None}
        with_ref = [g for g in governing.values() if g.ref_o2 is not None] or [
            r for r in rules if r.ref_o2 is not None and r.kind is LimitKind.STANDARD
        ] or [r for r in rules if r.ref_o2 is not None]
        result = StackLimits(
            ref_o2=with_ref[0].ref_o2 if with_ref else None,
            by_factor={f: tuple(_adapt(r) for r in rs) for f, rs in by_rule.items()},
            governing={f: _adapt(g) for f, g in governing.items()},
            permit_caps=tuple(stack.permit_caps),
        )
        self._cache[key] = result
        return result
