"""Seed the demo warehouse: schema, views, mock data, derived snapshots, reader role, in ONE transaction.

Idempotent: a second run with the same as-of date and scale changes nothing. Safe on someone else's
database: `provision_meta` marks the objects as ours, and same-named objects we do not own are never
dropped without `--force`. `scale` N > 1 adds N - 1 copies of the curated demo (`seed_scale`), loaded
with COPY into tables whose keys are built after the load (`bulk_load`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import date, datetime
from itertools import chain
from typing import TYPE_CHECKING

from pydantic import BaseModel, computed_field

from provisioner import __version__
from provisioner.db.bulk_load import copy_rows, copy_text, keys_built_after
from provisioner.db.connection import connect, first_line
from provisioner.db.hosted import (
    DEDICATED_SCHEMA,
    data_api_roles,
    readable_by,
    require_plain_schema,
    revoke_all,
)
from provisioner.db.roles import (
    READER_ROLE,
    ReaderOutcome,
    ensure_reader,
)
from provisioner.db.schema import (
    DERIVED_SQL,
    DERIVED_TABLES,
    META_TABLE,
    TABLES,
    VIEWS,
    apply_schema,
    run_sql_file,
    schema_files,
)
from provisioner.db.seed_files import TELEMETRY_COLUMNS, files_fingerprint, seed_files
from provisioner.errors import ConfigError, DatabaseError, OwnershipError
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
    """What provision_meta says about the seeded data, the schema holding it, what no longer matches it."""

    tool_version: str
    as_of: date
    checksum: str
    counts: dict[str, int]
    seeded_at: datetime
    schema_name: str = "public"
    # Why the data is not what the seed left (a view dropped, rows changed); None when it is. The same
    # check makes `demo` reseed, so status and doctor say "seeded" exactly when demo would change nothing.
    damage: str | None = None
    scale: int = 1

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
        where = "" if self.schema_name == "public" else f" in schema {self.schema_name}"
        scale = "" if self.scale == 1 else f" at scale {self.scale}"
        return (
            f"seeded as of {self.as_of}{where}{scale}: {len(self.counts)} tables, {rows} rows "
            f"(tool {self.tool_version})"
        )


class DataApiOutcome(BaseModel):
    """What seeding did so that Supabase's Data API roles (anon, authenticated) read nothing of the demo."""

    roles: list[str]
    schema_name: str
    # The demo went to a schema of its own because the roles exist and nothing chose another.
    dedicated_schema: bool
    # (role, object) pairs the roles held privileges on (from default privileges), now revoked.
    revoked: int
    # What they can still read: `role: schema.object` (empty unless a grant the tool cannot undo remains).
    readable: list[str]
    summary: str


class SeedResult(BaseModel):
    """The outcome of one seed run."""

    changed: bool
    counts: dict[str, int]
    as_of: date
    checksum: str
    reader: ReaderOutcome
    database: str  # redacted DSN
    schema_name: str = "public"
    data_api: DataApiOutcome | None = None
    scale: int = 1  # copies of the curated demo: 15 × scale accounts


def seed_database(
    dsn: str,
    *,
    as_of: date,
    reset: bool = False,
    force: bool = False,
    reader_password: str | None,
    progress: Progress | None = None,
    reader_role: str = READER_ROLE,
    schema: str | None = None,
    scale: int | None = None,
) -> SeedResult:
    """Create and fill the demo warehouse at `dsn` for `as_of` in one transaction; set up the reader role.

    `scale`: how many copies of the curated demo (1: the curated 15 accounts; `seed_scale`); None keeps
    the scale the demo was seeded at, else 1. Another scale than the demo's rebuilds it.

    `schema` holds the demo (created when missing). Without it: the schema already holding the demo, else
    on a Supabase-like database (roles `anon` and `authenticated`) a schema of its own, else the current
    schema (normally `public`). Where those roles exist, their grants on the demo objects are revoked.
    Raises ConfigError (a schema name that cannot hold the demo, a scale out of range), DatabaseError
    (cannot connect, no CREATE privilege, PostgreSQL older than 13, a statement failed: nothing is
    written) and OwnershipError (same-named objects we do not own, without `force`).
    """
    import psycopg

    check_seed_options(schema=schema, scale=scale)
    progress = progress or NullProgress()
    where = redact_dsn(dsn)
    progress.step(f"Seeding the demo warehouse in {where} (as of {as_of})")
    conn = connect(dsn)
    try:
        with conn:  # one transaction: committed at the end, rolled back on any error
            _prepare_session(conn)
            roles = data_api_roles(conn)
            target, dedicated = _choose_schema(conn, schema, roles, progress)
            changed, counts, checksum, scale = _seed_objects(
                conn, as_of=as_of, reset=reset, force=force, progress=progress, scale=scale
            )
            reader = ensure_reader(
                conn, role=reader_role, password=reader_password, objects=(*TABLES, *VIEWS), progress=progress
            )
            data_api = (
                _close_data_api(conn, roles, target, dedicated=dedicated, progress=progress)
                if roles
                else None
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
        changed=changed,
        counts=counts,
        as_of=as_of,
        checksum=checksum,
        reader=reader,
        database=where,
        schema_name=target,
        data_api=data_api,
        scale=scale,
    )


def check_seed_options(*, schema: str | None, scale: int | None) -> None:
    """Refuse a schema name or a scale the demo cannot have (ConfigError), before anything connects or
    starts: callers that start a server first call it themselves."""
    if scale is not None:
        check_scale(scale)
    if schema is not None:
        require_plain_schema(schema)


def check_scale(scale: object) -> int:
    """`scale` as a whole number of copies from 1 to MAX_SCALE (text is parsed); raises ConfigError."""
    from provisioner.db.seed_scale import MAX_SCALE

    text = str(scale).strip()
    number = int(text) if text.lstrip("+").isdigit() else 0
    if not 1 <= number <= MAX_SCALE:
        raise ConfigError(
            f"--scale must be a whole number from 1 to {MAX_SCALE}, got {text!r}",
            hint="1 is the curated demo (15 accounts); --scale 100 gives 1,500 accounts and about "
            "1.1 million telemetry rows",
        )
    return number


def seed_status(dsn: str) -> SeedStatus | None:
    """What provision_meta at `dsn` records (the demo seeded last, in whichever schema), with any damage
    since (see `SeedStatus.damage`); None when this tool has not seeded it. Raises DatabaseError."""
    import psycopg

    conn = connect(dsn)
    try:
        with conn:
            schemas = demo_schemas(conn)
            if not schemas:
                return None
            _prepare_session(conn, lock=False)
            _use_schema(conn, schemas[0])
            meta = _read_meta(conn)
            if meta is None:
                return None
            existing = _existing_objects(conn, schemas[0])
            complete = all(name in existing for name in (*TABLES, *VIEWS))
            now = data_checksum(conn) if complete else None
            return meta.model_copy(update={"damage": _damage(existing, meta, now)})
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot read {META_TABLE}: {first_line(exc)}") from exc
    finally:
        conn.close()


def data_checksum(conn: psycopg.Connection) -> tuple[str, dict[str, int]]:
    """A sha256 over every row of the 24 tables, and the row count of each.

    Each row is hashed as text and the hashes summed: one pass, no sort, no string of the whole table
    (at --scale 1000 the telemetry alone would pass PostgreSQL's 1 GB limit). The text of a row depends
    on the session's time zone and date style, so the caller's session must use UTC and ISO dates.
    """
    from psycopg import sql

    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    for table in TABLES:
        count, rows_hash = conn.execute(  # type: ignore[misc]
            sql.SQL("SELECT count(*), COALESCE(sum(hashtextextended(t::text, 0)), 0) FROM {} t").format(
                sql.Identifier(table)
            )
        ).fetchone()
        counts[table] = int(count)
        digest.update(f"{table}\0{count}\0{rows_hash}\n".encode())
    return digest.hexdigest(), counts


def input_fingerprint(as_of: date, scale: int = 1) -> str:
    """A sha256 over the tool version, the as-of date, the scale, the SQL files and the seed files."""
    files = files_fingerprint([*schema_files(), DERIVED_SQL, *seed_files()])
    inputs = f"{TOOL_NAME}\0{__version__}\0{as_of.isoformat()}\0{scale}\0{files}"
    return hashlib.sha256(inputs.encode()).hexdigest()


def demo_schemas(conn: psycopg.Connection) -> list[str]:
    """The schemas holding a demo this tool seeded (its provision_meta), the most recently seeded first.

    Only schemas whose provision_meta the connecting user may read count.
    """
    from psycopg import sql

    rows = conn.execute(
        """
        SELECT n.nspname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname = %s AND c.relkind IN ('r', 'p')
          AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')
        ORDER BY n.nspname <> 'public', n.nspname
        """,
        (META_TABLE,),
    ).fetchall()
    seeded: list[tuple[datetime, str]] = []
    for (schema,) in rows:
        if _owns_schema(conn, schema):
            query = sql.SQL("SELECT max(seeded_at) FROM {}").format(sql.Identifier(schema, META_TABLE))
            row = conn.execute(query).fetchone()
            if row is not None and row[0] is not None:
                seeded.append((row[0], schema))
    # Stable for equal times: the catalog order above (public first) breaks the tie.
    return [schema for _, schema in sorted(seeded, key=lambda item: item[0], reverse=True)]


def find_demo_schema(dsn: str, progress: Progress | None = None) -> str | None:
    """The schema of the demo seeded last at `dsn` (saying so when there are several); None if none.

    Raises DatabaseError.
    """
    import psycopg

    conn = connect(dsn)
    try:
        with conn:
            schemas = demo_schemas(conn)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot look for the demo's schema: {first_line(exc)}") from exc
    finally:
        conn.close()
    if len(schemas) > 1:
        (progress or NullProgress()).warn(
            f"the demo is seeded in several schemas ({', '.join(schemas)}); using {schemas[0]}, seeded last"
        )
    return schemas[0] if schemas else None


# -- the steps, each in the caller's transaction ----------------------------------------------


def _prepare_session(conn: psycopg.Connection, *, lock: bool = True) -> None:
    # Everything LOCAL to the transaction: behind a pooler in transaction mode the server connection is
    # someone else's afterwards, and a session setting would follow it there.
    conn.execute("SET LOCAL TimeZone = 'UTC'")
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    if lock:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_SEED_LOCK_KEY,))


def _use_schema(conn: psycopg.Connection, schema: str) -> None:
    """Name the demo's objects unqualified in `schema` for the rest of the transaction."""
    from psycopg import sql

    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))


def _choose_schema(
    conn: psycopg.Connection, requested: str | None, roles: tuple[str, ...], progress: Progress
) -> tuple[str, bool]:
    """(the schema the demo goes to, whether it is the dedicated one chosen because `roles` exist).

    The schema is created when missing and becomes the transaction's search_path.
    """
    dedicated = False
    if requested is not None:
        schema = require_plain_schema(requested)
    else:
        existing = demo_schemas(conn)
        if len(existing) > 1:
            progress.warn(
                f"the demo is seeded in several schemas ({', '.join(existing)}); reseeding {existing[0]}, "
                "seeded last (--schema chooses)"
            )
        if existing:
            schema = existing[0]
        elif roles:
            schema, dedicated = DEDICATED_SCHEMA, True
        else:
            schema = _current_schema(conn)
    _ensure_schema(conn, schema)
    _use_schema(conn, schema)
    return schema, dedicated


def _ensure_schema(conn: psycopg.Connection, schema: str) -> None:
    import psycopg
    from psycopg import sql

    exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    if exists is not None:
        return
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    except psycopg.errors.InsufficientPrivilege as exc:
        user, dbname = conn.execute("SELECT current_user, current_database()").fetchone()  # type: ignore[misc]
        raise DatabaseError(
            f"user {user} may not create schema {schema} in database {dbname}: {first_line(exc)}",
            hint=f"ask a DBA: CREATE SCHEMA {schema} AUTHORIZATION {user}; (or pass --schema with an "
            "existing schema you may create tables in)",
        ) from exc


def _close_data_api(
    conn: psycopg.Connection, roles: tuple[str, ...], schema: str, *, dedicated: bool, progress: Progress
) -> DataApiOutcome:
    """Revoke what Supabase's Data API roles were granted on the demo objects; report what they can read."""
    import psycopg

    names = (*TABLES, *VIEWS, META_TABLE)
    who = " and ".join(roles)
    revoked = 0
    try:
        with conn.transaction():
            revoked = revoke_all(conn, roles, schema, names)
    except psycopg.errors.InsufficientPrivilege:
        pass  # objects of another owner: what stays readable is reported below
    readable = readable_by(conn, roles, schema, names)
    where = f"its own schema {schema}" if dedicated else f"schema {schema}"
    done = (
        f"revoked the grants {who} had on {revoked} demo objects"
        if revoked
        else f"{who} hold no grants on it"
    )
    summary = f"Supabase-like roles {who} exist: the demo is in {where}; {done}"
    if readable:
        summary += f"; they can STILL read {len(readable)} objects ({', '.join(readable[:3])}, ...)"
        progress.warn(
            summary
            + ": revoke those grants as their owner, or seed with --schema into a schema they cannot use"
        )
    else:
        summary += "; they can read none of it"
        progress.info(summary)
    return DataApiOutcome(
        roles=list(roles),
        schema_name=schema,
        dedicated_schema=dedicated,
        revoked=revoked,
        readable=readable,
        summary=summary,
    )


def _seed_objects(
    conn: psycopg.Connection, *, as_of: date, reset: bool, force: bool, progress: Progress, scale: int | None
) -> tuple[bool, dict[str, int], str, int]:
    """(changed, counts, checksum, scale) after making the demo objects hold the data for `as_of` at
    `scale` (None: the scale of the demo there, else 1)."""
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
    complete = owned and all(name in existing for name in (*TABLES, *VIEWS))
    meta = _read_meta(conn) if owned else None
    if scale is None:
        scale = meta.scale if meta is not None else 1
        if scale > 1:
            progress.info(f"keeping the demo's scale, {scale} (--scale 1 returns to the curated demo)")
    fingerprint = input_fingerprint(as_of, scale)
    # At another scale the data differs for sure: no need to read it all first.
    same_scale = complete and meta is not None and meta.scale == scale
    before = data_checksum(conn)[0] if same_scale else None
    unchanged = meta is not None and meta.checksum == before and _stored_fingerprint(conn) == fingerprint
    if meta is not None and unchanged and not reset:
        progress.info("the demo data is already in place for this as-of date and scale")
        return False, meta.counts, meta.checksum, scale
    _require_create_privilege(conn, schema)
    _drop_objects(conn, existing)
    apply_schema(conn)
    _write_meta(conn, as_of=as_of, fingerprint=fingerprint, scale=scale)
    _load_seed_files(conn, as_of, progress, scale)
    # At scale the derived tables' foreign keys, checked row by row, would take most of the time.
    with keys_built_after(conn, DERIVED_TABLES) if scale > 1 else nullcontext():
        _derive_tables(conn)
    _analyze(conn, DERIVED_TABLES)
    checksum, counts = data_checksum(conn)
    _finish_meta(conn, checksum=checksum, counts=counts)
    return checksum != before, counts, checksum, scale


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


def _owns_schema(conn: psycopg.Connection, schema: str | None = None) -> bool:
    """True when provision_meta in `schema` (default: the current one) is ours (shape and tool name match)."""
    from psycopg import sql

    if schema is None:
        schema = _current_schema(conn)
    row = conn.execute(
        """
        SELECT count(*) FROM information_schema.columns
        WHERE table_schema = %s AND table_name = %s
          AND column_name IN ('tool', 'tool_version', 'as_of', 'input_fingerprint', 'checksum', 'counts',
                              'seeded_at')
        """,
        (schema, META_TABLE),
    ).fetchone()
    if row is None or row[0] != 7:
        return False
    query = sql.SQL("SELECT tool FROM {} LIMIT 1").format(sql.Identifier(schema, META_TABLE))
    tool = conn.execute(query).fetchone()
    return tool is not None and tool[0] == TOOL_NAME


def _read_meta(conn: psycopg.Connection) -> SeedStatus | None:
    # A demo seeded before --scale existed has no scale column: read the row as JSON, where it is absent.
    row = conn.execute(
        f"""
        SELECT tool_version, as_of, checksum, counts, seeded_at, current_schema(),
               COALESCE((to_jsonb(m) ->> 'scale')::integer, 1)
        FROM {META_TABLE} m
        """
    ).fetchone()
    if row is None:
        return None
    version, as_of, checksum, counts, seeded_at, schema, scale = row
    return SeedStatus(
        tool_version=version,
        as_of=as_of,
        checksum=checksum,
        counts=counts,
        seeded_at=seeded_at,
        schema_name=schema,
        scale=scale,
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


def _write_meta(conn: psycopg.Connection, *, as_of: date, fingerprint: str, scale: int) -> None:
    # Written before the data: derived.sql reads the as-of date from here.
    conn.execute(
        f"""
        INSERT INTO {META_TABLE}
            (tool, tool_version, as_of, scale, input_fingerprint, checksum, counts, seeded_at)
        VALUES (%s, %s, %s, %s, %s, 'pending', '{{}}', now())
        """,
        (TOOL_NAME, __version__, as_of, scale, fingerprint),
    )


def _finish_meta(conn: psycopg.Connection, *, checksum: str, counts: dict[str, int]) -> None:
    from psycopg.types.json import Jsonb

    conn.execute(f"UPDATE {META_TABLE} SET checksum = %s, counts = %s", (checksum, Jsonb(counts)))


def _load_seed_files(conn: psycopg.Connection, as_of: date, progress: Progress, scale: int = 1) -> None:
    """COPY every seeds/ file into its table (raw_telemetry expanded from telemetry.yaml), then the
    `scale` - 1 copies of it; refresh the planner's statistics of the loaded tables."""
    import psycopg

    from provisioner.db.seed_scale import CuratedDemo, copied_rows, copied_telemetry

    demo = CuratedDemo.load(as_of)
    tables = [*demo.tables, "raw_telemetry"]
    if scale > 1:
        progress.info(f"generating and loading {scale} blocks of 15 accounts (two years of daily telemetry)")
    loaded = 0
    table = tables[0]
    try:
        # At scale 1 the keys are checked as rows arrive: a damaged seeds/ file names its table at once.
        with keys_built_after(conn, tables) if scale > 1 else nullcontext():
            for table, rows in demo.tables.items():
                loaded += copy_rows(
                    conn, table, rows.columns, chain(rows.rows, copied_rows(demo, table, scale))
                )
            table = "raw_telemetry"
            loaded += copy_rows(conn, table, TELEMETRY_COLUMNS, demo.telemetry.rows)
            if scale > 1:
                loaded += copy_text(conn, table, TELEMETRY_COLUMNS, copied_telemetry(demo, scale))
                progress.info(f"loaded {loaded} rows; building keys and indexes")
            table = "the demo tables (building their keys)"
    except psycopg.Error as exc:
        raise DatabaseError(
            f"loading seeds into {table} failed: {first_line(exc)}",
            hint="nothing was written; the seeds/ files of this checkout may be damaged (git restore seeds)",
        ) from exc
    _analyze(conn, [*tables, META_TABLE])
    progress.info(f"loaded {loaded} rows from seeds/" + (f" and {scale - 1} copies" if scale > 1 else ""))


def _analyze(conn: psycopg.Connection, tables: Iterable[str]) -> None:
    """Statistics for the planner: tables made in this transaction have none until autovacuum's first
    visit, and derived.sql and the first dashboards at scale would be planned blind."""
    from psycopg import sql

    conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in tables)))


def _derive_tables(conn: psycopg.Connection) -> None:
    """Compute history, snapshots and aggregates from the transactions (database/derived.sql)."""
    run_sql_file(conn, DERIVED_SQL)
