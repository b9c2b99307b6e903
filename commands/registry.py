"""``stackwatch registry``: tools for the stack registry file (logger passwords).

``hash-password`` prints the salted scrypt string to put in a stack's ``password_hash``. The
password is read from stdin (one line, for scripts) or a hidden prompt, never from the command
line, where it would land in the shell history and the process list.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from stackwatch.registry_hash import DEFAULT_N, DEFAULT_P, DEFAULT_R, hash_password

app = typer.Typer(
    name="registry", help="Stack registry tools (logger passwords).", no_args_is_help=True
)


@app.command("hash-password")
def hash_password_cmd(
    n: Annotated[int, typer.Option(help="scrypt cost N (power of two).")] = DEFAULT_N,
    r: Annotated[int, typer.Option(help="scrypt block size r.")] = DEFAULT_R,
    p: Annotated[int, typer.Option(help="scrypt parallelism p.")] = DEFAULT_P,
) -> None:
    """Print `scrypt$n$r$p$salt$hash` for a password read from stdin or a prompt."""
    if sys.stdin.isatty():
        password = typer.prompt("logger password (PW)", hide_input=True,
                                confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise typer.BadParameter("empty password; for a logger without one use "
                                 "`accept_without_password: true` in the registry")
    if n < 2 or n & (n - 1):
        raise typer.BadParameter("n must be a power of two", param_hint="--n")
    typer.echo(hash_password(password, n=n, r=r, p=p))
