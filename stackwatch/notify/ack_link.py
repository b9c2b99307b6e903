"""Signed, expiring acknowledgement links: one per recipient and alert (pure, no I/O).

A notification carries, for each alert and each recipient it is delivered to, a link
``<base_url>/ack/<alert_id>/<token>``. The token is an ``itsdangerous``
:class:`~itsdangerous.URLSafeTimedSerializer` document ``{"a": alert_id, "r": recipient,
"j": jti}`` signed (HMAC-SHA1 over a key derived from the secret and a purpose salt) with the
time it was issued. Whoever opens it is trusted to be ``recipient`` — the person the message
was sent to — so the acknowledgement is recorded as that recipient, never as a name typed in a
form. The link page refuses:

* a token whose signature does not verify (edited, other secret, other purpose): **forged**;
* a token older than the lifetime (or issued in the future): **expired**;
* a token for another alert than the one in the path: **forged**;
* a token whose ``jti`` has already acknowledged (kept in PostgreSQL by the page): **reused**.

The clock is an argument (``now``), so expiry is tested without waiting.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

__all__ = [
    "DEV_SECRET",
    "MIN_SECRET_LENGTH",
    "SALT",
    "AckLinkClaims",
    "AckLinkError",
    "AckLinkSigner",
    "AckLinks",
    "InsecureSecretError",
    "LinkExpiredError",
    "LinkForgedError",
    "ack_path",
    "check_secret",
]

MIN_SECRET_LENGTH = 32
"""Secrets shorter than this are refused (outside ``insecure_dev``)."""

SALT = "stackwatch.ack-link.v1"
"""Purpose of the signature: a token signed for anything else never verifies here."""

DEV_SECRET = "stackwatch-insecure-development-ack-link-secret"
"""Used only with ``insecure_dev`` and no configured secret, so a local dispatcher and page
agree on links; it is public, so such links prove nothing."""


class AckLinkError(Exception):
    """The link cannot be accepted (the page says why)."""


class LinkExpiredError(AckLinkError):
    """Signature valid, but older than the lifetime (or dated in the future)."""

    def __init__(self, message: str, issued_at: datetime | None) -> None:
        super().__init__(message)
        self.issued_at = issued_at


class LinkForgedError(AckLinkError):
    """Signature invalid, payload malformed, or bound to another alert."""


class InsecureSecretError(RuntimeError):
    """Links were asked for without a (long enough) secret."""


class AckLinkClaims(BaseModel):
    """What a verified token says: for which alert, for whom, which link (jti)."""

    model_config = ConfigDict(frozen=True)

    alert_id: str = Field(min_length=1, max_length=200)
    recipient: str = Field(min_length=1, max_length=100)
    jti: str = Field(min_length=8, max_length=64, description="Link id: refused once used.")
    issued_at: datetime


def check_secret(secret: SecretStr | None, *, insecure_dev: bool) -> str:
    """The secret's value; raises :class:`InsecureSecretError` when it is missing or shorter
    than :data:`MIN_SECRET_LENGTH`, unless ``insecure_dev`` (then a missing secret is
    :data:`DEV_SECRET` and a short one is accepted)."""
    value = secret.get_secret_value() if secret is not None else ""
    if insecure_dev:
        return value or DEV_SECRET
    if not value:
        raise InsecureSecretError(
            "no acknowledgement-link secret: set STACKWATCH_ACK_PAGE__SECRET "
            f"(at least {MIN_SECRET_LENGTH} random characters) or pass --insecure-dev"
        )
    if len(value) < MIN_SECRET_LENGTH:
        raise InsecureSecretError(
            f"acknowledgement-link secret too short: use at least {MIN_SECRET_LENGTH} "
            "random characters"
        )
    return value


class _ClockSigner(TimestampSigner):
    """A TimestampSigner whose "now" is given, not read from the system clock."""

    def __init__(self, *args: Any, now: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._now = now

    def get_timestamp(self) -> int:
        return self._now


class AckLinkSigner:
    """Issues and verifies acknowledgement tokens with one secret and one lifetime."""

    def __init__(self, secret: str, *, lifetime: timedelta) -> None:
        if not secret:
            raise InsecureSecretError("empty acknowledgement-link secret")
        if lifetime <= timedelta(0):
            raise ValueError("link lifetime must be positive")
        self._secret = secret
        self.lifetime = lifetime

    def _serializer(self, now: datetime) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(
            self._secret,
            salt=SALT,
            signer=_ClockSigner,
            signer_kwargs={"now": int(now.timestamp())},
        )

    def issue(self, alert_id: str, recipient: str, now: datetime, jti: str | None = None) -> str:
        """A token for ``recipient`` to acknowledge ``alert_id``, issued at ``now``."""
        link_id = jti or secrets.token_urlsafe(12)
        token = self._serializer(now).dumps({"a": alert_id, "r": recipient, "j": link_id})
        return str(token)

    def verify(self, token: str, now: datetime, *, alert_id: str | None = None) -> AckLinkClaims:
        """The token's claims, if its signature holds, it is within its lifetime at ``now``
        and (when given) it is for ``alert_id``. Raises :class:`LinkExpiredError` or
        :class:`LinkForgedError`."""
        serializer = self._serializer(now)
        try:
            data, signed = serializer.loads(
                token, max_age=int(self.lifetime.total_seconds()), return_timestamp=True
            )
        except SignatureExpired as exc:
            issued = exc.date_signed
            raise LinkExpiredError(
                "link expired" if issued is None or issued <= now else "link dated in the future",
                issued,
            ) from None
        except BadSignature:
            raise LinkForgedError("link signature does not verify") from None
        if not isinstance(data, dict):
            raise LinkForgedError("link payload is not an object")
        try:
            claims = AckLinkClaims(
                alert_id=data.get("a"),
                recipient=data.get("r"),
                jti=data.get("j"),
                issued_at=signed.astimezone(UTC),
            )
        except ValidationError:
            raise LinkForgedError("link payload is malformed") from None
        if alert_id is not None and claims.alert_id != alert_id:
            raise LinkForgedError("link is for another alert")
        return claims


def ack_path(alert_id: str, token: str) -> str:
    """Path of the page for one token (relative to the page's base URL)."""
    return f"/ack/{quote(alert_id, safe='')}/{token}"


class AckLinks:
    """Builds the full URL of a recipient's link (what the notifier puts in messages)."""

    def __init__(self, signer: AckLinkSigner, base_url: str) -> None:
        self.signer = signer
        self.base_url = base_url.rstrip("/")

    def url(self, alert_id: str, recipient: str, now: datetime) -> str:
        """A fresh link (new jti) for ``recipient`` and ``alert_id``."""
        return self.base_url + ack_path(alert_id, self.signer.issue(alert_id, recipient, now))
