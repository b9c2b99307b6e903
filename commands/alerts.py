"""`stackwatch alerts ack|list|dispatch|api`: the alert workflow (README "Alert workflow").

With `STACKWATCH_ACK_PAGE__ENABLED=true`, `dispatch` signs a per-recipient acknowledgement
link into every message and `api` also serves the page those links open (docs/ack-page.md).

The module only wires: the I/O (PostgreSQL, Kafka, HTTP, SMTP) lives in `sinks/` and
`streams/` and is imported inside the commands, so a command loads only the clients it uses.
The database is STACKWATCH_DATABASE_URL or the embedded PostgreSQL 18;
the broker is STACKWATCH_KAFKA_BOOTSTRAP or the embedded Tansu (`stackwatch services up`).
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from commands.options import BootstrapOption, DsnOption, fail
from stackwatch.notify.ack import AckRequest
from stackwatch.settings import Settings, get_settings

if TYPE_CHECKING:
    from stackwatch.notify.ack_link import AckLinkSigner

app = typer.Typer(help="Alerts: acknowledge, list, dispatch notifications, serve the ack API.")
console = Console()

def _dsn(dsn: str | None, settings: Settings) -> str:
    from embedded import ServiceError, resolve_database_url

    if dsn:
        return dsn
    try:
        return resolve_database_url(settings)
    except (ServiceError, OSError) as exc:
        raise fail(str(exc)) from None


def _bootstrap(bootstrap: str | None, settings: Settings) -> str:
    from embedded import ServiceError, resolve_kafka_bootstrap

    if bootstrap:
        return bootstrap
    try:
        return resolve_kafka_bootstrap(settings)
    except (ServiceError, OSError) as exc:
        raise fail(str(exc)) from None


InsecureDevOption = Annotated[
    bool,
    typer.Option("--insecure-dev", help="Allow running WITHOUT a token / link secret (local "
                 "development only)."),
]


def _link_signer(settings: Settings, insecure_dev: bool) -> AckLinkSigner | None:
    """The acknowledgement-link signer when links are enabled (None otherwise); refuses a
    missing or short secret unless ``insecure_dev``."""
    from stackwatch.notify.ack_link import AckLinkSigner, InsecureSecretError, check_secret

    cfg = settings.ack_page
    if not cfg.enabled:
        return None
    try:
        secret = check_secret(cfg.secret, insecure_dev=insecure_dev)
    except InsecureSecretError as exc:
        raise fail(str(exc)) from None
    return AckLinkSigner(secret, lifetime=timedelta(hours=cfg.lifetime_h))


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


@app.command()
def ack(
    alert_id: Annotated[str, typer.Argument(help="Alert id (see `stackwatch alerts list`).")],
    by: Annotated[str, typer.Option("--by", help="Your name (recorded with the ack).")],
    reason: Annotated[str, typer.Option("--reason", help="Why / what is being done.")],
    dsn: DsnOption = None,
    bootstrap: BootstrapOption = None,
) -> None:
    """Acknowledge an open alert: stops its repeats and its escalation."""
    import psycopg

    from sinks.ack_api import AlertNotOpenError, KafkaAckPublisher, PgAlertRepository, publish_ack

    settings = get_settings()
    try:
        request = AckRequest(by=by, reason=reason)
    except ValidationError as exc:
        raise fail(f"invalid acknowledgement: {exc.errors()[0]['msg']}") from None
    db, kafka = _dsn(dsn, settings), _bootstrap(bootstrap, settings)

    async def run() -> Any:
        topic = settings.topics.alert_commands
        publisher = KafkaAckPublisher(kafka, topic)
        repository = PgAlertRepository(db, max_size=1)
        await publisher.start()
        try:
            return await publish_ack(repository, publisher, alert_id, request, datetime.now(UTC))
        finally:
            await publisher.stop()
            await repository.close()

    try:
        command = asyncio.run(run())
    except AlertNotOpenError as exc:
        raise fail(str(exc)) from None
    except (psycopg.Error, OSError) as exc:
        raise fail(f"database: {exc}") from None
    except Exception as exc:  # aiokafka errors have no common public base worth naming
        raise fail(f"could not publish the acknowledgement: {type(exc).__name__}: {exc}") from None
    console.print(
        f"acknowledged [bold]{command.alert_id}[/bold] (stack {command.stack_id}) "
        f"by {command.by}: {command.reason}",
        highlight=False,
    )


@app.command("list")
def list_alerts(
    dsn: DsnOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=5000)] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Show open (active or acknowledged) alerts, most recent first."""
    import psycopg

    from sinks.ack_api import PgAlertRepository

    settings = get_settings()
    repo = PgAlertRepository(_dsn(dsn, settings), max_size=1)

    async def read() -> list[Any]:
        try:
            return list(await repo.list_active(limit))
        finally:
            await repo.close()

    try:
        alerts = asyncio.run(read())
    except (psycopg.Error, OSError) as exc:
        raise fail(f"database: {exc}") from None
    if as_json:
        for a in alerts:
            typer.echo(a.model_dump_json())
        return
    table = Table(title=f"Open alerts ({len(alerts)})")
    for column in ("alert id", "stack", "plant", "factor", "rule", "severity", "state",
                   "first seen (UTC+8)", "count", "peak / limit", "ack by", "level"):
        table.add_column(column)
    from stackwatch.beijing_time import CST
    from stackwatch.notify.render import format_number

    for a in alerts:
        table.add_row(
            a.alert_id,
            a.stack_name or a.stack_id,
            a.plant or "",
            a.factor or "",
            a.rule,
            a.severity,
            a.state,
            a.first_seen.astimezone(CST).strftime("%Y-%m-%d %H:%M"),
            str(a.count),
            f"{format_number(a.peak_value)} / {format_number(a.limit_value)}",
            a.acked_by or "",
            str(a.escalation_level),
        )
    console.print(table)


@app.command()
def dispatch(
    routes: Annotated[
        Path,
        typer.Option("--routes", envvar="STACKWATCH_NOTIFY_FILE",
                     help="Routing file (see sinks/notify.example.yaml)."),
    ],
    registry_file: Annotated[
        Path | None,
        typer.Option("--registry", help="Stack registry YAML (default: gateway setting).",
                     show_default=False),
    ] = None,
    dsn: DsnOption = None,
    bootstrap: BootstrapOption = None,
    tick_s: Annotated[float, typer.Option("--tick", min=0.5, help="Timer period (s).")] = 5.0,
    state_file: Annotated[
        Path | None,
        typer.Option("--state-file", help="Scheduler state across restarts (default: "
                     "<data_dir>/notify-state.json).", show_default=False),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve Prometheus /metrics on this port (0 = any).",
                     show_default=False),
    ] = None,
    insecure_dev: InsecureDevOption = False,
) -> None:
    """Consume the alerts topic and deliver notifications (webhook, e-mail) until stopped.

    Due notifications go to the durable outbox in PostgreSQL (docs/notifications.md) and are
    retried until delivered or expired (STACKWATCH_NOTIFY__*); the scheduler state is kept
    with them. `--state-file` is kept for compatibility and only read once, when the database
    has no saved state yet."""
    import httpx

    from commands.gateway import load_registry
    from sinks.metrics_http import MetricsServer
    from sinks.notifiers import (
        EmailSender,
        Notifier,
        NotifierMetrics,
        PgDeliveryLog,
        WebhookSender,
    )
    from sinks.outbox import Backoff, HeartbeatPlan, OutboxWorker, PgOutbox
    from stackwatch.notify import NotifyConfig, NotifyConfigError
    from stackwatch.notify.ack_link import AckLinks
    from streams.alert_dispatcher import (
        AlertDispatcher,
        FileStateStore,
        load_scheduler,
        load_scheduler_from_outbox,
        run_dispatcher,
    )

    settings = get_settings()
    signer = _link_signer(settings, insecure_dev)
    links = AckLinks(signer, settings.ack_page.base_url) if signer is not None else None
    try:
        config = NotifyConfig.load(routes)
    except NotifyConfigError as exc:
        raise fail(str(exc)) from None
    cfg = settings.notify
    heartbeat = None
    if cfg.heartbeat.group is not None:
        if cfg.heartbeat.group not in {g.name for g in config.groups}:
            raise fail(f"STACKWATCH_NOTIFY__HEARTBEAT__GROUP: no group {cfg.heartbeat.group!r} "
                        f"in {routes}")
        heartbeat = HeartbeatPlan(group=cfg.heartbeat.group, interval=cfg.heartbeat.interval)
    try:
        registry = load_registry(registry_file or settings.gateway.registry_file)
    except (OSError, ValueError) as exc:
        raise fail(f"registry: {exc}") from None
    db, kafka = _dsn(dsn, settings), _bootstrap(bootstrap, settings)

    async def run() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        log = PgDeliveryLog(db)
        metrics = NotifierMetrics()
        server = (
            MetricsServer(metrics.registry, host=settings.web_host, port=metrics_port)
            if metrics_port is not None
            else None
        )
        if server is not None:
            await server.start()
            console.print(f"metrics on {server.url}", highlight=False)
        async with httpx.AsyncClient(timeout=15) as client:
            notifier = Notifier(
                config,
                base_url=settings.grafana_url,
                webhook=WebhookSender(client),
                email=EmailSender(settings.smtp),
                delivery_log=log,
                metrics=metrics,
                ack_links=links,
            )
            if links is not None:
                console.print(f"acknowledgement links to {links.base_url}/ack/…",
                              highlight=False)
            group_id = "stackwatch-notify"
            outbox = PgOutbox(db, name=group_id)
            if await outbox.load_state() is None:  # first start on the outbox: old file
                store = FileStateStore(
                    state_file or settings.resolved_data_dir() / "notify-state.json"
                )
                scheduler = load_scheduler(config, store)
            else:
                scheduler = await load_scheduler_from_outbox(config, outbox)
            dispatcher = AlertDispatcher(
                scheduler, outbox, registry=registry,
                max_age=cfg.max_age, heartbeat=heartbeat,
            )
            worker = OutboxWorker(
                outbox, notifier, metrics=metrics,
                backoff=Backoff(cfg.retry_initial_s, cfg.retry_factor, cfg.retry_max_s),
            )
            try:
                await run_dispatcher(
                    dispatcher,
                    bootstrap=kafka,
                    topic=settings.topics.alerts,
                    group_id=group_id,
                    tick_interval_s=tick_s,
                    stop=stop,
                    worker=worker,
                    worker_interval_s=cfg.poll_interval_s,
                )
            finally:
                await outbox.close()
                await log.close()
                if server is not None:
                    await server.stop()

    asyncio.run(run())


@app.command()
def api(
    host: Annotated[str | None, typer.Option("--host", help="Bind address (default: "
                                             "settings.web_host).", show_default=False)] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default: settings.web_port).",
                                             show_default=False)] = None,
    insecure_dev: InsecureDevOption = False,
    dsn: DsnOption = None,
    bootstrap: BootstrapOption = None,
) -> None:
    """Serve the acknowledgement HTTP API (POST /alerts/{id}/ack, GET /alerts) and, when
    acknowledgement links are enabled, the page they open (settings.ack_page host/port)."""
    from aiohttp import web

    from sinks.ack_api import (
        InsecureConfigError,
        KafkaAckPublisher,
        PgAlertRepository,
        check_token,
        create_app,
    )
    from sinks.ack_page import PgAckPageStore, create_ack_page_app
    from sinks.rate_limit import RateLimiter

    settings = get_settings()
    api_cfg = settings.ack_api
    try:
        check_token(settings.api_token, insecure_dev=insecure_dev, users=api_cfg.users)
    except InsecureConfigError as exc:
        raise fail(str(exc)) from None
    signer = _link_signer(settings, insecure_dev)
    db, kafka = _dsn(dsn, settings), _bootstrap(bootstrap, settings)
    publisher = KafkaAckPublisher(kafka, settings.topics.alert_commands)
    repository = PgAlertRepository(db, max_size=api_cfg.pool_max_size)
    try:
        application = create_app(
            token=settings.api_token,
            publisher=publisher,
            repository=repository,
            users=api_cfg.users,
            insecure_dev=insecure_dev,
            limiter=RateLimiter(api_cfg.rate_per_minute, api_cfg.rate_burst),
        )
    except InsecureConfigError as exc:
        raise fail(str(exc)) from None
    page = (
        create_ack_page_app(
            signer=signer,
            evidence=PgAckPageStore(db),
            uses=PgAckPageStore(db),
            repository=repository,
            publisher=publisher,
            trend_hours=settings.ack_page.trend_hours,
            grafana_url=settings.grafana_url,
        )
        if signer is not None
        else None
    )
    bind_host, bind_port = host or settings.web_host, port or settings.web_port
    page_host, page_port = settings.ack_page.host, settings.ack_page.port

    async def run() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await publisher.start()
        runners = [web.AppRunner(application)]
        if page is not None:
            runners.append(web.AppRunner(page))
        try:
            for runner in runners:
                await runner.setup()
            await web.TCPSite(runners[0], bind_host, bind_port).start()
            console.print(f"ack API on http://{bind_host}:{bind_port}", highlight=False)
            if page is not None:
                await web.TCPSite(runners[1], page_host, page_port).start()
                console.print(
                    f"ack page on http://{page_host}:{page_port} "
                    f"(links: {settings.ack_page.base_url})",
                    highlight=False,
                )
            await stop.wait()
        finally:
            for runner in runners:
                await runner.cleanup()
            await publisher.stop()
            await repository.close()

    try:
        asyncio.run(run())
    except OSError as exc:
        raise fail(f"cannot serve on {bind_host}:{bind_port}: {exc}") from None


@app.command("hash-token")
def hash_token_command() -> None:
    """Read a personal API token on standard input and print its SHA-256, the key to put in
    STACKWATCH_ACK_API__USERS (`{"<sha256>": "王工"}`): the token itself is never stored."""
    from sinks.ack_api import MIN_TOKEN_LENGTH, hash_token

    token = typer.get_text_stream("stdin").read().strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise fail(f"token too short: use at least {MIN_TOKEN_LENGTH} random characters "
                    "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    typer.echo(hash_token(token))
