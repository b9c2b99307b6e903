"""The limits that apply to one stack on one day, adapted for the compliance checks.

Bridges the limit catalogue (`stackwatch.limits`) and the checks (`stackwatch.compliance`):
resolves the stack's program, jurisdiction (province/city) and per-stack overrides once per
(stack, day) and caches the answer, because the stream processor asks for every hour.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from stackwatch.compliance import Limit
from stackwatch.compliance import LimitKind as ComplianceKind
from stackwatch.limits.catalogue import (
    LimitCatalogue,
    ReferenceO2ConflictError,
    jurisdiction_for,
)
from stackwatch.limits.models import LimitKind, LimitRule, O2Basis, Status
from stackwatch.registry import StackInfo


class StackLimits(BaseModel):
    """Limits of one stack on one day, per factor, and the reference O2 of its judgement."""

    model_config = ConfigDict(frozen=True)

    ref_o2: float | None = Field(
        description="Reference O2 (%) for converted values; None = measured."
    )
    by_factor: dict[str, tuple[Limit, ...]] = Field(default_factory=dict)

    def ultra_low(self, factor: str) -> Limit | None:
        """The ultra-low (or fugitive) limit of a factor: the one the centre watches."""
        for limit in self.by_factor.get(factor, ()):
            if limit.kind in (ComplianceKind.ULTRA_LOW, ComplianceKind.FUGITIVE):
                return limit
        return None


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
    )


class LimitResolver:
    """Cached (stack, day) → `StackLimits` over one catalogue."""

    def __init__(self, catalogue: LimitCatalogue) -> None:
        self.catalogue = catalogue
        self._cache: dict[tuple[str, date], StackLimits] = {}

    def for_stack(self, stack: StackInfo, day: date) -> StackLimits:
        """Limits in force for `stack` on `day` (most local jurisdiction wins per factor)."""
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
        jurisdiction = jurisdiction_for(stack.province, stack.city) or "China"
        by_factor: dict[str, list[Limit]] = {}
        factors = {
            r.factor
            for r in self.catalogue.applicable(
                stack.sector, stack.process, day, program=stack.program, jurisdiction=jurisdiction
            )
        }
        for factor in sorted(factors):
            for kind in LimitKind:
                rule = self.catalogue.rule_for(
                    stack.sector,
                    stack.process,
                    factor,
                    day,
                    kind,
                    program=stack.program,
                    jurisdiction=jurisdiction,
                    overrides=stack.limit_overrides or None,
                )
                if rule is not None:
                    by_factor.setdefault(factor, []).append(_adapt(rule))
        try:
            ref_o2 = self.catalogue.ref_o2(
                stack.sector,
                stack.process,
                day,
                kind=LimitKind.ULTRA_LOW,
                program=stack.program,
                jurisdiction=jurisdiction,
            )
        except ReferenceO2ConflictError:
            ref_o2 = None
        if ref_o2 is None:
            ultra = [lim for lims in by_factor.values() for lim in lims if lim.ref_o2 is not None]
            ref_o2 = ultra[0].ref_o2 if ultra else None
        result = StackLimits(ref_o2=ref_o2, by_factor={f: tuple(v) for f, v in by_factor.items()})
        self._cache[key] = result
        return result
