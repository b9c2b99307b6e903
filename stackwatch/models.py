"""Topic contracts: the pydantic models that travel between pipeline stages.

One module owns every model that crosses a Kafka topic or a process boundary, so a change to
a contract is visible in one place. Models are frozen where the data is immutable (the raw
layer) and serialise to JSON with `model_dump_json()` / `model_validate_json()`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stackwatch.compliance import Evidence, LimitVerdict, Severity
from stackwatch.intervals import IntervalLabel


class Verdict(StrEnum):
    """Gateway verdict on one received frame (the raw layer keeps every frame)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


class RawFrame(BaseModel):
    """One HJ 212 frame exactly as received, with the gateway's verdict.

    This is the immutable raw layer (docs/hj212.md#raw-layer): every frame, accepted or not,
    is kept verbatim with its receive time and peer, keyed by stack id on the raw topic.
    """

    model_config = ConfigDict(frozen=True)

    text: str = Field(description="The frame verbatim (decoded as UTF-8, invalid bytes escaped).")
    received_at: AwareDatetime
    peer: str = Field(description="host:port of the data logger, or 'replay:<file>'.")
    mn: str | None = Field(default=None, description="MN if one could be read.")
    cn: str | None = None
    verdict: Verdict
    reasons: list[str] = Field(default_factory=list, description="Why it was rejected/warned.")
    gateway: str = Field(default="gateway", description="Which gateway instance received it.")
    decrypted: str | None = Field(
        default=None,
        description="The plaintext frame of an SM4-encrypted upload (HJ 212-2025), as the "
        "gateway decrypted it; `text` stays the frame as received.",
    )
    sha256: str | None = Field(
        default=None,
        description="SHA-256 (hex) of the bytes as received, before any password was masked: "
        "the evidence of what the logger sent (docs/security.md).",
    )
    redacted: bool = Field(
        default=False,
        description="`text`/`decrypted` had PW (or NewPW) values masked (`PW=******`); their "
        "length field and CRC are the wire's, judged by the gateway on the original.",
    )
    units: int = Field(
        default=1,
        ge=1,
        description="Rejected units coalesced into this record (a burst of garbage from one "
        "connection, joined with CRLF).",
    )


class DeadLetter(BaseModel):
    """Anything a stage refused, with the reason and the original payload; nothing is lost."""

    model_config = ConfigDict(frozen=True)

    stage: str = Field(description="gateway | decode | normalise | aggregate | sink | ...")
    reason: str
    payload: str = Field(description="The original payload (frame text or JSON).")
    key: str | None = None
    occurred_at: AwareDatetime
    details: dict[str, str] = Field(default_factory=dict)


class ReadingKind(StrEnum):
    """Which HJ 212 upload a reading came from (HJ 212-2017 Table 9)."""

    REALTIME = "realtime"  # CN 2011: instantaneous values, DataTime = sampling instant
    MINUTE = "minute"  # CN 2051: DataTime = interval start
    HOUR = "hour"  # CN 2061
    DAY = "day"  # CN 2031
    EVENT = "event"  # any other CN (heartbeat 8013, facility state 2021, vendor codes)


CN_KINDS: dict[str, ReadingKind] = {
    "2011": ReadingKind.REALTIME,
    "2051": ReadingKind.MINUTE,
    "2061": ReadingKind.HOUR,
    "2031": ReadingKind.DAY,
}


class FactorReading(BaseModel):
    """One factor of one reading, normalised.

    `value` is the logger's measured standard-dry value (`-Rtd` or `-Avg`); `zs` is the value
    *we* converted to the reference O2 of the stack's limit (None when no reference applies or
    the conversion was refused, `zs_issue` says why); `logger_zs` is what the logger sent as
    `-ZsRtd/-ZsAvg`, kept to detect disagreement (a fraud and misconfiguration signal).
    NaN/inf are refused: the detectors and rolling means downstream only take finite values.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    value: float | None = None
    flag: str = "N"
    min: float | None = None
    max: float | None = None
    cou: float | None = None
    zs: float | None = None
    zs_issue: str | None = None
    logger_zs: float | None = None
    issue: str | None = Field(
        default=None, description="Why the value is not usable (e.g. pressure_implausible)."
    )


class Reading(BaseModel):
    """A validated, normalised reading: one stack, one upload, one DataTime, all factors."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    stack_id: str
    mn: str
    st: str | None = None
    cn: str
    kind: ReadingKind
    sector: str
    process: str
    data_time: AwareDatetime | None = Field(description="+08:00; None only for events.")
    received_at: AwareDatetime
    peer: str = ""
    ref_o2: float | None = Field(default=None, description="Reference O2 applied to `zs` (%).")
    o2: float | None = Field(default=None, description="Measured dry O2 (%) used for `zs`.")
    flow_std_dry_m3_h: float | None = Field(
        default=None, description="Standard dry flue-gas flow (HJ 212-2017 App. D eq. 31)."
    )
    values: dict[str, FactorReading] = Field(default_factory=dict)
    emission_kg_h: dict[str, float] = Field(
        default_factory=dict, description="Emission rate per factor (App. D eq. 33)."
    )
    warnings: list[str] = Field(default_factory=list)
    cp: dict[str, str] = Field(default_factory=dict, description="Other CP fields (events).")
    flue_gas: bool | None = Field(
        default=True,
        description="Flue-gas data (ST 31) that is averaged and judged; False for wastewater "
        "and other systems (kept as readings only); None for interaction frames (ST 91) whose "
        "logger's system is not registered (they only show the logger is alive).",
    )
    resent: bool = Field(default=False, description="HJ 212-2025 RF=1: a re-sent record (补传).")
    encrypted: bool = Field(default=False, description="The frame's data area was SM4-encrypted.")
    security: str | None = Field(
        default=None,
        description="Why the gateway refused this logger's frame on encryption grounds "
        "(not_encrypted, no_key, wrong_key, bad_ciphertext): an event, with no values.",
    )
    interval_label: IntervalLabel | None = Field(
        default=None,
        description="Whether DataTime names the start or the end of the record's interval "
        "(2051/2061/2031).",
    )
    interval_s: int | None = Field(
        default=None,
        description="The record's interval as registered (s); None = the processor infers it.",
    )
    stopped: bool = Field(default=False, description="The stack was stopped (停运).")
    stop_reason: str | None = None

    @property
    def dedup_key(self) -> str:
        """Natural key: duplicates (same stack, CN, DataTime) are idempotent downstream."""
        dt = self.data_time.isoformat() if self.data_time is not None else self.received_at
        return f"{self.stack_id}|{self.cn}|{dt}"


class AggregateRecord(BaseModel):
    """A minute, hour or day aggregate of one factor at one stack (the aggregates topics).

    `source` says who produced the value: `platform` (computed here: hours and days from minute
    records, minutes from real-time samples) or `logger` (the logger's own 2051 minute record,
    or its 2061/2031 record when the platform had nothing to compute the period from). A late
    correction or back-fill is re-emitted with a higher `revision`.
    """

    model_config = ConfigDict(frozen=True)

    stack_id: str
    factor: str
    period: str = Field(description="minute | hour | day")
    period_start: AwareDatetime
    period_end: AwareDatetime
    mean: float | None = None
    zs_mean: float | None = Field(default=None, description="Mean converted to `ref_o2`.")
    min: float | None = None
    max: float | None = None
    valid: bool
    flag: str
    valid_count: int
    total_count: int
    invalid_reason: str | None = None
    dominant_invalid_flag: str | None = None
    mass_kg: float | None = None
    ref_o2: float | None = None
    limit_mg_m3: float | None = Field(default=None, description="Ultra-low limit that applied.")
    limit_program: str | None = Field(default=None, description="Program of that limit.")
    source: Literal["logger", "platform"] = "platform"
    revision: int = 0
    logger_mean: float | None = Field(
        default=None, description="The logger's own 2061/2031 value, where it sent one."
    )
    stopped: bool = Field(
        default=False,
        description="The stack was stopped (停运) for too much of the period to judge it.",
    )
    coverage_minutes: float | None = Field(
        default=None, description="Minutes of the period covered by valid minute records."
    )
    mass_valid: bool | None = Field(
        default=None,
        description="Whether `mass_kg` is a valid total: a valid hour's, or a valid day's "
        "(≥ 20 valid hours); None where no mass is computed.",
    )
    verdicts: tuple[LimitVerdict, ...] = Field(
        default=(),
        description="The period judged against every limit in force (hours and days; one "
        "verdict per program, kind and O2 basis).",
    )


class AckCommand(BaseModel):
    """An operator's acknowledgement of an alert (the alert-commands topic, key = stack_id).

    The topic is co-partitioned with the raw topic (same partition count, same key), so
    the worker that owns a stack's alert book also receives the commands for it.
    """

    model_config = ConfigDict(frozen=True)

    alert_id: str = Field(min_length=1)
    stack_id: str = Field(min_length=1)
    by: str = Field(min_length=1, description="Who acknowledged (user name or e-mail).")
    reason: str = Field(min_length=1, description="Why; required (HJ 75 audit trail).")
    at: AwareDatetime


class HistoryCommand(BaseModel):
    """An operator's request for one logger's history (the gateway-commands topic, key = MN).

    The gateway holding the logger's connection sends it the 2051/2061/2031 request with
    BeginTime/EndTime (HJ 212-2017 App. C part 2); the logger re-sends the records.
    """

    model_config = ConfigDict(frozen=True)

    mn: str = Field(min_length=1, max_length=24)
    cn: Literal["2051", "2061", "2031"]
    begin: AwareDatetime
    end: AwareDatetime
    by: str = Field(min_length=1, description="Who asked (user name or e-mail).")


class Rule(StrEnum):
    """Every alert rule the pipeline raises."""

    HOUR_EXCEEDANCE = "hour_exceedance"
    HOUR_WARNING = "hour_warning"
    PROVISIONAL_EXCEEDANCE = "provisional_exceedance"
    OFFLINE = "offline"
    FLATLINE = "flatline"
    ZERO = "zero"
    NEGATIVE = "negative"
    OVER_RANGE = "over_range"
    CLOCK_SKEW = "clock_skew"
    HOUR_INCOMPLETE = "hour_incomplete"
    LOGGER_HOUR_MISMATCH = "logger_hour_mismatch"
    ZS_MISMATCH = "zs_mismatch"
    REGISTRY_MISMATCH = "registry_mismatch"
    ENCRYPTION = "encryption"
    DAY_EXCEEDANCE = "day_exceedance"
    PERMIT_CAP = "permit_cap"


class EventKind(StrEnum):
    """What happened to an alert."""

    RAISE = "raise"
    UPDATE = "update"
    ESCALATE = "escalate"
    CLEAR = "clear"
    SUPPRESSED = "suppressed"
    ACK = "ack"


class AlertState(StrEnum):
    """Lifecycle state: active → recovering (false, in hold) → cleared; or suppressed."""

    ACTIVE = "active"
    RECOVERING = "recovering"
    CLEARED = "cleared"
    SUPPRESSED = "suppressed"


class AlertFields(BaseModel):
    """What an alert is and where it stands: shared by the topic event and the book's record."""

    alert_id: str = Field(description="uuid5 of (stack, factor, rule, first_seen): replay-stable.")
    stack_id: str
    factor: str | None
    rule: Rule
    severity: Severity
    state: AlertState
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    cleared_at: AwareDatetime | None = None
    peak_value: float | None = None
    value: float | None = None
    limit: float | None = None
    ref_o2: float | None = None
    period_start: AwareDatetime | None = None
    period_end: AwareDatetime | None = None
    evidence: dict[str, Evidence] = Field(default_factory=dict)
    acknowledged: bool = False
    ack_by: str | None = None
    ack_reason: str | None = None
    ack_at: AwareDatetime | None = None


class AlertEvent(AlertFields):
    """Topic contract of the alerts topic: one lifecycle event of one alert."""

    model_config = ConfigDict(frozen=True)

    seq: int = Field(ge=1, description="Monotonic per alert; (alert_id, seq) is unique.")
    kind: EventKind
    at: AwareDatetime = Field(description="Event time of this lifecycle event.")
    title_zh: str
    title_en: str
    count: int
