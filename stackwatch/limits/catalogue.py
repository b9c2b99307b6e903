"""Loading and querying the limit catalogue (pure: no I/O beyond reading the data file).

Limits change with the date (docs/limits.md#henan-cement-by-date: Henan's 2019 cement NOx 100
vs the national 2024 NOx 50), with the jurisdiction (docs/limits.md#coking-programs: Luoyang's
coke-oven NOx 100 vs the national 150) and with the kind of check
(docs/limits.md#ultra-low-and-legal-checks: ultra-low conformity target vs enforceable
standard), so every query
takes a day and an optional jurisdiction, and returns rules, not bare numbers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, model_validator

from stackwatch.limits.models import (
    FACTORS,
    Averaging,
    CatalogueFile,
    LimitKind,
    LimitRule,
    O2Basis,
    PointType,
    Status,
)
from stackwatch.registry import SECTOR_PROCESSES, StackInfo

#: The catalogue shipped with stackwatch (rows and sources: docs/limits.md#catalogue-rows).
DEFAULT_CATALOGUE_PATH = Path(__file__).with_name("catalogue.yaml")

#: Program tag given to a permit limit created from per-stack configuration.
PERMIT_PROGRAM = "PERMIT"

_KIND_ORDER = {LimitKind.STANDARD: 0, LimitKind.ULTRA_LOW: 1, LimitKind.FUGITIVE: 2}
_FACTOR_ORDER = {code: i for i, code in enumerate(FACTORS)}

_PROVINCES = {"河南": "Henan", "河南省": "Henan", "山西": "Shanxi", "山西省": "Shanxi"}
_CITIES = {
    "三门峡": "Sanmenxia",
    "洛阳": "Luoyang",
    "安阳": "Anyang",
    "郑州": "Zhengzhou",
    "阳泉": "Yangquan",
    "太原": "Taiyuan",
    "晋中": "Jinzhong",
    "忻州": "Xinzhou",
}


class CatalogueError(ValueError):
    """The data file cannot be read or is invalid; the message says where and why."""


class UnknownPointError(LookupError):
    """A sector/process pair that is not one of the canonical monitored points."""


class UnknownProgramError(LookupError):
    """A program tag that no catalogue rule carries (likely a typo in stack configuration)."""


class OverrideError(ValueError):
    """A per-stack override that cannot be applied (bad key, bad value, nothing to override)."""


class ReferenceO2ConflictError(ValueError):
    """Rules in force at one point disagree on the reference O2 (convert per rule instead)."""


def jurisdiction_covers(rule_jurisdiction: str, query: str) -> bool:
    """Whether a rule of `rule_jurisdiction` applies at `query` ('China', 'Henan/Sanmenxia').

    National rules apply everywhere; a province rule applies to the province and its cities;
    a city rule only to that city. Comparison ignores case.
    """
    rule_parts = [p.casefold() for p in rule_jurisdiction.split("/")]
    if rule_parts == ["china"]:
        return True
    query_parts = [p.strip().casefold() for p in query.split("/")]
    return query_parts[: len(rule_parts)] == rule_parts


def jurisdiction_for(province: str, city: str = "") -> str | None:
    """Catalogue jurisdiction of a stack from its registry province/city (Chinese or pinyin).

    '河南省', '三门峡市' → 'Henan/Sanmenxia'. None when the province is empty (national rules only
    then apply if the caller passes 'China').
    """
    prov = province.strip()
    if not prov:
        return None
    prov = _PROVINCES.get(prov, prov)
    town = city.strip()
    town = _CITIES.get(town.removesuffix("市"), town)
    return f"{prov}/{town}" if town else prov


def _format_validation(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"])
        lines.append(f"  {loc or '<file>'}: {item['msg']}")
    return "\n".join(lines)


def _resolve_o2(rules: Iterable[LimitRule]) -> tuple[float | None, O2Basis]:
    """The single O2 basis of a set of rules, or ReferenceO2ConflictError.

    docs/limits.md#reference-o2-by-source
    """
    rules = list(rules)
    refs = sorted({r.ref_o2 for r in rules if r.ref_o2 is not None})
    measured = [r for r in rules if r.o2_basis is O2Basis.MEASURED]
    if len(refs) > 1 or (refs and measured):
        detail = ", ".join(
            f"{r.row_id}/{r.program}/{r.factor}: "
            + (f"{r.ref_o2:g} %" if r.ref_o2 is not None else r.o2_basis.value)
            for r in rules
            if r.o2_basis is not O2Basis.NOT_STATED
        )
        raise ReferenceO2ConflictError(
            f"rules disagree on the reference O2 ({detail}); convert per rule or pass kind="
        )
    if refs:
        return refs[0], O2Basis.REFERENCE
    if measured:
        return None, O2Basis.MEASURED
    return None, O2Basis.NOT_STATED



def _pinned_program(rules: Iterable[LimitRule], program: str, at: date) -> list[LimitRule]:
    """The ultra-low rows of `program` a stack pinned to it is judged by on `at`: per factor
    and averaging, the latest version that started on or before `at`."""
    latest: dict[tuple[str, Averaging], LimitRule] = {}
    for rule in rules:
        if rule.kind is not LimitKind.ULTRA_LOW or rule.program != program:
            continue
        if rule.valid_from > at:
            continue
        key = (rule.factor, rule.averaging)
        held = latest.get(key)
        if held is None or (rule.valid_from, rule.jurisdiction_depth) > (
            held.valid_from,
            held.jurisdiction_depth,
        ):
            latest[key] = rule
    return list(latest.values())


def inherit_o2_basis(rules: Sequence[LimitRule], donors: Sequence[LimitRule]) -> list[LimitRule]:
    """Give each rule whose source states no O2 basis the basis of the row it refines.

    A city or provincial text often repeats the national values without the reference O2
    (row S8, docs/limits.md#catalogue-rows: Luoyang's sinter row vs the national 16 %).
    Precedence is per field: the most specific row gives the limit, but a row that is silent on the
    basis never erases a
    general row's basis. The donor is a rule in force at the same point, of a wider
    jurisdiction that covers the silent row's (a national row for a city's), preferring the
    same kind, then the same factor, then the most specific and most recent. Without a donor
    the basis stays `not_stated` (judged on the measured value, verdict marked unconfirmed).
    """
    out: list[LimitRule] = []
    for rule in rules:
        if rule.o2_basis is not O2Basis.NOT_STATED:
            out.append(rule)
            continue
        candidates = [
            d
            for d in donors
            if d.o2_basis is not O2Basis.NOT_STATED
            and d.jurisdiction_depth < rule.jurisdiction_depth
            and jurisdiction_covers(d.jurisdiction, rule.jurisdiction)
        ]
        if not candidates:
            out.append(rule)
            continue
        donor = max(
            candidates,
            key=lambda d: (
                d.kind is rule.kind,
                d.factor == rule.factor,
                d.jurisdiction_depth,
                d.valid_from,
            ),
        )
        out.append(
            rule.model_copy(
                update={
                    "o2_basis": donor.o2_basis,
                    "ref_o2": donor.ref_o2,
                    "o2_from_row": donor.row_id,
                }
            )
        )
    return out


def _permit_basis_donor(rules: Sequence[LimitRule], factor: str) -> LimitRule | None:
    """The rule whose O2 basis a new permit value takes: the point's standard (same factor
    first), else its ultra-low target; None when no rule states one."""
    stated = [r for r in rules if r.o2_basis is not O2Basis.NOT_STATED]
    if not stated:
        return None
    return max(
        stated,
        key=lambda r: (r.kind is LimitKind.STANDARD, r.factor == factor, r.jurisdiction_depth),
    )


class LimitCatalogue(BaseModel):
    """All limit rules, validated as a whole (no overlapping versions, no mixed point types)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[LimitRule, ...]
    source: str = "<memory>"

    _by_point: dict[tuple[str, str], list[LimitRule]] = PrivateAttr(default_factory=dict)
    _programs: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @model_validator(mode="after")
    def _check_consistency(self) -> LimitCatalogue:
        versions: dict[tuple[str, str, str, LimitKind, str, str], list[LimitRule]] = {}
        kinds: dict[tuple[str, str], set[LimitKind]] = {}
        for rule in self.rules:
            key = (
                rule.sector,
                rule.process,
                rule.factor,
                rule.kind,
                rule.program,
                rule.jurisdiction.casefold(),
            )
            versions.setdefault(key, []).append(rule)
            kinds.setdefault((rule.sector, rule.process), set()).add(rule.kind)
        for key, group in versions.items():
            group.sort(key=lambda r: r.valid_from)
            for before, after in itertools.pairwise(group):
                if before.valid_to is None or before.valid_to >= after.valid_from:
                    raise ValueError(
                        f"overlapping validity for {key[0]}/{key[1]} {key[2]} {key[3].value} "
                        f"{key[4]} in {before.jurisdiction}: rows {before.row_id} "
                        f"({before.valid_from}..{before.valid_to or 'open'}) and {after.row_id} "
                        f"(from {after.valid_from})"
                    )
        for (sector, process), point_kinds in kinds.items():
            if LimitKind.FUGITIVE in point_kinds and len(point_kinds) > 1:
                raise ValueError(
                    f"{sector}/{process} mixes fugitive (area) and stack limits; a workshop dust "
                    "monitor must never be compared with stack PM (docs/limits.md#workshop-dust)"
                )
        return self

    def model_post_init(self, context: object, /) -> None:
        index: dict[tuple[str, str], list[LimitRule]] = {}
        for rule in self.rules:
            index.setdefault((rule.sector, rule.process), []).append(rule)
        self._by_point = index
        self._programs = frozenset(r.program for r in self.rules)

    # ----------------------------------------------------------------------------- queries

    @property
    def programs(self) -> frozenset[str]:
        """Every program tag in the catalogue."""
        return self._programs

    def point_type(self, sector: str, process: str) -> PointType:
        """`area` for a workshop/fugitive dust monitor, otherwise `stack`.

        docs/limits.md#workshop-dust
        """
        self._check_point(sector, process)
        rules = self._by_point.get((sector, process), [])
        if any(r.kind is LimitKind.FUGITIVE for r in rules):
            return PointType.AREA
        return PointType.STACK

    def applicable(
        self,
        sector: str,
        process: str,
        at: date,
        *,
        program: str | None = None,
        jurisdiction: str | None = None,
        overrides: Mapping[str, float] | None = None,
    ) -> list[LimitRule]:
        """The rules in force on day `at` at one monitored point.

        Every program in force is returned: the enforceable standard, each ultra-low target,
        the fugitive value (docs/limits.md#ultra-low-and-legal-checks). `program` pins the
        ultra-low program the stack is assessed under (the stack's own retrofit schedule): its rows
        apply from their
        `valid_from`, also after the catalogue's `valid_to` (the stack keeps the program until
        its registry moves it on); other ultra-low programs are left out, standard and fugitive
        rules are kept. `jurisdiction` ('Henan/Sanmenxia') keeps the national rules plus those
        of that province/city; None applies no jurisdiction filter (catalogue browsing). A row
        whose source states no O2 basis takes the basis of the more general row it refines
        (`inherit_o2_basis`). `overrides` are per-stack values, see `apply_overrides`.
        """
        self._check_point(sector, process)
        if program is not None and program not in self._programs:
            raise UnknownProgramError(
                f"unknown program {program!r}; known: {', '.join(sorted(self._programs))}"
            )
        here = [
            r
            for r in self._by_point.get((sector, process), [])
            if jurisdiction is None or jurisdiction_covers(r.jurisdiction, jurisdiction)
        ]
        in_force = [r for r in here if r.in_force(at)]
        rules = [r for r in in_force if program is None or r.kind is not LimitKind.ULTRA_LOW]
        if program is not None:
            rules.extend(_pinned_program(here, program, at))
        rules = inherit_o2_basis(rules, in_force)
        if overrides:
            rules = self.apply_overrides(
                rules, overrides, sector=sector, process=process, at=at, jurisdiction=jurisdiction
            )
        rules.sort(
            key=lambda r: (
                _FACTOR_ORDER[r.factor],
                r.averaging.value,
                _KIND_ORDER[r.kind],
                r.jurisdiction_depth,
                r.program,
            )
        )
        return rules

    def for_stack(self, stack: StackInfo, at: date) -> list[LimitRule]:
        """`applicable` for a registry stack: its point, program, jurisdiction and overrides.

        The jurisdiction comes from the stack's province/city (`jurisdiction_for`); a stack
        without a province gets national rules only, never another province's.
        """
        return self.applicable(
            stack.sector,
            stack.process,
            at,
            program=stack.program_on(at),
            jurisdiction=jurisdiction_for(stack.province, stack.city) or "China",
            overrides=stack.limit_overrides,
        )

    def rule_for(
        self,
        sector: str,
        process: str,
        factor: str,
        at: date,
        kind: LimitKind = LimitKind.ULTRA_LOW,
        *,
        program: str | None = None,
        jurisdiction: str | None = None,
        overrides: Mapping[str, float] | None = None,
        averaging: Averaging = Averaging.HOUR,
    ) -> LimitRule | None:
        """The one rule of `kind` for `factor` that governs the point on `at`, or None.

        When several apply, the most local jurisdiction wins (a city's stricter text over the
        national one, docs/limits.md#coking-programs), then the most recent, then the stricter
        value.
        """
        candidates = [
            r
            for r in self.applicable(
                sector,
                process,
                at,
                program=program,
                jurisdiction=jurisdiction,
                overrides=overrides,
            )
            if r.factor == factor and r.kind is kind and r.averaging is averaging
        ]
        if not candidates:
            return None
        return max(candidates, key=lambda r: (r.jurisdiction_depth, r.valid_from, -r.limit_mg_m3))

    def ref_o2(
        self,
        sector: str,
        process: str,
        at: date,
        *,
        kind: LimitKind | None = None,
        program: str | None = None,
        jurisdiction: str | None = None,
    ) -> float | None:
        """Reference O2 (%) of the point on `at`; None means judge the measured value as is.

        Raises ReferenceO2ConflictError when rules in force disagree (e.g. a ≥65 t/h boiler:
        6 % under the power-plant ULE level, 9 % under GB 13271); restrict with `kind` then.
        """
        rules = [
            r
            for r in self.applicable(
                sector, process, at, program=program, jurisdiction=jurisdiction
            )
            if kind is None or r.kind is kind
        ]
        return _resolve_o2(rules)[0]

    def select(self, *, sector: str | None = None, status: Status | None = None) -> list[LimitRule]:
        """All rules, optionally of one sector and/or status, in a stable display order."""
        if sector is not None and sector not in SECTOR_PROCESSES:
            raise UnknownPointError(self._unknown_sector_message(sector))
        rules = [
            r
            for r in self.rules
            if (sector is None or r.sector == sector) and (status is None or r.status is status)
        ]
        processes = {s: {p: i for i, p in enumerate(ps)} for s, ps in SECTOR_PROCESSES.items()}
        sectors = {s: i for i, s in enumerate(SECTOR_PROCESSES)}
        rules.sort(
            key=lambda r: (
                sectors[r.sector],
                processes[r.sector][r.process],
                _FACTOR_ORDER[r.factor],
                _KIND_ORDER[r.kind],
                r.valid_from,
                r.jurisdiction_depth,
            )
        )
        return rules

    # --------------------------------------------------------------------------- overrides

    def apply_overrides(
        self,
        rules: Sequence[LimitRule],
        overrides: Mapping[str, float],
        *,
        sector: str,
        process: str,
        at: date,
        jurisdiction: str | None = None,
    ) -> list[LimitRule]:
        """Apply per-stack limit overrides (registry `limit_overrides`) to rules in force.

        A key is a factor code ('a21002') or 'kind:factor' ('ultra_low:a21002'). A bare code
        sets the enforceable value of the point — the permit (排污许可) limit of a stack, the
        fugitive value of an area monitor. An overridden rule keeps its O2 basis and remembers
        the catalogue value; a permit value with no catalogue standard becomes a new rule
        (program PERMIT, status configured) on the basis the point's other rules use.
        """
        result = list(rules)
        enforceable = (
            LimitKind.FUGITIVE
            if self.point_type(sector, process) is PointType.AREA
            else LimitKind.STANDARD
        )
        for key, value in overrides.items():
            kind, averaging, factor = self._parse_override_key(key, enforceable)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OverrideError(f"override {key!r}: value must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise OverrideError(f"override {key!r}: limit must be > 0 mg/m³, got {value}")
            if kind is LimitKind.FUGITIVE and enforceable is not LimitKind.FUGITIVE:
                raise OverrideError(f"override {key!r}: {sector}/{process} is a stack, not an area")
            if kind is not LimitKind.FUGITIVE and enforceable is LimitKind.FUGITIVE:
                raise OverrideError(
                    f"override {key!r}: {sector}/{process} is an area dust monitor; only its "
                    "fugitive value can be overridden (docs/limits.md#workshop-dust)"
                )
            hits = [
                i
                for i, r in enumerate(result)
                if r.kind is kind and r.factor == factor and r.averaging is averaging
            ]
            for i in hits:
                old = result[i]
                result[i] = old.model_copy(
                    update={
                        "limit_mg_m3": float(value),
                        "origin": "override",
                        "catalogue_limit_mg_m3": old.limit_mg_m3,
                    }
                )
            if hits:
                continue
            if kind is not LimitKind.STANDARD:
                raise OverrideError(
                    f"override {key!r}: no {kind.value} rule for {factor} at {sector}/{process} "
                    f"on {at}; an ultra-low target needs a catalogue program"
                )
            donor = _permit_basis_donor(result, factor)
            result.append(
                LimitRule(
                    row_id="override",
                    program=PERMIT_PROGRAM,
                    kind=LimitKind.STANDARD,
                    sector=sector,
                    process=process,
                    factor=factor,
                    limit_mg_m3=float(value),
                    ref_o2=donor.ref_o2 if donor else None,
                    o2_basis=donor.o2_basis if donor else O2Basis.NOT_STATED,
                    o2_from_row=donor.row_id if donor else None,
                    averaging=averaging,
                    valid_from=at,
                    valid_to=at,
                    jurisdiction=jurisdiction or "China",
                    document="per-stack configuration (limit_overrides)",
                    source_url="config:limit_overrides",
                    status=Status.CONFIGURED,
                    origin="override",
                    note="O2 basis taken from the point's standard (else ultra-low) rule",
                )
            )
        return result

    # ----------------------------------------------------------------------------- helpers

    @staticmethod
    def _parse_override_key(key: str, default: LimitKind) -> tuple[LimitKind, Averaging, str]:
        """'a21026', 'ultra_low:a21026', 'day:a21026' or 'standard:day:a21026'."""
        *qualifiers, factor = key.split(":")
        kind, averaging = default, Averaging.HOUR
        kinds = {k.value: k for k in LimitKind}
        periods = {a.value: a for a in Averaging}
        if len(qualifiers) > 2:
            raise OverrideError(f"override {key!r}: expected [kind:][hour|day:]factor")
        for i, word in enumerate(qualifiers):
            if word in kinds and i == 0:
                kind = kinds[word]
            elif word in periods:
                averaging = periods[word]
            else:
                known = ", ".join([*kinds, *periods])
                raise OverrideError(
                    f"override {key!r}: unknown qualifier {word!r} (known: {known})"
                )
        if factor not in FACTORS:
            raise OverrideError(
                f"override {key!r}: unknown factor code {factor!r} (known: {', '.join(FACTORS)})"
            )
        return kind, averaging, factor

    @staticmethod
    def _unknown_sector_message(sector: str) -> str:
        return f"unknown sector {sector!r}; known: {', '.join(SECTOR_PROCESSES)}"

    def _check_point(self, sector: str, process: str) -> None:
        if sector not in SECTOR_PROCESSES:
            raise UnknownPointError(self._unknown_sector_message(sector))
        if process not in SECTOR_PROCESSES[sector]:
            raise UnknownPointError(
                f"unknown process {process!r} for sector {sector!r}; "
                f"known: {', '.join(SECTOR_PROCESSES[sector])}"
            )


def parse_catalogue(
    data: object, *, source: str = "<memory>", warning_fraction: float | None = None
) -> LimitCatalogue:
    """Validate already-parsed YAML/JSON data and expand it into a catalogue.

    `warning_fraction` replaces the file default (not an explicit per-row value).
    """
    try:
        file = CatalogueFile.model_validate(data)
    except ValidationError as exc:
        raise CatalogueError(
            f"invalid limit catalogue {source}:\n{_format_validation(exc)}"
        ) from None
    if warning_fraction is not None and not 0 < warning_fraction <= 1:
        raise CatalogueError(f"warning_fraction must be in (0, 1], got {warning_fraction}")
    default_fraction = warning_fraction or file.defaults.warning_fraction
    rules: list[LimitRule] = []
    for group in file.rules:
        common = group.model_dump(exclude={"processes", "limits", "warning_fraction"})
        fraction = group.warning_fraction or default_fraction
        for process in group.processes:
            for factor, limit in group.limits.items():
                rules.append(
                    LimitRule(
                        **common,
                        process=process,
                        factor=factor,
                        limit_mg_m3=limit,
                        warning_fraction=fraction,
                    )
                )
    try:
        return LimitCatalogue(rules=tuple(rules), source=source)
    except ValidationError as exc:
        raise CatalogueError(
            f"invalid limit catalogue {source}:\n{_format_validation(exc)}"
        ) from None


def load_catalogue(
    path: Path | None = None, *, warning_fraction: float | None = None
) -> LimitCatalogue:
    """Read and validate a catalogue YAML file (default: the shipped `catalogue.yaml`).

    Any problem — unreadable file, bad YAML, schema violation — raises CatalogueError naming
    the file and the offending field.
    """
    target = path or DEFAULT_CATALOGUE_PATH
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"cannot read limit catalogue {target}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"limit catalogue {target} is not valid YAML: {exc}") from None
    return parse_catalogue(data, source=str(target), warning_fraction=warning_fraction)


@lru_cache(maxsize=1)
def default_catalogue() -> LimitCatalogue:
    """The shipped catalogue, loaded once per process."""
    return load_catalogue()
