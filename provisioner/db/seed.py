"""Seed the demo warehouse: schema, views, mock data, derived snapshots, reader role, in ONE transaction.

Idempotent: a second run with the same as-of date changes nothing. Safe on someone else's database:
`provision_meta` marks the objects as ours, and same-named objects we do not own are never dropped
without `--force`.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, computed_field

from provisioner import __version__
from provisioner.db.connection import connect, first_line
from provisioner.db.roles import (
    READER_ROLE,
    ReaderOutcome,
    ensure_reader,
)
from provisioner.db.schema import (
    DERIVED_SQL,
    META_TABLE,
    TABLES,
    VIEWS,
    apply_schema,
    run_sql_file,
    schema_files,
)
from provisioner.db.seed_files import (
    LOAD_ORDER,
    TableRows,
    files_fingerprint,
    load_table,
    load_telemetry,
    seed_files,
)
from provisioner.errors import DatabaseError, OwnershipError
from provisioner.progress import NullProgress, Progress
from provisioner.redact import redact_dsn

if TYPE_CHECKING:
    import psycopg


TOOL_NAME = "metabase-provisioner"
# Serialises concurrent seeds of one database (two terminals, a retry while the first still runs).
_SEED_LOCK_KEY = "metabase-provisioner seed"
# pg_class.relkind → the DROP statement for it, for same-named objects replaced under --force.
_DROP_KIND = {
    "r": "TABLE",
    "p": "TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "f": "FOREIGN TABLE",
    "S": "SEQUENCE",
}


class SeedStatus(BaseModel):
    """What provision_meta says about the seeded data, and what no longer matches it."""

    tool_version: str
    as_of: date
    checksum: str
    counts: dict[str, int]
    seeded_at: datetime
    # Why the data is not what the seed left (a view dropped, rows changed); None when it is. The same
    # check makes `demo` reseed, so status and doctor say "seeded" exactly when demo would change nothing.
    damage: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def seeded(self) -> bool:
        return self.damage is None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> str:
        if self.damage is not None:
            return f"damaged since the seed as of {self.as_of}: {self.damage}"
        rows = sum(self.counts.values())
        return f"seeded as of {self.as_of}: {len(self.counts)} tables, {rows} rows (tool {self.tool_version})"


class SeedResult(BaseModel):
    """The outcome of one seed run."""

    changed: bool
    counts: dict[str, int]
    as_of: date
    checksum: str
    reader: ReaderOutcome
    database: str  # redacted DSN


def seed_database(
    dsn: str,
    *,
    as_of: date,
    reset: bool = False,
    force: bool = False,
    reader_password: str | None,
    progress: Progress | None = None,
    reader_role: str = READER_ROLE,
) -> SeedResult:
    """Create and fill the demo warehouse at `dsn` for `as_of` in one transaction; set up the reader role.

    Raises DatabaseError (cannot connect, no CREATE privilege, PostgreSQL older than 13, a statement
    failed: nothing is written) and OwnershipError (same-named objects we do not own, without `force`).
    """
    import psycopg

    progress = progress or NullProgress()
    where = redact_dsn(dsn)
    progress.step(f"Seeding the demo warehouse in {where} (as of {as_of})")
    conn = connect(dsn)
    try:
        with conn:  # one transaction: committed at the end, rolled back on any error
            _prepare_session(conn)
            changed, counts, checksum = _seed_objects(
                conn, as_of=as_of, reset=reset, force=force, progress=progress
            )
            reader = ensure_reader(
                conn, role=reader_role, password=reader_password, objects=(*TABLES, *VIEWS), progress=progress
            )
    except psycopg.Error as exc:
        raise DatabaseError(
            f"seeding {where} failed: {first_line(exc)}",
            hint="nothing was written (the seed runs in one transaction); fix the cause and run it again",
        ) from exc
    finally:
        conn.close()
    progress.info(
        f"{'seeded' if changed else 'already up to date'}: {len(counts)} tables, {sum(counts.values())} rows"
    )
    return SeedResult(
        changed=changed, counts=counts, as_of=as_of, checksum=checksum, reader=reader, database=where
    )


def seed_status(dsn: str) -> SeedStatus | None:
    """What provision_meta at `dsn` records, with any damage since (see `SeedStatus.damage`); None when
    this tool has not seeded it. Raises DatabaseError."""
    import psycopg

    conn = connect(dsn)
    try:
        with conn:
            if not _owns_schema(conn):
                return None
            _prepare_session(conn, lock=False)
            meta = _read_meta(conn)
            if meta is None:
                return None
            existing = _existing_objects(conn, _current_schema(conn))
            complete = all(name in existing for name in (*TABLES, *VIEWS))
            now = data_checksum(conn) if complete else None
            return meta.model_copy(update={"damage": _damage(existing, meta, now)})
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot read {META_TABLE}: {first_line(exc)}") from exc
    finally:
        conn.close()


def data_checksum(conn: psycopg.Connection) -> tuple[str, dict[str, int]]:
    """A sha256 over every row of the 24 tables, and the row count of each.

    Rows are compared as text in a fixed order, so the caller's session must use UTC and ISO dates.
    """
    from psycopg import sql

    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    for table in TABLES:
        count, rows_md5 = conn.execute(  # type: ignore[misc]
            sql.SQL(
                "SELECT count(*), COALESCE(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {} t"
            ).format(sql.Identifier(table))
        ).fetchone()
        counts[table] = int(count)
        digest.update(f"{table}\0{count}\0{rows_md5}\n".encode())
    return digest.hexdigest(), counts


def input_fingerprint(as_of: date) -> str:
    """A sha256 over the tool version, the as-of date, the SQL files and the seed files."""
    files = files_fingerprint([*schema_files(), DERIVED_SQL, *seed_files()])
    return hashlib.sha256(f"{TOOL_NAME}\0{__version__}\0{as_of.isoformat()}\0{files}".encode()).hexdigest()


# -- the steps, each in the caller's transaction ----------------------------------------------


def _prepare_session(conn: psycopg.Connection, *, lock: bool = True) -> None:
    conn.execute("SET LOCAL TimeZone = 'UTC'")
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    if lock:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_SEED_LOCK_KEY,))


def _seed_objects(
    conn: psycopg.Connection, *, as_of: date, reset: bool, force: bool, progress: Progress
) -> tuple[bool, dict[str, int], str]:
    """(changed, counts, checksum) after making the demo objects hold the data for `as_of`."""
    schema = _current_schema(conn)
    existing = _existing_objects(conn, schema)
    owned = _owns_schema(conn)
    if existing and not owned:
        if not force:
            raise OwnershipError(
                f"{len(existing)} object(s) in schema {schema} have the demo's names but were not created "
                f"by this tool: {', '.join(sorted(existing))}",
                hint="seed another database, or pass --force to drop and replace them",
            )
        progress.warn(f"--force: replacing objects this tool does not own: {', '.join(sorted(existing))}")
    fingerprint = input_fingerprint(as_of)
    complete = owned and all(name in existing for name in (*TABLES, *VIEWS))
    now = data_checksum(conn) if complete else None
    before = now[0] if now is not None else None
    if complete and not reset:
        meta = _read_meta(conn)
        if (
            meta is not None
            and _damage(existing, meta, now) is None
            and _stored_fingerprint(conn) == fingerprint
        ):
            progress.info("the demo data is already in place for this as-of date")
            return False, meta.counts, meta.checksum
    _require_create_privilege(conn, schema)
    _drop_objects(conn, existing)
    apply_schema(conn)
    _write_meta(conn, as_of=as_of, fingerprint=fingerprint)
    _load_seed_files(conn, as_of, progress)
    _derive_tables(conn)
    checksum, counts = data_checksum(conn)
    _finish_meta(conn, checksum=checksum, counts=counts)
    return checksum != before, counts, checksum


def _damage(existing: dict[str, str], meta: SeedStatus, now: tuple[str, dict[str, int]] | None) -> str | None:
    """What differs from what the seed left (`meta`): a missing table or view, or rows changed (`now` is
    `data_checksum` of the tables, None when some are missing); None when it is intact."""
    missing = [name for name in (*TABLES, *VIEWS) if name not in existing]
    if missing or now is None:
        return f"missing {', '.join(missing)}"
    checksum, counts = now
    if checksum == meta.checksum:
        return None
    changed = [table for table in TABLES if counts.get(table) != meta.counts.get(table)]
    if changed:
        return "row counts changed in " + ", ".join(
            f"{table} ({meta.counts.get(table, 0)} -> {counts.get(table, 0)})" for table in changed
        )
    return "rows were edited since (the checksum differs)"


def _current_schema(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise DatabaseError(
            "no schema to create the demo objects in: the search_path names no existing schema",
            hint="create the schema (e.g. public) or fix the user's search_path",
        )
    return str(row[0])


def _existing_objects(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    """Our names (tables, views, provision_meta) that exist in `schema` → their relkind."""
    names = [*TABLES, *VIEWS, META_TABLE]
    rows = conn.execute(
        """
        SELECT c.relname, c.relkind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relname = ANY(%s)
        """,
        (schema, names),
    ).fetchall()
    return {name: kind for name, kind in rows}


def _owns_schema(conn: psycopg.Connection) -> bool:
    """True when provision_meta in the current schema is ours (its shape and tool name match)."""
    row = conn.execute(
        """
        SELECT count(*) FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = %s
          AND column_name IN ('tool', 'tool_version', 'as_of', 'input_fingerprint', 'checksum', 'counts',
                              'seeded_at')
        """,
        (META_TABLE,),
    ).fetchone()
    if row is None or row[0] != 7:
        return False
    tool = conn.execute(f"SELECT tool FROM {META_TABLE} LIMIT 1").fetchone()
    return tool is not None and tool[0] == TOOL_NAME


def _read_meta(conn: psycopg.Connection) -> SeedStatus | None:
    row = conn.execute(
        f"SELECT tool_version, as_of, checksum, counts, seeded_at FROM {META_TABLE}"
    ).fetchone()
    if row is None:
        return None
    version, as_of, checksum, counts, seeded_at = row
    return SeedStatus(
        tool_version=version, as_of=as_of, checksum=checksum, counts=counts, seeded_at=seeded_at
    )


def _stored_fingerprint(conn: psycopg.Connection) -> str | None:
    row = conn.execute(f"SELECT input_fingerprint FROM {META_TABLE}").fetchone()
    return None if row is None else str(row[0])


def _require_create_privilege(conn: psycopg.Connection, schema: str) -> None:
    row = conn.execute(
        "SELECT current_user, current_database(), has_schema_privilege(%s, 'CREATE')", (schema,)
    ).fetchone()
    assert row is not None
    user, dbname, allowed = row
    if not allowed:
        raise DatabaseError(
            f"user {user} may not create tables in schema {schema} of database {dbname}",
            hint=f"connect as the database owner, or ask a DBA: GRANT CREATE ON SCHEMA {schema} TO {user};",
        )


def _drop_objects(conn: psycopg.Connection, existing: dict[str, str]) -> None:
    """Drop the named objects, views before tables; never CASCADE into objects that are not ours."""
    import psycopg
    from psycopg import sql

    by_kind: dict[str, list[str]] = {}
    for name, relkind in existing.items():
        kind = _DROP_KIND.get(relkind)
        if kind is None:
            raise OwnershipError(
                f"{name} exists as an object the tool cannot replace (pg_class.relkind {relkind!r})",
                hint="rename or drop it, or seed another database",
            )
        by_kind.setdefault(kind, []).append(name)
    order = ["VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE", "TABLE", "SEQUENCE"]
    for kind in sorted(by_kind, key=order.index):
        names = sql.SQL(", ").join(sql.Identifier(n) for n in sorted(by_kind[kind]))
        try:
            # One statement per kind: foreign keys among our own tables do not block the drop.
            conn.execute(sql.SQL("DROP {} {}").format(sql.SQL(kind), names))
        except psycopg.errors.DependentObjectsStillExist as exc:
            raise OwnershipError(
                f"other objects depend on the demo's {kind.lower()}s: {first_line(exc)}",
                hint="drop or change those objects first; the tool never drops what it did not create",
            ) from exc


def _write_meta(conn: psycopg.Connection, *, as_of: date, fingerprint: str) -> None:
    # Written before the data: derived.sql reads the as-of date from here.
    conn.execute(
        f"""
        INSERT INTO {META_TABLE} (tool, tool_version, as_of, input_fingerprint, checksum, counts, seeded_at)
        VALUES (%s, %s, %s, %s, 'pending', '{{}}', now())
        """,
        (TOOL_NAME, __version__, as_of, fingerprint),
    )


def _finish_meta(conn: psycopg.Connection, *, checksum: str, counts: dict[str, int]) -> None:
    from psycopg.types.json import Jsonb

    conn.execute(f"UPDATE {META_TABLE} SET checksum = %s, counts = %s", (checksum, Jsonb(counts)))


def _load_seed_files(conn: psycopg.Connection, as_of: date, progress: Progress) -> None:
    """Insert every seeds/ file into its table (raw_telemetry expanded from telemetry.yaml)."""
    batches = [load_table(table, filename, as_of) for table, filename in LOAD_ORDER]
    batches.append(load_telemetry(as_of))
    for batch in batches:
        _insert(conn, batch)
    progress.info(f"loaded {sum(len(b.rows) for b in batches)} rows from seeds/")


def _insert(conn: psycopg.Connection, batch: TableRows) -> None:
    import psycopg
    from psycopg import sql

    if not batch.rows:
        return
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(batch.table),
        sql.SQL(", ").join(sql.Identifier(c) for c in batch.columns),
        sql.SQL(", ").join(sql.Placeholder() for _ in batch.columns),
    )
    try:
        with conn.cursor() as cur:
            cur.executemany(statement, batch.rows)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"loading seeds into {batch.table} failed: {first_line(exc)}",
            hint="nothing was written; the seeds/ files of this checkout may be damaged (git restore seeds)",
        ) from exc


def _derive_tables(conn: psycopg.Connection) -> None:
    """Compute history, snapshots and aggregates from the transactions (database/derived.sql)."""
    run_sql_file(conn, DERIVED_SQL)
