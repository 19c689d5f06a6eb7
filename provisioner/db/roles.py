"""The read-only role Metabase connects as: created, granted SELECT on the demo objects, or explained.

The role can SELECT the demo tables and views and nothing else: no writes (its transactions are
read-only by default and it holds no write privilege), no CREATE on the schema, nothing on other
schemas. Where the seeding user may not create roles (hosted databases), the demo falls back to
the seeding credentials and says so, with the SQL a DBA can run.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel

from provisioner.dsn import dsn_with
from provisioner.errors import ConfigError
from provisioner.progress import NullProgress, Progress

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


READER_ROLE = "metabase_reader"
# Marks roles this tool created, so it never resets the password of someone else's role.
ROLE_MARKER = "metabase-provisioner read-only role for Metabase"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ReaderOutcome(BaseModel):
    """What seeding did about the read-only role."""

    role: str
    created: bool
    # True when the role logs in with the password this run passed (stored for Metabase).
    password_set: bool = False
    fallback_warning: str | None = None
    dba_sql: str | None = None
    # Set when the role may CREATE in the schema through PUBLIC (the PostgreSQL 13/14 default).
    schema_warning: str | None = None


def ensure_reader(
    conn: psycopg.Connection,
    *,
    role: str,
    password: str | None,
    objects: tuple[str, ...],
    progress: Progress | None = None,
) -> ReaderOutcome:
    """Create or update the read-only role and grant it SELECT on `objects`, in the caller's transaction.

    With `password` None the role is only granted SELECT (it belongs to someone else, e.g. the
    user of --reader-database-url). Never raises for missing privileges: the outcome carries the
    warning and the SQL a DBA can run instead.
    """
    import psycopg
    from psycopg import sql

    if password is not None and not _IDENTIFIER.match(role):
        raise ConfigError(
            f"reader role name {role!r} is not a plain lower-case identifier",
            hint="use letters, digits and underscores",
        )
    dbname, schema = conn.execute("SELECT current_database(), current_schema()").fetchone()  # type: ignore[misc]
    exists, ours = _role_state(conn, role)
    created = password_set = False
    problem: str | None = None
    if password is not None:
        if exists and not ours:
            problem = f"role {role} exists and was not created by this tool, so its password is left alone"
        else:
            try:
                with conn.transaction():  # a savepoint: a refusal here must not abort the seed
                    # Hashed here (SCRAM, or whatever password_encryption says): the plain password
                    # never reaches the server, so no statement log can show it.
                    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode()).decode()
                    # ALTER names no attributes: non-superusers may not even restate NOSUPERUSER.
                    attributes = "" if exists else " NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                    conn.execute(
                        sql.SQL("{} ROLE {} LOGIN PASSWORD {}" + attributes).format(
                            sql.SQL("ALTER" if exists else "CREATE"),
                            sql.Identifier(role),
                            sql.Literal(verifier),
                        )
                    )
                    marker = sql.Literal(ROLE_MARKER)
                    conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), marker))
                    conn.execute(
                        sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
                            sql.Identifier(role)
                        )
                    )
                    # SQL questions may name the views bare wherever the demo's schema is.
                    conn.execute(
                        sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path TO {}").format(
                            sql.Identifier(role), sql.Identifier(dbname), sql.Identifier(schema)
                        )
                    )
                created, password_set, exists = not exists, True, True
            except psycopg.errors.InsufficientPrivilege:
                problem = f"the connecting user may not {'alter' if exists else 'create'} role {role}"
    if exists:
        try:
            with conn.transaction():
                for statement in _grant_statements(role, dbname, schema, objects, conn=conn):
                    conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            problem = problem or f"the connecting user may not grant {role} access to the demo objects"
    elif password is None:
        problem = f"role {role} of --reader-database-url (or DATABASE_READER_URL) does not exist"
    schema_warning = _schema_create_warning(conn, role, schema) if exists else None
    if schema_warning:
        (progress or NullProgress()).warn(schema_warning)
    if problem is None:
        return ReaderOutcome(
            role=role, created=created, password_set=password_set, schema_warning=schema_warning
        )
    if password is None:
        consequence = "Metabase cannot read the demo with that login"
    else:
        consequence = "Metabase will connect with the seeding credentials, which can write"
    warning = f"{problem}: {consequence}. Ask a DBA to run the SQL in the seed result"
    if password is not None:
        warning += ", then pass --reader-database-url"
    (progress or NullProgress()).warn(warning)
    return ReaderOutcome(
        role=role,
        created=created,
        password_set=password_set,
        fallback_warning=warning,
        dba_sql=reader_dba_sql(role, dbname, schema, objects),
        schema_warning=schema_warning,
    )


def _schema_create_warning(conn: psycopg.Connection, role: str, schema: str) -> str | None:
    # Only a DBA should change who may create in a shared schema, so we report rather than REVOKE.
    row = conn.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", (role, schema)).fetchone()
    if row is None or not row[0]:
        return None
    return (
        f"role {role} may create tables in schema {schema} (granted to PUBLIC, the default before "
        f"PostgreSQL 15); its sessions are read-only by default, but a DBA should run: "
        f"REVOKE CREATE ON SCHEMA {_plain(schema)} FROM PUBLIC;"
    )


def reader_dba_sql(role: str, dbname: str, schema: str, objects: tuple[str, ...]) -> str:
    """The SQL a DBA runs to create the read-only role by hand (the password is theirs to choose)."""
    who = _plain(role)
    names = ",\n    ".join(f"{_plain(schema)}.{_plain(name)}" for name in objects)
    return (
        f"CREATE ROLE {who} LOGIN PASSWORD 'choose-a-password';\n"
        f"ALTER ROLE {who} SET default_transaction_read_only = on;\n"
        f"ALTER ROLE {who} IN DATABASE {_plain(dbname)} SET search_path TO {_plain(schema)};\n"
        f"GRANT CONNECT ON DATABASE {_plain(dbname)} TO {who};\n"
        f"GRANT USAGE ON SCHEMA {_plain(schema)} TO {who};\n"
        f"GRANT SELECT ON\n    {names}\nTO {who};\n"
    )


def is_plain_identifier(name: str) -> bool:
    """Whether `name` is a lower-case SQL identifier that needs no quoting (letters, digits, underscores)."""
    return bool(_IDENTIFIER.match(name))


def _plain(name: str) -> str:
    """`name` as SQL: bare when it is a plain lower-case identifier, else double-quoted."""
    return name if _IDENTIFIER.match(name) else '"' + name.replace('"', '""') + '"'


def _grant_statements(
    role: str,
    dbname: str,
    schema: str,
    objects: tuple[str, ...],
    *,
    conn: psycopg.Connection | None = None,
) -> list[sql.Composed]:
    """GRANTs giving `role` read access; with `conn`, those it already holds (e.g. via PUBLIC) are skipped.

    Skipping matters on hosted databases, where the seeding user often does not own the database
    or the schema and may not grant CONNECT or USAGE, while PUBLIC already has them.
    """
    from psycopg import sql

    ident = sql.Identifier(role)
    has_connect = has_usage = False
    if conn is not None:
        has_connect, has_usage = conn.execute(  # type: ignore[misc]
            "SELECT has_database_privilege(%s, %s, 'CONNECT'), has_schema_privilege(%s, %s, 'USAGE')",
            (role, dbname, role, schema),
        ).fetchone()
    statements = []
    if not has_connect:
        statements.append(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), ident))
    if not has_usage:
        statements.append(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), ident))
    statements.append(
        sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.SQL(", ").join(sql.Identifier(schema, name) for name in objects), ident
        )
    )
    return statements


def _role_state(conn: psycopg.Connection, role: str) -> tuple[bool, bool]:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if row is None:
        return False, False
    return True, row[0] == ROLE_MARKER


def with_credentials(dsn: str, user: str, password: str) -> str:
    """`dsn` with its user and password replaced, every other part (e.g. sslmode) kept."""
    return dsn_with(dsn, user=user, password=password)
