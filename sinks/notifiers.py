"""Alert delivery: webhooks (httpx) and e-mail (aiosmtplib), and the delivery log.

Notifications have one delivery path, the durable outbox (``sinks/outbox.py``): its worker
calls :meth:`Notifier.attempt` — one attempt; the outbox owns the retries and their
back-off, so they survive restarts — and records the finished outcome with
:meth:`Notifier.record`.

A :class:`Notifier` renders a :class:`~stackwatch.notify.Notification` (or a heartbeat) for
one recipient channel, sends it, and writes outcomes to the delivery log (table
``notifications``: one row per alert event, channel and recipient). With acknowledgement links
on, each delivery is rendered with links signed for *its* recipient (one fresh link per alert
and recipient), so whoever opens a link is recorded as the person the message went to. A
failed attempt raises :class:`DeliveryError`, which says whether retrying can help; it never
leaks a robot URL's token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Literal, LiteralString, Protocol
from urllib.parse import quote_plus

import aiosmtplib
import httpx
import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import AwareDatetime, BaseModel, ConfigDict

from sinks.db import build_conninfo, redact_dsn
from stackwatch.notify.ack_link import AckLinks
from stackwatch.notify.config import Channel, EmailChannel, NotifyConfig, WebhookChannel
from stackwatch.notify.model import Delivery, Heartbeat, Notification, NotificationKind
from stackwatch.notify.render import (
    dingtalk_payload,
    heartbeat_payload,
    heartbeat_subject,
    heartbeat_text,
    json_payload,
    render_html,
    render_subject,
    render_text,
    wecom_payload,
)
from stackwatch.settings import SmtpSettings

__all__ = [
    "DeliveryError",
    "DeliveryLog",
    "DeliveryRow",
    "EmailSender",
    "Notifier",
    "NotifierMetrics",
    "PgDeliveryLog",
    "WebhookSender",
    "build_email",
    "channel_id",
    "dingtalk_signed_url",
]

log = logging.getLogger(__name__)

Status = Literal["pending", "sent", "failed", "suppressed"]

#: Robot API error codes that mean "too fast / busy, try later" (DingTalk 130101 send too
#: fast, WeCom 45009 API frequency limit, -1 system busy on both).
_ROBOT_RETRYABLE = frozenset({130101, 45009, -1})


class DeliveryError(Exception):
    """A delivery attempt failed; ``retryable`` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def channel_id(channel: Channel) -> str:
    """A stable name of a channel for the outbox: a hash of its type, target and secret URL,
    so a stored row finds its channel in the routing file again without storing the URL."""
    secret = channel.url.get_secret_value() if isinstance(channel, WebhookChannel) else ""
    digest = hashlib.sha256(f"{channel.type}|{channel.target}|{secret}".encode()).hexdigest()
    return digest[:20]


# ------------------------------------------------------------------------------ webhook


def dingtalk_signed_url(url: str, secret: str, now_ms: int) -> str:
    """DingTalk '加签': sign = urlencode(base64(HMAC-SHA256(secret, f"{ts}\\n{secret}")))."""
    string_to_sign = f"{now_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    sign = quote_plus(base64.b64encode(digest).decode())
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}timestamp={now_ms}&sign={sign}"


class WebhookSender:
    """POSTs JSON with httpx; maps HTTP and robot errors to retryable or permanent."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        # httpx logs every request line at INFO, URL included: robot URLs carry access tokens.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))

    async def send(self, channel: WebhookChannel, payload: dict[str, Any]) -> None:
        """One attempt. Raises :class:`DeliveryError` (never leaks the URL's token)."""
        url = channel.url.get_secret_value()
        if channel.sign_secret is not None:
            url = dingtalk_signed_url(
                url, channel.sign_secret.get_secret_value(), int(time.time() * 1000)
            )
        headers = {k: v.get_secret_value() for k, v in channel.headers.items()}
        try:
            resp = await self.client.post(url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(
                f"{channel.target}: {type(exc).__name__}: {exc}".replace(url, channel.target),
                retryable=True,
            ) from None
        if resp.status_code >= 300:
            retryable = resp.status_code >= 500 or resp.status_code in (408, 429)
            raise DeliveryError(
                f"{channel.target}: HTTP {resp.status_code} {resp.text[:200]}",
                retryable=retryable,
            )
        if channel.format in ("dingtalk", "wecom"):
            try:
                body = resp.json()
            except ValueError:
                raise DeliveryError(
                    f"{channel.target}: robot answered non-JSON {resp.text[:200]!r}",
                    retryable=False,
                ) from None
            code = body.get("errcode", 0) if isinstance(body, dict) else 0
            if code != 0:
                raise DeliveryError(
                    f"{channel.target}: robot errcode {code}: {body.get('errmsg', '')}",
                    retryable=code in _ROBOT_RETRYABLE,
                )


# -------------------------------------------------------------------------------- email


def _html_lines(text: str) -> list[str]:
    return [html.escape(line) for line in text.splitlines() if line]


def build_email(sender: str, to: str, subject: str, text: str, html: str) -> EmailMessage:
    """multipart/alternative: UTF-8 plain text first, HTML second (RFC 2046 §5.1.4 order)."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="stackwatch")
    msg.set_content(text, charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


class EmailSender:
    """Sends one message through the configured SMTP server with aiosmtplib."""

    def __init__(self, smtp: SmtpSettings) -> None:
        self.smtp = smtp

    async def send(self, message: EmailMessage) -> None:
        """One attempt. 4xx / connection problems are retryable, 5xx are not."""
        s = self.smtp
        if not s.host:
            raise DeliveryError("SMTP is not configured (STACKWATCH_SMTP__HOST)", retryable=False)
        try:
            await aiosmtplib.send(
                message,
                hostname=s.host,
                port=s.port,
                username=s.username,
                password=s.password.get_secret_value() if s.password else None,
                start_tls=s.starttls and not s.use_tls,
                use_tls=s.use_tls,
                timeout=s.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise DeliveryError(
                f"SMTP refused recipients: {exc}", retryable=all(400 <= c < 500 for c in codes)
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.code}: {exc.message}", retryable=400 <= exc.code < 500
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {type(exc).__name__}: {exc}", retryable=True) from None


# --------------------------------------------------------------------------- delivery log


class DeliveryRow(BaseModel):
    """One row of the ``notifications`` table (natural key: alert, seq, channel, recipient)."""

    model_config = ConfigDict(frozen=True)

    alert_id: str
    event_seq: int
    channel: str
    recipient: str
    status: Status
    attempts: int
    error: str | None = None
    sent_at: AwareDatetime | None = None


class DeliveryLog(Protocol):
    """Where delivery attempts are recorded."""

    async def write(self, rows: Sequence[DeliveryRow]) -> None:
        """Upsert rows by their natural key. Must not raise on storage problems."""

    async def escalated(self, alert_ids: Sequence[str], level: int) -> None:
        """Record that these alerts reached escalation ``level`` (never lowers it)."""


_UPSERT = """
INSERT INTO notifications (alert_id, event_seq, channel, recipient, status, attempts, error,
                           sent_at)
VALUES (%(alert_id)s, %(event_seq)s, %(channel)s, %(recipient)s, %(status)s, %(attempts)s,
        %(error)s, %(sent_at)s)
ON CONFLICT (alert_id, event_seq, channel, recipient) DO UPDATE
SET status = EXCLUDED.status, attempts = EXCLUDED.attempts, error = EXCLUDED.error,
    sent_at = EXCLUDED.sent_at
"""


_ESCALATED = """
UPDATE alerts SET escalation_level = %(level)s, updated_at = now()
WHERE alert_id = ANY(%(ids)s) AND escalation_level < %(level)s
"""


class PgDeliveryLog:
    """Writes the ``notifications`` table with psycopg 3 (async); reconnects after errors.

    A database outage is logged and the rows are dropped from the log, never from delivery:
    paging people matters more than the record of it.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def write(self, rows: Sequence[DeliveryRow]) -> None:
        """Upsert rows in one transaction."""
        if rows:
            await self._run(_UPSERT, [r.model_dump() for r in rows])

    async def escalated(self, alert_ids: Sequence[str], level: int) -> None:
        """Raise ``alerts.escalation_level`` (a row the writer has not stored yet is skipped)."""
        if alert_ids:
            await self._run(_ESCALATED, [{"ids": list(alert_ids), "level": level}])

    async def _run(self, sql: LiteralString, params: list[dict[str, Any]]) -> None:
        async with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        build_conninfo(self.dsn), autocommit=False
                    )
                async with self._conn.transaction(), self._conn.cursor() as cur:
                    await cur.executemany(sql, params)
            except (psycopg.Error, OSError) as exc:
                log.error(
                    "delivery log write failed",
                    extra={"error": str(exc), "rows": len(params), "dsn": redact_dsn(self.dsn)},
                )
                await self._drop()

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._conn.close()
            self._conn = None

    async def close(self) -> None:
        """Close the connection."""
        async with self._lock:
            await self._drop()


# ------------------------------------------------------------------------------ notifier


class NotifierMetrics:
    """Deliveries by channel and outcome, and retries (labels are closed sets)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.deliveries = Counter(
            "stackwatch_notifications",
            "Notification deliveries finished, by channel (webhook|email), notification kind "
            "(firing|repeat|escalation|resolved) and outcome (sent|failed).",
            ["channel", "kind", "outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "stackwatch_notification_retries",
            "Failed delivery attempts that were retried, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self.expired = Counter(
            "stackwatch_notifications_expired",
            "Outbox deliveries given up after the maximum age (STACKWATCH_NOTIFY__MAX_AGE), "
            "by channel and notification kind.",
            ["channel", "kind"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "stackwatch_notification_outbox_pending",
            "Outbox deliveries not yet delivered, expired or failed (after the last pass).",
            registry=self.registry,
        )
        # Closed label sets start at 0: dashboards and alert rules see every series before
        # the first delivery or failure.
        for channel in ("webhook", "email"):
            self.retries.labels(channel=channel)
            for kind in ("firing", "repeat", "escalation", "resolved", "heartbeat"):
                self.expired.labels(channel=channel, kind=kind)
                for outcome in ("sent", "failed"):
                    self.deliveries.labels(channel=channel, kind=kind, outcome=outcome)


class Notifier:
    """Renders and sends one delivery attempt, and logs finished deliveries."""

    def __init__(
        self,
        config: NotifyConfig,
        *,
        base_url: str,
        webhook: WebhookSender,
        email: EmailSender,
        delivery_log: DeliveryLog,
        metrics: NotifierMetrics | None = None,
        ack_links: AckLinks | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.ack_links = ack_links
        self.clock = clock
        self.metrics = metrics or NotifierMetrics()
        self.base_url = config.grafana_url or base_url
        self.webhook = webhook
        self.email = email
        self.log = delivery_log

    def links_for(self, delivery: Delivery) -> dict[str, str] | None:
        """Alert id → acknowledgement link signed for this delivery's recipient (open alerts
        only); None when links are off."""
        if self.ack_links is None:
            return None
        now = self.clock()
        return {
            item.event.alert_id: self.ack_links.url(item.event.alert_id, delivery.recipient, now)
            for item in delivery.notification.alerts
            if not item.resolved
        }

    async def attempt(
        self, recipient: str, channel: Channel, message: Notification | Heartbeat
    ) -> None:
        """One attempt to deliver ``message`` to one recipient's channel (the outbox retries).
        Raises :class:`DeliveryError`; a message that cannot be rendered is a permanent one."""
        try:
            if isinstance(message, Heartbeat):
                op = self._heartbeat_operation(channel, message)
            else:
                op = self._operation(
                    Delivery(notification=message, recipient=recipient, channel=channel)
                )
        except Exception as exc:  # rendering must never take the dispatcher down
            log.exception("notification rendering failed")
            raise DeliveryError(f"render: {exc}", retryable=False) from None
        await op()

    async def record(
        self, recipient: str, channel: Channel, message: Notification, status: Status,
        attempts: int, error: str | None = None,
    ) -> None:
        """Write the finished outcome of an outbox delivery to the delivery log (and raise
        the alerts' escalation level once an escalation was delivered)."""
        delivery = Delivery(notification=message, recipient=recipient, channel=channel)
        if status == "sent" and message.kind is NotificationKind.ESCALATION:
            await self.log.escalated([i.event.alert_id for i in message.alerts], message.level)
        sent_at = self.clock() if status == "sent" else None
        await self.log.write(self._rows(delivery, status, attempts, error, sent_at))

    def _heartbeat_operation(
        self, channel: Channel, hb: Heartbeat
    ) -> Callable[[], Awaitable[None]]:
        if isinstance(channel, WebhookChannel):
            payload = heartbeat_payload(channel.format, hb)
            return lambda: self.webhook.send(channel, payload)
        text = heartbeat_text(hb)
        page = "<!DOCTYPE html><html><body>" + "".join(
            f"<p>{line}</p>" for line in _html_lines(text)
        ) + "</body></html>"
        message = build_email(
            self.email.smtp.sender, channel.address, heartbeat_subject(hb), text, page
        )
        return lambda: self.email.send(message)

    def _operation(self, delivery: Delivery) -> Callable[[], Awaitable[None]]:
        n, channel = delivery.notification, delivery.channel
        links = self.links_for(delivery)
        if isinstance(channel, WebhookChannel):
            payload = {
                "json": json_payload,
                "dingtalk": dingtalk_payload,
                "wecom": wecom_payload,
            }[channel.format](n, self.base_url, links)
            return lambda: self.webhook.send(channel, payload)
        assert isinstance(channel, EmailChannel)
        message = build_email(
            self.email.smtp.sender,
            channel.address,
            render_subject(n),
            render_text(n, self.base_url, links),
            render_html(n, self.base_url, links),
        )
        return lambda: self.email.send(message)

    def _rows(
        self, delivery: Delivery, status: Status, attempts: int, error: str | None,
        sent_at: datetime | None,
    ) -> list[DeliveryRow]:
        return [
            DeliveryRow(
                alert_id=item.event.alert_id,
                event_seq=item.event.seq,
                channel=delivery.channel_type,
                recipient=delivery.recipient_label,
                status=status,
                attempts=attempts,
                error=error,
                sent_at=sent_at,
            )
            for item in delivery.notification.alerts
        ]
