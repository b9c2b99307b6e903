"""A Faust transport whose producer is idempotent (Kafka's `enable.idempotence`).

faust-streaming turns idempotence on only inside transactions (exactly-once). stackwatch is
at-least-once, with natural keys downstream, but a producer retry that writes an aggregate or
an alert event twice still costs the sinks and the notifier work; an idempotent producer
(with `acks=all`) writes each record once per send. Faust picks a transport by the broker
URL's scheme, so the worker and sinks use `IDEMPOTENT_SCHEME://host:port` when
`Settings.kafka.idempotence(...)` says so (not on Tansu, which refuses InitProducerId).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

IDEMPOTENT_SCHEME: Final = "kafka-idempotent"


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with idempotence always on."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class IdempotentTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport, producing through `IdempotentProducer`."""

    Producer = IdempotentProducer


def register() -> None:
    """Make `IDEMPOTENT_SCHEME://` URLs resolve to `IdempotentTransport` (idempotent call)."""
    TRANSPORTS.data.setdefault(IDEMPOTENT_SCHEME, f"{__name__}:IdempotentTransport")
