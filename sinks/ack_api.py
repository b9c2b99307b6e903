"""Alert acknowledgement over HTTP (aiohttp) and the I/O the CLI uses for ``alerts ack/list``.

``POST /alerts/{alert_id}/ack`` with ``Authorization: Bearer <personal token>`` and JSON
``{"reason": ...}`` looks the alert up (it must be open), then publishes an
:class:`~stackwatch.notify.ack.AckCommand` on the alert-commands topic; the alert lifecycle
consumes it and emits the ``ack`` event that stops repeats and escalation. **Who**
acknowledges is the owner of the token (``users``: SHA-256 of each token → name; tokens are
never stored), never a name in the body: a body ``by`` is refused (422). The shared
``STACKWATCH_API_TOKEN`` identifies nobody, so it may list alerts (``GET /alerts``) but not
acknowledge (403). There is no default credential: the app refuses to start without a token
or users unless ``insecure_dev`` is given explicitly (local development only), and tokens
shorter than :data:`MIN_TOKEN_LENGTH` characters are refused.

Every request is rate-limited per person (per client IP before authentication: guessing
tokens is slowed too), 429 with ``Retry-After``. Malformed requests are 4xx, never 500: a
repeated, non-Bearer or non-UTF-8 ``Authorization`` (400/401), a body that is not
``application/json`` in UTF-8 (415), not JSON (400), not an object of the right fields (422),
larger than 64 KiB (413).

Publisher and repository are injected (protocols), so the HTTP layer is tested against a real
aiohttp server with in-process collaborators, and production wires Kafka and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from aiokafka import AIOKafkaProducer
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, ValidationError

from sinks.db import LazyPool
from sinks.rate_limit import RateLimiter
from stackwatch.notify.ack import AckCommand, AckRequest

__all__ = [
    "MIN_TOKEN_LENGTH",
    "AckPublisher",
    "ActiveAlert",
    "AlertNotOpenError",
    "AlertRepository",
    "ApiAckBody",
    "Identity",
    "InsecureConfigError",
    "KafkaAckPublisher",
    "PgAlertRepository",
    "check_token",
    "create_app",
    "hash_token",
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
    """Reads the ``alerts`` table through a small connection pool (opened on first use, so
    it is created inside the serving event loop; :meth:`close` it when done)."""

    def __init__(self, dsn: str, *, max_size: int = 4) -> None:
        self.dsn = dsn
        self.max_size = max_size
        self._pool = LazyPool(dsn, name="stackwatch-ack-api", max_size=max_size, autocommit=True)

    async def _open(self) -> AsyncConnectionPool:
        return await self._pool.get()

    async def close(self) -> None:
        """Close the pool's connections."""
        await self._pool.close()

    async def _query(self, sql: str, params: dict[str, Any]) -> list[ActiveAlert]:
        pool = await self._open()
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.encode(), params)
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

MAX_BODY = 64 * 1024
"""Largest request body accepted (an acknowledgement is a reason of ≤ 1000 characters)."""


def hash_token(token: str) -> str:
    """SHA-256 (hex) of a personal token: what ``STACKWATCH_ACK_API__USERS`` stores. Tokens
    are long random strings, so a fast hash is enough (no dictionary to attack)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Identity(BaseModel):
    """Who sent a request: a person (personal token), the shared token, or nobody checked
    (``insecure_dev`` without credentials)."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(description="person | shared | insecure-dev")
    name: str | None = None


class ApiAckBody(BaseModel):
    """Body of ``POST /alerts/{alert_id}/ack``: only the reason (who = the token's owner)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    reason: str = Field(min_length=1, max_length=1000, description="Why / what is being done.")


_TOKEN = web.AppKey("token", bytes)
_USERS: web.AppKey[Mapping[str, str]] = web.AppKey("users")
_OPEN = web.AppKey("open", bool)
_LIMITER = web.AppKey("limiter", RateLimiter)
_PUBLISHER = web.AppKey("publisher", AckPublisher)
_REPOSITORY = web.AppKey("repository", AlertRepository)
_CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
_IDENTITY = web.RequestKey("identity", Identity)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _unauthorised(message: str = "missing or invalid bearer token") -> web.Response:
    resp = _error(401, message)
    resp.headers["WWW-Authenticate"] = 'Bearer realm="stackwatch"'
    return resp


def _identify(request: web.Request) -> Identity | web.Response:
    """The caller's identity from ``Authorization``, or the 4xx answer."""
    app = request.app
    headers = request.headers.getall("Authorization", [])
    if len(headers) > 1:
        return _error(400, "more than one Authorization header")
    if not headers:
        if app[_OPEN]:
            return Identity(kind="insecure-dev", name="insecure-dev")
        return _unauthorised()
    scheme, _, given = headers[0].strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return _unauthorised("Authorization must be 'Bearer <token>'")
    try:
        raw = given.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in the header (surrogate escapes)
        return _unauthorised("the token must be UTF-8 text")
    digest = hashlib.sha256(raw).hexdigest().encode()
    person = None
    for known, name in app[_USERS].items():  # compare every entry: no early exit
        if hmac.compare_digest(known.encode(), digest):
            person = name
    if person is not None:
        return Identity(kind="person", name=person)
    token = app[_TOKEN]
    if token and hmac.compare_digest(raw, token):
        return Identity(kind="shared")
    return _unauthorised()


@web.middleware
async def _auth(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    if request.path == "/healthz":
        response: web.StreamResponse = await handler(request)
        return response
    found = _identify(request)
    if isinstance(found, Identity) and found.kind == "person":
        key = f"person:{found.name}"
    else:
        key = f"ip:{request.remote or '?'}"
    limiter = request.app[_LIMITER]
    wait = limiter.check(key)
    if wait > 0:
        log.warning("ack API rate limit", extra={"key": key, "path": request.path})
        resp = _error(429, "too many requests")
        resp.headers["Retry-After"] = limiter.retry_after(wait)
        return resp
    if not isinstance(found, Identity):
        return found
    request[_IDENTITY] = found
    response = await handler(request)
    return response


async def _json_body(request: web.Request) -> Any | web.Response:
    """The parsed JSON body, or the 4xx answer (content type, charset, size, syntax)."""
    if request.content_type != "application/json":
        return _error(415, "Content-Type must be application/json")
    charset = (request.charset or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        return _error(415, "the body must be UTF-8 JSON")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _error(413, f"body larger than {MAX_BODY} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"body larger than {MAX_BODY} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are both
        return _error(400, 'body must be JSON: {"reason": ...}')


async def _ack(request: web.Request) -> web.Response:
    alert_id = request.match_info["alert_id"]
    identity = request[_IDENTITY]
    if identity.kind == "shared":
        return _error(
            403, "acknowledging needs a personal token (STACKWATCH_ACK_API__USERS): the "
            "shared token identifies nobody"
        )
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    if isinstance(body, dict) and "by" in body:
        return _error(
            422, "'by' is not accepted: the acknowledgement is recorded as the token's owner",
            details=[{"field": "by", "msg": "not allowed"}],
        )
    try:
        parsed = ApiAckBody.model_validate(body)
        ack = AckRequest(by=identity.name or "insecure-dev", reason=parsed.reason)
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


def check_token(
    token: SecretStr | None, *, insecure_dev: bool, users: Mapping[str, str] | None = None
) -> str:
    """The shared token's value; raises :class:`InsecureConfigError` when there is neither a
    token nor personal tokens (``users``), or the token is short, unless ``insecure_dev``
    (then a missing credential is allowed with a warning)."""
    secret = token.get_secret_value() if token is not None else ""
    if not insecure_dev:
        if not secret and not users:
            raise InsecureConfigError(
                "no API credentials: set STACKWATCH_ACK_API__USERS (personal tokens) and/or "
                "STACKWATCH_API_TOKEN (or pass --insecure-dev for local use)"
            )
        if secret and len(secret) < MIN_TOKEN_LENGTH:
            raise InsecureConfigError(
                f"API token too short: use at least {MIN_TOKEN_LENGTH} random characters"
            )
    elif not secret and not users:
        log.warning("ack API running WITHOUT authentication (--insecure-dev)")
    return secret


def create_app(
    *,
    token: SecretStr | None,
    publisher: AckPublisher,
    repository: AlertRepository,
    users: Mapping[str, str] | None = None,
    insecure_dev: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    limiter: RateLimiter | None = None,
) -> web.Application:
    """The acknowledgement app. ``users`` maps SHA-256 hex digests of personal tokens to
    names (:func:`hash_token`). Raises :class:`InsecureConfigError` without a usable
    credential, unless ``insecure_dev`` (then, without credentials, every request is accepted
    as ``insecure-dev`` and a warning is logged)."""
    people = {k.lower(): v for k, v in (users or {}).items()}
    secret = check_token(token, insecure_dev=insecure_dev, users=people)
    app = web.Application(middlewares=[_auth], client_max_size=MAX_BODY)
    app[_TOKEN] = secret.encode("utf-8")
    app[_USERS] = people
    app[_OPEN] = not secret and not people
    app[_LIMITER] = limiter or RateLimiter(per_minute=30, burst=10)
    app[_PUBLISHER] = publisher
    app[_REPOSITORY] = repository
    app[_CLOCK] = clock
    app.router.add_post("/alerts/{alert_id}/ack", _ack)
    app.router.add_get("/alerts", _list)
    app.router.add_get("/healthz", _health)
    return app
