"""asyncio HJ 212 TCP client: one connection per data logger, as in the field.

Delivery is stop-and-wait, like a real 数采仪: a frame with Flag.A=1 is sent, then the client
waits for the platform's 9014 data answer echoing the frame's QN (HJ 212-2017 App. C, §6.6).
No answer within `ack_timeout` (default 10 s) → re-send, up to `retries` (default 3) times
(HJ 212-2017 Table 1 defaults for GPRS/CDMA/LTE); then the exchange has failed and the logger
moves on (`stats.gave_up`), so a gateway that never answers cannot block it for ever. When the
connection drops, the client reconnects with exponential backoff and re-sends the frame that
was not acknowledged, so nothing is lost to a reconnect. Frames without Flag.A are written
once; if the write fails they are re-sent on the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from stackwatch.backoff import BackoffPolicy
from stackwatch.hj212 import HISTORY_CNS, DecodedFrame, Framer, decode_frame

HistoryServer = Callable[[DecodedFrame], Awaitable[list[str]]]
"""Answers a platform's history request: the frames to send back (9011, the re-sent
uploads, 9012), as a logger that keeps its records does."""

log = logging.getLogger(__name__)


def parse_hostport(value: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'host:port' or ':port' → (host, port); ValueError with the expected form otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"gateway must be host:port, got {value!r}")
    return host or default_host, int(port)


class ClientClosed(RuntimeError):
    """`send` was called on (or interrupted by) a closed client."""


class _NoAnswer(Exception):
    """No 9014 answer within `ack_timeout`: the frame is sent again (or given up on)."""


@dataclass
class ClientStats:
    """Counters of one logger connection (for progress output and tests)."""

    frames: int = 0
    writes: int = 0
    resent: int = 0
    acked: int = 0
    connects: int = 0
    connect_failures: int = 0
    timeouts: int = 0
    gave_up: int = 0
    history_requests: int = 0


class LoggerClient:
    """The TCP side of one data logger (MN) talking to an HJ 212 gateway."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        mn: str = "",
        ack_timeout: float = 10.0,
        retries: int = 3,
        connect_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        on_history_request: HistoryServer | None = None,
    ) -> None:
        if ack_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeouts must be > 0")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.host, self.port, self.mn = host, port, mn
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        # waits of 1, 2, 4 … backoff_max s, each ±10 % so reconnecting loggers spread out
        self._backoff = BackoffPolicy(backoff_initial, 2.0, backoff_max, jitter=0.1)
        self.stats = ClientStats()
        self.on_history_request = on_history_request
        self._answers: set[asyncio.Task[None]] = set()
        self._reader_task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether a connection is currently open."""
        return self._writer is not None and not self._writer.is_closing()

    async def send(self, text: str | bytes, *, ack: bool, qn: str | None) -> None:
        """Deliver one frame; returns once it is acknowledged (ack) or written (no ack)."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        wait_qn = qn if ack and qn else None
        async with self._lock:
            self.stats.frames += 1
            unanswered = 0

            def retries_spent(state: RetryCallState) -> bool:
                return unanswered > self.retries

            # A lost connection is re-sent on the next one (never counts as a retry); a
            # missing 9014 is re-sent up to `retries` times (HJ 212-2017 Table 1 ReCount).
            resending = AsyncRetrying(
                retry=retry_if_exception_type((_NoAnswer, ConnectionError, OSError)),
                stop=retries_spent,
                reraise=True,
            )
            try:
                async for attempt in resending:
                    with attempt:
                        try:
                            await self._exchange(data, wait_qn,
                                                 resend=attempt.retry_state.attempt_number > 1)
                        except _NoAnswer:
                            unanswered += 1
                            raise
            except _NoAnswer:
                # Table 1: after ReCount retries the exchange has failed; a logger moves on
                # (the platform can ask for the data later, 2051/2061 with BeginTime/EndTime)
                # instead of blocking its whole upload queue.
                log.warning("no 9014 answer after retries, giving up on this frame",
                            extra={"mn": self.mn, "qn": qn, "retries": self.retries})
                self.stats.gave_up += 1

    async def _exchange(self, data: bytes, qn: str | None, *, resend: bool) -> None:
        """Write the frame once and, with a QN, wait for its 9014. Raises `_NoAnswer` on a
        timeout and `ConnectionError`/`OSError` when the connection dropped (after closing
        it, so the next attempt reconnects)."""
        if self._closed:
            raise ClientClosed(f"client for {self.mn or self.host} is closed")
        writer = await self._ensure_connected()
        future: asyncio.Future[None] | None = None
        if qn is not None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[qn] = future
        try:
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError) as err:
                log.info("write failed, reconnecting", extra={"mn": self.mn, "err": str(err)})
                await self._drop()
                raise
            finally:
                self.stats.writes += 1
                if resend:
                    self.stats.resent += 1
            if future is None:
                return
            try:
                await asyncio.wait_for(future, self.ack_timeout)
                self.stats.acked += 1
            except TimeoutError:
                self.stats.timeouts += 1
                raise _NoAnswer from None
            except (ConnectionError, OSError):
                await self._drop()
                raise
        finally:
            if qn is not None and self._waiting.get(qn) is future:
                del self._waiting[qn]

    async def _ensure_connected(self) -> asyncio.StreamWriter:
        if self._writer is not None and not self._writer.is_closing():
            return self._writer
        reconnecting = AsyncRetrying(
            retry=retry_if_exception_type((OSError, TimeoutError)),
            wait=self._backoff.wait(),
            before_sleep=self._connect_failed,
            reraise=True,
        )
        async for attempt in reconnecting:
            with attempt:
                if self._closed:
                    raise ClientClosed(f"client for {self.mn or self.host} is closed")
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.connect_timeout
                )
        self.stats.connects += 1
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read_loop(reader))
        return writer

    def _connect_failed(self, state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome is not None else None
        self.stats.connect_failures += 1
        log.info("connect failed, backing off",
                 extra={"mn": self.mn, "err": str(err),
                        "delay_s": round(state.upcoming_sleep, 2)})

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        """Read the gateway's frames; resolve the waiter of each 9014 by its QN."""
        framer = Framer()
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                for result in framer.feed(chunk):
                    if not result.ok:
                        continue
                    frame = decode_frame(result.raw)
                    if frame.cn == "9014" and frame.qn is not None:
                        future = self._waiting.get(frame.qn)
                        if future is not None and not future.done():
                            future.set_result(None)
                    elif frame.cn in HISTORY_CNS and "BeginTime" in frame.cp:
                        self._serve_history(frame)
        except (ConnectionError, OSError):
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionResetError("connection closed by gateway"))
            if self._writer is not None:
                self._writer.close()

    def _serve_history(self, request: DecodedFrame) -> None:
        """Answer a history request in the background (the upload queue goes on)."""
        self.stats.history_requests += 1
        if self.on_history_request is None:
            return
        task = asyncio.create_task(self._answer_history(request))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _answer_history(self, request: DecodedFrame) -> None:
        assert self.on_history_request is not None
        try:
            frames = await self.on_history_request(request)
            writer = await self._ensure_connected()
            for text in frames:
                writer.write(text.encode("utf-8"))
                await writer.drain()
        except (ConnectionError, OSError, ClientClosed) as err:
            log.info("could not answer a history request", extra={"mn": self.mn, "err": str(err)})

    async def _drop(self) -> None:
        writer, task = self._writer, self._reader_task
        self._writer, self._reader_task = None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Close the connection; a pending `send` raises `ClientClosed`."""
        if self._answers:
            await asyncio.gather(*self._answers, return_exceptions=True)
        self._closed = True
        await self._drop()
