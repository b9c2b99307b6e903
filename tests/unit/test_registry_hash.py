"""Logger passwords at rest: scrypt strings, refusal of SHA-256 entries, the no-password opt-in,
source allow-lists and the verification cache.

Known answers: RFC 7914 §12 test vector 3 (scrypt of "pleaseletmein" with salt
"SodiumChloride", N=16384, r=8, p=1); networks and addresses chosen by hand.
"""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from stackwatch.registry import StackInfo
from stackwatch.registry_hash import PasswordVerifier, hash_password, parse_hash, verify_password

# RFC 7914 §12, vector 3 (dkLen 64); scrypt's first 32 bytes are the dkLen-32 output.
RFC_VECTOR_3 = bytes.fromhex(
    "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
    "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def stack(**kw: object) -> StackInfo:
    base: dict[str, object] = {"stack_id": "s", "mn": "41120001CM0001", "sector": "cement",
                               "process": "kiln_tail"}
    return StackInfo.model_validate(base | kw)


def test_rfc7914_vector_verifies() -> None:
    stored = f"scrypt$16384$8$1${b64(b'SodiumChloride')}${b64(RFC_VECTOR_3)}"
    assert verify_password(stored, "pleaseletmein")
    assert not verify_password(stored, "pleaseletmeout")
    # hash_password with that salt writes the first 32 bytes of the same vector
    assert hash_password("pleaseletmein", salt=b"SodiumChloride") == (
        f"scrypt$16384$8$1${b64(b'SodiumChloride')}${b64(RFC_VECTOR_3[:32])}"
    )


def test_hashes_are_salted_and_carry_their_parameters() -> None:
    a, b = hash_password("123456", n=16), hash_password("123456", n=16)
    assert a != b  # a fresh salt each time: equal passwords do not show
    assert a.startswith("scrypt$16$8$1$") and verify_password(a, "123456")
    parsed = parse_hash(a)
    assert (parsed.n, parsed.r, parsed.p, len(parsed.salt), len(parsed.digest)) == (
        16, 8, 1, 16, 32)


@pytest.mark.parametrize("bad", [
    "scrypt$1000$8$1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # n not a power of two
    "scrypt$16$8$1$c2Fs$aGFzaGhhc2hoYXNoaGFzaA",  # 3-byte salt
    "pbkdf2$16$8$1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92",
])
def test_malformed_hashes_are_refused_at_load(bad: str) -> None:
    with pytest.raises(ValidationError):
        stack(password_hash=bad)
    assert not verify_password(bad, "123456")


def test_sha256_entries_are_refused_with_how_to_rehash() -> None:
    with pytest.raises(ValidationError) as err:
        stack(password_sha256="8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92")
    message = str(err.value)
    assert "stackwatch registry hash-password" in message and "plaintext" in message
    assert "password_hash" in message


def test_no_password_accepts_nothing_unless_opted_in() -> None:
    closed = stack()
    assert not closed.password_matches("123456") and not closed.password_matches(None)
    opened = stack(accept_without_password=True)
    assert opened.password_matches("anything") and opened.password_matches(None)
    with pytest.raises(ValidationError, match="contradicts"):
        stack(password="123456", accept_without_password=True)


def test_allow_list_of_source_networks() -> None:
    s = stack(password="123456", allowed_networks=["10.1.0.0/16", "2001:db8::/32"])
    assert s.peer_allowed("10.1.200.3")
    assert not s.peer_allowed("10.2.0.1")
    assert s.peer_allowed("::ffff:10.1.0.9")  # IPv4-mapped IPv6 of an allowed address
    assert s.peer_allowed("2001:db8::1") and not s.peer_allowed("2001:db9::1")
    assert not s.peer_allowed(None) and not s.peer_allowed("unknown")
    assert stack(password="x").peer_allowed("203.0.113.9")  # no list: anywhere
    with pytest.raises(ValidationError):
        stack(password="x", allowed_networks=["10.1.0.1/16"])  # host bits set: a typo


def test_verifier_hashes_each_distinct_password_once() -> None:
    stored = hash_password("123456", n=16)
    v = PasswordVerifier()
    assert v.cached("MN1", stored, "123456") is None
    assert v.verify("MN1", stored, "123456") and v.verify("MN1", stored, "123456")
    assert v.hashes_computed == 1 and v.cached("MN1", stored, "123456") is True
    assert not v.verify("MN1", stored, "000000") and not v.verify("MN1", stored, "000000")
    assert v.hashes_computed == 2  # a wrong password is remembered too (bounded)
    assert v.verify("MN2", stored, "123456") and v.hashes_computed == 3  # per MN
    s = stack(mn="MN1", password_hash=stored)
    assert s.password_matches("123456", v) and v.hashes_computed == 3  # from the cache
    assert not s.password_needs_hashing("123456", v) and s.password_needs_hashing("1", v)
