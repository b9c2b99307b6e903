"""`stackwatch history request`: ask a logger for its data of a time range (HJ 212 §6.6)."""

from __future__ import annotations

import asyncio
import getpass
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console

from stackwatch.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Ask loggers for their history (补传).")
console = Console(stderr=True)


def _time(text: str) -> datetime:
    from stackwatch.beijing_time import CST

    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=CST)


@app.command()
def request(
    mn: Annotated[str, typer.Argument(help="The logger's MN.")],
    begin: Annotated[str, typer.Option(help="BeginTime, ISO (naive = Beijing time).")],
    end: Annotated[str, typer.Option(help="EndTime, ISO (naive = Beijing time).")],
    cn: Annotated[str, typer.Option(help="2051 minute, 2061 hour or 2031 day data.")] = "2061",
    by: Annotated[str | None, typer.Option(help="Who asks (default: this user).")] = None,
) -> None:
    """Put a history request on the gateway-commands topic; the gateway holding the logger's
    connection sends it, and the re-sent records back-fill their hours."""
    from pydantic import ValidationError

    from embedded import resolve_kafka_bootstrap
    from stackwatch.models import HistoryCommand

    settings = get_settings()
    try:
        command = HistoryCommand.model_validate(
            {"mn": mn, "cn": cn, "begin": _time(begin), "end": _time(end),
             "by": by or getpass.getuser()}
        )
    except (ValidationError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if command.end < command.begin:
        console.print("[bold red]error:[/] --end is before --begin")
        raise typer.Exit(2)

    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=resolve_kafka_bootstrap(settings),
            **settings.kafka.producer_options(settings.broker_profile),
        )
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topics.gateway_commands, command.model_dump_json().encode(),
                key=mn.encode(),
            )
        finally:
            await producer.stop()

    asyncio.run(send())
    console.print(f"asked for {mn} {cn} {command.begin.isoformat()} … {command.end.isoformat()}")

