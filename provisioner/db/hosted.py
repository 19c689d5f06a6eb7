"""What hosted PostgreSQL puts in the way: Supabase's Data API roles and transaction-mode poolers.

Supabase serves the schemas it exposes (`public` by default) to anyone holding the project's public
anon key, as the roles `anon` and `authenticated`; default privileges in `public` grant those roles
every table created there. A pooler in transaction mode (Supabase's on port 6543, Neon's `-pooler`
hosts, PgBouncer with `pool_mode = transaction`) hands each transaction to whichever server connection
is free, so nothing of a session (SET, prepared statements, advisory locks) outlives its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from provisioner.dsn import parse_dsn
from provisioner.errors import ConfigError, DatabaseError

if TYPE_CHECKING:
    import psycopg

# Supabase's Data API roles (supabase/postgres, migrations/db/init-scripts/00000000000000-initial-schema.sql).
DATA_API_ROLES: tuple[str, ...] = ("anon", "authenticated")
# The schema the demo goes to on a Supabase-like database when no --schema is given.
DEDICATED_SCHEMA = "asset_finance"
_PROBE_TIMEOUT_S = 5


def data_api_roles(conn: psycopg.Connection) -> tuple[str, ...]:
    """`DATA_API_ROLES` when the database looks like Supabase, else ().

    It does when every one of those roles exists and this database grants each something explicitly (USAGE
    on a schema, or default privileges), as Supabase's setup does; roles are cluster-wide, so a database of
    the same server that never granted them anything is left alone.
    """
    row = conn.execute(
        """
        SELECT count(*) FROM pg_roles r
        WHERE r.rolname = ANY(%s)
          AND (EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a WHERE a.grantee = r.oid)
               OR EXISTS (SELECT 1 FROM pg_default_acl d, aclexplode(d.defaclacl) a WHERE a.grantee = r.oid))
        """,
        (list(DATA_API_ROLES),),
    ).fetchone()
    return DATA_API_ROLES if row is not None and row[0] == len(DATA_API_ROLES) else ()


def readable_by(
    conn: psycopg.Connection, roles: tuple[str, ...], schema: str, names: tuple[str, ...]
) -> list[str]:
    """`role: schema.name` for every object of `names` in `schema` a role of `roles` can SELECT.

    Readable means both USAGE on the schema and SELECT on the object (itself or through PUBLIC or a
    role it belongs to), the two checks PostgreSQL makes; objects that do not exist are skipped.
    """
    rows = conn.execute(
        """
        SELECT r.rolname, c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN pg_roles r
        WHERE n.nspname = %s AND c.relname = ANY(%s) AND r.rolname = ANY(%s)
          AND has_schema_privilege(r.oid, n.oid, 'USAGE')
          AND has_table_privilege(r.oid, c.oid, 'SELECT')
        ORDER BY r.rolname, c.relname
        """,
        (schema, list(names), list(roles)),
    ).fetchall()
    return [f"{role}: {schema}.{name}" for role, name in rows]


def revoke_all(conn: psycopg.Connection, roles: tuple[str, ...], schema: str, names: tuple[str, ...]) -> int:
    """Revoke every privilege `roles` hold on `names` in `schema` (the caller owns them).

    Returns how many (role, object) pairs held any.

    Default privileges grant them at creation, so this runs after every rebuild, in the caller's transaction.
    """
    from psycopg import sql

    held = conn.execute(
        """
        SELECT count(DISTINCT (r.rolname, c.relname))
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL aclexplode(c.relacl) AS acl
        JOIN pg_roles r ON r.oid = acl.grantee
        WHERE n.nspname = %s AND c.relname = ANY(%s) AND r.rolname = ANY(%s)
        """,
        (schema, list(names), list(roles)),
    ).fetchone()
    count = int(held[0]) if held is not None else 0
    if count:
        conn.execute(
            sql.SQL("REVOKE ALL ON {} FROM {}").format(
                sql.SQL(", ").join(sql.Identifier(schema, name) for name in names),
                sql.SQL(", ").join(sql.Identifier(role) for role in roles),
            )
        )
    return count


@dataclass(frozen=True)
class PoolerFinding:
    """Whether a DSN leads to a pooler in transaction mode, and what showed it."""

    transaction_mode: bool
    evidence: str


def known_pooler(host: str, port: int) -> str | None:
    """What the address says about a transaction-mode pooler (Supabase, Neon), or None."""
    host = host.lower()
    if host.endswith(".pooler.supabase.com"):
        # Supavisor: 5432 is session mode, 6543 transaction mode.
        return "Supabase's transaction pooler (port 6543)" if port == 6543 else None
    if host.endswith(".neon.tech") and "-pooler." in host:
        return "Neon's pooled connection (a `-pooler` host, PgBouncer in transaction mode)"
    if port == 6543:
        return "port 6543, where Supabase's poolers take transaction-mode connections"
    return None


def find_transaction_pooler(dsn: str) -> PoolerFinding:
    """Whether `dsn` leads to a pooler in transaction mode: its address, else a two-connection probe.

    The probe: after one connection's statement ends, a second connection's statement runs on the same
    server process (`pg_backend_pid()`) while the first is still connected. PostgreSQL itself gives every
    connection its own process, and a pooler in session mode keeps the first one's for it. Raises
    DatabaseError when the probe cannot connect.
    """
    parts = parse_dsn(dsn)
    named = known_pooler(parts.host, parts.port)
    if named is not None:
        return PoolerFinding(transaction_mode=True, evidence=named)
    shared = _shared_server_process(dsn)
    if shared is not None:
        return PoolerFinding(
            transaction_mode=True,
            evidence=f"two connections ran on one server process (pid {shared}): "
            "a pooler in transaction mode",
        )
    return PoolerFinding(transaction_mode=False, evidence="each connection keeps its own server process")


def _shared_server_process(dsn: str) -> int | None:
    """The server pid two connections shared, or None when each had its own."""
    import psycopg

    try:
        with (
            psycopg.connect(
                dsn, autocommit=True, connect_timeout=_PROBE_TIMEOUT_S, prepare_threshold=None
            ) as a,
            psycopg.connect(
                dsn, autocommit=True, connect_timeout=_PROBE_TIMEOUT_S, prepare_threshold=None
            ) as b,
        ):
            first = a.execute("SELECT pg_backend_pid()").fetchone()
            second = b.execute("SELECT pg_backend_pid()").fetchone()
    except psycopg.Error as exc:
        from provisioner.db.connection import explain_connect_error

        raise explain_connect_error(dsn, exc) from exc
    if first is None or second is None or first[0] != second[0]:
        return None
    return int(first[0])


# Supabase's shared pooler (Supavisor) tells projects apart by the user name: `<role>.<project ref>`.
_SUPAVISOR_HOST_SUFFIX = ".pooler.supabase.com"


def login_for_role(dsn: str, role: str) -> str:
    """The user name `role` logs in with at `dsn`'s address: `role.<project ref>` on Supabase's shared
    pooler (the ref taken from the DSN's own user), `role` anywhere else. Raises ConfigError."""
    ref = _supavisor_ref(dsn)
    return f"{role}.{ref}" if ref else role


def role_of_login(dsn: str) -> str | None:
    """The role `dsn` logs in as: its user, without the `.<project ref>` Supabase's shared pooler adds.

    Raises ConfigError when the DSN does not parse.
    """
    user = parse_dsn(dsn).user
    ref = _supavisor_ref(dsn)
    return user.removesuffix(f".{ref}") if user and ref else user


def _supavisor_ref(dsn: str) -> str | None:
    parts = parse_dsn(dsn)
    if parts.host.lower().endswith(_SUPAVISOR_HOST_SUFFIX) and parts.user and "." in parts.user:
        return parts.user.rsplit(".", 1)[1]
    return None


def require_plain_schema(name: str) -> str:
    """`name` when it can be a demo schema (a plain lower-case identifier, not a system schema).

    Raises ConfigError naming the rule otherwise; plain names also need no escaping in Metabase's
    schema filter, whose patterns treat `*` and `,` specially.
    """
    from provisioner.db.roles import is_plain_identifier

    if not is_plain_identifier(name) or name.startswith("pg_") or name == "information_schema":
        raise ConfigError(
            f"schema name {name!r} cannot hold the demo",
            hint="use a lower-case name of letters, digits and underscores, not starting with pg_ "
            "(e.g. --schema asset_finance)",
        )
    return name


def data_api_readable(dsn: str, schema: str) -> tuple[tuple[str, ...], list[str]]:
    """(the Data API roles when the database looks like Supabase, else (); what of the demo in `schema`
    they can read, as `role: schema.object`). Raises DatabaseError."""
    import psycopg

    from provisioner.db.connection import connect, first_line
    from provisioner.db.schema import META_TABLE, TABLES, VIEWS

    conn = connect(dsn)
    try:
        with conn:
            roles = data_api_roles(conn)
            readable = readable_by(conn, roles, schema, (*TABLES, *VIEWS, META_TABLE)) if roles else []
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot read the grants of the demo objects: {first_line(exc)}") from exc
    finally:
        conn.close()
    return roles, readable
