"""Alert acknowledgement over HTTP (aiohttp) and the I/O the CLI uses for ``alerts ack/list``.

``POST /alerts/{alert_id}/ack`` with ``Authorization: Bearer <token>`` and JSON
``{"by": ..., "reason": ...}`` looks the alert up (it must be open), then publishes an
:class:`~stackwatch.notify.ack.AckCommand` on the alert-commands topic; the alert lifecycle
consumes it and emits the ``ack`` event that stops repeats and escalation. ``GET /alerts``
lists open alerts. There is no default token: the app refuses to start without one unless
``insecure_dev`` is given explicitly (local development only), and tokens shorter than
:data:`MIN_TOKEN_LENGTH` characters are refused.

Publisher and repository are injected (protocols), so the HTTP layer is tested against a real
aiohttp server with in-process collaborators, and production wires Kafka and PostgreSQL.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from aiohttp import web
from aiokafka import AIOKafkaProducer
from psycopg.rows import dict_row
from pydantic import AwareDatetime, BaseModel, ConfigDict, SecretStr, ValidationError

from sinks.db import build_conninfo
from stackwatch.notify.ack import AckCommand, AckRequest

__all__ = [
    "MIN_TOKEN_LENGTH",
    "AckPublisher",
    "ActiveAlert",
    "AlertNotOpenError",
    "AlertRepository",
    "InsecureConfigError",
    "KafkaAckPublisher",
    "PgAlertRepository",
    "check_token",
    "create_app",
    "publish_ack",
]

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16


class InsecureConfigError(RuntimeError):
    """The API was asked to start without a (strong enough) token."""


class AlertNotOpenError(LookupError):
    """No open alert has this id (unknown or already cleared)."""


class ActiveAlert(BaseModel):
    """An open alert as the ``alerts`` table has it (plus registry names when known)."""

    model_config = ConfigDict(frozen=True)

    alert_id: str
    stack_id: str
    factor: str | None = None
    rule: str
    severity: str
    state: str
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    count: int = 1
    peak_value: float | None = None
    limit_value: float | None = None
    ref_o2: float | None = None
    acked_by: str | None = None
    acked_at: AwareDatetime | None = None
    ack_reason: str | None = None
    escalation_level: int = 0
    plant: str | None = None
    stack_name: str | None = None
    city: str | None = None


class AlertRepository(Protocol):
    """Read access to open alerts."""

    async def get_open(self, alert_id: str) -> ActiveAlert | None:
        """The open alert with this id, or None."""

    async def list_active(self, limit: int = 500) -> list[ActiveAlert]:
        """Open alerts, most recent first."""


class AckPublisher(Protocol):
    """Sends an ack command to the alert lifecycle."""

    async def publish(self, command: AckCommand) -> None:
        """Publish (raises on failure)."""


# -------------------------------------------------------------------------- PostgreSQL

_SELECT = """
SELECT a.alert_id, a.stack_id, a.factor, a.rule, a.severity, a.state, a.first_seen,
       a.last_seen, a.count, a.peak_value, a.limit_value, a.ref_o2, a.acked_by, a.acked_at,
       a.ack_reason, a.escalation_level, s.plant, s.name AS stack_name, s.city
FROM alerts a LEFT JOIN stacks s ON s.stack_id = a.stack_id
WHERE a.state <> 'cleared'
"""


class PgAlertRepository:
    """Reads the ``alerts`` table (one short connection per call: a low-rate admin path)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def _query(self, sql: str, params: dict[str, Any]) -> list[ActiveAlert]:
        async with (
            await psycopg.AsyncConnection.connect(
                build_conninfo(self.dsn), autocommit=True, row_factory=dict_row
            ) as conn,
            conn.cursor() as cur,
        ):
            await cur.execute(sql, params)
            return [ActiveAlert.model_validate(row) for row in await cur.fetchall()]

    async def get_open(self, alert_id: str) -> ActiveAlert | None:
        """The open alert with this id, or None."""
        rows = await self._query(_SELECT + " AND a.alert_id = %(id)s", {"id": alert_id})
        return rows[0] if rows else None

    async def list_active(self, limit: int = 500) -> list[ActiveAlert]:
        """Open alerts, most recent first."""
        return await self._query(
            _SELECT + " ORDER BY a.first_seen DESC, a.alert_id LIMIT %(limit)s", {"limit": limit}
        )


# ------------------------------------------------------------------------------- Kafka


class KafkaAckPublisher:
    """Publishes ack commands as JSON, keyed by stack id, with aiokafka (``acks="all"``)."""

    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap = bootstrap
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect the producer."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Flush and close."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, command: AckCommand) -> None:
        """Send and wait for the broker's acknowledgement."""
        if self._producer is None:
            raise RuntimeError("KafkaAckPublisher.start() was not called")
        await self._producer.send_and_wait(
            self.topic,
            value=command.model_dump_json().encode("utf-8"),
            key=command.stack_id.encode("utf-8"),
        )


async def publish_ack(
    repository: AlertRepository,
    publisher: AckPublisher,
    alert_id: str,
    request: AckRequest,
    at: datetime,
) -> AckCommand:
    """Look the alert up (it must be open) and publish its ack command."""
    alert = await repository.get_open(alert_id)
    if alert is None:
        raise AlertNotOpenError(f"alert {alert_id} is not open (unknown or already cleared)")
    command = AckCommand(
        alert_id=alert_id, stack_id=alert.stack_id, by=request.by, reason=request.reason, at=at
    )
    await publisher.publish(command)
    log.info(
        "ack command published",
        extra={"alert_id": alert_id, "stack_id": alert.stack_id, "by": request.by},
    )
    return command


# -------------------------------------------------------------------------------- HTTP

_TOKEN = web.AppKey("token", bytes)
_PUBLISHER = web.AppKey("publisher", AckPublisher)
_REPOSITORY = web.AppKey("repository", AlertRepository)
_CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def _auth(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    if request.path == "/healthz":
        response: web.StreamResponse = await handler(request)
        return response
    token = request.app[_TOKEN]
    if token:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8"), token
        ):
            resp = _error(401, "missing or invalid bearer token")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="stackwatch"'
            return resp
    response = await handler(request)
    return response


async def _ack(request: web.Request) -> web.Response:
    alert_id = request.match_info["alert_id"]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "body must be JSON: {\"by\": ..., \"reason\": ...}")
    try:
        ack = AckRequest.model_validate(body)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()
        ]
        return _error(422, "invalid acknowledgement", details=details)
    try:
        command = await publish_ack(
            request.app[_REPOSITORY], request.app[_PUBLISHER], alert_id, ack,
            request.app[_CLOCK](),
        )
    except AlertNotOpenError as exc:
        return _error(404, str(exc))
    except ValidationError as exc:
        return _error(422, f"invalid alert id: {exc.errors()[0]['msg']}")
    except Exception as exc:
        log.exception("ack failed", extra={"alert_id": alert_id})
        return _error(503, f"could not publish the acknowledgement: {type(exc).__name__}")
    return web.json_response(
        {"status": "accepted", "command": command.model_dump(mode="json")}, status=202
    )


async def _list(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "500"))
    except ValueError:
        return _error(400, "limit must be an integer")
    if not 1 <= limit <= 5000:
        return _error(400, "limit must be between 1 and 5000")
    try:
        alerts = await request.app[_REPOSITORY].list_active(limit)
    except Exception as exc:
        log.exception("listing alerts failed")
        return _error(503, f"could not read alerts: {type(exc).__name__}")
    return web.json_response({"alerts": [a.model_dump(mode="json") for a in alerts]})


async def _health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def check_token(token: SecretStr | None, *, insecure_dev: bool) -> str:
    """The token's value; raises :class:`InsecureConfigError` when it is missing or short,
    unless ``insecure_dev`` (then a missing token is allowed with a warning)."""
    secret = token.get_secret_value() if token is not None else ""
    if not insecure_dev:
        if not secret:
            raise InsecureConfigError(
                "no API token: set STACKWATCH_API_TOKEN (or pass --insecure-dev for local use)"
            )
        if len(secret) < MIN_TOKEN_LENGTH:
            raise InsecureConfigError(
                f"API token too short: use at least {MIN_TOKEN_LENGTH} random characters"
            )
    elif not secret:
        log.warning("ack API running WITHOUT authentication (--insecure-dev)")
    return secret


def create_app(
    *,
    token: SecretStr | None,
    publisher: AckPublisher,
    repository: AlertRepository,
    insecure_dev: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> web.Application:
    """The acknowledgement app. Raises :class:`InsecureConfigError` without a usable token,
    unless ``insecure_dev`` (then every request is accepted and a warning is logged)."""
    secret = check_token(token, insecure_dev=insecure_dev)
    app = web.Application(middlewares=[_auth], client_max_size=64 * 1024)
    app[_TOKEN] = secret.encode("utf-8")
    app[_PUBLISHER] = publisher
    app[_REPOSITORY] = repository
    app[_CLOCK] = clock
    app.router.add_post("/alerts/{alert_id}/ack", _ack)
    app.router.add_get("/alerts", _list)
    app.router.add_get("/healthz", _health)
    return app
