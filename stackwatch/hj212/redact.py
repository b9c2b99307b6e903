"""Mask logger passwords in frames before they are stored, produced or logged (pure, no I/O).

Every frame carries its logger's access password in clear (`PW=`, HJ 212-2017 Table 3), and a
password-setting command carries the new one (`NewPW=`, CN 1072). Kept verbatim in the raw
layer they would hand every password — and every guess an attacker tried — to anyone who reads
a topic, a table or a log. The value is replaced by a fixed mask (its length is not kept
either); everything else, the length field and the CRC included, stays as received, so whoever
holds the password can put it back and check the frame against the SHA-256 recorded with it.
The CRC of the masked frame no longer matches: the gateway judged it on the original, and
`decode_frame(..., verified=True)` reads a masked accepted frame without judging it again.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["HEADER_PW", "MASK", "frame_digest", "redact_credentials"]

MASK = b"******"
# Header PW: a field of its own, at the start of the data segment or after ';' (values run to
# the next ';', as `segment._parse_header` reads them). NewPW in the CP area runs to ';', ','
# or '&'. Case-insensitive: a hostile sender's spelling does not get a password through either.
#: The header's PW field: group 1 is the name as spelled, group 2 the value (may be empty;
#: an empty one is left as it is). The gateway's credential peek reads it too.
HEADER_PW = re.compile(rb"(?:(?<=;)|(?<=##\d{4})|^)(PW=)([^;\r\n]*)", re.IGNORECASE)
_CP_PW = re.compile(rb"(?<=[;,&])(NewPW=)([^;,&\r\n]+)", re.IGNORECASE)


def _mask(m: re.Match[bytes]) -> bytes:
    return m.group(1) + MASK if m.group(2) else m.group(0)


def redact_credentials(data: bytes) -> bytes:
    """`data` with every PW / NewPW value replaced by `MASK` (idempotent)."""
    if b"pw=" not in data.lower():
        return data
    return _CP_PW.sub(_mask, HEADER_PW.sub(_mask, data))


def frame_digest(data: bytes) -> str:
    """SHA-256 (hex) of the bytes as received: the evidence kept with a masked frame."""
    return hashlib.sha256(data).hexdigest()
