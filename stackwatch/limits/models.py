"""pydantic v2 models of the limit catalogue: the data file schema and the rules it expands to.

A data file lists *rule groups* (one source row, docs/limits.md#catalogue-rows, applied to one
or more processes, with one limit per HJ 212 factor code); the loader expands every group into one
frozen `LimitRule` per (process, factor). Everything a checker needs to judge an hourly mean
travels on the rule: the limit, the reference O2 (or the explicit statement that the measured
value is judged as is), the averaging period, whether it is an ultra-low target or an
enforceable standard (docs/limits.md#ultra-low-and-legal-checks), its validity dates and the
evidence status of the value.
"""

from __future__ import annotations

import math
from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stackwatch.registry import SECTOR_PROCESSES

#: HJ 212-2017 Appendix B.2 flue-gas factor codes a limit may be set on
#: (docs/hj212.md#factor-codes).
#: O2 (a19001) is deliberately absent: it is the reference quantity, never a limited pollutant.
FACTORS: dict[str, str] = {
    "a34013": "particulate (烟尘)",
    "a21026": "SO2",
    "a21002": "NOx",
    "a21001": "NH3",
    "a21018": "fluoride (氟化物)",
    "a24088": "NMHC",
    "a21024": "HCl",
    "a34038": "asphalt/pitch fume (沥青烟)",
}

#: HJ 212-2017 code of the O2 channel used for the reference-O2 conversion (App. D eq. 28).
O2_FACTOR = "a19001"

#: docs/alarms.md#default-thresholds: "warn at 80 % of the limit" is a platform convention
#: proposed for this project, not a clause of any standard; it is therefore a default in the data
#: file.
DEFAULT_WARNING_FRACTION = 0.8


class Status(StrEnum):
    """Evidence status of a value (docs/limits.md#status-of-a-value)."""

    CONFIRMED = "confirmed"
    SECONDARY = "secondary"
    UNCONFIRMED = "unconfirmed"
    #: Not a catalogue row: a site value (e.g. a permit limit) given as per-stack configuration.
    CONFIGURED = "configured"


class LimitKind(StrEnum):
    """What a breach of the rule means (docs/limits.md#kinds-of-limit).

    `ultra_low` is a policy/performance target judged as a monthly conformity rate;
    `standard` is an enforceable emission standard or permit value (legal 超标 test);
    `fugitive` is an area/workshop dust value that must never be compared with stack PM.
    """

    ULTRA_LOW = "ultra_low"
    STANDARD = "standard"
    FUGITIVE = "fugitive"


class O2Basis(StrEnum):
    """How the measured concentration is put on the rule's basis.

    docs/limits.md#reference-o2-by-source

    `reference`: convert with C_ref = C_meas × (21 − O2_ref)/(21 − O2_meas) (HJ 212-2017 App. D
    eq. 28). `measured`: the source says the measured value is judged as is; never convert.
    `not_stated`: the source gives no basis; do not convert, and treat the verdict as provisional.
    """

    REFERENCE = "reference"
    MEASURED = "measured"
    NOT_STATED = "not_stated"


class Averaging(StrEnum):
    """Averaging period the limit applies to; the national ULE opinions use hourly means."""

    HOUR = "hour"
    DAY = "day"


class PointType(StrEnum):
    """A monitored point is an exhaust stack or a workshop/area dust monitor.

    docs/limits.md#workshop-dust
    """

    STACK = "stack"
    AREA = "area"


def _check_jurisdiction(value: str) -> str:
    parts = value.split("/")
    if any(not p.strip() for p in parts):
        raise ValueError(f"jurisdiction {value!r} must be 'China' or 'Province[/City]'")
    return "/".join(p.strip() for p in parts)


def _check_sector_process(sector: str, processes: list[str]) -> None:
    if sector not in SECTOR_PROCESSES:
        raise ValueError(f"unknown sector {sector!r}; known: {', '.join(sorted(SECTOR_PROCESSES))}")
    for process in processes:
        if process not in SECTOR_PROCESSES[sector]:
            known = ", ".join(SECTOR_PROCESSES[sector])
            raise ValueError(f"unknown process {process!r} for sector {sector!r}; known: {known}")


class _RuleCommon(BaseModel):
    """Fields shared by a rule group in the data file and an expanded rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    row_id: str = Field(
        min_length=1,
        description="Catalogue row id (C1, K1, S1, …; docs/limits.md#catalogue-rows) or note ref.",
    )
    program: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: LimitKind
    sector: str
    ref_o2: float | None = Field(default=None, ge=0, lt=21, description="Reference O2, % dry.")
    o2_basis: O2Basis
    averaging: Averaging = Averaging.HOUR
    monthly_conformity_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="ULE status needs this share of valid production hours per month within the "
        "limit (0.95 in the steel 2019, cement and coking 2024 opinions; "
        "docs/limits.md#ultra-low-and-legal-checks).",
    )
    warning_fraction: float | None = Field(
        default=None, gt=0, le=1, description="Warning level as a share of the limit."
    )
    valid_from: date
    valid_to: date | None = Field(default=None, description="Last day in force (inclusive).")
    jurisdiction: str = Field(min_length=1, description="'China' or 'Province[/City]'.")
    document: str = Field(min_length=1)
    source_url: str = Field(min_length=1, description="URL, or 'seed:<file>' for a seed plan.")
    status: Status
    applies_if: str | None = Field(
        default=None,
        description="Condition the catalogue cannot decide (e.g. 'built-up area', '≥65 t/h').",
    )
    note: str | None = None

    @field_validator("jurisdiction")
    @classmethod
    def _check_jur(cls, value: str) -> str:
        return _check_jurisdiction(value)

    @model_validator(mode="after")
    def _check_common(self) -> _RuleCommon:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError(
                f"row {self.row_id} ({self.program}): valid_to {self.valid_to} is before "
                f"valid_from {self.valid_from}"
            )
        if self.o2_basis is O2Basis.REFERENCE and self.ref_o2 is None:
            raise ValueError(f"row {self.row_id}: o2_basis 'reference' needs ref_o2")
        if self.o2_basis is not O2Basis.REFERENCE and self.ref_o2 is not None:
            raise ValueError(
                f"row {self.row_id}: ref_o2 given but o2_basis is {self.o2_basis.value!r}; "
                "a measured/not-stated basis must never be converted"
            )
        if self.kind is LimitKind.FUGITIVE and self.o2_basis is O2Basis.REFERENCE:
            raise ValueError(f"row {self.row_id}: a fugitive (area) limit has no reference O2")
        return self


class RuleGroup(_RuleCommon):
    """One document row applied to one or more processes of a sector (data-file form)."""

    processes: list[str] = Field(min_length=1)
    limits: dict[str, float] = Field(min_length=1, description="HJ 212 factor code → mg/m³.")

    @field_validator("limits")
    @classmethod
    def _check_limits(cls, value: dict[str, float]) -> dict[str, float]:
        for code, limit in value.items():
            if code not in FACTORS:
                raise ValueError(
                    f"unknown factor code {code!r}; known HJ 212 codes: {', '.join(FACTORS)}"
                )
            if not math.isfinite(limit) or limit <= 0:
                raise ValueError(f"limit for {code} must be a positive number, got {limit}")
        return value

    @model_validator(mode="after")
    def _check_points(self) -> RuleGroup:
        _check_sector_process(self.sector, self.processes)
        if len(set(self.processes)) != len(self.processes):
            raise ValueError(f"row {self.row_id}: duplicate process in {self.processes}")
        return self


class CatalogueDefaults(BaseModel):
    """File-wide defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warning_fraction: float = Field(default=DEFAULT_WARNING_FRACTION, gt=0, le=1)


class CatalogueFile(BaseModel):
    """The data file as written (`catalogue.yaml`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    defaults: CatalogueDefaults = CatalogueDefaults()
    rules: list[RuleGroup] = Field(min_length=1)


class LimitRule(_RuleCommon):
    """One limit on one factor at one monitored point, as applied by the checkers."""

    process: str
    factor: str
    limit_mg_m3: float = Field(gt=0, allow_inf_nan=False)
    warning_fraction: float = Field(default=DEFAULT_WARNING_FRACTION, gt=0, le=1)
    origin: Literal["catalogue", "override"] = "catalogue"
    catalogue_limit_mg_m3: float | None = Field(
        default=None, description="The catalogue value a per-stack override replaced."
    )
    o2_from_row: str | None = Field(
        default=None,
        description="Row whose O2 basis this rule took because its own text states none "
        "(docs/limits.md, precedence).",
    )

    @model_validator(mode="after")
    def _check_rule(self) -> LimitRule:
        _check_sector_process(self.sector, [self.process])
        if self.factor not in FACTORS:
            raise ValueError(f"unknown factor code {self.factor!r}")
        return self

    @property
    def warning_mg_m3(self) -> float:
        """Warning level (预警值) = limit × warning fraction (docs/alarms.md#default-thresholds)."""
        return self.limit_mg_m3 * self.warning_fraction

    @property
    def factor_name(self) -> str:
        """Human name of the HJ 212 factor code."""
        return FACTORS[self.factor]

    @property
    def converts_o2(self) -> bool:
        """True only when the value must be converted to `ref_o2` before comparison (N3)."""
        return self.ref_o2 is not None

    @property
    def jurisdiction_depth(self) -> int:
        """0 for national rules, 1 for a province, 2 for a city (for most-specific-wins)."""
        return 0 if self.jurisdiction.casefold() == "china" else len(self.jurisdiction.split("/"))

    def in_force(self, at: date) -> bool:
        """Whether the rule applies on day `at` (both validity bounds are inclusive)."""
        return self.valid_from <= at and (self.valid_to is None or at <= self.valid_to)
