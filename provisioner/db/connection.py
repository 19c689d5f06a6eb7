"""psycopg connections: retried while PostgreSQL starts, errors translated to DatabaseError."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from provisioner.errors import DatabaseError
from provisioner.redact import redact_dsn
from provisioner.wait import wait_until

if TYPE_CHECKING:
    import psycopg

MIN_SERVER_VERSION = 130000  # PostgreSQL 13
_RETRY_S = 0.5


def connect(
    dsn: str,
    *,
    wait_s: float = 0.0,
    autocommit: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> psycopg.Connection:
    """A connection to `dsn`, retrying for up to `wait_s` while the server starts.

    psycopg's automatic server-side prepared statements are off: behind a pooler in transaction mode
    (Supabase's on 6543, PgBouncer, Neon's) a statement prepared in one transaction is gone, or already
    taken by another client, in the next. Raises DatabaseError with a hint for the usual causes (host
    down, wrong password, no such database, PostgreSQL older than 13).
    """
    import psycopg

    refused: list[psycopg.OperationalError] = []

    def attempt() -> psycopg.Connection | None:
        try:
            return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=10, prepare_threshold=None)
        except psycopg.OperationalError as exc:
            if not _is_transient(exc):
                raise explain_connect_error(dsn, exc) from exc
            refused[:] = [exc]  # the server is starting, or not up yet: try again until the deadline
            return None
        except psycopg.Error as exc:  # e.g. ProgrammingError: an unknown option in the URL's query
            raise explain_connect_error(dsn, exc) from exc

    conn = wait_until(attempt, timeout_s=wait_s, poll_s=_RETRY_S, clock=clock, sleep=sleep)
    if conn is None:
        raise explain_connect_error(dsn, refused[0]) from refused[0]
    if conn.info.server_version < MIN_SERVER_VERSION:
        version = conn.info.parameter_status("server_version") or str(conn.info.server_version)
        conn.close()
        raise DatabaseError(
            f"PostgreSQL {version} is too old: 13 or newer is required",
            hint="point --database-url at PostgreSQL 13+, or omit it to use the embedded server",
        )
    return conn


def _is_transient(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(
        s in text for s in ("connection refused", "the database system is starting up", "could not connect")
    )


def explain_connect_error(dsn: str, exc: Exception) -> DatabaseError:
    """A DatabaseError with a hint, from a psycopg connection failure."""
    text = str(exc).strip()
    lower = text.lower()
    where = redact_dsn(dsn)
    if "password authentication failed" in lower or "no password supplied" in lower:
        hint = "check the user and password in the database URL"
    elif "does not exist" in lower and "database" in lower:
        hint = "create the database first, or name an existing one in the URL"
    elif "connection refused" in lower or "could not connect" in lower or "timeout" in lower:
        hint = "is PostgreSQL running and reachable? For the embedded one: `provision db start`"
    elif "could not translate host name" in lower or "name or service not known" in lower:
        hint = "check the host name in the database URL"
    elif "certificate" in lower or "root cert" in lower or "does not match host name" in lower:
        hint = (
            "the server's certificate does not check out against sslrootcert: use the provider's CA file, "
            "and the host name the certificate names (or sslmode=require, which encrypts without checking)"
        )
    elif "ssl" in lower:
        hint = "hosted databases often need ?sslmode=require at the end of the URL"
    else:
        hint = "check the database URL and that the server accepts connections"
    return DatabaseError(f"cannot connect to {where}: {first_line(exc)}", hint=hint)


def first_line(exc: Exception) -> str:
    """The first line of a driver error: PostgreSQL's message without its DETAIL and context lines."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
