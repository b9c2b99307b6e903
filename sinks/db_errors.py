"""Database errors in two kinds: the server refused these values, or it cannot write now.

*Data* errors (a constraint or type the database refuses) are isolated and dead-lettered by
:mod:`sinks.batching`: retrying them would block the topic forever. Every other database or
network error (connection lost, server shut down, schema not migrated yet) is *transient*:
the whole batch is retried (:mod:`sinks.delivery`).
"""

from __future__ import annotations

import psycopg

__all__ = ["DATA_ERRORS", "is_transient"]

#: Errors that mean "the server refused these values" (class 22/23, and 54 for a value too
#: large to index): retrying cannot help, the offending records are dead-lettered.
DATA_ERRORS: tuple[type[psycopg.Error], ...] = (
    psycopg.IntegrityError,
    psycopg.DataError,
    psycopg.errors.ProgramLimitExceeded,
)


def is_transient(exc: BaseException) -> bool:
    """True for database errors worth retrying the whole batch for.

    Data errors (the server refused specific values) are not: retrying them would block the
    topic forever, so they are isolated and dead-lettered instead.
    """
    if isinstance(exc, DATA_ERRORS):
        return False
    return isinstance(exc, psycopg.Error | OSError)
