"""Login users in the group roles of migration 0011 (`stackwatch db logins`).

Migrations create the NOLOGIN groups (stackwatch_owner, stackwatch_writer, stackwatch_reader);
which login names and passwords exist is the deployment's business, so this module creates or
updates them from settings (`STACKWATCH_DB__WRITER_PASSWORD`, …). Passwords are sent as
SCRAM-SHA-256 verifiers computed here (RFC 5802/7677, PostgreSQL's on-disk format): the clear
password never reaches the server, its statement log or `pg_stat_activity`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

__all__ = ["GROUPS", "Login", "LoginError", "ensure_logins", "scram_sha256_verifier"]

log = logging.getLogger(__name__)

Group = Literal["stackwatch_owner", "stackwatch_writer", "stackwatch_reader"]
GROUPS: tuple[Group, ...] = ("stackwatch_owner", "stackwatch_writer", "stackwatch_reader")
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


class LoginError(RuntimeError):
    """A login cannot be set up safely (groups missing, name taken by a privileged role)."""


@dataclass(frozen=True)
class Login:
    """One login user and the group whose privileges it gets."""

    user: str
    password: str
    group: Group

    def __repr__(self) -> str:  # never show the password
        return f"Login(user={self.user!r}, group={self.group!r})"


def scram_sha256_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`, what `ALTER ROLE … PASSWORD`
    stores as is (PostgreSQL recognises the format and does not hash it again)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _check(conn: psycopg.Connection[Any], login: Login) -> bool:
    """Whether the login exists; refuses names that would give a process too much."""
    if login.user in GROUPS:
        raise LoginError(f"{login.user!r} is a group role; a login needs a name of its own")
    row = conn.execute(
        "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication "
        "FROM pg_roles WHERE rolname = %s",
        (login.user,),
    ).fetchone()
    if row is None:
        return False
    if row[0]:
        raise LoginError(
            f"role {login.user!r} already exists with superuser/createrole/createdb/replication/"
            "bypassrls: choose another login name for a least-privilege login"
        )
    return True


def ensure_logins(conn: psycopg.Connection[Any], logins: list[Login]) -> list[str]:
    """Create or update each login (LOGIN, new password, member of its group only).

    Run by a role that may create roles (the bootstrap superuser in compose). Other group
    memberships a login has are revoked: a writer login that was once a reader is not both.
    Returns the users set up, in order.
    """
    present = {
        r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                   (list(GROUPS),)).fetchall()
    }
    missing = [g for g in GROUPS if g not in present]
    if missing:
        raise LoginError(
            f"group roles {', '.join(missing)} do not exist: run `stackwatch db migrate` first"
        )
    done: list[str] = []
    for login in logins:
        with conn.transaction():
            exists = _check(conn, login)
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT "
                        "PASSWORD {}").format(
                    sql.Identifier(login.user),
                    sql.Literal(scram_sha256_verifier(login.password)),
                )
            )
            for group in GROUPS:
                if group != login.group:
                    conn.execute(sql.SQL("REVOKE {} FROM {}").format(
                        sql.Identifier(group), sql.Identifier(login.user)))
            conn.execute(sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(login.group), sql.Identifier(login.user)))
        log.info(
            "database login ready",
            extra={"user": login.user, "group": login.group, "new_login": not exists},
        )
        done.append(login.user)
    return done
