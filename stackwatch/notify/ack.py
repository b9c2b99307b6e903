"""The acknowledgement request (HTTP body / CLI options) that becomes an ``AckCommand``.

``AckCommand`` itself is the alert-commands topic contract in ``stackwatch/models.py``
(keyed by ``stack_id``, so it lands on the partition of the lifecycle that owns the alert);
it is re-exported here for the notification code.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stackwatch.models import AckCommand

__all__ = ["AckCommand", "AckRequest"]


class AckRequest(BaseModel):
    """Body of ``POST /alerts/{alert_id}/ack`` and the CLI options (whitespace stripped)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    by: str = Field(min_length=1, max_length=100, description="Who acknowledges (name).")
    reason: str = Field(min_length=1, max_length=1000, description="Why / what is being done.")
