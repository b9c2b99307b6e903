"""Topic contracts: the pydantic models that travel between pipeline stages.

One module owns every model that crosses a Kafka topic or a process boundary, so a change to
a contract is visible in one place. Models are frozen where the data is immutable (the raw
layer) and serialise to JSON with `model_dump_json()` / `model_validate_json()`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Verdict(StrEnum):
    """Gateway verdict on one received frame (the raw layer keeps every frame)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


class RawFrame(BaseModel):
    """One HJ 212 frame exactly as received, with the gateway's verdict.

    This is the immutable raw layer (DOMAIN.md §4.3 item 1): every frame, accepted or not,
    is kept verbatim with its receive time and peer, keyed by MN on the raw topic.
    """

    model_config = ConfigDict(frozen=True)

    text: str = Field(description="The frame verbatim (decoded as UTF-8, invalid bytes escaped).")
    received_at: AwareDatetime
    peer: str = Field(description="host:port of the data logger, or 'replay:<file>'.")
    mn: str | None = Field(default=None, description="MN if one could be read.")
    cn: str | None = None
    verdict: Verdict
    reasons: list[str] = Field(default_factory=list, description="Why it was rejected/warned.")
    gateway: str = Field(default="gateway", description="Which gateway instance received it.")


class DeadLetter(BaseModel):
    """Anything a stage refused, with the reason and the original payload; nothing is lost."""

    model_config = ConfigDict(frozen=True)

    stage: str = Field(description="gateway | decode | normalise | aggregate | sink | ...")
    reason: str
    payload: str = Field(description="The original payload (frame text or JSON).")
    key: str | None = None
    occurred_at: AwareDatetime
    details: dict[str, str] = Field(default_factory=dict)


def utc_iso(dt: datetime) -> str:
    """ISO 8601 text of an aware datetime (helper for logs and CLI output)."""
    return dt.isoformat()
