"""Serve one `CollectorRegistry` as a Prometheus `/metrics` endpoint (aiohttp).

Shared by the gateway, stream worker and sinks processes: each builds its own registry and
exposes it here, so no process ever publishes the global default registry by accident. Binds
127.0.0.1 unless told otherwise (a metrics page reveals plant and stack names; exposing it is a
deliberate deployment decision). Runs on the caller's event loop: no thread, no second loop.
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["DEFAULT_HOST", "MetricsServer", "metrics_app"]

DEFAULT_HOST = "127.0.0.1"
log = logging.getLogger(__name__)


def metrics_app(registry: CollectorRegistry) -> web.Application:
    """An aiohttp application answering `GET /metrics` (and `/` for a quick look)."""

    async def handle(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    app.router.add_get("/", handle)
    return app


class MetricsServer:
    """`/metrics` for `registry` on host:port; `port=0` picks a free port (see `.port`)."""

    def __init__(
        self, registry: CollectorRegistry, *, host: str = DEFAULT_HOST, port: int = 0
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"metrics port out of range: {port}")
        self.registry = registry
        self.host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (valid after `start`)."""
        if self._port is None:
            raise RuntimeError("metrics server not started")
        return self._port

    @property
    def url(self) -> str:
        """`http://host:port/metrics` (valid after `start`)."""
        return f"http://{self.host}:{self.port}/metrics"

    async def start(self) -> None:
        """Bind and serve; raises OSError when the port is taken (a clear startup error)."""
        if self._runner is not None:
            return
        runner = web.AppRunner(metrics_app(self.registry), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        addresses = runner.addresses  # (host, port, …) of every bound socket
        self._port = int(addresses[0][1]) if addresses else self._requested_port
        self._runner = runner
        log.info("metrics endpoint listening", extra={"url": self.url})

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._port = None

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
