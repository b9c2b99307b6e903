"""HJ 212-2025 loggers in the worker: encryption refusals alert, re-sent data back-fills."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import SecretStr

from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames
from stackwatch.models import EventKind, RawFrame, Reading, Rule, Verdict
from stackwatch.normalise import NormaliseConfig, reading_from_raw, security_event
from stackwatch.processor import Outputs, StackProcessor
from stackwatch.registry import Sm4Key, StackInfo
from stackwatch.stack_limits import StackLimits

MN = "010000A8900016F000169DC0"
SO2 = "a21026"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=CST)
STACK = StackInfo(stack_id="k", mn=MN, password="123456", sector="cement", process="kiln_tail",
                  encryption="required", sm4_keys=[Sm4Key(key=SecretStr("30" * 16))])
NO_LIMITS = StackLimits(ref_o2=None)
MIN = timedelta(minutes=1)


def minute(start: datetime, so2: float, *, resend: bool = False, rx: datetime | None = None,
           verdict: Verdict = Verdict.ACCEPTED, reasons: tuple[str, ...] = ()) -> RawFrame:
    (text,) = build_frames("2051", MN, "123456", start, {SO2: {"Avg": so2}}, version="2025",
                           now=start, resend=resend)
    return RawFrame(text=text.rstrip("\r\n"), received_at=rx or start + MIN, peer="p", mn=MN,
                    verdict=verdict, reasons=list(reasons))


def read(raw: RawFrame) -> Reading:
    result = reading_from_raw(raw, {MN: STACK}.get, lambda _s, _t: None)
    assert isinstance(result, Reading), result
    return result


def test_a_clear_upload_refused_as_not_encrypted_raises_one_alert_until_fixed() -> None:
    # The gateway refused two clear uploads (policy: required). Each becomes a security event
    # of the stack: one 数据加密异常 alert. An accepted (encrypted) upload ends it.
    proc = StackProcessor("k")
    out = Outputs()
    for i in range(2):
        refused = minute(T0 + i * MIN, 5.0, verdict=Verdict.REJECTED, reasons=("not_encrypted",))
        event = security_event(refused, {MN: STACK}.get, NormaliseConfig())
        assert event is not None and event.security == "not_encrypted" and event.values == {}
        out.extend(proc.on_reading(event, NO_LIMITS))
    accepted = minute(T0 + 2 * MIN, 5.0)  # what the gateway passes on once it opened it
    out.extend(proc.on_reading(read(accepted), NO_LIMITS))
    events = [(e.rule, e.kind) for e in out.alerts if e.rule is Rule.ENCRYPTION]
    assert events == [(Rule.ENCRYPTION, EventKind.RAISE), (Rule.ENCRYPTION, EventKind.CLEAR)]
    (raise_event,) = [e for e in out.alerts if e.kind is EventKind.RAISE]
    assert raise_event.evidence["reason"] == "not_encrypted"
    # Other refusals (a bad CRC) are not security events.
    crc = minute(T0, 5.0, verdict=Verdict.REJECTED, reasons=("bad_crc",))
    assert security_event(crc, {MN: STACK}.get, NormaliseConfig()) is None


def test_a_resent_minute_back_fills_its_hour_without_moving_the_clock() -> None:
    # Hour 10:00: 40 minutes on time, then the stack runs to 11:40; its 10:40–10:59 minutes
    # come back with RF=1 at 11:41 (re-sent after the logger found the gap). The hour was
    # final (11:33) and archived: it is recomputed as revision 1 with 60 minutes. The re-sent
    # records never move the stack's clock back, nor feed its cadence.
    proc = StackProcessor("k")
    out = Outputs()
    for i in [*range(40), *range(60, 100)]:
        out.extend(proc.on_reading(read(minute(T0 + i * MIN, 20.0)), NO_LIMITS))
    clock = proc.clock_event
    gaps = list(proc.cadence_min.gaps)
    for i in range(40, 60):
        resent = read(minute(T0 + i * MIN, 20.0, resend=True, rx=T0 + 101 * MIN))
        assert resent.resent
        out.extend(proc.on_reading(resent, NO_LIMITS))
    hours = [a for a in out.aggregates if a.period == "hour" and a.period_start == T0]
    assert (hours[0].revision, hours[0].valid) == (0, False)
    assert (hours[-1].revision, hours[-1].valid, hours[-1].coverage_minutes) == (20, True, 60.0)
    assert proc.clock_event == clock and proc.cadence_min.gaps == gaps
