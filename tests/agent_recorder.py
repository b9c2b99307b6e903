"""A stand-in for Faust's `topic.send` in agent unit tests (`agent.test_context()`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from faust.types import TopicT


class Recorder:
    """Records every (topic, key, value) sent and returns an already-done delivery future."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def __call__(self, topic: TopicT, key: bytes, value: bytes) -> Awaitable[Any]:
        self.sent.append((topic.get_topic_name(), key.decode(), value.decode()))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def on(self, topic: str) -> list[tuple[str, str]]:
        """(key, value) of every record sent to the topic named `topic`."""
        return [(k, v) for t, k, v in self.sent if t == topic]

    def values(self, topic: TopicT) -> list[str]:
        """The values sent to `topic`, in order."""
        return [v for _, v in self.on(topic.get_topic_name())]
