"""Loading many rows fast: COPY FROM STDIN, streamed, into tables whose keys are built once at the end.

PostgreSQL checks a key or a foreign key row by row while COPY runs; built after the load, a unique index
is one sort and a foreign key one join (what pg_restore does). At a million readings that is about a
third of the time. Everything runs in the caller's transaction: a failure leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg


def _copy_statement(table: str, columns: Iterable[str]) -> Any:
    from psycopg import sql

    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )


def copy_rows(conn: psycopg.Connection, table: str, columns: tuple[str, ...], rows: Iterable[Any]) -> int:
    """COPY `rows` (tuples of Python values, adapted by psycopg) into `table`; returns how many."""
    count = 0
    with conn.cursor() as cur, cur.copy(_copy_statement(table, columns)) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def copy_text(conn: psycopg.Connection, table: str, columns: tuple[str, ...], chunks: Iterable[str]) -> int:
    """COPY `chunks` of COPY text (tab-separated, one line per row) into `table`; returns how many rows."""
    count = 0
    with conn.cursor() as cur, cur.copy(_copy_statement(table, columns)) as copy:
        for chunk in chunks:
            copy.write(chunk)
            count += chunk.count("\n")
    return count


@contextmanager
def keys_built_after(conn: psycopg.Connection, tables: Iterable[str]) -> Iterator[None]:
    """Drop the keys (primary, unique, foreign) and indexes of `tables` in the current schema, and every
    foreign key pointing at them; build them all again, under the same names, when the block ends.

    CHECK and NOT NULL constraints stay: they cost little per row. A row that breaks a key fails the
    rebuild (`could not create unique index ...`), and with it the caller's transaction.
    """
    names = list(tables)
    keys = conn.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype
        FROM pg_constraint c
        WHERE c.contype IN ('p', 'u', 'x', 'f')
          AND (c.conrelid = ANY(%(tables)s::regclass[]) OR c.confrelid = ANY(%(tables)s::regclass[]))
        ORDER BY c.contype = 'f' DESC, c.oid
        """,
        {"tables": names},
    ).fetchall()
    indexes = conn.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY(%s::regclass[])
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype <> 'f')
        ORDER BY i.indexrelid
        """,
        (names,),
    ).fetchall()
    from psycopg import sql

    # Foreign keys first: a primary key cannot go while a foreign key uses its index.
    for table, name, _definition, _kind in keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.SQL(table), sql.Identifier(name))
        )
    for index, _definition in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(index)))
    yield
    # Unique keys before the foreign keys that need them.
    for table, name, definition, _kind in sorted(keys, key=lambda key: key[3] == "f"):
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.SQL(table), sql.Identifier(name), sql.SQL(definition)
            )
        )
    for _index, definition in indexes:
        conn.execute(sql.SQL(definition))
