"""Checks every card's SQL on PostgreSQL without running it: prepare and describe, nothing executed.

Template tags are replaced by typed defaults (a field filter by `true`), once with the optional
`[[ ]]` clauses removed and once with them kept, so the SQL inside them is checked too. The
statements are only prepared (the unnamed statement) and described inside a READ ONLY transaction
that is rolled back: nothing is written and no rows are fetched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import pq

from provisioner.db.connection import connect, first_line
from provisioner.errors import DatabaseError, SpecError
from provisioner.redact import redact_dsn
from provisioner.spec import LoadedFile
from provisioner.spec.sql import OPTIONAL_CLAUSE, TAG_PATTERN, ResolvedTag, resolve_tags

_LITERALS = {"dimension": "true", "text": "'x'", "number": "0", "date": "DATE '2000-01-01'"}


def substitute(sql: str, tags: dict[str, ResolvedTag], *, keep_optional: bool) -> str:
    """The SQL with tags replaced by typed literals; optional clauses kept (brackets dropped) or removed."""
    sql = OPTIONAL_CLAUSE.sub((lambda m: m.group(1)) if keep_optional else "", sql)

    def literal(match: re.Match[str]) -> str:
        tag = tags.get(match.group(1))
        if tag is not None and tag.field:
            # Metabase writes a field filter as a condition on the table-qualified column, so the table
            # must be in FROM under its own name (an alias breaks it): an always-true test on the same
            # reference fails here exactly when it would fail there.
            column = ".".join(f'"{part}"' for part in tag.field.split(".")[-2:])
            return f"({column} IS NULL OR {column} IS NOT NULL)"
        return _LITERALS.get(tag.kind if tag else "text", "'x'")

    return TAG_PATTERN.sub(literal, sql).strip().rstrip(";")


@dataclass(frozen=True)
class Described:
    """The columns a statement returns, or the error PostgreSQL gave."""

    columns: list[str]
    error: str | None


def describe(conn: psycopg.Connection, sql: str) -> Described:
    """Prepare `sql` as the unnamed statement and describe its result columns (never executes it)."""
    pgconn = conn.pgconn
    # A failed prepare aborts the transaction: a savepoint keeps the next card's check alive.
    pgconn.exec_(b"SAVEPOINT card_check")
    try:
        result = pgconn.prepare(b"", sql.encode())
        if result.status != pq.ExecStatus.COMMAND_OK:
            return Described([], (result.error_message or b"").decode(errors="replace").strip())
        described = pgconn.describe_prepared(b"")
        if described.status != pq.ExecStatus.COMMAND_OK:
            return Described([], (described.error_message or b"").decode(errors="replace").strip())
        return Described([(described.fname(i) or b"").decode() for i in range(described.nfields)], None)
    finally:
        pgconn.exec_(b"ROLLBACK TO SAVEPOINT card_check")


def _columns(conn: psycopg.Connection) -> set[tuple[str, str, str]]:
    rows = conn.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
    ).fetchall()
    return {(r[0], r[1], r[2]) for r in rows}


def _field_exists(field: str, columns: set[tuple[str, str, str]]) -> bool:
    parts = field.split(".")
    if len(parts) == 3:
        return tuple(parts) in columns
    table, column = parts
    return any(t == table and c == column for _, t, c in columns)


def check_sql(loaded: list[LoadedFile], dsn: str) -> list[SpecError]:
    """Problems found by PostgreSQL: SQL that does not prepare, unknown table.column, viz columns absent.

    Raises DatabaseError when the database cannot be reached or the connection fails during the check.
    """
    errors: list[SpecError] = []
    with connect(dsn) as conn:
        try:
            conn.read_only = True
            columns = _columns(conn)
            conn.rollback()
            pgconn = conn.pgconn
            pgconn.exec_(b"BEGIN TRANSACTION READ ONLY")
            try:
                for item in loaded:
                    errors += _check_dashboard(conn, item, columns)
            finally:
                if not conn.closed:
                    pgconn.exec_(b"ROLLBACK")
        except psycopg.Error as exc:
            raise DatabaseError(
                f"checking the SQL on {redact_dsn(dsn)} failed: {first_line(exc)}",
                hint="check that the database is up and the user may read its tables and views",
            ) from exc
    return errors


def _check_dashboard(
    conn: psycopg.Connection, item: LoadedFile, columns: set[tuple[str, str, str]]
) -> list[SpecError]:
    errors: list[SpecError] = []
    for base, card in item.spec.located_questions():
        if card.key not in item.sql:
            continue
        sql = item.sql[card.key]
        tags = {t.name: t for t in resolve_tags(item.spec, card, sql)}
        for tag in tags.values():
            if tag.field and not _field_exists(tag.field, columns):
                errors.append(
                    item.locator.error(
                        (*base, "tags", tag.name, "field"),
                        f"`{tag.field}` is not a column of any table or view in the database",
                        hint="check the names; a view's columns are listed in database/002_views.sql",
                    )
                )
        where = (*base, "sql" if card.sql is not None else "sql_file")
        returned: list[str] | None = None
        for keep in (False, True):
            found = describe(conn, substitute(sql, tags, keep_optional=keep))
            if found.error:
                clause = " (inside a [[ ]] clause)" if keep else ""
                errors.append(
                    item.locator.error(
                        where, f"PostgreSQL rejects the SQL{clause}: {found.error.splitlines()[0]}"
                    )
                )
                break
            returned = returned or found.columns
        if returned is None:
            continue
        for viz_key, column in card.viz.columns():
            if column not in returned:
                errors.append(
                    item.locator.error(
                        (*base, "viz", viz_key),
                        f"column `{column}` is not returned by the SQL (it returns: {', '.join(returned)})",
                        hint="name a column of the SELECT list, or alias one (AS ...)",
                    )
                )
    return errors
