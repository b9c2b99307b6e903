"""A test database with stackwatch's schema, for the tests that need its tables."""

from __future__ import annotations

from sinks.db import connect
from sinks.schema import migrate


def migrated(dsn: str) -> str:
    """`dsn` after every migration has been applied (applying them again is a no-op)."""
    with connect(dsn) as conn:
        migrate(conn)
    return dsn
