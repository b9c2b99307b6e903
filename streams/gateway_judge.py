"""Judging one HJ 212 unit at the gateway: framing, CRC, length, MN, PW, encryption policy.

Pure decisions, no sockets: `judge_frame` turns one framed unit into a `Judgement` (accepted
or rejected with reasons, the 9014 answer due, the text with passwords masked), and
`build_records` into the `RawFrame` and `DeadLetter` the gateway produces (docs/hj212.md,
docs/security.md). `streams/gateway.py` runs the connections around it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from stackwatch import hj212
from stackwatch.hj212.redact import HEADER_PW
from stackwatch.models import DeadLetter, RawFrame, Verdict
from stackwatch.registry import StackRegistry
from stackwatch.registry_hash import PasswordVerifier

log = logging.getLogger("stackwatch.gateway")

#: Most bytes of one raw/dead-letter record. A legal frame is at most 2 + 4 + 1024 + 4 + 2 =
#: 1036 characters (HJ 212-2017 §6.3.1, Table 2; ≤ 10 010 even with a forged length field), so
#: only rejected junk is longer; it is cut into consecutive records of this size (each with the
#: reason plus `split_record`), keeping every byte while staying far below the broker's cap.
MAX_RECORD_BYTES = 16 * 1024

# Reasons the gateway itself gives; the codec's stable codes (`stackwatch.hj212.REASONS`:
# garbage, bad_crc, length_mismatch, ...) are passed through verbatim, first.
REASON_UNFRAMED = "unframed"
REASON_CRC = "bad_crc"
REASON_LENGTH = "length_mismatch"
REASON_MISSING_MN = "missing_mn"
REASON_UNKNOWN_MN = "unknown_mn"
REASON_BAD_PASSWORD = "bad_password"
REASON_DECODE_ERROR = "decode_error"
#: Judging the frame raised (a bug, e.g. in a registry lookup): kept and dead-lettered anyway.
REASON_JUDGE_ERROR = "judge_error"
REASON_SPLIT = "split_record"
REASON_FRAMER_ERROR = "framer_error"
#: Added to leftovers flushed when the connection ended (half frames, trailing garbage).
REASON_AT_DISCONNECT = "at_disconnect"
#: Warning (not a rejection) on frames accepted only because `auto_register` is on.
WARN_UNREGISTERED = "unregistered_mn"
#: HJ 212-2025: a data command sent in clear by a logger whose policy requires encryption.
REASON_NOT_ENCRYPTED = "not_encrypted"
REASON_ENCRYPTED = "encrypted"
#: The logger's source address is outside its registered `allowed_networks`.
REASON_NETWORK = "network_not_allowed"
#: The wrong password that banned an MN or a source IP (its dead letter is the security alert).
REASON_PASSWORD_GUESSING = "password_guessing"
_MN_IN_HEADER = re.compile(rb"(?:^|;)MN=([^;]{1,24});")


# --- the codec interface the gateway relies on (stackwatch.hj212 provides it) -------------


class FrameResultLike(Protocol):
    """One framing outcome: the bytes of a frame (or of garbage) and whether it framed."""

    @property
    def raw(self) -> bytes: ...
    @property
    def ok(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...


class FramerLike(Protocol):
    """Incremental framer of one TCP byte stream."""

    def feed(self, data: bytes) -> Sequence[FrameResultLike]: ...
    def flush(self) -> Sequence[FrameResultLike]: ...


class DecodedLike(Protocol):
    """The parts of a decoded frame the gateway reads."""

    @property
    def crc_ok(self) -> bool: ...
    @property
    def length_ok(self) -> bool: ...
    @property
    def mn(self) -> str | None: ...
    @property
    def pw(self) -> str | None: ...
    @property
    def cn(self) -> str | None: ...
    @property
    def qn(self) -> str | None: ...
    @property
    def ack_requested(self) -> bool: ...


class Codec(Protocol):
    """Framing, decoding and the 9014 answer, as the gateway needs them."""

    def new_framer(self) -> FramerLike: ...
    def decode(self, result: FrameResultLike) -> DecodedLike: ...
    def data_ack(self, request: Any) -> str | None: ...


class Hj212Codec:
    """The project's HJ 212 codec (`stackwatch.hj212`) behind the `Codec` interface."""

    def new_framer(self) -> FramerLike:
        return hj212.Framer()

    def decode(self, result: FrameResultLike) -> DecodedLike:
        """Decode a framer result (its length/CRC verdict is reused, not recomputed)."""
        if isinstance(result, hj212.FrameResult):
            return hj212.decode_frame(result)
        return hj212.decode_frame(result.raw)

    def data_ack(self, request: Any) -> str | None:
        """9014 answer echoing the QN (HJ 212-2017 App. C), None if not asked for."""
        if not isinstance(request, hj212.DecodedFrame):
            return None
        return hj212.build_data_ack(request)


# --- judging one frame (pure) --------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """The gateway's verdict on one frame and everything needed to record and answer it."""

    verdict: Verdict
    reasons: tuple[str, ...]
    text: str
    mn: str | None = None
    cn: str | None = None
    qn: str | None = None
    ack: str | None = None
    detail: str | None = None
    """Human explanation from the framer (e.g. "received 1C08, computed 1C80")."""
    decrypted: str | None = None
    """The plaintext frame of an SM4-encrypted upload (HJ 212-2025)."""
    decoded: Any = None
    """The decoded frame of an accepted upload (for the history planner)."""
    sha256: str | None = None
    """SHA-256 of the bytes as received (before masking)."""
    redacted: bool = False
    """A PW/NewPW value was masked in `text` or `decrypted`."""
    units: int = 1
    """Rejected units coalesced into this record (a garbage burst)."""
    extra: dict[str, str] | None = None
    """More dead-letter details (a security alert's scope, failures, ban)."""

    @property
    def reason(self) -> str | None:
        """The first (deciding) reason, if any."""
        return self.reasons[0] if self.reasons else None


def frame_text(raw: bytes) -> str:
    """The frame as text: UTF-8 (§6.3), invalid bytes escaped as `\\xNN` (so it stays verbatim)."""
    return raw.decode("utf-8", errors="backslashreplace")


def masked_text(raw: bytes) -> tuple[str, bool]:
    """The text to record: PW/NewPW values masked; and whether anything was masked."""
    masked = hj212.redact_credentials(raw)
    return frame_text(masked), masked != raw


def peek_credentials(raw: bytes) -> tuple[str | None, str | None]:
    """MN and PW from a frame's header without decoding it (for the guard and the hash cache).

    Only a hint: the decoder's reading decides; the two agree for well-formed frames.
    """
    head = raw.split(b"CP=&&", 1)[0]
    mn = _MN_IN_HEADER.search(head)
    pw = _header_pw(head)
    return (
        mn.group(1).decode("utf-8", "replace") if mn else None,
        pw.decode("latin-1" if pw.isascii() else "utf-8", "replace") if pw is not None else None,
    )


def _header_pw(head: bytes) -> bytes | None:
    """The first header PW value as the decoder reads it: a field spelled ``PW=`` (the
    masking pattern finds every spelling) whose value runs to the next ';'."""
    pos = 0
    while (m := HEADER_PW.search(head, pos)) is not None:
        end = head.find(b";", m.start(2))
        if end < 0:
            return None
        if m.group(1) == b"PW=":
            return head[m.start(2) : end]
        pos = m.start() + 1
    return None


@dataclass(frozen=True)
class Piece:
    """A rejected unit the gateway made itself: a slice of oversized junk, or bytes the framer
    failed on."""

    raw: bytes
    ok: bool
    reason: str | None
    detail: str | None
    split: bool = False
    digest: str | None = None
    """SHA-256 of the whole unit this slice was cut from (as received)."""


def split_oversized(result: FrameResultLike) -> list[FrameResultLike]:
    """`result` itself, or — for a rejected unit over `MAX_RECORD_BYTES` — its consecutive slices.

    Accepted frames are never that long (Table 2 caps the data segment), so only junk is cut.
    Passwords are masked before cutting (a cut must not split one and leave half in clear);
    every slice keeps the SHA-256 of the whole unit as received.
    """
    raw = result.raw
    if len(raw) <= MAX_RECORD_BYTES or result.ok:
        return [result]
    reason = result.reason or REASON_UNFRAMED
    detail = getattr(result, "detail", None)
    digest = hj212.frame_digest(raw)
    raw = hj212.redact_credentials(raw)
    return [
        Piece(raw[i : i + MAX_RECORD_BYTES], False, reason, detail, split=True, digest=digest)
        for i in range(0, len(raw), MAX_RECORD_BYTES)
    ]


def _open_encrypted(
    result: FrameResultLike, registry: StackRegistry, now: datetime | None
) -> tuple[FrameResultLike, str | None]:
    """Decrypt an HJ 212-2025 frame with its logger's keys: the plaintext framing result and
    text, or a rejected unit saying why (no_key, wrong_key, bad_ciphertext) and None."""
    m = _MN_IN_HEADER.search(result.raw.split(b"CP=&&", 1)[0])
    stack = registry.by_mn(m.group(1).decode("ascii", "replace")) if m else None
    keys = [] if stack is None else stack.keys_at(now or datetime.now(UTC))
    try:
        opened = hj212.decrypt_record(result.raw, keys)
    except hj212.DecryptionError as exc:
        return Piece(result.raw, False, exc.code, exc.detail), None
    return hj212.judge_record(opened.record), frame_text(opened.record)


def judge_frame(
    result: FrameResultLike,
    *,
    codec: Codec,
    registry: StackRegistry,
    auto_register: bool,
    at_disconnect: bool = False,
    now: datetime | None = None,
    peer_host: str | None = None,
    verifier: PasswordVerifier | None = None,
) -> Judgement:
    """Decide accept/reject for one framed result; never raises.

    Order: framing (an HJ 212-2025 frame with an SM4-encrypted data area is first decrypted
    with its logger's keys) → CRC (App. A: "if the CRC is wrong, execution ends") → length →
    MN present → MN registered (or `auto_register`) → source IP in the MN's `allowed_networks`
    → PW matches → encryption policy. Only an accepted frame that sets Flag.A gets a 9014
    answer. The recorded text (and plaintext) have their passwords masked.
    """
    reasons: list[str] = []
    digest = getattr(result, "digest", None) or hj212.frame_digest(result.raw)
    text, redacted = masked_text(result.raw)
    decrypted: str | None = None
    if not result.ok and result.reason == REASON_ENCRYPTED:
        result, decrypted = _open_encrypted(result, registry, now)
        if decrypted is None:
            reasons.append(REASON_ENCRYPTED)
        else:
            decrypted, masked = masked_text(result.raw)
            redacted = redacted or masked
    detail = None if result.ok else getattr(result, "detail", None)
    if isinstance(result, Piece) and result.split:
        reasons.append(REASON_SPLIT)
    if not result.ok:
        reasons.insert(0, result.reason or REASON_UNFRAMED)
        if at_disconnect:
            reasons.append(REASON_AT_DISCONNECT)
    try:
        decoded: DecodedLike | None = codec.decode(result)
    except Exception as exc:  # the codec promises not to raise; the gateway must not crash
        log.error("decoder raised", extra={"error": repr(exc)})
        decoded = None
        reasons.append(REASON_DECODE_ERROR)
    if decoded is None:
        return Judgement(Verdict.REJECTED, tuple(dict.fromkeys(reasons)), text, detail=detail,
                         sha256=digest, redacted=redacted)
    mn, cn, qn = decoded.mn or None, decoded.cn or None, decoded.qn or None
    if result.ok:
        if not decoded.crc_ok:
            reasons.append(REASON_CRC)
        if not decoded.length_ok:
            reasons.append(REASON_LENGTH)
    integrity_failed = not result.ok or not decoded.crc_ok or not decoded.length_ok
    if not integrity_failed:
        if mn is None:
            reasons.append(REASON_MISSING_MN)
        else:
            stack = registry.by_mn(mn)
            if stack is None:
                reasons.append(WARN_UNREGISTERED if auto_register else REASON_UNKNOWN_MN)
            elif not stack.peer_allowed(peer_host):
                reasons.append(REASON_NETWORK)
            elif not stack.password_matches(decoded.pw, verifier):
                reasons.append(REASON_BAD_PASSWORD)
            elif (
                decrypted is None
                and stack.encryption == "required"
                and hj212.cn_requires_encryption(cn)
            ):
                reasons.append(REASON_NOT_ENCRYPTED)
    rejected = integrity_failed or any(r != WARN_UNREGISTERED for r in reasons)
    unique = tuple(dict.fromkeys(reasons))
    if rejected:
        return Judgement(Verdict.REJECTED, unique, text, mn=mn, cn=cn, qn=qn, detail=detail,
                         sha256=digest, redacted=redacted)
    ack: str | None = None
    if decoded.ack_requested:
        try:
            ack = codec.data_ack(decoded)
        except Exception as exc:
            log.error("building the 9014 answer raised", extra={"mn": mn, "error": repr(exc)})
    if ack is not None and not ack.endswith("\r\n"):
        ack += "\r\n"
    return Judgement(
        Verdict.ACCEPTED, unique, text, mn=mn, cn=cn, qn=qn, ack=ack, decrypted=decrypted,
        decoded=decoded, sha256=digest, redacted=redacted,
    )


def build_records(
    judgement: Judgement, *, received_at: datetime, peer: str, gateway: str
) -> tuple[RawFrame, DeadLetter | None]:
    """The raw-topic record of a frame and, if it was rejected, its dead letter."""
    raw = RawFrame(
        text=judgement.text,
        received_at=received_at,
        peer=peer,
        mn=judgement.mn,
        cn=judgement.cn,
        verdict=judgement.verdict,
        reasons=list(judgement.reasons),
        gateway=gateway,
        decrypted=judgement.decrypted,
        sha256=judgement.sha256,
        redacted=judgement.redacted,
        units=judgement.units,
    )
    if judgement.verdict is Verdict.ACCEPTED:
        return raw, None
    details = {"peer": peer, "reasons": ",".join(judgement.reasons), "gateway": gateway}
    if judgement.cn is not None:
        details["cn"] = judgement.cn
    if judgement.detail:
        details["detail"] = judgement.detail
    if judgement.sha256 is not None:
        details["sha256"] = judgement.sha256
    if judgement.units > 1:
        details["count"] = str(judgement.units)
    if judgement.extra:
        details.update(judgement.extra)
    dead = DeadLetter(
        stage="gateway",
        reason=judgement.reason or REASON_UNFRAMED,
        payload=judgement.text,
        key=judgement.mn,
        occurred_at=received_at,
        details=details,
    )
    return raw, dead


# --- connections ---------------------------------------------------------------------------
