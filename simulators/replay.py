"""Replay recorded HJ 212 traffic and CSV exports to a gateway, as the original loggers would.

Inputs:

* HJ 212 logs: one frame per line, or raw captures with sticky packets (粘包) and garbage —
  cut with `stackwatch.hj212` framing, so what a gateway would see is exactly what is sent;
* CSV exports with columns `mn` (or `stack` + a registry), `time`, `factor`, `value` and
  optional `flag`, `cn` (default 2011), `suffix` (default Rtd for 2011, Avg otherwise), `pw`:
  rows sharing (MN, CN, time) become one frame built with `build_frames`.

Frames are sent verbatim — including corrupt ones, which the gateway must reject with a
reason — or, when shifting time, re-framed with DataTime/QN moved by the shift and length and
CRC recomputed (HJ 212-2017 §6.3.1, App. A), keeping the original dialect (2005 codes, no QN).
Each MN gets its own TCP connection (bounded concurrency), paced at `speed`× or `fast`.

Timing: captures record no receive time, so a frame's replay time is a timeline built from
plausible DataTimes (`assign_timeline`); frames without one, or with a logger clock far off
(a year-2000 DataTime), inherit the current timeline.
"""

from __future__ import annotations

import asyncio
import csv
import re
import statistics
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from simulators.client import LoggerClient
from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames, crc16, decode_frame, split_frames
from stackwatch.logger_profile import profile
from stackwatch.registry import StackInfo, StackRegistry

PLAUSIBLE = timedelta(hours=6)
WINDOW = 31
_AGGREGATE_CNS = frozenset({"2051", "2061", "2031"})


class ReplayError(ValueError):
    """A replay input cannot be read at all (individual bad rows/frames are reported)."""


@dataclass(frozen=True)
class ReplayFrame:
    """One unit of a recording, ready to send (`wire` includes the CRLF)."""

    seq: int
    wire: bytes
    ok: bool
    mn: str | None = None
    pw: str | None = None
    cn: str | None = None
    qn: str | None = None
    ack: bool = False
    data_time: datetime | None = None
    at: datetime | None = None
    reason: str | None = None


@dataclass
class ReplayLog:
    """A loaded recording: frames in file order plus the problems found while reading."""

    source: str
    frames: list[ReplayFrame]
    errors: list[str] = field(default_factory=list)

    @property
    def mns(self) -> list[str]:
        """MNs in order of first appearance."""
        return list(dict.fromkeys(f.mn for f in self.frames if f.mn))

    @property
    def start(self) -> datetime | None:
        """Timeline time of the first frame."""
        return next((f.at for f in self.frames if f.at is not None), None)


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=CST)


def read_h212(data: bytes, *, source: str = "<bytes>") -> ReplayLog:
    """Cut a capture into frames (sticky packets, garbage and bad CRCs included, verbatim)."""
    frames: list[ReplayFrame] = []
    errors: list[str] = []
    for seq, unit in enumerate(split_frames(data)):
        raw = unit.raw.strip(b"\r\n")
        if not raw:
            continue
        wire = raw + b"\r\n"
        if unit.reason == "encrypted":
            # HJ 212-2025: only the gateway, with the logger's key, can check it. Its header
            # is clear, so it is sent as any other upload (its DataTime is not readable).
            decoded = decode_frame(raw)
            frames.append(ReplayFrame(
                seq, wire, True, mn=decoded.mn, pw=decoded.pw, cn=decoded.cn, qn=decoded.qn,
                ack=decoded.ack_requested and decoded.qn is not None,
            ))
            continue
        if not unit.ok:
            decoded = decode_frame(raw)
            errors.append(f"frame {seq}: {unit.reason}: {unit.detail}")
            frames.append(ReplayFrame(seq, wire, False, mn=decoded.mn, pw=decoded.pw,
                                      cn=decoded.cn, reason=unit.reason))
            continue
        decoded = decode_frame(raw)
        frames.append(ReplayFrame(
            seq, wire, True, mn=decoded.mn, pw=decoded.pw, cn=decoded.cn, qn=decoded.qn,
            ack=decoded.ack_requested and decoded.qn is not None,
            data_time=_aware(decoded.data_time),
        ))
    return ReplayLog(source, assign_timeline(frames), errors)


def assign_timeline(frames: list[ReplayFrame]) -> list[ReplayFrame]:
    """Give every frame a replay time (see module doc).

    The timeline is the running median of the last `WINDOW` sampling-instant DataTimes
    (real-time/state frames; aggregates carry their interval *start*), never moving backwards.
    The median ignores the odd logger whose clock is minutes, hours or years off, and follows
    a gap in the recording once half the window is past it. DataTimes more than `PLAUSIBLE`
    from the timeline are left out of the window.
    """
    window: deque[datetime] = deque(maxlen=WINDOW)
    current: datetime | None = None
    seed = [f.data_time for f in frames[:WINDOW] if f.data_time is not None
            and f.cn not in _AGGREGATE_CNS]
    if seed:
        median = sorted(seed)[len(seed) // 2]
        current = min(d for d in seed if abs(d - median) <= timedelta(minutes=10))
    out = []
    for f in frames:
        d = f.data_time
        if (d is not None and current is not None and f.cn not in _AGGREGATE_CNS
                and abs(d - current) <= PLAUSIBLE):
            window.append(d)
            median = sorted(window)[len(window) // 2]
            current = max(current, median)
        out.append(replace(f, at=current))
    return out


_TIME_FIELDS = re.compile(rb"(DataTime=)(\d{14})(\d{3})?|(QN=)(\d{14})(\d{3})")


def shift_wire(wire: bytes, offset: timedelta) -> bytes:
    """The frame with DataTime and QN moved by `offset`, length and CRC recomputed."""
    raw = wire.rstrip(b"\r\n")
    segment = raw[6:-4]

    def move(m: re.Match[bytes]) -> bytes:
        key = m.group(1) or m.group(4)
        digits = m.group(2) or m.group(5)
        millis = m.group(3) if m.group(1) else m.group(6)
        try:
            dt = datetime.strptime(digits.decode(), "%Y%m%d%H%M%S") + offset
        except ValueError:
            return m.group(0)
        return key + dt.strftime("%Y%m%d%H%M%S").encode() + (millis or b"")

    shifted = _TIME_FIELDS.sub(move, segment)
    return b"##%04d" % len(shifted) + shifted + b"%04X" % crc16(shifted) + b"\r\n"


def _parse_time(text: str) -> datetime:
    text = text.strip()
    if re.fullmatch(r"\d{14}(\d{3})?", text):
        return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=CST)
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=CST)


def read_csv(
    text: str,
    *,
    source: str = "<csv>",
    registry: StackRegistry | None = None,
    password: str = "123456",
    ack: bool = True,
) -> ReplayLog:
    """Build frames from a CSV export; bad rows are skipped and reported with their line."""
    reader = csv.DictReader(text.splitlines())
    cols = {c.strip().lower() for c in (reader.fieldnames or [])}
    missing = {"time", "factor", "value"} - cols
    if missing or not cols & {"mn", "stack"}:
        need = sorted(missing) + ([] if cols & {"mn", "stack"} else ["mn or stack"])
        raise ReplayError(f"{source}: CSV lacks column(s) {', '.join(need)}")
    errors: list[str] = []
    groups: dict[tuple[str, str, datetime], list[tuple[str, str, float, str | None]]] = (
        defaultdict(list))
    pws: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        try:
            mn = row.get("mn") or ""
            if not mn:
                stack = registry.by_id(row.get("stack", "")) if registry else None
                if stack is None:
                    raise ValueError(f"unknown stack {row.get('stack')!r} (give mn or a registry)")
                mn = stack.mn
                if stack.password is not None:
                    pws[mn] = stack.password.get_secret_value()
            cn = row.get("cn") or "2011"
            suffix = row.get("suffix") or ("Rtd" if cn in ("2011", "2021") else "Avg")
            at = _parse_time(row["time"])
            value = float(row["value"])
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError("value is not finite")
            factor = row["factor"]
            if not factor:
                raise ValueError("empty factor")
            if row.get("pw"):
                pws[mn] = row["pw"]
            groups[(mn, cn, at)].append((factor, suffix, value, row.get("flag") or None))
        except (ValueError, KeyError) as err:
            errors.append(f"{source}:{line}: {err}")
    frames: list[ReplayFrame] = []
    for (mn, cn, at), items in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][0])):
        values: dict[str, dict[str, float]] = defaultdict(dict)
        flags: dict[str, str] = {}
        for factor, suffix, value, flag in items:
            values[factor][suffix] = value
            if flag:
                flags[factor] = flag
        qn = at.astimezone(CST).strftime("%Y%m%d%H%M%S") + f"{len(frames) % 1000:03d}"
        try:
            texts = build_frames(cn, mn, pws.get(mn, password), at, dict(values),
                                 flags=flags or None, qn=qn, ack=ack, now=at)
        except ValueError as err:
            errors.append(f"{source}: {mn} {cn} {at.isoformat()}: {err}")
            continue
        for text in texts:
            frames.append(ReplayFrame(len(frames), text.encode("utf-8"), True, mn=mn,
                                      pw=pws.get(mn, password), cn=cn, qn=qn, ack=ack,
                                      data_time=at, at=at))
    return ReplayLog(source, frames, errors)


def load_replay(path: Path, *, registry: StackRegistry | None = None) -> ReplayLog:
    """Load an HJ 212 log/capture or (by `.csv` suffix) a CSV export."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ReplayError(f"cannot read {path}: {err}") from None
    if path.suffix.lower() == ".csv":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ReplayError(f"{path}: CSV is not UTF-8: {err}") from None
        return read_csv(text, source=str(path), registry=registry)
    return read_h212(data, source=str(path))


def load_replays(paths: list[Path], *, registry: StackRegistry | None = None) -> ReplayLog:
    """Load consecutive recordings (e.g. hour files of one capture) as one replay."""
    if not paths:
        raise ReplayError("no recording given")
    if len(paths) == 1:
        return load_replay(paths[0], registry=registry)
    if any(p.suffix.lower() == ".csv" for p in paths):
        raise ReplayError("CSV exports are replayed one file at a time")
    chunks: list[bytes] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ReplayError(f"cannot read {path}: {err}") from None
        chunks.append(data if data.endswith(b"\r\n") else data + b"\r\n")
    return read_h212(b"".join(chunks), source=f"{paths[0].name} (+{len(paths) - 1} more)")


def registry_for(log: ReplayLog) -> StackRegistry:
    """A registry of every MN in a recording, with the settings its traffic shows.

    Sector and process are unknown for foreign captures: they are the placeholders
    industrial_furnace/other, marked `auto` (no limit is judged until an operator states the
    real ones). System type, minute and real-time intervals, interval label and pressure unit
    are inferred from each logger's own frames (`stackwatch.logger_profile`).
    """
    decoded = (decode_frame(f.wire.rstrip(b"\r\n")) for f in log.frames if f.ok)
    stacks = []
    for p in profile(decoded):
        if not 1 <= len(p.mn) <= 24:
            continue
        stacks.append(
            StackInfo(
                stack_id=f"auto-{p.mn}", mn=p.mn,
                password=SecretStr(p.password) if p.password else None,
                accept_without_password=not p.password,  # it sends none: opt in explicitly
                name=f"auto: {p.mn}", plant=f"auto: replay of {Path(log.source).name}",
                sector="industrial_furnace", process="other", auto=True,
                system_type=p.system_type, min_interval_min=p.min_interval_min,
                rtd_interval_s=p.rtd_interval_s, interval_label=p.interval_label,
                pressure_unit=p.pressure_unit,
            )
        )
    return StackRegistry(stacks=stacks)


@dataclass
class ReplayStats:
    """What a replay sent."""

    frames: int = 0
    invalid: int = 0
    connections: int = 0


async def replay(
    frames: Iterable[ReplayFrame],
    host: str,
    port: int,
    *,
    speed: float | None,
    shift: timedelta | None = None,
    concurrency: int = 512,
    on_frame: Callable[[ReplayFrame], None] | None = None,
    client_options: dict[str, float] | None = None,
) -> ReplayStats:
    """Send frames to a gateway, one connection per MN, paced at `speed` (None = fast)."""
    from simulators.clock import SimClock

    by_mn: dict[str | None, list[ReplayFrame]] = defaultdict(list)
    for f in frames:
        by_mn[f.mn].append(f)
    starts = [f.at for fs in by_mn.values() for f in fs if f.at is not None]
    origin = min(starts) if starts else datetime.now(CST)
    clock = SimClock(origin, speed)
    gate = asyncio.Semaphore(max(1, concurrency))
    stats = ReplayStats()
    options = client_options or {}

    async def one(mn: str | None, items: list[ReplayFrame]) -> None:
        async with gate:
            client = LoggerClient(host, port, mn=mn or "?", **options)  # type: ignore[arg-type]
            stats.connections += 1
            try:
                for f in items:
                    if f.at is not None:
                        await clock.sleep_until(f.at)
                    wire = shift_wire(f.wire, shift) if shift and f.ok else f.wire
                    await client.send(wire, ack=f.ack, qn=_shifted_qn(f.qn, shift))
                    stats.frames += 1
                    stats.invalid += 0 if f.ok else 1
                    if on_frame is not None:
                        on_frame(f)
            finally:
                await client.close()

    await asyncio.gather(*(one(mn, items) for mn, items in by_mn.items()))
    return stats


def _shifted_qn(qn: str | None, shift: timedelta | None) -> str | None:
    if qn is None or not shift or not re.fullmatch(r"\d{17}", qn):
        return qn
    try:
        dt = datetime.strptime(qn[:14], "%Y%m%d%H%M%S") + shift
    except ValueError:
        return qn
    return dt.strftime("%Y%m%d%H%M%S") + qn[14:]


def statistics_of(log: ReplayLog) -> dict[str, object]:
    """Summary for the CLI: frames, valid, MNs, span of the timeline."""
    ats = [f.at for f in log.frames if f.at is not None]
    per_mn = Counter(f.mn for f in log.frames if f.mn)
    return {
        "frames": len(log.frames),
        "valid": sum(1 for f in log.frames if f.ok),
        "loggers": len(log.mns),
        "start": min(ats).isoformat() if ats else None,
        "end": max(ats).isoformat() if ats else None,
        "median_frames_per_logger": statistics.median(per_mn.values()) if per_mn else 0,
    }
