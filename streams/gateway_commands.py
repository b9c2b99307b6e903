"""The gateway's side of the gateway-commands topic: operators' history requests.

Every gateway reads the whole topic (a group of its own, from the newest record on): the one
that holds the logger's connection sends the request, the others find it not connected. A
malformed command is logged and skipped; the loop never stops on input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from stackwatch.history_requests import HistoryRequest
from stackwatch.models import HistoryCommand
from streams.gateway import Gateway
from streams.kafka_transport import FETCH_MAX_WAIT_MS

log = logging.getLogger("stackwatch.gateway")


def apply_command(gateway: Gateway, payload: bytes | None) -> bool:
    """Act on one command record; True when a request went to a logger."""
    try:
        command = HistoryCommand.model_validate_json(payload or b"")
    except ValidationError as exc:
        log.warning("malformed gateway command skipped", extra={"error": str(exc)[:200]})
        return False
    return gateway.request_history(
        HistoryRequest(command.mn, command.cn, command.begin, command.end,
                       f"operator {command.by}")
    )


async def consume_commands(gateway: Gateway, bootstrap: str, topic: str,
                           stop: asyncio.Event) -> None:
    """Apply commands until `stop` is set."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"stackwatch-{gateway.name}-commands",
        auto_offset_reset="latest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    apply_command(gateway, record.value)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
