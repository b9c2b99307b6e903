"""The durable notification outbox against REAL servers on loopback.

* receivers: an aiosmtpd SMTP server and an aiohttp webhook server, both stopped (nothing
  listens on their ports) for ten simulated minutes and then started again on the same ports;
* storage: the outbox and the scheduler state in the session's PostgreSQL 18;
* the restart test runs the real consumer loop (``run_dispatcher``) on the session's Tansu.

The dispatcher and the delivery worker read an injected clock, so ten minutes of outage and
the back-off schedule are stepped, not slept. Hand arithmetic of that schedule — Backoff(10 s,
×2, max 120 s): after failed attempt n the next is 10·2^(n−1) s later, capped at 120 s:

    attempt 1 at 0 s fails → 2 at 10 → 3 at 30 → 4 at 70 → 5 at 150 → 6 at 270 → 7 at 390
    → 8 at 510 → 9 at 630 s

The receivers are back at 600 s, so the first message of each destination is delivered at its
9th attempt (630 s), and the two messages queued behind it at their 1st attempt right after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import psycopg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry

from embedded.ports import free_port
from sinks.notifiers import (
    EmailSender,
    Notifier,
    NotifierMetrics,
    PgDeliveryLog,
    WebhookSender,
)
from sinks.outbox import Backoff, HeartbeatPlan, OutboxWorker, PgOutbox
from stackwatch.alerts import Severity
from stackwatch.models import AlertEvent, AlertState, EventKind, Rule
from stackwatch.notify import NotifyConfig, NotifyScheduler
from stackwatch.settings import SmtpSettings
from streams.alert_dispatcher import AlertDispatcher, load_scheduler_from_outbox, run_dispatcher
from tests.migrated import migrated

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # Beijing 10:00
A = "0a000000-0000-5000-8000-00000000000a"
B = "0b000000-0000-5000-8000-00000000000b"


def event(alert_id: str, seq: int, kind: EventKind, at: datetime) -> AlertEvent:
    cleared = at if kind is EventKind.CLEAR else None
    return AlertEvent(
        alert_id=alert_id, seq=seq, kind=kind, at=at, stack_id="hd-steel-01", factor="a21026",
        rule=Rule.HOUR_EXCEEDANCE, severity=Severity.ALARM,
        state=AlertState.CLEARED if cleared else AlertState.ACTIVE,
        title_zh="小时均值超标", title_en="hourly mean exceedance", first_seen=T0,
        last_seen=at, count=1, value=62.3, limit=35.0, cleared_at=cleared,
    )


# ------------------------------------------------------------------------------ servers


class MailBox:
    """What the SMTP server accepted: (recipient, parsed message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        for rcpt in envelope.rcpt_tos:
            self.messages.append((rcpt, msg))
        return "250 OK"


class Smtp:
    """An aiosmtpd server on a fixed port that can be stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.box = MailBox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.box, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class Hooks:
    """A webhook server on a fixed port that can be stopped and started again; ``status``
    is what it answers (500 = failing but reachable)."""

    port: int = field(default_factory=free_port)
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    status: int = 200
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            if self.status != 200:
                return web.json_response({"error": "down"}, status=self.status)
            self.received.setdefault(request.match_info["name"], []).append(
                await request.json())
            if request.match_info["name"] == "dingtalk-keyword":
                return web.json_response({"errcode": 310000, "errmsg": "keywords not in content"})
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/hook/{name}", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    server = Smtp()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    server = Hooks()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def duty_config(hooks: Hooks, group: str = "duty") -> NotifyConfig:
    """Three people/robots, four destinations: 王工 (mail), 李工 (mail + JSON hook), robot;
    the one route sends to ``group``."""
    return NotifyConfig.model_validate({
        "recipients": [
            {"name": "王工", "channels": [{"type": "email", "address": "wang@example.cn"}]},
            {"name": "李工", "channels": [
                {"type": "email", "address": "li@example.cn"},
                {"type": "webhook", "url": f"{hooks.url}/li"},
            ]},
            {"name": "robot", "channels": [{"type": "webhook", "url": f"{hooks.url}/robot"}]},
            {"name": "keyword-robot", "channels": [
                {"type": "webhook", "format": "dingtalk",
                 "url": f"{hooks.url}/dingtalk-keyword?access_token=x"}]},
        ],
        "groups": [
            {"name": "duty", "members": ["王工", "李工", "robot"]},
            {"name": "hb", "members": ["robot"]},
            {"name": "misconfigured", "members": ["keyword-robot"]},
        ],
        "routes": [{"name": "all", "group": group, "group_by": ["alert_id"],
                    "group_wait": "0s", "group_interval": "0s"}],
    })


def notifier_for(
    config: NotifyConfig, http: httpx.AsyncClient, smtp_port: int, dsn: str,
    metrics: NotifierMetrics | None = None,
) -> Notifier:
    smtp = SmtpSettings(host="127.0.0.1", port=smtp_port, starttls=False,
                        sender="cems@example.cn", timeout_s=5)
    return Notifier(
        config, base_url="http://grafana.test:3000", webhook=WebhookSender(http),
        email=EmailSender(smtp), delivery_log=PgDeliveryLog(dsn),
        metrics=metrics or NotifierMetrics(CollectorRegistry()),
    )


def outbox_rows(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT destination, kind, alert_ids, status, attempts FROM notification_outbox"
            " ORDER BY id"
        ).fetchall()


# --------------------------------------------------------------------------------- tests


async def test_ten_minute_outage_then_every_message_exactly_once(
    pg_database: str, smtp: Smtp, hooks: Hooks, http: httpx.AsyncClient
) -> None:
    dsn = migrated(pg_database)
    now = [T0]
    config = duty_config(hooks)
    metrics = NotifierMetrics(CollectorRegistry())
    notifier = notifier_for(config, http, smtp.port, dsn, metrics)
    outbox = PgOutbox(dsn, name="outage")
    dispatcher = AlertDispatcher(NotifyScheduler(config), outbox,
                                 clock=lambda: now[0])
    worker = OutboxWorker(outbox, notifier, backoff=Backoff(10, 2, 120), clock=lambda: now[0])
    try:
        # receivers down (nothing listens) from 0 s to 600 s; A raised at 0 s, B at 60 s,
        # A cleared at 120 s
        dispatcher.on_event(event(A, 1, EventKind.RAISE, T0))
        for second in range(0, 700, 10):
            now[0] = T0 + timedelta(seconds=second)
            if second == 60:
                dispatcher.on_event(event(B, 1, EventKind.RAISE, now[0]))
            if second == 120:
                dispatcher.on_event(event(A, 2, EventKind.CLEAR, now[0]))
            if second == 600:
                smtp.start()
                await hooks.start()
            await dispatcher.on_tick()
            await worker.run_once()
            if second == 590:  # the end of the outage: nothing has arrived, nothing is lost
                assert smtp.box.messages == [] and hooks.received == {}
                statuses = {row[3] for row in outbox_rows(dsn)}
                assert statuses == {"pending"}
    finally:
        await outbox.close()
        await notifier.log.close()  # type: ignore[attr-defined]

    # every destination got A firing, B firing, A resolved — in that order, once each
    expected = [("firing", A), ("firing", B), ("resolved", A)]
    for name in ("li", "robot"):
        got = [(doc["kind"], doc["alerts"][0]["alert_id"]) for doc in hooks.received[name]]
        assert got == expected, name
    for address in ("wang@example.cn", "li@example.cn"):
        mails = [m for rcpt, m in smtp.box.messages if rcpt == address]
        kinds = [("resolved" if "RESOLVED" in m["Subject"] else "firing") for m in mails]
        ids = [next(a for a in (A, B) if a in str(m.get_body(("plain",)).get_content()))  # type: ignore[union-attr]
               for m in mails]
        assert list(zip(kinds, ids, strict=True)) == expected, address
    delivered = len(smtp.box.messages) + sum(len(v) for v in hooks.received.values())
    assert delivered == 12  # 3 messages × 4 destinations; 0 duplicates
    rows = outbox_rows(dsn)
    assert len(rows) == 12 and {r[3] for r in rows} == {"delivered"}
    attempts = sorted((r[1], r[2][0], r[4]) for r in rows)
    assert attempts == sorted(
        [("firing", A, 9)] * 4 + [("firing", B, 1)] * 4 + [("resolved", A, 1)] * 4
    )
    # retries counted: 8 failed attempts for each of 2 webhook and 2 mail destinations
    sample = metrics.registry.get_sample_value
    assert sample("stackwatch_notification_retries_total", {"channel": "webhook"}) == 16.0
    assert sample("stackwatch_notification_retries_total", {"channel": "email"}) == 16.0
    # the per-alert delivery log has every (event, destination) as sent
    with psycopg.connect(dsn) as conn:
        log_rows = conn.execute(
            "SELECT alert_id, event_seq, status, count(*) FROM notifications"
            " GROUP BY 1, 2, 3 ORDER BY 1, 2"
        ).fetchall()
    assert log_rows == [(A, 1, "sent", 4), (A, 2, "sent", 4), (B, 1, "sent", 4)]
    print(f"outage: {delivered} messages delivered after 600 s down, 0 duplicates; "
          "first message of each destination at attempt 9 (630 s)")


async def test_undelivered_message_expires_with_log_and_metric(
    pg_database: str, hooks: Hooks, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture,
) -> None:
    """Max age 1 h, the robot never answers 200: the row is expired at 3600 s, not before."""
    caplog.set_level(logging.WARNING, logger="sinks.outbox")
    dsn = migrated(pg_database)
    now = [T0]
    config = duty_config(hooks, group="hb")
    metrics = NotifierMetrics(CollectorRegistry())
    notifier = notifier_for(config, http, 1, dsn, metrics)
    outbox = PgOutbox(dsn, name="expiry")
    dispatcher = AlertDispatcher(NotifyScheduler(config), outbox,
                                 clock=lambda: now[0], max_age=timedelta(hours=1))
    worker = OutboxWorker(outbox, notifier, backoff=Backoff(60, 2, 600), clock=lambda: now[0])
    hooks.status = 503
    await hooks.start()
    try:
        dispatcher.on_event(event(A, 1, EventKind.RAISE, T0))
        for second in (0, 3599, 3600):
            now[0] = T0 + timedelta(seconds=second)
            await dispatcher.on_tick()
            result = await worker.run_once()
            if second == 3599:
                assert outbox_rows(dsn)[0][3] == "pending"
        assert result.expired == 1
    finally:
        await outbox.close()
        await notifier.log.close()  # type: ignore[attr-defined]
    [(_, kind, _, status, attempts)] = outbox_rows(dsn)
    # attempts at 0 s and 3599 s (the 2nd was due at 60 s; the clock jumped to 3599 s)
    assert (kind, status, attempts) == ("firing", "expired", 2)
    labels = {"channel": "webhook", "kind": "firing"}
    assert metrics.registry.get_sample_value(
        "stackwatch_notifications_expired_total", labels) == 1.0
    assert any(r.getMessage() == "notification expired undelivered" for r in caplog.records)
    assert hooks.received == {}


async def test_a_permanent_refusal_is_failed_not_retried(
    pg_database: str, hooks: Hooks, http: httpx.AsyncClient
) -> None:
    dsn = migrated(pg_database)
    now = [T0]
    config = duty_config(hooks, group="misconfigured")
    notifier = notifier_for(config, http, 1, dsn)
    outbox = PgOutbox(dsn, name="refused")
    dispatcher = AlertDispatcher(NotifyScheduler(config), outbox,
                                 clock=lambda: now[0])
    worker = OutboxWorker(outbox, notifier, backoff=Backoff(10, 2, 120), clock=lambda: now[0])
    await hooks.start()
    try:
        dispatcher.on_event(event(A, 1, EventKind.RAISE, T0))
        for second in (0, 100, 1000):
            now[0] = T0 + timedelta(seconds=second)
            await dispatcher.on_tick()
            await worker.run_once()
    finally:
        await outbox.close()
        await notifier.log.close()  # type: ignore[attr-defined]
    # DingTalk 310000 (keyword check) cannot succeed by retrying: one attempt, status failed
    assert [r[3:] for r in outbox_rows(dsn)] == [("failed", 1)]
    assert len(hooks.received["dingtalk-keyword"]) == 1


async def test_heartbeat_on_an_injected_clock(
    pg_database: str, hooks: Hooks, http: httpx.AsyncClient
) -> None:
    """Hourly heartbeat to the robot. Hand-computed: slots start on whole UTC hours. The
    robot fails (503) from 02:00 to 02:59, so the 02:00 heartbeat expires at 03:00 when the
    next is due; 03:00 and 04:00 are delivered; a restarted dispatcher inside the 03:00 hour
    does not send 03:00 again; ticks inside an hour send nothing."""
    dsn = migrated(pg_database)
    now = [T0]
    config = duty_config(hooks)
    metrics = NotifierMetrics(CollectorRegistry())
    notifier = notifier_for(config, http, 1, dsn, metrics)
    outbox = PgOutbox(dsn, name="heartbeat")
    plan = HeartbeatPlan(group="hb", interval=timedelta(hours=1))

    def dispatcher() -> AlertDispatcher:
        return AlertDispatcher(NotifyScheduler(config), outbox,
                               clock=lambda: now[0], heartbeat=plan)

    worker = OutboxWorker(outbox, notifier, backoff=Backoff(60, 2, 600), clock=lambda: now[0])
    hooks.status = 503
    await hooks.start()
    current = dispatcher()
    try:
        for at, restart in (
            ("02:00:00", False), ("02:30:00", False), ("03:00:00", False),
            ("03:20:00", True), ("03:59:59", False), ("04:00:00", False), ("04:10:00", False),
        ):
            now[0] = datetime.fromisoformat(f"2026-11-22T{at}+00:00")
            if at == "03:00:00":
                hooks.status = 200
            if restart:
                current = dispatcher()
            await current.on_tick()
            await worker.run_once()
    finally:
        await outbox.close()
        await notifier.log.close()  # type: ignore[attr-defined]
    docs = hooks.received["robot"]
    assert [(d["kind"], d["at"], d["next_by"]) for d in docs] == [
        ("heartbeat", "2026-11-22T03:00:00+00:00", "2026-11-22T04:00:00+00:00"),
        ("heartbeat", "2026-11-22T04:00:00+00:00", "2026-11-22T05:00:00+00:00"),
    ]
    assert "is alive" in docs[0]["title"]
    assert "2026-11-22 12:00 (UTC+8)" in docs[0]["text"]  # next due 04:00 UTC = 12:00 Beijing
    assert [(r[1], r[3]) for r in outbox_rows(dsn)] == [
        ("heartbeat", "expired"), ("heartbeat", "delivered"), ("heartbeat", "delivered")]
    assert metrics.registry.get_sample_value(
        "stackwatch_notifications_expired_total", {"channel": "webhook", "kind": "heartbeat"}
    ) == 1.0


async def _wait_for(predicate: Any, task: asyncio.Task[None], what: str) -> None:
    """Poll (≤ 120 s) until ``predicate()``; a dead task or the bound fails the test."""
    for _ in range(1200):
        if await asyncio.to_thread(predicate):
            return
        if task.done():
            await task
            raise AssertionError(f"dispatcher stopped before {what}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


async def test_restart_with_pending_messages_delivers_them_once(
    pg_database: str, kafka_bootstrap: str, unique_topic: str, hooks: Hooks,
    http: httpx.AsyncClient,
) -> None:
    """The real consumer loop: the robot is down, the dispatcher is stopped with the firing
    message pending, the robot comes back, a new dispatcher (new scheduler from the saved
    state, same consumer group) delivers it — once — and then the clearance, once."""
    dsn = migrated(pg_database)
    topic, group = f"{unique_topic}.alerts", f"{unique_topic}.notify"
    config = NotifyConfig.model_validate({
        "recipients": [{"name": "robot", "channels": [
            {"type": "webhook", "url": f"{hooks.url}/robot"}]}],
        "groups": [{"name": "g", "members": ["robot"]}],
        "routes": [{"name": "all", "group": "g", "group_wait": "0s", "group_interval": "0s"}],
    })
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=1, linger_ms=0)
    await producer.start()

    async def publish(e: AlertEvent) -> None:
        await producer.send_and_wait(topic, e.model_dump_json().encode(), key=b"hd-steel-01")

    async def start() -> tuple[asyncio.Task[None], asyncio.Event, PgOutbox, Notifier]:
        notifier = notifier_for(config, http, 1, dsn)
        outbox = PgOutbox(dsn, name=group)
        scheduler = await load_scheduler_from_outbox(config, outbox)
        worker = OutboxWorker(outbox, notifier, backoff=Backoff(0.2, 1, 0.2))
        stop = asyncio.Event()
        task = asyncio.create_task(run_dispatcher(
            AlertDispatcher(scheduler, outbox), bootstrap=kafka_bootstrap,
            topic=topic, group_id=group, tick_interval_s=0.1, stop=stop,
            start_from="earliest", worker=worker, worker_interval_s=0.1,
        ))
        return task, stop, outbox, notifier

    async def halt(task: asyncio.Task[None], stop: asyncio.Event, outbox: PgOutbox,
                   notifier: Notifier) -> None:
        stop.set()
        await task
        await outbox.close()
        await notifier.log.close()  # type: ignore[attr-defined]

    def attempted() -> bool:
        rows = outbox_rows(dsn)
        return bool(rows) and rows[0][3] == "pending" and rows[0][4] >= 2

    try:
        await publish(event(A, 1, EventKind.RAISE, T0))
        first = await start()
        await _wait_for(attempted, first[0], "two failed attempts")
        await halt(*first)
        assert hooks.received == {}
        assert [r[1:4] for r in outbox_rows(dsn)] == [("firing", [A], "pending")]

        await hooks.start()
        second = await start()
        try:
            await _wait_for(lambda: bool(hooks.received.get("robot")), second[0], "delivery")
            await publish(event(A, 2, EventKind.CLEAR, T0 + timedelta(minutes=5)))
            await _wait_for(lambda: len(hooks.received["robot"]) >= 2, second[0],
                            "the resolved message")
            await asyncio.sleep(1.0)  # a few more passes: a duplicate would show up here
        finally:
            await halt(*second)
    finally:
        await producer.stop()
    assert [(d["kind"], d["alerts"][0]["alert_id"]) for d in hooks.received["robot"]] == [
        ("firing", A), ("resolved", A)]
    assert [(r[1], r[3]) for r in outbox_rows(dsn)] == [
        ("firing", "delivered"), ("resolved", "delivered")]
