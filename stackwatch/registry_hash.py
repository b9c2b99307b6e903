"""Logger passwords at rest: salted scrypt (RFC 7914) strings, and a cache so each is hashed once.

An HJ 212 PW is short (often six digits): an unsalted SHA-256 of it is reversed by a lookup
table in seconds, so a leaked registry would give away every logger's password. The registry
therefore stores `scrypt$<n>$<r>$<p>$<salt>$<hash>` (salt and hash in unpadded base64): the
cost parameters travel with the hash, so they can be raised later without breaking old entries.

scrypt is slow on purpose (about 50 ms at the default n=2¹⁴, r=8 on the reference machine),
far too slow for every frame at 1000+ frames/s. `PasswordVerifier` remembers successful
verifications per (MN, stored hash, candidate) under an HMAC keyed with a per-process random
secret — the cache never holds a password or anything that can be checked offline — so each
logger's password costs one scrypt per process; a wrong guess costs one scrypt every time,
which is why the gateway throttles guessing (`streams/gateway_guard.py`) before it hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections import OrderedDict
from dataclasses import dataclass

__all__ = [
    "DEFAULT_N",
    "DEFAULT_P",
    "DEFAULT_R",
    "LEGACY_SHA256_MESSAGE",
    "PasswordVerifier",
    "ScryptHash",
    "hash_password",
    "parse_hash",
    "verify_password",
]

DEFAULT_N = 2**14
CAPTURE_SCRYPT_N = 2**10
"""Cost of the hashes in a registry inferred from a capture (`stackwatch replay
--write-registry`): the capture holds every password in clear, so a slow hash protects nothing
there, while checking 284 loggers' first frames at 2**14 (37 ms each) stalls a replay at full
speed for seconds and bunches each logger's frames into one late burst."""
"""CPU/memory cost (16 MiB with r=8): Percival's interactive-login setting."""
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
#: Refuse parameters that would take minutes or gigabytes per check (a hostile registry file).
MAX_N = 2**20
MAX_MEM = 1024 * 1024 * 1024

LEGACY_SHA256_MESSAGE = (
    "password_sha256 (unsalted SHA-256) is no longer accepted: a six-digit PW hashed that way "
    "is reversed in seconds. SHA-256 cannot be converted; hash the logger's plaintext "
    "password again with `stackwatch registry hash-password` (reads it from stdin or a "
    "prompt) and put the printed `scrypt$...` string in `password_hash`."
)

_B64 = r"([A-Za-z0-9+/]+={0,2})"
_FORMAT = re.compile(rf"^scrypt\$(\d+)\$(\d+)\$(\d+)\${_B64}\${_B64}$")


def _utf8(text: str) -> bytes:
    # surrogatepass: a decoded frame may carry lone surrogates; they must not raise either.
    return text.encode("utf-8", errors="surrogatepass")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@dataclass(frozen=True)
class ScryptHash:
    """A parsed `scrypt$n$r$p$salt$hash` string."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def derive(self, password: str) -> bytes:
        """scrypt of `password` with this entry's salt and parameters."""
        return hashlib.scrypt(
            _utf8(password), salt=self.salt, n=self.n, r=self.r, p=self.p,
            maxmem=MAX_MEM, dklen=len(self.digest),
        )

    def matches(self, password: str) -> bool:
        """Constant-time comparison of the derived key."""
        return hmac.compare_digest(self.derive(password), self.digest)


def parse_hash(text: str) -> ScryptHash:
    """Parse and sanity-check a stored hash; ValueError says what is wrong."""
    m = _FORMAT.match(text.strip())
    if m is None:
        raise ValueError("password_hash must look like scrypt$<n>$<r>$<p>$<salt>$<hash> "
                         "(`stackwatch registry hash-password` prints one)")
    n, r, p = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if n < 2 or n > MAX_N or n & (n - 1):
        raise ValueError(f"scrypt n={n} must be a power of two between 2 and {MAX_N}")
    if not 1 <= r <= 64 or not 1 <= p <= 16 or 128 * r * n > MAX_MEM:
        raise ValueError(f"scrypt r={r}, p={p} out of range")
    try:
        salt, digest = _unb64(m.group(4)), _unb64(m.group(5))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"password_hash salt/hash is not base64: {exc}") from exc
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("password_hash salt (≥ 8 bytes) or hash (≥ 16 bytes) too short")
    return ScryptHash(n, r, p, salt, digest)


def hash_password(
    password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P,
    salt: bytes | None = None,
) -> str:
    """The registry string of `password` (a fresh random salt unless one is given)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    derived = hashlib.scrypt(_utf8(password), salt=salt, n=n, r=r, p=p, maxmem=MAX_MEM,
                             dklen=HASH_BYTES)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(derived)}"


def verify_password(stored: str, candidate: str) -> bool:
    """Whether `candidate` is the password of the stored hash (False for a malformed one)."""
    try:
        parsed = parse_hash(stored)
    except ValueError:
        return False
    return parsed.matches(candidate)


class PasswordVerifier:
    """scrypt verification with a per-process cache of the answers already worked out.

    Keys are HMAC-SHA256(secret, MN ‖ stored hash ‖ candidate) with a secret drawn at start:
    memory never holds a password, and a dump of the cache cannot be used to test guesses
    offline. Successes are kept (up to `max_ok`, least recently used dropped); a few recent
    failures too (`max_failed`), so a logger stuck on a wrong password is not re-hashed on every
    frame while its frames are refused anyway.
    """

    def __init__(self, *, max_ok: int = 100_000, max_failed: int = 4096,
                 secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else os.urandom(32)
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        self._max_ok = max_ok
        self._max_failed = max_failed
        self.hashes_computed = 0

    def _key(self, mn: str, stored: str, candidate: str) -> bytes:
        msg = b"\0".join((_utf8(mn), _utf8(stored), _utf8(candidate)))
        return hmac.new(self._secret, msg, hashlib.sha256).digest()

    def cached(self, mn: str, stored: str, candidate: str) -> bool | None:
        """The answer if already known, else None (a scrypt is needed)."""
        key = self._key(mn, stored, candidate)
        if key in self._ok:
            self._ok.move_to_end(key)
            return True
        if key in self._failed:
            return False
        return None

    def verify(self, mn: str, stored: str, candidate: str) -> bool:
        """Cached answer, or one scrypt (thread-safe enough to run in a worker thread: the
        dictionaries are only touched under the GIL, and a lost race costs one extra hash)."""
        known = self.cached(mn, stored, candidate)
        if known is not None:
            return known
        self.hashes_computed += 1
        ok = verify_password(stored, candidate)
        key = self._key(mn, stored, candidate)
        table, limit = (self._ok, self._max_ok) if ok else (self._failed, self._max_failed)
        table[key] = None
        while len(table) > limit:
            table.popitem(last=False)
        return ok
