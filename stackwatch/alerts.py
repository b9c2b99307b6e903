"""Alert rules, the `AlertEvent` topic contract and the alert lifecycle state machine.

Pure state, driven only by event time, so live traffic and replay give the same alerts, ids
and sequence numbers. Conventions (platform practice, docs/alarms.md#platform-vocabulary and
docs/alarms.md#default-thresholds; the
thresholds are configuration, not standard):

* **One alert per (stack, factor, rule).** A re-trigger updates it (count, last seen, peak)
  with an ``update`` event; it clears only after the condition has stayed false for the rule's
  hold time (hysteresis, by event time) with a ``clear`` event.
* **Warning and alarm are separate rules** (``hour_warning`` vs ``hour_exceedance``), so a
  warning episode and an exceedance episode each have their own alert and neither hides the
  other. Within one alert the severity may only rise (``hour_exceedance``: alarm → critical
  when the standard/permit limit is crossed too); a rise emits ``escalate`` and resets the
  acknowledgement, because the new severity has not been seen by anyone yet.
* **Suppression:** a true condition whose data flag is C/M/F (calibration, maintenance,
  shut-down; HJ 212-2017 Table 8) raises nothing; it is recorded as a ``suppressed`` event.
* **Idempotent:** an observation at or before the last one seen for its key is ignored, unless
  it is a revision (same event time, different content), which is applied without counting.
* ``ack`` marks an alert acknowledged (it does not clear it). Delivery and notifier escalation
  live in ``sinks/``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stackwatch.compliance import (
    LEVEL_TERMS,
    MIN_VALID_MINUTES_PER_HOUR,
    DayValue,
    Evidence,
    HourStatus,
    HourValue,
    PeriodVerdict,
    RollingSnapshot,
    Severity,
    exact,
)
from stackwatch.models import AlertEvent, AlertFields, AlertState, EventKind, Rule

__all__ = [
    "KIND_TITLES",
    "RULE_TITLES",
    "AlertBook",
    "AlertNotFoundError",
    "AlertPolicy",
    "AlertRecord",
    "Condition",
    "Severity",
    "alert_id_for",
    "alert_title",
    "day_conditions",
    "hour_conditions",
    "provisional_condition",
]

#: Namespace of the deterministic alert ids (uuid5).
ALERT_NAMESPACE = uuid.UUID("5d7f3c1e-7a51-4c55-9b0e-2a1c8f0e9d12")


#: Bilingual titles (中文, English) in the vocabulary of provincial platforms
#: (docs/alarms.md#platform-vocabulary).
RULE_TITLES: dict[Rule, tuple[str, str]] = {
    # The limit rules' generic titles name no level: 超标 is only for the legal standard
    # (KIND_TITLES gives each alert the term of the limit that decided it).
    Rule.HOUR_EXCEEDANCE: ("小时均值超限", "hourly mean above a limit"),
    Rule.HOUR_WARNING: ("小时均值预警", "hourly mean warning"),
    Rule.PROVISIONAL_EXCEEDANCE: (
        "滚动小时均值超限预警",
        "provisional exceedance (rolling 60 min)",
    ),
    Rule.OFFLINE: ("数采仪离线", "logger offline"),
    Rule.FLATLINE: ("恒值", "flat-line"),
    Rule.ZERO: ("零值", "zero value"),
    Rule.NEGATIVE: ("负值", "negative value"),
    Rule.OVER_RANGE: ("超量程", "over range"),
    Rule.CLOCK_SKEW: ("数采仪时钟偏差", "logger clock skew"),
    Rule.HOUR_INCOMPLETE: ("小时数据不完整", "incomplete hour"),
    Rule.LOGGER_HOUR_MISMATCH: ("数采仪小时值与计算值不符", "logger hour value mismatch"),
    Rule.ZS_MISMATCH: ("折算值不符", "converted (Zs) value mismatch"),
    Rule.REGISTRY_MISMATCH: ("数采仪参数与登记不符", "logger settings differ from the registry"),
    Rule.ENCRYPTION: ("数据加密异常", "data encryption problem"),
    Rule.DAY_EXCEEDANCE: ("日均值超限", "daily mean above a limit"),
    Rule.PERMIT_CAP: ("排放总量超过许可排放量", "emission total above the permit cap"),
}

#: Titles of the limit rules by the deciding limit's kind: 超标 only for the legal standard or
#: permit value, 超过超低排放限值 for an ultra-low target, the workshop value for area points.
KIND_TITLES: dict[tuple[Rule, str], tuple[str, str]] = {
    (Rule.HOUR_EXCEEDANCE, "standard"): ("小时均值超标", "hourly mean above the emission standard"),
    (Rule.HOUR_EXCEEDANCE, "ultra_low"): (
        "小时均值超过超低排放限值",
        "hourly mean above the ultra-low emission limit",
    ),
    (Rule.HOUR_EXCEEDANCE, "fugitive"): (
        "车间扬尘小时均值超过控制值",
        "workshop dust hourly mean above its value",
    ),
    (Rule.HOUR_WARNING, "standard"): (
        "小时均值接近排放标准（预警）",
        "hourly mean near the emission standard",
    ),
    (Rule.HOUR_WARNING, "ultra_low"): (
        "小时均值接近超低排放限值（预警）",
        "hourly mean near the ultra-low limit",
    ),
    (Rule.HOUR_WARNING, "fugitive"): ("车间扬尘小时均值预警", "workshop dust hourly mean warning"),
    (Rule.DAY_EXCEEDANCE, "standard"): ("日均值超标", "daily mean above the emission standard"),
    (Rule.DAY_EXCEEDANCE, "ultra_low"): (
        "日均值超过超低排放限值",
        "daily mean above the ultra-low emission limit",
    ),
    (Rule.PROVISIONAL_EXCEEDANCE, "standard"): (
        "滚动小时均值超标预警",
        "provisional exceedance of the emission standard (rolling 60 min)",
    ),
    (Rule.PROVISIONAL_EXCEEDANCE, "ultra_low"): (
        "滚动小时均值超过超低排放限值预警",
        "provisional exceedance of the ultra-low emission limit (rolling 60 min)",
    ),
    (Rule.PROVISIONAL_EXCEEDANCE, "fugitive"): (
        "车间扬尘滚动小时均值超限预警",
        "workshop dust provisional exceedance (rolling 60 min)",
    ),
}


def alert_title(rule: Rule, evidence: Mapping[str, Evidence]) -> tuple[str, str]:
    """(中文, English) title of an alert: by the deciding limit's kind where it matters."""
    kind = evidence.get("limit_kind")
    if isinstance(kind, str) and (rule, kind) in KIND_TITLES:
        return KIND_TITLES[(rule, kind)]
    return RULE_TITLES[rule]

#: Default severity of each rule when the condition does not carry one (proposal, configurable).
DEFAULT_SEVERITIES: dict[Rule, Severity] = {
    Rule.HOUR_EXCEEDANCE: Severity.ALARM,
    Rule.HOUR_WARNING: Severity.WARNING,
    Rule.PROVISIONAL_EXCEEDANCE: Severity.ALARM,
    Rule.OFFLINE: Severity.ALARM,
    Rule.FLATLINE: Severity.WARNING,
    Rule.ZERO: Severity.WARNING,
    Rule.NEGATIVE: Severity.WARNING,
    Rule.OVER_RANGE: Severity.ALARM,
    Rule.CLOCK_SKEW: Severity.WARNING,
    Rule.HOUR_INCOMPLETE: Severity.WARNING,
    Rule.LOGGER_HOUR_MISMATCH: Severity.WARNING,
    Rule.ZS_MISMATCH: Severity.WARNING,
    Rule.REGISTRY_MISMATCH: Severity.WARNING,
    Rule.ENCRYPTION: Severity.ALARM,
    Rule.DAY_EXCEEDANCE: Severity.ALARM,
    Rule.PERMIT_CAP: Severity.CRITICAL,
}

#: Hold times differing from the policy default (1 h, i.e. one further hourly observation).
#: Detector rules clear on the detector's own evidence (a changed value, a frame), so 0;
#: the provisional mean moves every minute, so 15 min stops it flapping.
DEFAULT_HOLD_OVERRIDES: dict[Rule, timedelta] = {
    Rule.PROVISIONAL_EXCEEDANCE: timedelta(minutes=15),
    Rule.OFFLINE: timedelta(0),
    Rule.FLATLINE: timedelta(0),
    Rule.ZERO: timedelta(0),
    Rule.NEGATIVE: timedelta(0),
    Rule.OVER_RANGE: timedelta(0),
    Rule.CLOCK_SKEW: timedelta(0),
    Rule.REGISTRY_MISMATCH: timedelta(0),
    Rule.ENCRYPTION: timedelta(0),
    Rule.PERMIT_CAP: timedelta(0),
}

#: Rules whose worst value is the lowest one (peak = minimum).
_LOW_IS_WORSE = frozenset({Rule.NEGATIVE})


class Condition(BaseModel):
    """One observation of a rule's condition (detectors emit these on change)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    stack_id: str = Field(min_length=1)
    factor: str | None = None
    rule: Rule
    active: bool
    at: AwareDatetime = Field(description="Event time of the observation.")
    value: float | None = None
    evidence: dict[str, Evidence] = Field(default_factory=dict)
    severity: Severity | None = Field(default=None, description="None = the rule's default.")
    limit: float | None = None
    ref_o2: float | None = None
    period_start: AwareDatetime | None = None
    period_end: AwareDatetime | None = None
    flag: str | None = Field(default=None, description="HJ 212 data flag (suppression).")


class AlertPolicy(BaseModel):
    """Lifecycle configuration (documented defaults: docs/alarms.md#default-thresholds)."""

    model_config = ConfigDict(frozen=True)

    hold_time: timedelta = Field(
        default=timedelta(hours=1),
        description="How long a condition must stay false before its alert clears.",
    )
    hold_overrides: dict[Rule, timedelta] = Field(
        default_factory=lambda: dict(DEFAULT_HOLD_OVERRIDES),
        description="Per-rule hold times (JSON object rule → ISO 8601 duration).",
    )
    severities: dict[Rule, Severity] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITIES),
        description="Per-rule default severity (JSON object rule → warning|alarm|critical).",
    )
    suppress_flags: frozenset[str] = Field(
        default=frozenset({"C", "M", "F"}),
        description="Data flags that suppress raising (calibration, maintenance, stopped).",
    )

    def hold_for(self, rule: Rule) -> timedelta:
        """Hold time of ``rule``."""
        return self.hold_overrides.get(rule, self.hold_time)

    def severity_for(self, rule: Rule) -> Severity:
        """Default severity of ``rule``."""
        return self.severities.get(rule, DEFAULT_SEVERITIES[rule])


class AlertRecord(AlertFields):
    """The book's record of one open alert (also its persisted state)."""

    last_observed: AwareDatetime
    false_since: AwareDatetime | None = None
    count: int = 1
    seq: int = 0


class _Watermark(BaseModel):
    stack_id: str
    factor: str | None
    rule: Rule
    at: AwareDatetime
    fingerprint: str


class _LateMarks(BaseModel):
    stack_id: str
    factor: str | None
    rule: Rule
    fingerprints: list[str]


class _BookState(BaseModel):
    version: int = 1
    open: list[AlertRecord] = Field(default_factory=list)
    watermarks: list[_Watermark] = Field(default_factory=list)
    late: list[_LateMarks] = Field(default_factory=list)


_LATE_MEMORY = 64
"""Late observations remembered per key (a back-fill horizon of 48 hourly observations)."""


class AlertNotFoundError(LookupError):
    """An acknowledgement named an alert that is not open (unknown or already cleared)."""


_Key = tuple[str, str, Rule]


def alert_id_for(stack_id: str, factor: str | None, rule: Rule, first_seen: datetime) -> str:
    """Deterministic alert id, so a replay of the same inputs yields the same ids."""
    stamp = first_seen.astimezone(UTC).isoformat()
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{stack_id}|{factor or ''}|{rule.value}|{stamp}"))


def _fingerprint(cond: Condition) -> str:
    return json.dumps(
        cond.model_dump(mode="json", exclude={"evidence"}) | {"evidence": cond.evidence},
        sort_keys=True,
        default=str,
    )


def _worse(rule: Rule, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    if rule in _LOW_IS_WORSE:
        return a if exact(a) <= exact(b) else b
    return a if exact(a) >= exact(b) else b


class AlertBook:
    """The lifecycle state machine over all alerts of (a partition of) the pipeline."""

    def __init__(self, policy: AlertPolicy | None = None) -> None:
        self.policy = policy or AlertPolicy()
        self._open: dict[_Key, AlertRecord] = {}
        self._wm: dict[_Key, _Watermark] = {}
        self._late: dict[_Key, list[str]] = {}

    # -- queries

    def open_alerts(self) -> list[AlertRecord]:
        """Open (active or recovering) alerts, oldest first."""
        return sorted(self._open.values(), key=lambda r: (r.first_seen, r.alert_id))

    def get(self, stack_id: str, factor: str | None, rule: Rule) -> AlertRecord | None:
        """The open alert of this key, if any."""
        return self._open.get((stack_id, factor or "", rule))

    # -- inputs

    def observe(self, cond: Condition) -> list[AlertEvent]:
        """Apply one observation; returns the lifecycle events it causes (maybe none)."""
        key: _Key = (cond.stack_id, cond.factor or "", cond.rule)
        fingerprint = _fingerprint(cond)
        mark = self._wm.get(key)
        if mark is not None and (
            cond.at < mark.at or (cond.at == mark.at and mark.fingerprint == fingerprint)
        ):
            return []  # stale or duplicate: replays are idempotent
        revision = mark is not None and cond.at == mark.at
        self._wm[key] = _Watermark(
            stack_id=cond.stack_id,
            factor=cond.factor,
            rule=cond.rule,
            at=cond.at,
            fingerprint=fingerprint,
        )
        record = self._open.get(key)
        if cond.active and cond.flag is not None and cond.flag in self.policy.suppress_flags:
            return [self._suppressed(cond)]
        if cond.active:
            if record is None:
                return [self._raise(key, cond)]
            return [self._retrigger(record, cond, counted=not revision)]
        if record is None:
            return []
        record.last_observed = cond.at
        if record.false_since is None:
            record.false_since = cond.at
            record.state = AlertState.RECOVERING
        return self._maybe_clear(key, record, cond.at)

    def observe_late(self, cond: Condition) -> list[AlertEvent]:
        """Apply an observation older than its key's newest one: a back-filled period (补传).

        A late *false* observation changes nothing (later observations already decided the
        alert). A late *true* one is an exceedance nobody has seen yet: it updates the open
        alert of its key, or raises an alert of its own that is already recovering (the key's
        newer observations were false) and clears after the hold time. Each (time, content)
        is applied once, so a repeated back-fill emits nothing.
        """
        key: _Key = (cond.stack_id, cond.factor or "", cond.rule)
        mark = self._wm.get(key)
        if mark is None or cond.at >= mark.at:
            return self.observe(cond)
        fingerprint = _fingerprint(cond)
        seen = self._late.setdefault(key, [])
        if fingerprint in seen or not cond.active:
            return []
        self._late[key] = [*seen, fingerprint][-_LATE_MEMORY:]
        if cond.flag is not None and cond.flag in self.policy.suppress_flags:
            return [self._suppressed(cond)]
        record = self._open.get(key)
        if record is not None:
            return [self._retrigger(record, cond, counted=True)]
        event = self._raise(key, cond)
        raised = self._open[key]
        raised.state = AlertState.RECOVERING
        raised.false_since = mark.at
        raised.last_observed = mark.at
        return [event]

    def tick(self, now: datetime) -> list[AlertEvent]:
        """Clear recovering alerts whose hold time has elapsed by event time ``now``.

        Called from a timer, because detectors report a recovery once and then go quiet.
        """
        events: list[AlertEvent] = []
        for key, record in sorted(self._open.items(), key=lambda kv: kv[1].alert_id):
            if record.false_since is not None:
                events.extend(self._maybe_clear(key, record, now))
        return events

    def ack(self, alert_id: str, by: str, reason: str, at: datetime) -> list[AlertEvent]:
        """Acknowledge an open alert (it stays open). A repeated ack emits nothing."""
        record = next((r for r in self._open.values() if r.alert_id == alert_id), None)
        if record is None:
            raise AlertNotFoundError(f"alert {alert_id} is not open (unknown or cleared)")
        if record.acknowledged:
            return []
        record.acknowledged = True
        record.ack_by = by
        record.ack_reason = reason
        record.ack_at = at
        return [self._event(record, EventKind.ACK, at)]

    # -- transitions

    def _raise(self, key: _Key, cond: Condition) -> AlertEvent:
        record = AlertRecord(
            alert_id=alert_id_for(cond.stack_id, cond.factor, cond.rule, cond.at),
            stack_id=cond.stack_id,
            factor=cond.factor,
            rule=cond.rule,
            severity=cond.severity or self.policy.severity_for(cond.rule),
            state=AlertState.ACTIVE,
            first_seen=cond.at,
            last_seen=cond.at,
            last_observed=cond.at,
            count=1,
            peak_value=cond.value,
            value=cond.value,
            limit=cond.limit,
            ref_o2=cond.ref_o2,
            period_start=cond.period_start,
            period_end=cond.period_end,
            evidence=dict(cond.evidence),
        )
        self._open[key] = record
        return self._event(record, EventKind.RAISE, cond.at)

    def _retrigger(self, record: AlertRecord, cond: Condition, *, counted: bool) -> AlertEvent:
        severity = cond.severity or self.policy.severity_for(cond.rule)
        escalated = severity.rank > record.severity.rank
        if counted:
            record.count += 1
        record.state = AlertState.ACTIVE
        record.false_since = None
        record.last_seen = max(record.last_seen, cond.at)
        record.last_observed = cond.at
        record.value = cond.value
        record.peak_value = _worse(record.rule, record.peak_value, cond.value)
        record.limit = cond.limit if cond.limit is not None else record.limit
        record.ref_o2 = cond.ref_o2 if cond.ref_o2 is not None else record.ref_o2
        if cond.period_start is not None and (
            record.period_start is None or cond.period_start < record.period_start
        ):
            record.period_start = cond.period_start
        if cond.period_end is not None and (
            record.period_end is None or cond.period_end > record.period_end
        ):
            record.period_end = cond.period_end
        record.evidence = dict(cond.evidence)
        if escalated:
            record.severity = severity
            record.acknowledged = False
            record.ack_by = record.ack_reason = None
            record.ack_at = None
            return self._event(record, EventKind.ESCALATE, cond.at)
        return self._event(record, EventKind.UPDATE, cond.at)

    def _maybe_clear(self, key: _Key, record: AlertRecord, now: datetime) -> list[AlertEvent]:
        assert record.false_since is not None
        hold = self.policy.hold_for(record.rule)
        if now - record.false_since < hold:
            return []
        cleared_at = record.false_since + hold  # deterministic whatever the tick timing
        record.state = AlertState.CLEARED
        record.cleared_at = cleared_at
        del self._open[key]
        return [self._event(record, EventKind.CLEAR, cleared_at)]

    def _suppressed(self, cond: Condition) -> AlertEvent:
        title_zh, title_en = alert_title(cond.rule, cond.evidence)
        return AlertEvent(
            alert_id=str(
                uuid.uuid5(
                    ALERT_NAMESPACE,
                    "suppressed|" + alert_id_for(cond.stack_id, cond.factor, cond.rule, cond.at),
                )
            ),
            seq=1,
            kind=EventKind.SUPPRESSED,
            at=cond.at,
            stack_id=cond.stack_id,
            factor=cond.factor,
            rule=cond.rule,
            severity=cond.severity or self.policy.severity_for(cond.rule),
            state=AlertState.SUPPRESSED,
            title_zh=title_zh,
            title_en=title_en,
            first_seen=cond.at,
            last_seen=cond.at,
            count=1,
            peak_value=cond.value,
            value=cond.value,
            limit=cond.limit,
            ref_o2=cond.ref_o2,
            period_start=cond.period_start,
            period_end=cond.period_end,
            evidence=dict(cond.evidence) | {"suppressed_by_flag": cond.flag},
        )

    def _event(self, record: AlertRecord, kind: EventKind, at: datetime) -> AlertEvent:
        record.seq += 1
        title_zh, title_en = alert_title(record.rule, record.evidence)
        data = record.model_dump(exclude={"last_observed", "false_since"})
        return AlertEvent(kind=kind, at=at, title_zh=title_zh, title_en=title_en, **data)

    # -- persistence

    def to_state(self) -> dict[str, Any]:
        """JSON-safe state for a Faust table (policy is configuration, not state)."""
        state = _BookState(
            open=self.open_alerts(),
            watermarks=sorted(
                self._wm.values(), key=lambda w: (w.stack_id, w.factor or "", w.rule)
            ),
            late=[
                _LateMarks(stack_id=k[0], factor=k[1] or None, rule=k[2], fingerprints=v)
                for k, v in sorted(self._late.items())
            ],
        )
        return state.model_dump(mode="json")

    @classmethod
    def from_state(cls, state: Mapping[str, Any], policy: AlertPolicy | None = None) -> AlertBook:
        """Rebuild a book from :meth:`to_state` output (pydantic ValidationError if malformed)."""
        parsed = _BookState.model_validate(state)
        book = cls(policy)
        for record in parsed.open:
            book._open[(record.stack_id, record.factor or "", record.rule)] = record
        for mark in parsed.watermarks:
            book._wm[(mark.stack_id, mark.factor or "", mark.rule)] = mark
        for late in parsed.late:
            book._late[(late.stack_id, late.factor or "", late.rule)] = list(late.fingerprints)
        return book


# ----------------------------------------------------------------------------- adapters


def verdict_evidence(verdict: PeriodVerdict) -> dict[str, Evidence]:
    """What an inspector needs from a judged period: the deciding limit, its level and term,
    and every program's verdict on its own O2 basis (one line each)."""
    lines = []
    for v in verdict.verdicts:
        basis = "measured" if v.ref_o2 is None else f"{v.ref_o2:g} % O2"
        value = "—" if v.value is None else f"{v.value:g}"
        lines.append(
            f"{v.program or v.row_id} {v.kind.value} {v.limit:g} ({basis}): {value} "
            f"{v.term_zh or v.status.value}"
        )
    return dict(verdict.evidence) | {
        "limit": verdict.limit,
        "limit_row": verdict.limit_row,
        "limit_kind": verdict.limit_kind.value if verdict.limit_kind else None,
        "program": verdict.program,
        "level": verdict.level.value if verdict.level else None,
        "term_zh": LEVEL_TERMS[verdict.level][0] if verdict.level else None,
        "basis": verdict.basis.value if verdict.basis else None,
        "warning_level": verdict.warning_level,
        "unconfirmed_limit": verdict.unconfirmed_limit,
        "reason": verdict.reason,
        "verdicts": "; ".join(lines),
    }


def day_conditions(day: DayValue, verdict: PeriodVerdict) -> list[Condition]:
    """``day_exceedance`` of a judged valid day (event time = end of the day); an invalid,
    stopped or unjudged day observes nothing."""
    if verdict.status not in (HourStatus.COMPLIANT, HourStatus.WARNING, HourStatus.EXCEEDANCE):
        return []
    exceed = verdict.status is HourStatus.EXCEEDANCE
    return [
        Condition(
            stack_id=day.stack_id,
            factor=day.factor,
            rule=Rule.DAY_EXCEEDANCE,
            active=exceed,
            severity=verdict.severity if exceed else None,
            at=day.end,
            value=verdict.value,
            limit=verdict.limit,
            ref_o2=verdict.ref_o2,
            period_start=day.start,
            period_end=day.end,
            evidence=verdict_evidence(verdict),
            flag=day.flag,
        )
    ]


def hour_conditions(hour: HourValue, verdict: PeriodVerdict) -> list[Condition]:
    """The conditions one judged hour establishes (event time = end of the hour).

    * invalid hour → ``hour_incomplete`` true (carrying the hour's flag, so a calibration or
      maintenance hour is suppressed and recorded) and *no* observation of the limit rules: an
      invalid hour is never an exceedance, nor evidence of recovery;
    * valid hour → ``hour_incomplete`` false, and ``hour_exceedance`` / ``hour_warning`` each
      true or false according to the verdict;
    * a valid hour that could not be judged (configuration problem) observes no limit rule.
    """
    evidence = verdict_evidence(verdict)
    common: dict[str, Any] = {
        "stack_id": hour.stack_id,
        "factor": hour.factor,
        "at": hour.end,
        "period_start": hour.start,
        "period_end": hour.end,
        "evidence": evidence,
        "flag": hour.flag,
    }
    if verdict.status is HourStatus.STOPPED:
        return []  # 停运: neither an exceedance nor missing data
    if verdict.status is HourStatus.INVALID:
        return [
            Condition(
                rule=Rule.HOUR_INCOMPLETE,
                active=True,
                value=float(hour.valid_minutes),
                limit=float(MIN_VALID_MINUTES_PER_HOUR),
                **common,
            )
        ]
    out = [
        Condition(
            rule=Rule.HOUR_INCOMPLETE, active=False, value=float(hour.valid_minutes), **common
        )
    ]
    if verdict.status is HourStatus.UNJUDGED:
        return out
    limit_fields: dict[str, Any] = {
        "value": verdict.value,
        "limit": verdict.limit,
        "ref_o2": verdict.ref_o2,
    }
    exceed = verdict.status is HourStatus.EXCEEDANCE
    warn = verdict.status is HourStatus.WARNING
    out.append(
        Condition(
            rule=Rule.HOUR_EXCEEDANCE,
            active=exceed,
            severity=verdict.severity if exceed else None,
            **limit_fields,
            **common,
        )
    )
    out.append(
        Condition(
            rule=Rule.HOUR_WARNING,
            active=warn,
            severity=Severity.WARNING if warn else None,
            **limit_fields,
            **common,
        )
    )
    return out


def provisional_condition(
    stack_id: str,
    factor: str,
    snapshot: RollingSnapshot,
    limit_mg_m3: float,
    *,
    ref_o2: float | None = None,
    window: timedelta = timedelta(minutes=60),
    limit_kind: str | None = None,
) -> Condition | None:
    """``provisional_exceedance`` from a rolling mean; None until enough minutes (no evidence).

    The rolling mean must be of minute values on the limit's basis (converted at ``ref_o2``,
    or measured when the limit has no reference O2).
    """
    if not snapshot.ready or snapshot.mean is None:
        return None
    return Condition(
        stack_id=stack_id,
        factor=factor,
        rule=Rule.PROVISIONAL_EXCEEDANCE,
        active=exact(snapshot.mean) > exact(limit_mg_m3),
        at=snapshot.at,
        value=snapshot.mean,
        limit=limit_mg_m3,
        ref_o2=ref_o2,
        period_start=snapshot.at - window,
        period_end=snapshot.at,
        evidence={
            "rolling_mean": snapshot.mean,
            "valid_minutes": snapshot.count,
            "limit_kind": limit_kind,
        },
    )
