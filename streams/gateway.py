"""The HJ 212 TCP gateway: data loggers connect here; every frame goes to the raw topic.

Per connection the byte stream is framed (`stackwatch.hj212.Framer`, tolerant of sticky and
split packets), each frame is judged — framing, CRC (HJ 212-2017 App. A), length (§6.3.1),
then MN + PW against the stack registry — and produced to the raw topic as a `RawFrame`
(accepted or not: the immutable raw layer, docs/hj212.md#raw-layer). Rejected frames also go
to the dead-letter topic. A 9014 data answer echoing the QN (HJ 212-2017 App. C;
docs/hj212.md#answers-and-requests) is sent
only when the frame asks for it (Flag.A = 1), only for accepted frames (never for a CRC
failure), and only after the broker acknowledged the produce, so nothing answered is lost.

Memory is bounded, whatever the loggers or the broker do:
* per connection: one read of at most `READ_CHUNK` bytes (and the frames cut from it) plus
  the framer's buffer (at most 16 KiB, `Framer.max_buffer`);
* at most `max_inflight_per_connection` frames per connection and `max_inflight_total`
  frames over all connections (GatewaySettings; defaults 32 and 4096) are between "read from
  the socket" and "acknowledged by the broker and answered". When a budget is spent the
  gateway stops reading sockets (TCP flow control then slows the loggers) instead of
  buffering. Worst case ≈ `max_inflight_total` × 2 records of at most `MAX_RECORD_BYTES`
  bytes (×4 as escaped text), plus 2 × `READ_CHUNK` + 16 KiB per connection.
A connection that delivers no accepted frame within `idle_timeout_s` (idle, dribbling bytes,
or sending only what is refused) is closed; so is one that does not read its answers within the
same time, and one that sends `guard.max_consecutive_rejects` refused units in a row.

Credentials and hostile peers (docs/security.md): PW/NewPW values are masked before anything is
produced or logged (`stackwatch.hj212.redact`), each record keeping the SHA-256 of the bytes
as received; wrong passwords are throttled per MN and per source IP, bans raise a security alert
(`streams/gateway_guard.py`); per-IP connection caps and rate limits; garbage without an MN is
coalesced into one record per burst; rejection log lines are rate-limited per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from stackwatch import hj212
from stackwatch.history_requests import HistoryPlanner, HistoryRequest
from stackwatch.models import DeadLetter, RawFrame, Verdict
from stackwatch.registry import StackRegistry
from stackwatch.registry_hash import PasswordVerifier
from stackwatch.settings import GatewaySettings, Settings
from streams.gateway_guard import GatewayGuard, LogThrottle
from streams.gateway_judge import (
    MAX_RECORD_BYTES,
    REASON_BAD_PASSWORD,
    REASON_FRAMER_ERROR,
    REASON_JUDGE_ERROR,
    REASON_PASSWORD_GUESSING,
    Codec,
    FrameResultLike,
    FramerLike,
    Hj212Codec,
    Judgement,
    Piece,
    build_records,
    judge_frame,
    masked_text,
    peek_credentials,
    split_oversized,
)
from streams.gateway_sink import FrameSink, KafkaFrameSink
from streams.gateway_stats import GatewayStats

log = logging.getLogger("stackwatch.gateway")

#: Bytes asked of the socket per read.
READ_CHUNK = 64 * 1024

def _utc_now() -> datetime:
    return datetime.now(UTC)


def peer_host(peername: object) -> str:
    """The host part of a socket peer (the key of the per-IP limits), or `unknown`."""
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return "unknown"


def format_peer(peername: object) -> str:
    """`host:port` (IPv6 in brackets) of a socket peer, or `unknown`."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "unknown" if not peername else str(peername)


@dataclass
class _Pending:
    """A frame handed to the sink, waiting for the broker and then (maybe) its answer."""

    delivery: Awaitable[object]
    ack: str | None
    mn: str | None
    qn: str | None


@dataclass
class _Budget:
    """The two semaphores a frame holds from read to answer."""

    connection: asyncio.Semaphore
    total: asyncio.Semaphore

    async def acquire(self) -> None:
        await self.connection.acquire()
        try:
            await self.total.acquire()
        except BaseException:
            self.connection.release()
            raise

    def release(self) -> None:
        self.total.release()
        self.connection.release()


@dataclass
class _Burst:
    """Rejected units without an MN (garbage) from one connection, recorded once together.

    One stray line used to cost a record in two topics, two tables and a log line; a flood of
    them now costs one record per burst (≤ `MAX_RECORD_BYTES`, or `garbage_flush_s`), with
    every unit's bytes (joined with CRLF, passwords masked) and their count.
    """

    started: float
    received_at: datetime
    texts: list[str] = field(default_factory=list)
    reasons: dict[str, None] = field(default_factory=dict)
    size: int = 0
    digest: Any = None
    piece_digest: str | None = None
    redacted: bool = False
    detail: str | None = None
    extra: dict[str, str] | None = None

    def add(self, raw: bytes, judgement: Judgement, piece_digest: str | None) -> None:
        if self.digest is None:
            self.digest = hashlib.sha256()
        else:
            self.digest.update(b"\r\n")
            self.size += 2
        self.digest.update(raw)
        self.size += len(judgement.text.encode("utf-8", "surrogatepass"))
        self.texts.append(judgement.text)
        self.reasons.update(dict.fromkeys(judgement.reasons))
        self.piece_digest = piece_digest if len(self.texts) == 1 else None
        self.redacted = self.redacted or judgement.redacted
        self.detail = self.detail or judgement.detail
        self.extra = self.extra or judgement.extra

    def judgement(self) -> Judgement:
        """The burst as one rejected unit."""
        digest = self.piece_digest or (self.digest.hexdigest() if self.digest else None)
        return Judgement(
            Verdict.REJECTED, tuple(self.reasons), "\r\n".join(self.texts), detail=self.detail,
            sha256=digest, redacted=self.redacted, units=len(self.texts), extra=self.extra,
        )


class _Connection:
    """One data logger's TCP connection: read → frame → judge → produce → answer."""

    def __init__(
        self,
        gateway: Gateway,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._gw = gateway
        self._reader = reader
        self._writer = writer
        peername = writer.get_extra_info("peername")
        self.peer = format_peer(peername)
        self.host = peer_host(peername)
        self._budget = _Budget(
            asyncio.Semaphore(gateway.max_inflight_per_connection), gateway.total_budget
        )
        self._pending: asyncio.Queue[_Pending] = asyncio.Queue()
        self._framer: FramerLike = gateway.codec.new_framer()
        self._reading: asyncio.Task[str] | None = None
        self._in_read = False
        self._stop_requested = False
        self._write_broken = False
        self._deadline = 0.0
        self._trusted: dict[str, float] = {}  # MN → when this connection first proved its PW
        self._rejects_in_row = 0
        self._close_reason: str | None = None
        self._burst: _Burst | None = None
        self._log = LogThrottle(gateway.settings.guard.log_interval_s)

    def request_stop(self) -> None:
        """Stop reading at the next opportunity (graceful shutdown)."""
        self._stop_requested = True
        if self._in_read and self._reading is not None:
            self._reading.cancel()

    async def run(self) -> None:
        """Serve the connection until EOF, error, idle timeout or shutdown; then drain."""
        answers = asyncio.create_task(self._answer_loop())
        self._reading = asyncio.create_task(self._read_loop())
        try:
            await asyncio.wait([self._reading])
            why = "shutdown" if self._reading.cancelled() else self._reading.result()
            try:
                leftovers = self._framer.flush()
            except Exception as exc:
                log.error("framer flush raised", extra={"peer": self.peer, "error": repr(exc)})
                leftovers = []
            for result in leftovers:
                await self._process(result, at_disconnect=True)
            await self._flush_burst()
            await self._pending.join()
            self._gw.forget(self)
            log.info("logger disconnected", extra={"peer": self.peer, "reason": why})
        finally:
            for task in (self._reading, answers):
                task.cancel()
            await asyncio.wait([self._reading, answers])
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), timeout=5)

    async def _read_loop(self) -> str:
        loop = asyncio.get_running_loop()
        idle = self._gw.settings.idle_timeout_s
        flush_s = self._gw.settings.guard.garbage_flush_s
        self._deadline = loop.time() + idle
        while not self._stop_requested:
            if self._close_reason is not None:
                return self._close_reason
            now = loop.time()
            remaining = self._deadline - now
            if remaining <= 0:
                return self._idle_out()
            if self._burst is not None:
                flush_in = self._burst.started + flush_s - now
                if flush_in <= 0:
                    await self._flush_burst()
                    continue
                remaining = min(remaining, flush_in)
            self._in_read = True
            try:
                data = await asyncio.wait_for(self._reader.read(READ_CHUNK), remaining)
            except TimeoutError:
                continue  # a burst to flush, or the idle deadline: both checked above
            except (ConnectionError, OSError) as exc:
                return f"connection error: {exc!r}"
            finally:
                self._in_read = False
            if not data:
                return "eof"
            try:
                results = self._framer.feed(data)
            except Exception as exc:  # the framer promises not to raise; never crash anyway
                log.error("framer raised", extra={"peer": self.peer, "error": repr(exc)})
                results = [Piece(data, False, REASON_FRAMER_ERROR, repr(exc))]
                self._framer = self._gw.codec.new_framer()
            for result in results:  # all of them: bytes read are never dropped
                await self._throttle()
                await self._process(result)
        return "shutdown"

    async def _throttle(self) -> None:
        """The per-IP token bucket: wait (not reading) until this IP may send another frame."""
        guard = self._gw.guard
        wait = guard.wait_for_token(self.host)
        if wait > 0:
            self._gw.stats.guard("rate_limited")
        while wait > 0:
            await asyncio.sleep(wait)
            wait = guard.wait_for_token(self.host)

    def _idle_out(self) -> str:
        self._gw.stats.idle_timeout()
        log.info(
            "closing connection: no accepted frame within idle timeout",
            extra={"peer": self.peer, "idle_timeout_s": self._gw.settings.idle_timeout_s},
        )
        return "idle_timeout"

    async def _process(self, result: FrameResultLike, *, at_disconnect: bool = False) -> None:
        for unit in split_oversized(result):
            await self._process_one(unit, at_disconnect=at_disconnect)

    async def _judge(self, result: FrameResultLike, *, at_disconnect: bool) -> Judgement:
        """The guard first (a blocked MN or IP is refused without checking its password), a
        password not yet verified hashed in a worker thread, then `judge_frame`."""
        gw = self._gw
        mn, pw = peek_credentials(result.raw) if result.raw.startswith(b"##") else (None, None)
        trusted = self._trusted.get(mn or "")
        reason, scope = gw.guard.refusal(self.host, mn, trusted)
        try:
            stack = gw.registry.by_mn(mn) if mn is not None and pw is not None else None
        except Exception:
            stack = None  # judge_frame meets the same failure and records it
        if (
            not reason
            and stack is not None
            and pw is not None
            and result.ok
            and stack.password_hash is not None
            and stack.peer_allowed(self.host)
            and stack.password_needs_hashing(pw, gw.verifier)
        ):
            # `hash_threads` scrypts at a time, in worker threads (scrypt releases the GIL):
            # after a restart every logger's first frame waits for one, so they run in
            # parallel, but bounded; guesses queued behind them meet any back-off or ban that
            # started meanwhile.
            async with gw.hashing:
                reason, scope = gw.guard.refusal(self.host, mn, trusted)
                if not reason:
                    await asyncio.to_thread(gw.verifier.verify, stack.mn, stack.password_hash,
                                            pw)
        if reason:
            gw.stats.guard(reason)
            text, redacted = masked_text(result.raw)
            subject = mn if scope == "mn" else self.host
            return Judgement(
                Verdict.REJECTED, (reason,), text, mn=mn,
                detail=f"{scope} {subject} {reason}: refused without checking the password",
                sha256=getattr(result, "digest", None) or hj212.frame_digest(result.raw),
                redacted=redacted, extra={"scope": scope},
            )
        try:
            return judge_frame(
                result,
                codec=gw.codec,
                registry=gw.registry,
                auto_register=gw.settings.auto_register,
                at_disconnect=at_disconnect,
                now=gw.clock(),
                peer_host=self.host,
                verifier=gw.verifier,
            )
        except Exception as exc:
            # judge_frame guards the codec itself; this is the second line of defence (e.g. a
            # registry lookup raising): one bad frame costs itself, never the connection.
            log.exception("judging a frame raised", extra={"peer": self.peer})
            text, redacted = masked_text(result.raw)
            return Judgement(Verdict.REJECTED, (REASON_JUDGE_ERROR,), text, detail=repr(exc),
                             sha256=hj212.frame_digest(result.raw), redacted=redacted)

    async def _process_one(self, result: FrameResultLike, *, at_disconnect: bool) -> None:
        gw = self._gw
        judgement = await self._judge(result, at_disconnect=at_disconnect)
        gw.stats.frame(judgement.verdict, judgement.reason)
        extra = {"peer": self.peer, "mn": judgement.mn, "cn": judgement.cn}
        if judgement.verdict is Verdict.ACCEPTED:
            log.debug("frame accepted", extra=extra)
            self._rejects_in_row = 0
            self._deadline = asyncio.get_running_loop().time() + gw.settings.idle_timeout_s
            if judgement.mn is not None:
                self._trusted.setdefault(judgement.mn, gw.monotonic())
        else:
            if judgement.reason == REASON_BAD_PASSWORD:
                judgement = self._note_bad_password(judgement)
            held = self._log.allow(gw.monotonic())
            if held is not None:
                log.info("frame rejected", extra={**extra, "reason": ",".join(judgement.reasons),
                                                  "suppressed": held})
            self._rejects_in_row += 1
            limit = gw.settings.guard.max_consecutive_rejects
            if self._rejects_in_row == limit and self._close_reason is None:
                self._close_reason = "too_many_rejects"
                gw.stats.guard("too_many_rejects")
                log.info("closing connection: too many rejected frames in a row",
                         extra={"peer": self.peer, "rejects": self._rejects_in_row})
            if judgement.mn is None:
                await self._add_to_burst(result, judgement)
                return
        await self._flush_burst()
        raw, dead = build_records(
            judgement, received_at=gw.clock(), peer=self.peer, gateway=gw.name
        )
        await self._submit(raw, dead, judgement)

    def _note_bad_password(self, judgement: Judgement) -> Judgement:
        """Count a wrong password; a ban it starts turns its dead letter into the alert."""
        gw = self._gw
        banned = gw.guard.bad_password(self.host, judgement.mn)
        if not banned:
            return judgement
        ban_s = gw.settings.guard.ban_s
        for scope, key, failures in banned:
            gw.stats.security_alert(scope)
            log.warning(
                "security alert: password guessing, %s %s banned", scope, key,
                extra={"alert": REASON_PASSWORD_GUESSING, "scope": scope, "banned": key,
                       "mn": judgement.mn, "peer": self.peer, "failures": failures,
                       "ban_s": ban_s, "gateway": gw.name},
            )
        what = "; ".join(f"{scope} {key} banned for {ban_s:g} s after {failures} wrong passwords"
                         for scope, key, failures in banned)
        return dataclasses.replace(
            judgement,
            reasons=(REASON_PASSWORD_GUESSING, *judgement.reasons),
            detail=what,
            extra={"alert": "security", "scope": ",".join(s for s, _, _ in banned),
                   "banned": ",".join(k for _, k, _ in banned),
                   "failures": ",".join(str(f) for _, _, f in banned), "ban_s": f"{ban_s:g}"},
        )

    async def _add_to_burst(self, result: FrameResultLike, judgement: Judgement) -> None:
        burst = self._burst
        size = len(judgement.text.encode("utf-8", "surrogatepass"))
        if burst is not None and burst.size + 2 + size > MAX_RECORD_BYTES:
            await self._flush_burst()
            burst = None
        if burst is None:
            burst = self._burst = _Burst(asyncio.get_running_loop().time(), self._gw.clock())
        burst.add(result.raw, judgement, getattr(result, "digest", None))
        if burst.size >= MAX_RECORD_BYTES:
            await self._flush_burst()

    async def _flush_burst(self) -> None:
        """Record the pending garbage burst (one raw record, one dead letter)."""
        burst, self._burst = self._burst, None
        if burst is None:
            return
        raw, dead = build_records(
            burst.judgement(), received_at=burst.received_at, peer=self.peer,
            gateway=self._gw.name,
        )
        await self._submit(raw, dead, None)

    async def _submit(
        self, raw: RawFrame, dead: DeadLetter | None, judgement: Judgement | None
    ) -> None:
        gw = self._gw
        await self._budget.acquire()
        try:
            delivery = await gw.sink.submit(raw, dead, gw.record_key(raw.mn))
        except Exception as exc:
            self._budget.release()
            gw.stats.produce_failed()
            log.error("produce failed", extra={"peer": self.peer, "mn": raw.mn, "cn": raw.cn,
                                               "error": repr(exc)})
            return
        ack = judgement.ack if judgement is not None else None
        qn = judgement.qn if judgement is not None else None
        self._pending.put_nowait(_Pending(delivery, ack, raw.mn, qn))
        if judgement is not None and judgement.verdict is Verdict.ACCEPTED and raw.mn is not None:
            gw.note_upload(self, judgement)

    def send_request(self, text: str) -> bool:
        """Write a platform request (a history request) to the logger; False if gone."""
        if self._write_broken or self._writer.is_closing():
            return False
        try:
            self._writer.write(text.encode("utf-8"))
        except (ConnectionError, OSError):
            return False
        return True

    async def _answer_loop(self) -> None:
        while True:
            item = await self._pending.get()
            try:
                await self._settle(item)
            finally:
                self._budget.release()
                self._pending.task_done()

    async def _settle(self, item: _Pending) -> None:
        """Wait for the broker; then, and only then, write the 9014 answer if one is due."""
        try:
            await item.delivery
        except Exception as exc:
            self._gw.stats.produce_failed()
            log.error(
                "broker did not acknowledge frame; not answering",
                extra={"peer": self.peer, "mn": item.mn, "qn": item.qn, "error": repr(exc)},
            )
            return
        if item.ack is None or self._write_broken:
            return
        try:
            self._writer.write(item.ack.encode("utf-8"))
            await asyncio.wait_for(self._writer.drain(), self._gw.settings.idle_timeout_s)
        except (TimeoutError, ConnectionError, OSError) as exc:
            self._write_broken = True
            log.info(
                "could not answer logger; closing",
                extra={"peer": self.peer, "mn": item.mn, "error": repr(exc)},
            )
            self._writer.transport.abort()
            return
        self._gw.stats.ack_sent()


# --- the server ----------------------------------------------------------------------------


class Gateway:
    """The asyncio TCP server; embed it with `await start()` / `await stop()`."""

    def __init__(
        self,
        *,
        settings: GatewaySettings,
        registry: StackRegistry,
        sink: FrameSink,
        codec: Codec | None = None,
        stats: GatewayStats | None = None,
        metrics_registry: CollectorRegistry | None = None,
        name: str = "gateway",
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        verifier: PasswordVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.sink = sink
        self.codec: Codec = codec if codec is not None else Hj212Codec()
        self.stats = stats if stats is not None else GatewayStats(metrics_registry)
        self.name = name
        self.clock = clock
        self.monotonic = monotonic
        self.guard = GatewayGuard(settings.guard, monotonic)
        self.verifier = verifier if verifier is not None else PasswordVerifier()
        self.hashing = asyncio.Semaphore(settings.guard.hash_threads)
        self._refusal_log = LogThrottle(settings.guard.log_interval_s)
        self.max_inflight_per_connection = settings.max_inflight_per_connection
        self.max_inflight_total = settings.max_inflight_total
        self.total_budget = asyncio.Semaphore(settings.max_inflight_total)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.history = HistoryPlanner(settings.history)
        self._by_mn: dict[str, _Connection] = {}
        self._heard: dict[str, tuple[str, str, str]] = {}  # MN → (PW, ST, version) last heard
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        registry: StackRegistry,
        *,
        bootstrap: str | None = None,
        metrics_registry: CollectorRegistry | None = None,
        name: str = "gateway",
    ) -> Gateway:
        """A gateway producing to the configured Kafka topics."""
        servers = bootstrap or settings.kafka_bootstrap
        if not servers:
            raise ValueError("no Kafka bootstrap server: set STACKWATCH_KAFKA_BOOTSTRAP")
        stats = GatewayStats(metrics_registry)
        sink = KafkaFrameSink(
            bootstrap=servers,
            raw_topic=settings.topics.raw,
            deadletter_topic=settings.topics.deadletter,
            partitions=settings.topics.partitions,
            client_id=f"stackwatch-{name}",
            kafka=settings.kafka,
            broker_profile=settings.broker_profile,
            on_failure=stats.produce_failed,
        )
        return cls(settings=settings.gateway, registry=registry, sink=sink, stats=stats, name=name)

    def record_key(self, mn: str | None) -> str | None:
        """Key of a frame's records: its stack's id, so that a stack's frames, state, commands
        and outputs share one partition number and the worker processes a frame in one hop;
        an unregistered logger's MN (the stack id an auto-registered stack gets)."""
        if mn is None:
            return None
        try:
            stack = self.registry.by_mn(mn)
        except Exception:  # a registry that cannot answer must not cost the frame
            return mn
        return stack.stack_id if stack is not None else mn

    def note_upload(self, conn: _Connection, judgement: Judgement) -> None:
        """An accepted frame: remember the logger's connection, ask for the history of a
        hole in its uploads when one shows (rate-limited)."""
        decoded = judgement.decoded
        mn = judgement.mn
        if mn is None or decoded is None:
            return
        self._by_mn[mn] = conn
        if decoded.cn and decoded.cn.startswith("2"):
            self._heard[mn] = (decoded.pw or "", decoded.st or "31", decoded.version or "2017")
        request = self.history.on_upload(
            mn, decoded.cn, decoded.data_time, resent=bool(decoded.resend)
        )
        if request is not None:
            self._send_history_request(request)

    def request_history(self, request: HistoryRequest) -> bool:
        """An operator's request for one logger's history; True if it was sent."""
        allowed = self.history.on_operator(request)
        if allowed is None:
            log.info("history request rate-limited", extra={"mn": request.mn})
            self.stats.history_request("rate_limited")
            return False
        return self._send_history_request(allowed)

    def _send_history_request(self, request: HistoryRequest) -> bool:
        conn = self._by_mn.get(request.mn)
        heard = self._heard.get(request.mn)
        if conn is None or heard is None:
            log.info("history request for a logger not connected", extra={"mn": request.mn})
            self.stats.history_request("not_connected")
            return False
        pw, st, version = heard
        text = hj212.build_history_request(
            request.cn, request.mn, pw, request.begin, request.end, st=st, version=version,
            now=self.clock(),
        )
        sent = conn.send_request(text)
        self.stats.history_request("sent" if sent else "write_failed")
        log.info(
            "asked a logger for its history",
            extra={"mn": request.mn, "cn": request.cn, "begin": request.begin.isoformat(),
                   "end": request.end.isoformat(), "reason": request.reason, "sent": sent},
        )
        return sent

    def forget(self, conn: _Connection) -> None:
        """A connection ended: it can no longer carry requests."""
        for mn in [m for m, c in self._by_mn.items() if c is conn]:
            del self._by_mn[mn]

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("gateway is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """Connections currently served."""
        return len(self._connections)

    async def start(self) -> None:
        """Start the sink, then listen."""
        await self.sink.start()
        try:
            self._server = await asyncio.start_server(
                self._on_client,
                host=self.settings.host,
                port=self.settings.port,
                backlog=min(self.settings.max_connections, 4096),
            )
        except BaseException:
            await self.sink.stop()
            raise
        log.info(
            "gateway listening",
            extra={"host": self.settings.host, "port": self.port, "gateway": self.name},
        )

    async def stop(self, grace_s: float = 30.0) -> None:
        """Stop accepting, finish the frames already read, flush the producer, close sockets."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.request_stop()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        await self.sink.stop()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)
            self._server = None
        log.info("gateway stopped", extra={"gateway": self.name})

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peername = writer.get_extra_info("peername")
        host = peer_host(peername)
        refusal: str | None = None
        if self._closing:
            refusal = "shutting_down"
        elif len(self._connections) >= self.settings.max_connections:
            refusal = "max_connections"
        else:
            refusal = self.guard.admit(host)
            if refusal is not None:
                self.stats.guard(refusal)
        if refusal is not None:
            self.stats.connection_refused()
            held = self._refusal_log.allow(self.monotonic())
            if held is not None:
                log.warning(
                    "connection refused",
                    extra={"peer": format_peer(peername), "reason": refusal, "suppressed": held},
                )
            writer.close()
            return
        try:
            await self._serve(reader, writer, task)
        finally:
            self.guard.release(host)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        task: asyncio.Task[Any] | None,
    ) -> None:
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        if task is not None:
            self._tasks.add(task)
        self.stats.connection_opened()
        log.info("logger connected", extra={"peer": conn.peer})
        try:
            await conn.run()
        except Exception:
            log.exception("connection handler failed", extra={"peer": conn.peer})
            writer.transport.abort()
        finally:
            self._connections.discard(conn)
            if task is not None:
                self._tasks.discard(task)
            self.stats.connection_closed()
