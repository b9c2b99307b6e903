"""The data logger (数采仪) model: samples the analysers, aggregates, and writes HJ 212 frames.

A field logger computes its own minute/hour/day values; this model does the same, with the
rules of HJ 212-2017 App. C/D as *device configuration* (`LoggerConfig`) so a faulty logger can
be made to disagree with the platform:

* instantaneous samples every `sample_interval_s` (≤ 5 s, App. D.2);
* 2011 real-time data every `rtd_interval_s` (the sample at that instant, `-Rtd`/`-ZsRtd`);
* 2051 minute data every `min_interval_min`: mean of the valid (N) samples, valid if there are
  ≥ `min_valid_samples` (12) of them; flag N if more than `normal_fraction` (75 %) of the
  samples were N, otherwise the dominant invalid flag (C during calibration, …);
* 2061 hour data from the minute values (≥ 45 valid minutes), 2031 day data from the hours
  (≥ 20 valid hours), same flag rule; `hourly_bias` makes the hour disagree with its minutes.

`DataTime` of an aggregate is its interval start (App. C); intervals are Beijing time.
Everything is a pure function of (stack, seed, events, origin): `StackSimulator.frames_between`
regenerates from the scenario origin, so tests can be exact.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulators.events import Event, ReadingEvents, frame_events
from simulators.plants import FLOW, O2, POLLUTANTS, PlantModel, ProcessProfile, Reading
from stackwatch.beijing_time import CST
from stackwatch.hj212 import DecodedFrame

Cn = Literal["2011", "2051", "2061", "2031"]
ALL_CNS: tuple[Cn, ...] = ("2011", "2051", "2061", "2031")
_VALID_MIN_INTERVALS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)  # HJ 212-2017 Table 4


class LoggerConfig(BaseModel):
    """Behaviour of one data logger (defaults: a correct HJ 212-2017 logger)."""

    model_config = ConfigDict(extra="forbid")

    sample_interval_s: int = Field(default=5, ge=1, le=5, description="Analyser sampling (≤ 5 s).")
    rtd_interval_s: int = Field(default=30, ge=30, le=3600, description="RtdInterval (Table 4).")
    min_interval_min: int = Field(default=1, description="MinInterval (Table 4).")
    uploads: list[Cn] = Field(
        default_factory=lambda: list(ALL_CNS),
        description="CNs uploaded; ['2011'] = 'realtime only', as many older loggers do.",
    )
    ack: bool = Field(default=True, description="Flag.A=1: wait for the 9014 data answer.")
    version: Literal["2005", "2017", "2025"] = Field(
        default="2017",
        description="Protocol: 2005 = the HJ/T 212-2005 dialect of real provincial loggers "
        "(no QN/Flag, 2005 codes, aggregates stamped at their interval end, no answers); "
        "2017; 2025 (with `sm4_key`, data areas SM4-encrypted).",
    )
    sm4_key: str | None = Field(
        default=None, description="HJ 212-2025 SM4 key, 32 hex digits (a secret)."
    )
    st: str = "31"
    min_valid_samples: int = Field(default=12, ge=1)
    min_valid_minutes: int = Field(default=45, ge=1, description="Per hour of 1-min values.")
    min_valid_hours: int = Field(default=20, ge=1)
    normal_fraction: float = Field(default=0.75, ge=0, lt=1, description="The > 75 % rule.")
    hourly_bias: float = Field(
        default=0.0, ge=-0.9, le=10, description="Hour -Avg = mean of minutes × (1 + bias)."
    )

    @model_validator(mode="after")
    def _check(self) -> LoggerConfig:
        if 60 % self.sample_interval_s:
            raise ValueError("sample_interval_s must divide 60")
        if self.rtd_interval_s % self.sample_interval_s:
            raise ValueError("rtd_interval_s must be a multiple of sample_interval_s")
        if self.min_interval_min not in _VALID_MIN_INTERVALS:
            raise ValueError(f"min_interval_min must be one of {_VALID_MIN_INTERVALS}")
        if not self.uploads:
            raise ValueError("uploads must list at least one CN")
        if self.sm4_key is not None:
            from stackwatch.hj212 import parse_key

            parse_key(self.sm4_key)
            if self.version != "2025":
                raise ValueError("sm4_key needs version 2025 (HJ 212-2025 encryption)")
        return self


@dataclass(frozen=True)
class SimFrame:
    """One HJ 212 frame as the logger sends it, at simulated time `at`."""

    at: datetime
    stack_id: str
    mn: str
    cn: str
    text: str
    qn: str | None
    data_time: datetime
    ack: bool
    tags: tuple[str, ...] = ()


@dataclass
class Agg:
    """One factor's aggregate over an interval (device-side)."""

    avg: float
    min: float
    max: float
    flag: str
    valid: bool
    cou: float | None = None
    zs_avg: float | None = None
    zs_min: float | None = None
    zs_max: float | None = None


_CST_OFFSET = 8 * 3600


def _local(key: int) -> datetime:
    """Beijing-time seconds since the epoch → aware datetime in CST."""
    return datetime.fromtimestamp(key - _CST_OFFSET, CST)


@dataclass
class _Bucket:
    key: int
    """Interval start in Beijing-time seconds since the epoch."""
    samples: dict[str, list[tuple[float, str, float | None]]] = field(default_factory=dict)
    parts: dict[str, list[Agg]] = field(default_factory=dict)


def aggregate_flag(flags: list[str], n_valid: int, min_valid: int, normal_fraction: float) -> str:
    """HJ 212-2017 App. C flue-gas rule: N if > `normal_fraction` of constituents are N (and
    enough are valid), otherwise the dominant invalid flag (D when there is none)."""
    if not flags:
        return "D"
    normal = sum(1 for f in flags if f == "N")
    if normal / len(flags) > normal_fraction and n_valid >= min_valid:
        return "N"
    invalid = Counter(f for f in flags if f != "N")
    return invalid.most_common(1)[0][0] if invalid else "D"


def _mean(xs: list[float]) -> float:
    return math.fsum(xs) / len(xs)


class DataLogger:
    """Aggregates one stack's samples into HJ 212 data records (no transport concerns)."""

    def __init__(self, config: LoggerConfig, factors: tuple[str, ...], ref_o2: float | None):
        self.config = config
        self.factors = factors
        self.ref_o2 = ref_o2
        self._minute: _Bucket | None = None
        self._hour: _Bucket | None = None
        self._day: _Bucket | None = None

    def zs(self, code: str, value: float, o2: float | None) -> float | None:
        """Reference-O2 conversion, HJ 212-2017 App. D eq. 28; O2 capped at 20.9 % (start-up
        O2 near 21 % would otherwise divide by ~0)."""
        if self.ref_o2 is None or code not in POLLUTANTS or o2 is None:
            return None
        return value * (21.0 - self.ref_o2) / (21.0 - min(o2, 20.9))

    def feed(self, r: Reading) -> Iterator[tuple[str, datetime, dict[str, Agg] | Reading]]:
        """Process one sample; yields (cn, data_time, payload) records that became due.

        Interval arithmetic runs on integer Beijing-time seconds (fast, and no DST in China).
        """
        cfg = self.config
        ts = int(r.at.timestamp()) + _CST_OFFSET
        if ts % cfg.rtd_interval_s == 0:
            yield "2011", r.at.astimezone(CST), r
        width = cfg.min_interval_min * 60
        key = ts - ts % width
        if self._minute is None or self._minute.key != key:
            self._minute = _Bucket(key)
        o2 = r.values.get(O2)
        samples = self._minute.samples
        for code, value in r.values.items():
            row = (value, r.flags.get(code, "N"), self.zs(code, value, o2))
            if code in samples:
                samples[code].append(row)
            else:
                samples[code] = [row]
        nxt = ts + cfg.sample_interval_s
        if nxt - nxt % width == key:
            return
        minute = self._close_minute(self._minute)
        self._minute = None
        yield "2051", _local(key), minute
        hour_key = ts - ts % 3600
        if self._hour is None or self._hour.key != hour_key:
            self._hour = _Bucket(hour_key)
        _add_parts(self._hour, minute)
        if nxt - nxt % 3600 == hour_key:
            return
        per_hour = 60 // cfg.min_interval_min
        need = math.ceil(cfg.min_valid_minutes * per_hour / 60)
        hour = self._close(self._hour, need, bias=cfg.hourly_bias)
        self._hour = None
        yield "2061", _local(hour_key), hour
        day_key = ts - ts % 86400
        if self._day is None or self._day.key != day_key:
            self._day = _Bucket(day_key)
        _add_parts(self._day, hour)
        if nxt - nxt % 86400 == day_key:
            return
        day = self._close(self._day, cfg.min_valid_hours, bias=0.0)
        self._day = None
        yield "2031", _local(day_key), day

    def _close_minute(self, bucket: _Bucket) -> dict[str, Agg]:
        cfg = self.config
        seconds = cfg.min_interval_min * 60
        out: dict[str, Agg] = {}
        for code, rows in bucket.samples.items():
            valid = [row for row in rows if row[1] == "N"]
            use = valid or rows
            values = [v for v, _, _ in use]
            flag = aggregate_flag([f for _, f, _ in rows], len(valid), cfg.min_valid_samples,
                                  cfg.normal_fraction)
            agg = Agg(avg=_mean(values), min=min(values), max=max(values), flag=flag,
                      valid=flag == "N")
            zs = [z for _, _, z in use if z is not None]
            if zs:
                agg.zs_avg, agg.zs_min, agg.zs_max = _mean(zs), min(zs), max(zs)
            out[code] = agg
        flow = out.get(FLOW)
        for code, agg in out.items():
            if code == FLOW:
                agg.cou = agg.avg * seconds  # m³ over the interval
            elif code in POLLUTANTS and flow is not None:
                agg.cou = agg.avg * flow.avg * seconds * 1e-6  # mg/m³ × m³ → kg
        return out

    def _close(self, bucket: _Bucket, need: int, *, bias: float) -> dict[str, Agg]:
        cfg = self.config
        out: dict[str, Agg] = {}
        for code, parts in bucket.parts.items():
            valid = [p for p in parts if p.valid]
            use = valid or parts
            flag = aggregate_flag([p.flag for p in parts], len(valid), need, cfg.normal_fraction)
            scale = 1.0 + bias
            agg = Agg(
                avg=_mean([p.avg for p in use]) * scale,
                min=min(p.min for p in use),
                max=max(p.max for p in use),
                flag=flag,
                valid=flag == "N",
            )
            cous = [p.cou for p in parts if p.cou is not None]
            if cous:
                agg.cou = math.fsum(cous)
            zs = [p for p in use if p.zs_avg is not None]
            if zs:
                agg.zs_avg = _mean([p.zs_avg for p in zs if p.zs_avg is not None]) * scale
                agg.zs_min = min(p.zs_min for p in zs if p.zs_min is not None)
                agg.zs_max = max(p.zs_max for p in zs if p.zs_max is not None)
            out[code] = agg
        return out


def _add_parts(bucket: _Bucket, aggs: dict[str, Agg]) -> None:
    for code, agg in aggs.items():
        bucket.parts.setdefault(code, []).append(agg)


_DECIMALS = {"a00000": 2, "a01011": 2, "a01012": 1, "a01013": 3, "a01014": 1, "a19001": 2}


def _r(code: str, value: float) -> float:
    return round(value, _DECIMALS.get(code, 3))


def record_values(
    cn: str, payload: dict[str, Agg] | Reading, logger: DataLogger
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """HJ 212 CP values {code: {suffix: value}} and flags {code: flag} of one record."""
    values: dict[str, dict[str, float]] = {}
    flags: dict[str, str] = {}
    if isinstance(payload, Reading):
        o2 = payload.values.get(O2)
        for code, value in payload.values.items():
            item = {"Rtd": _r(code, value)}
            zs = logger.zs(code, value, o2)
            if zs is not None:
                item["ZsRtd"] = _r(code, zs)
            values[code] = item
            flags[code] = payload.flags.get(code, "N")
        return values, flags
    for code, agg in payload.items():
        item = {"Min": _r(code, agg.min), "Avg": _r(code, agg.avg), "Max": _r(code, agg.max)}
        if agg.zs_avg is not None and agg.zs_min is not None and agg.zs_max is not None:
            item.update(ZsMin=_r(code, agg.zs_min), ZsAvg=_r(code, agg.zs_avg),
                        ZsMax=_r(code, agg.zs_max))
        if agg.cou is not None:
            item["Cou"] = round(agg.cou, 3)
        values[code] = item
        flags[code] = agg.flag
    return values, flags


def _qn(at: datetime, seq: int) -> str:
    """QN = YYYYMMDDhhmmsszzz (HJ 212-2017 Table 3); zzz keeps QNs unique within a second."""
    return at.astimezone(CST).strftime("%Y%m%d%H%M%S") + f"{seq % 1000:03d}"


def corrupt_crc(text: str) -> str:
    """The same frame with its CRC changed, so a receiver must reject it (App. A)."""
    body = text.rstrip("\r\n")
    crc = body[-4:]
    flipped = f"{(int(crc, 16) ^ 0x0001) if _is_hex(crc) else 0:04X}"
    return body[:-4] + flipped + text[len(body):]


def _is_hex(s: str) -> bool:
    try:
        int(s, 16)
    except ValueError:
        return False
    return True


class StackSimulator:
    """One stack + its data logger: a pure, deterministic generator over simulated time."""

    def __init__(
        self,
        *,
        stack_id: str,
        mn: str,
        password: str,
        profile: ProcessProfile,
        seed: int,
        origin: datetime,
        logger: LoggerConfig | None = None,
        events: list[Event] | None = None,
        ref_o2: float | None = None,
        baselines: dict[str, float] | None = None,
        flow_m3h: float | None = None,
    ) -> None:
        if origin.tzinfo is None:
            raise ValueError("origin must be an aware datetime")
        if origin.second or origin.microsecond:
            raise ValueError(f"origin {origin.isoformat()} must be on a whole minute "
                             "(loggers sample on the clock grid)")
        self.stack_id = stack_id
        self.mn = mn
        self.password = password
        self.profile = profile
        self.seed = seed
        self.origin = origin
        self.config = logger or LoggerConfig()
        self.events = [e for e in (events or []) if e.applies_to(stack_id)]
        self.ref_o2 = ref_o2
        self.baselines = baselines
        self.flow_m3h = flow_m3h
        self._step = timedelta(seconds=self.config.sample_interval_s)
        self._reset()

    def _reset(self) -> None:
        self._cursor = self.origin
        self._gen = self._run()

    def _first_sample_at_or_after(self, t: datetime) -> datetime:
        if t <= self.origin:
            return self.origin
        steps = math.ceil((t - self.origin) / self._step)
        return self.origin + steps * self._step

    def samples_between(self, t0: datetime, t1: datetime) -> Iterator[Reading]:
        """The readings the logger samples in [t0, t1), after events (fresh, pure)."""
        model = PlantModel(self.profile, self.seed, baselines=self.baselines,
                           flow_m3h=self.flow_m3h)
        events = ReadingEvents(self.events, self.origin, self.ref_o2)
        t = self.origin
        while t < t1:
            reading = events.apply(model.read(t))
            if t >= t0:
                yield reading
            t += self._step

    def frames_between(self, t0: datetime, t1: datetime) -> Iterator[SimFrame]:
        """Frames produced while sampling [t0, t1): real-time frames at their sample time,
        aggregates at their interval end. Chunked calls continue where the last one ended;
        an earlier t0 regenerates from the origin, so the result never depends on history."""
        start = self._first_sample_at_or_after(t0)
        if start < self._cursor:
            self._reset()
        while self._cursor < t1:
            at = self._cursor
            frames = next(self._gen)
            self._cursor = at + self._step
            if at >= start:
                yield from frames

    def history(self, cn: str, begin: datetime, end: datetime) -> list[SimFrame]:
        """The uploads of `cn` whose DataTime lies in [begin, end], as the logger re-sends
        them when the platform asks (RF=1 on HJ 212-2025): regenerated from the origin, so
        exactly what it measured, whatever the link did then."""
        copy = StackSimulator(
            stack_id=self.stack_id, mn=self.mn, password=self.password, profile=self.profile,
            seed=self.seed, origin=self.origin, logger=self.config, events=self.events,
            ref_o2=self.ref_o2, baselines=self.baselines, flow_m3h=self.flow_m3h,
        )
        copy._gen = copy._run(resend=True)
        span = _interval(cn, self.config) if cn != "2011" else timedelta(0)
        frames: list[SimFrame] = []
        for frame in copy.frames_between(begin, end + span + timedelta(minutes=1)):
            if frame.cn == cn and begin <= frame.data_time <= end:
                frames.append(frame)
        return frames

    async def serve_history(self, request: DecodedFrame) -> list[str]:
        """Answer a platform's history request: 9011 (will do), the uploads, 9012 (done)."""
        from stackwatch.hj212 import build_answer, parse_datatime

        begin = parse_datatime(request.cp.get("BeginTime", ""))
        end = parse_datatime(request.cp.get("EndTime", ""))
        if begin is None or end is None or request.cn is None:
            return [build_answer(request, "9011", 3)]  # 3: bad request condition (Table 6)
        frames = self.history(request.cn, begin.replace(tzinfo=CST), end.replace(tzinfo=CST))
        return [build_answer(request, "9011"), *(f.text for f in frames),
                build_answer(request, "9012")]

    def _run(self, resend: bool = False) -> Iterator[list[SimFrame]]:
        from stackwatch.hj212 import build_frames, parse_key

        model = PlantModel(self.profile, self.seed, baselines=self.baselines,
                           flow_m3h=self.flow_m3h)
        events = ReadingEvents(self.events, self.origin, self.ref_o2)
        logger = DataLogger(self.config, self.profile.factors, self.ref_o2)
        transport = frame_events(self.events, self.stack_id)
        held: list[SimFrame] = []
        held_until: datetime | None = None
        backlog: list[SimFrame] = []
        backlog_until: datetime | None = None
        counters: dict[int, int] = {}
        last_second: datetime | None = None
        seq = 0
        key = parse_key(self.config.sm4_key) if self.config.sm4_key else None
        end_labels = self.config.version == "2005"  # as most real 2005-dialect loggers stamp
        t = self.origin
        while True:
            reading = events.apply(model.read(t))
            out: list[SimFrame] = []
            for cn, data_time, payload in logger.feed(reading):
                if cn not in self.config.uploads:
                    continue
                send_at = t if cn == "2011" else data_time + _interval(cn, self.config)
                if end_labels and cn != "2011":
                    data_time = send_at
                active_w = [] if resend else [
                    (e, w) for e in transport if (w := e.window(self.origin, send_at)) is not None
                ]
                loss = [(e, w) for e, w in active_w if e.kind == "comm_loss"]
                if loss and not all(e.backfill for e, _ in loss):
                    continue  # link down, frames lost
                skew = sum((e.skew for e, _ in active_w if e.kind == "clock_skew"), timedelta(0))
                clock = send_at + skew
                second = clock.replace(microsecond=0)
                seq = seq + 1 if second == last_second else 0
                last_second = second
                values, flags = record_values(cn, payload, logger)
                texts = build_frames(
                    cn, self.mn, self.password, data_time + skew, values, flags=flags,
                    st=self.config.st, qn=_qn(clock, seq), ack=self.config.ack,
                    version=self.config.version, now=clock,
                    resend=resend and self.config.version == "2025", sm4_key=key,
                    field_2005=self.config.version == "2005",
                )
                tags: tuple[str, ...] = ("skewed",) if skew else ()
                record: list[SimFrame] = []
                ack = self.config.ack and self.config.version != "2005"
                qn = None if self.config.version == "2005" else _qn(clock, seq)
                for text in texts:
                    frame = SimFrame(at=send_at, stack_id=self.stack_id, mn=self.mn, cn=cn,
                                     text=text, qn=qn, data_time=data_time + skew,
                                     ack=ack, tags=tags)
                    duplicate = False
                    for e in (e for e, _ in active_w if e.kind in ("corrupt", "duplicate")):
                        n = counters[id(e)] = counters.get(id(e), 0) + 1
                        if (n - 1) % e.every:
                            continue
                        if e.kind == "corrupt":
                            frame = replace(frame, text=corrupt_crc(frame.text),
                                            tags=(*frame.tags, "corrupt"))
                        else:
                            duplicate = True
                    record.append(frame)
                    if duplicate:
                        record.append(replace(frame, tags=(*frame.tags, "duplicate")))
                if loss:  # link down, the logger stores the frames and re-sends them later (补传)
                    backlog.extend(record)
                    backlog_until = max(w[1] for _, w in loss)
                    continue
                ooo = [w[1] for e, w in active_w if e.kind == "out_of_order"]
                if ooo:
                    held.extend(record)
                    held_until = max([*ooo, held_until] if held_until else ooo)
                else:
                    out.extend(record)
            if held and held_until is not None and t + self._step >= held_until:
                release = t + self._step
                out.extend(replace(f, at=max(f.at, release), tags=(*f.tags, "out_of_order"))
                           for f in reversed(held))
                held = []
                held_until = None
            if backlog and backlog_until is not None and t + self._step >= backlog_until:
                release = t + self._step
                out[:0] = [replace(f, at=release, tags=(*f.tags, "backfill")) for f in backlog]
                backlog = []
                backlog_until = None
            yield out
            t += self._step


def _interval(cn: str, config: LoggerConfig) -> timedelta:
    if cn == "2051":
        return timedelta(minutes=config.min_interval_min)
    if cn == "2061":
        return timedelta(hours=1)
    return timedelta(days=1)
