"""``stackwatch hj212``: decode HJ 212 frames to JSON lines and encode JSON lines to frames.

Useful for inspecting captures (``stackwatch hj212 decode capture.h212 | jq``) and for
hand-crafting test traffic (``... | stackwatch hj212 encode``). Input may hold one frame per
line or raw captures with several frames per line; the same framer as the gateway is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import click
import typer
from pydantic import ValidationError

from stackwatch.hj212 import Framer, decode_frame, encode_segment, frame_segment

app = typer.Typer(
    name="hj212",
    help="HJ 212 codec: decode frames to JSON lines, encode JSON lines to frames.",
    no_args_is_help=True,
)

_CHUNK = 65536


def _open(source: str) -> BinaryIO:
    if source == "-":
        return click.get_binary_stream("stdin")
    path = Path(source)
    if not path.is_file():
        raise typer.BadParameter(f"no such file: {source}", param_hint="SOURCE")
    return path.open("rb")


@app.command()
def decode(
    source: str = typer.Argument("-", help="File with HJ 212 frames, or - for stdin."),
    raw: bool = typer.Option(False, "--raw", help="Add the frame text as a 'raw' key."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 if any frame was rejected."),
    summary: bool = typer.Option(True, "--summary/--no-summary", help="Counts on stderr."),
) -> None:
    """Decode every frame in SOURCE to one JSON object per line (rejected ones included)."""
    out = click.get_text_stream("stdout")
    framer = Framer()
    total = rejected = 0
    stream = _open(source)
    try:
        while True:
            chunk = stream.read(_CHUNK)
            results = framer.feed(chunk) if chunk else framer.flush()
            for result in results:
                frame = decode_frame(result)
                record = frame.to_json_dict()
                if raw:
                    record["raw"] = frame.raw
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                total += 1
                rejected += not frame.ok
            if not chunk:
                break
    finally:
        if stream is not click.get_binary_stream("stdin"):
            stream.close()
    if summary:
        typer.echo(f"{total} frames: {total - rejected} ok, {rejected} rejected", err=True)
    if strict and rejected:
        raise typer.Exit(1)


@app.command()
def encode(
    source: str = typer.Argument("-", help="File of JSON objects (decode's shape), or -."),
) -> None:
    """Encode JSON lines (``decode``'s output shape) to framed HJ 212 packets with CRC."""
    out = click.get_binary_stream("stdout")
    stream = _open(source)
    failures = 0
    try:
        for number, line in enumerate(stream, start=1):
            text = line.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                fields = json.loads(text)
                if not isinstance(fields, dict):
                    raise ValueError("expected a JSON object")
                frame = frame_segment(encode_segment(fields))
            except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
                failures += 1
                reason = str(exc).replace("\n", "; ")
                typer.echo(f"line {number}: cannot encode: {reason}", err=True)
                continue
            out.write(frame.encode("utf-8"))
    finally:
        if stream is not click.get_binary_stream("stdin"):
            stream.close()
    out.flush()
    if failures:
        raise typer.Exit(1)

