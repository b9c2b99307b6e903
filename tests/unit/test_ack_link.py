"""Acknowledgement links: signing, expiry, forgery, binding, secrets (stackwatch.notify.ack_link).

Every expected outcome is stated by hand: the lifetime is 72 h = 259 200 s, so a link issued at
T verifies at T + 259 200 s and is expired at T + 259 201 s (itsdangerous refuses an age
strictly greater than max_age, in whole seconds).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer
from pydantic import SecretStr
from typer.testing import CliRunner

from stackwatch.notify.ack_link import (
    DEV_SECRET,
    AckLinks,
    AckLinkSigner,
    InsecureSecretError,
    LinkExpiredError,
    LinkForgedError,
    check_secret,
)

SECRET = "k" * 20 + "0123456789AB"  # 32 characters
OTHER = "o" * 40
ISSUED = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
ALERT = "7f1c2d3e-0000-5000-8000-0000000000aa"
LIFETIME = timedelta(hours=72)


@pytest.fixture
def signer() -> AckLinkSigner:
    return AckLinkSigner(SECRET, lifetime=LIFETIME)


def _b64(data: dict[str, str]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_round_trip_carries_alert_recipient_jti_and_issue_time(signer: AckLinkSigner) -> None:
    token = signer.issue(ALERT, "王工", ISSUED, jti="link-0001")
    claims = signer.verify(token, ISSUED + timedelta(minutes=5), alert_id=ALERT)
    assert claims.alert_id == ALERT
    assert claims.recipient == "王工"
    assert claims.jti == "link-0001"
    assert claims.issued_at == ISSUED
    # the token is URL-safe: [.]payload.timestamp.signature in base64url, no padding (a
    # leading '.' marks a zlib-compressed payload)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert len(token.lstrip(".").split(".")) == 3


def test_every_link_gets_its_own_jti(signer: AckLinkSigner) -> None:
    a = signer.verify(signer.issue(ALERT, "duty", ISSUED), ISSUED)
    b = signer.verify(signer.issue(ALERT, "duty", ISSUED), ISSUED)
    assert a.jti != b.jti


def test_expiry_is_exactly_the_lifetime(signer: AckLinkSigner) -> None:
    token = signer.issue(ALERT, "duty", ISSUED)
    # 72 h = 259 200 s after issue: still valid
    assert signer.verify(token, ISSUED + timedelta(seconds=259_200)).recipient == "duty"
    with pytest.raises(LinkExpiredError) as info:
        signer.verify(token, ISSUED + timedelta(seconds=259_201))
    assert info.value.issued_at == ISSUED
    assert str(info.value) == "link expired"


def test_a_link_dated_in_the_future_is_refused(signer: AckLinkSigner) -> None:
    token = signer.issue(ALERT, "duty", ISSUED)
    with pytest.raises(LinkExpiredError, match="future"):
        signer.verify(token, ISSUED - timedelta(seconds=1))


def test_a_shorter_lifetime_applies_to_links_already_sent() -> None:
    token = AckLinkSigner(SECRET, lifetime=LIFETIME).issue(ALERT, "duty", ISSUED)
    one_hour = AckLinkSigner(SECRET, lifetime=timedelta(hours=1))
    assert one_hour.verify(token, ISSUED + timedelta(seconds=3600)).alert_id == ALERT
    with pytest.raises(LinkExpiredError):
        one_hour.verify(token, ISSUED + timedelta(seconds=3601))


def test_a_tampered_signature_is_forged(signer: AckLinkSigner) -> None:
    token = signer.issue(ALERT, "duty", ISSUED)
    head, sig = token.rsplit(".", 1)
    # The signature's first character: all six of its bits are signature bits (the last
    # character's low bits are base64 padding, so changing it may change nothing).
    tampered = f"{head}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    with pytest.raises(LinkForgedError):
        signer.verify(tampered, ISSUED)


def test_another_recipient_cannot_be_swapped_in(signer: AckLinkSigner) -> None:
    token = signer.issue(ALERT, "duty", ISSUED, jti="link-0001")
    _payload, stamp, sig = token.rsplit(".", 2)
    swapped = _b64({"a": ALERT, "r": "boss", "j": "link-0001"})
    with pytest.raises(LinkForgedError):
        signer.verify(f"{swapped}.{stamp}.{sig}", ISSUED)


def test_another_secret_or_purpose_does_not_verify(signer: AckLinkSigner) -> None:
    other = AckLinkSigner(OTHER, lifetime=LIFETIME).issue(ALERT, "duty", ISSUED)
    with pytest.raises(LinkForgedError):
        signer.verify(other, ISSUED)
    # Same secret, itsdangerous' default salt (another purpose, e.g. a session cookie).
    foreign = URLSafeTimedSerializer(SECRET).dumps({"a": ALERT, "r": "duty", "j": "link-0001"})
    with pytest.raises(LinkForgedError):
        signer.verify(str(foreign), datetime.now(UTC))


def test_a_link_for_one_alert_does_not_open_another(signer: AckLinkSigner) -> None:
    token = signer.issue(ALERT, "duty", ISSUED)
    with pytest.raises(LinkForgedError, match="another alert"):
        signer.verify(token, ISSUED, alert_id="00000000-0000-5000-8000-000000000000")


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "...", "x" * 300])
def test_garbage_is_forged(signer: AckLinkSigner, token: str) -> None:
    with pytest.raises(LinkForgedError):
        signer.verify(token, ISSUED)


def test_a_well_signed_payload_of_the_wrong_shape_is_forged(signer: AckLinkSigner) -> None:
    # Signed with the right secret and salt but without a recipient: never accepted.
    from stackwatch.notify.ack_link import SALT

    odd = URLSafeTimedSerializer(SECRET, salt=SALT).dumps({"a": ALERT, "j": "link-0001"})
    with pytest.raises(LinkForgedError, match="malformed"):
        signer.verify(str(odd), datetime.now(UTC))


def test_links_url_shape() -> None:
    links = AckLinks(AckLinkSigner(SECRET, lifetime=LIFETIME), "https://ack.example/cems/")
    url = links.url(ALERT, "duty", ISSUED)
    prefix = f"https://ack.example/cems/ack/{ALERT}/"
    assert url.startswith(prefix)
    token = url.removeprefix(prefix)
    assert links.signer.verify(token, ISSUED, alert_id=ALERT).recipient == "duty"


def test_secret_rules() -> None:
    assert check_secret(SecretStr(SECRET), insecure_dev=False) == SECRET
    with pytest.raises(InsecureSecretError, match="no acknowledgement-link secret"):
        check_secret(None, insecure_dev=False)
    with pytest.raises(InsecureSecretError, match="too short"):
        check_secret(SecretStr("x" * 31), insecure_dev=False)
    # development only: a short secret is accepted, a missing one is the public dev secret
    assert check_secret(SecretStr("short"), insecure_dev=True) == "short"
    assert check_secret(None, insecure_dev=True) == DEV_SECRET
    with pytest.raises(ValueError, match="positive"):
        AckLinkSigner(SECRET, lifetime=timedelta(0))


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    from stackwatch.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("command", [["api"], ["dispatch", "--routes", "/nonexistent.yaml"]])
def test_cli_refuses_links_without_a_secret(
    command: list[str], monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    from commands import app

    monkeypatch.setenv("STACKWATCH_API_TOKEN", "t0ken-for-tests-0123456789")
    monkeypatch.setenv("STACKWATCH_ACK_PAGE__ENABLED", "true")
    monkeypatch.delenv("STACKWATCH_ACK_PAGE__SECRET", raising=False)
    result = CliRunner().invoke(app, ["alerts", *command])
    assert result.exit_code == 1
    assert "no acknowledgement-link secret" in result.output
    monkeypatch.setenv("STACKWATCH_ACK_PAGE__SECRET", "short-secret")
    from stackwatch.settings import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["alerts", *command])
    assert result.exit_code == 1
    assert "too short" in result.output
