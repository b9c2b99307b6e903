"""`Checkpoint`: the order that makes a batch of records durable before it is acknowledged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.checkpoint import Checkpoint


async def test_records_are_acknowledged_only_after_outputs_and_state_are_delivered() -> None:
    log: list[str] = []
    loop = asyncio.get_running_loop()
    output: asyncio.Future[None] = loop.create_future()
    state: asyncio.Future[None] = loop.create_future()

    async def ack(event: str) -> None:
        log.append(f"ack {event}")

    def save() -> list[Any]:
        log.append("save")
        return [state]

    checkpoint: Checkpoint[str] = Checkpoint(ack, save=save, max_records=3, interval_s=60.0)
    for event in ("r1", "r2"):
        async with checkpoint.applying():
            checkpoint.add(event, [output] if event == "r1" else [])
    assert not checkpoint.due()  # 2 of 3 records, 60 s not passed
    async with checkpoint.applying():
        checkpoint.add("r3", [])
    assert checkpoint.due()
    flushing = asyncio.ensure_future(checkpoint.flush())
    await asyncio.sleep(0.01)
    assert log == ["save"]  # state written once for the whole checkpoint, nothing acked yet
    output.set_result(None)
    await asyncio.sleep(0.01)
    assert log == ["save"]  # the state's delivery is still outstanding
    state.set_result(None)
    assert await flushing == 3
    assert log == ["save", "ack r1", "ack r2", "ack r3"]
    assert len(checkpoint) == 0 and not checkpoint.due()


async def test_a_failed_delivery_acknowledges_nothing() -> None:
    acked: list[str] = []

    async def ack(event: str) -> None:
        acked.append(event)

    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failed.set_exception(ConnectionError("broker gone"))
    checkpoint: Checkpoint[str] = Checkpoint(ack, max_records=10, interval_s=60.0)
    checkpoint.add("r1", [failed])
    with pytest.raises(ConnectionError):
        await checkpoint.flush()
    assert acked == []


async def test_an_old_checkpoint_is_due_by_time() -> None:
    now = [100.0]

    async def ack(event: str) -> None:
        return None

    checkpoint: Checkpoint[str] = Checkpoint(
        ack, max_records=500, interval_s=0.2, clock=lambda: now[0]
    )
    assert not checkpoint.due()  # nothing pending
    checkpoint.add("r1", [])
    now[0] = 100.19
    assert not checkpoint.due()
    now[0] = 100.2
    assert checkpoint.due()


async def test_revoked_records_are_dropped_unacknowledged() -> None:
    """After a revocation Faust re-reads from the committed offset: the pending records must
    not be acknowledged later (that could commit past records not yet re-processed)."""
    acked: list[str] = []

    async def ack(event: str) -> None:
        acked.append(event)

    checkpoint: Checkpoint[str] = Checkpoint(ack, max_records=10, interval_s=60.0)
    checkpoint.add("r1", [])
    checkpoint.drop()
    assert not checkpoint.due()
    assert await checkpoint.flush() == 0
    assert acked == []
