"""`Checkpoint`: the order that makes a batch of records durable before it is acknowledged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.checkpoint import Checkpoint


def logged_checkpoint(log: list[str], **options: Any) -> Checkpoint[str]:
    """An overlapping checkpoint whose acks and saves are appended to `log`."""

    async def ack(event: str) -> None:
        log.append(f"ack {event}")

    def save() -> list[Any]:
        log.append("save")
        return []

    return Checkpoint(ack, save=save, interval_s=60.0, overlap=True, **options)


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


async def test_with_overlap_the_next_records_are_applied_while_a_checkpoint_completes() -> None:
    """flush returns once the state is written; the records are acknowledged when their
    deliveries are, and the next checkpoint waits for the previous one (acks stay in order)."""
    log: list[str] = []
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[None] = loop.create_future()
    checkpoint = logged_checkpoint(log, max_records=2)
    for event in ("r1", "r2"):
        async with checkpoint.applying():
            checkpoint.add(event, [first] if event == "r1" else [])
    assert await asyncio.wait_for(checkpoint.flush(), 1) == 2  # did not wait for `first`
    assert log == ["save"]
    async with checkpoint.applying():  # the agent goes on
        checkpoint.add("r3", [second])
    assert not checkpoint.settled_or_failed()
    flushing = asyncio.ensure_future(checkpoint.flush())
    await asyncio.sleep(0.01)
    assert log == ["save"]  # the second checkpoint waits for the first to be acknowledged
    second.set_result(None)
    await asyncio.sleep(0.01)
    assert log == ["save"]  # r3 delivered, but r1 is not: nothing may be acknowledged yet
    first.set_result(None)
    assert await flushing == 1
    await checkpoint.settle()
    assert log == ["save", "ack r1", "ack r2", "save", "ack r3"]


async def test_a_failed_background_delivery_surfaces_at_the_next_flush() -> None:
    acked: list[str] = []

    async def ack(event: str) -> None:
        acked.append(event)

    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    checkpoint: Checkpoint[str] = Checkpoint(ack, max_records=10, interval_s=60.0, overlap=True)
    checkpoint.add("r1", [failed])
    assert await checkpoint.flush() == 1
    failed.set_exception(ConnectionError("broker gone"))
    await asyncio.sleep(0.01)
    assert checkpoint.settled_or_failed()  # the timer may now raise it without blocking
    checkpoint.add("r2", [])
    with pytest.raises(ConnectionError):
        await checkpoint.flush()
    assert acked == []


async def test_records_revoked_while_their_checkpoint_completes_are_not_acknowledged() -> None:
    acked: list[str] = []

    async def ack(event: str) -> None:
        acked.append(event)

    delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    checkpoint: Checkpoint[str] = Checkpoint(ack, max_records=10, interval_s=60.0, overlap=True)
    checkpoint.add("r1", [delivery])
    await checkpoint.flush()
    checkpoint.drop()  # revoked: the new owner re-processes r1
    delivery.set_result(None)
    await asyncio.sleep(0.01)
    assert acked == []
    assert not delivery.cancelled()  # the producer's future is left alone
    checkpoint.add("r2", [])
    await checkpoint.flush()
    await checkpoint.settle()
    assert acked == ["r2"]


async def test_the_timer_and_the_agent_flushing_at_once_still_acknowledge_in_order() -> None:
    """The timer's flush arrives while the agent's waits for the previous checkpoint: it must
    wait its turn, or its records could be acknowledged before the older ones."""
    acked: list[str] = []
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def ack(event: str) -> None:
        acked.append(event)

    checkpoint: Checkpoint[str] = Checkpoint(ack, max_records=10, interval_s=60.0, overlap=True)
    checkpoint.add("r1", [first])
    await checkpoint.flush()  # r1 completing in the background
    checkpoint.add("r2", [])
    agent = asyncio.ensure_future(checkpoint.flush())  # waits for r1, then takes r2
    await asyncio.sleep(0.01)
    checkpoint.add("r3", [])
    timer = asyncio.ensure_future(checkpoint.flush())
    await asyncio.sleep(0.01)
    assert acked == []
    first.set_result(None)
    await asyncio.gather(agent, timer)
    await checkpoint.settle()
    assert acked == ["r1", "r2", "r3"]


async def test_two_checkpoints_in_flight_still_acknowledge_in_order() -> None:
    """With in_flight=2 the agent flushes a second checkpoint while the first is still being
    delivered; the second's records wait for the first's acks, and a third flush waits for
    the first to complete (at most two in the background)."""
    log: list[str] = []
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[None] = loop.create_future()
    checkpoint = logged_checkpoint(log, max_records=10, in_flight=2)
    checkpoint.add("r1", [first])
    assert await asyncio.wait_for(checkpoint.flush(), 1) == 1
    checkpoint.add("r2", [second])
    assert await asyncio.wait_for(checkpoint.flush(), 1) == 1  # did not wait for `first`
    second.set_result(None)
    await asyncio.sleep(0.01)
    assert log == ["save", "save"]  # r2 delivered, r1 not: nothing acknowledged yet
    checkpoint.add("r3", [])
    third = asyncio.ensure_future(checkpoint.flush())
    await asyncio.sleep(0.01)
    assert not third.done()  # two already in flight: waits for the oldest
    first.set_result(None)
    assert await third == 1
    await checkpoint.settle()
    assert [entry for entry in log if entry.startswith("ack")] == ["ack r1", "ack r2", "ack r3"]
    assert log.count("save") == 3


async def test_a_failed_older_checkpoint_keeps_the_newer_one_unacknowledged() -> None:
    acked: list[str] = []
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()

    async def ack(event: str) -> None:
        acked.append(event)

    checkpoint: Checkpoint[str] = Checkpoint(
        ack, max_records=10, interval_s=60.0, overlap=True, in_flight=2
    )
    checkpoint.add("r1", [first])
    await checkpoint.flush()
    checkpoint.add("r2", [])  # delivered at once
    await checkpoint.flush()
    first.set_exception(ConnectionError("broker gone"))
    await asyncio.sleep(0.01)
    assert checkpoint.settled_or_failed()  # the timer may raise it without blocking
    with pytest.raises(ConnectionError):
        await checkpoint.settle()
    await checkpoint.settle()  # the newer one finished without acknowledging
    assert acked == []


def test_in_flight_must_be_positive() -> None:
    async def ack(event: str) -> None:
        return None

    with pytest.raises(ValueError, match="in_flight"):
        Checkpoint(ack, overlap=True, in_flight=0)
