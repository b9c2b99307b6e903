"""The services' Faust workers log at the level asked for (no hidden debug records)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import faust
import pytest

from commands.options import faust_worker


@pytest.fixture
def restored_root() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restored_root")
@pytest.mark.parametrize(("asked", "level"), [("warning", logging.WARNING), ("info", logging.INFO)])
def test_a_service_worker_logs_at_the_level_asked_for(
    asked: str, level: int, tmp_path: Path
) -> None:
    # Faust's terminal spinner set the root to DEBUG at WARNING: every send built a debug record
    app = faust.App("t", broker="memory://", datadir=str(tmp_path))
    worker = faust_worker(app, log_level=asked, log_format="json")
    worker._setup_logging()
    assert logging.getLogger().level == level
    assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("faust.topics").isEnabledFor(logging.DEBUG)
