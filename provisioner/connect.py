"""`provision metabase connect`: the login Metabase uses for the warehouse, registering it, waiting for sync.

The orchestration of three adapters: the warehouse (where it is), the stored reader login, and Metabase
(register the database, wait until it has synced every demo table and view).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, SecretStr

from provisioner.db.hosted import login_for_role
from provisioner.db.roles import with_credentials
from provisioner.errors import ProvisionError
from provisioner.metabase.models import DatabaseMetadata
from provisioner.metabase.setup import (
    DATABASE_NAME,
    POOLER_JDBC_OPTIONS,
    AuthenticatedClient,
    open_client,
    postgres_details,
    register_database,
    wait_for_tables,
)
from provisioner.progress import Progress
from provisioner.redact import REDACTED
from provisioner.runtime.warehouse import Warehouse, resolve_warehouse
from provisioner.state import StateDir
from provisioner.wait import Clock, Sleep

if TYPE_CHECKING:
    from provisioner.config import Settings


class ConnectResult(BaseModel):
    """What `provision metabase connect` did: the database id and whether anything changed."""

    metabase_url: str
    database_id: int
    database_name: str
    action: Literal["created", "updated", "unchanged"]
    connection: str  # the DSN Metabase uses, password redacted
    is_reader: bool | None  # None: the DSN was given explicitly, its role is the caller's choice
    schema_name: str | None = None  # the schema Metabase syncs (its schema filter); None: every schema
    transaction_pooler: bool = False  # registered with the JDBC options a transaction-mode pooler needs
    tables_expected: int
    tables_found: int
    synced: bool  # every expected table and view is in Metabase's metadata
    sync_triggered: bool  # we asked Metabase to re-read the schema
    # The last metadata read, handed on to the dashboards step so it need not read it again.
    metadata: DatabaseMetadata | None = Field(default=None, exclude=True, repr=False)


@dataclass(frozen=True)
class MetabaseConnection:
    """The DSN Metabase should use, as seen from this machine."""

    dsn: SecretStr
    is_reader: bool
    warning: str | None = None


def connect_database(
    settings: Settings,
    *,
    progress: Progress,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    owner_dsn: str | None = None,
    metabase_dsn: str | None = None,
    expected_tables: Sequence[str] | None = None,
    authed: AuthenticatedClient | None = None,
    schema: str | None = None,
) -> ConnectResult:
    """Register (or update) the demo database as the read-only role and wait for its tables in Metabase.

    `expected_tables` defaults to the demo's 24 tables and 8 views; `authed` reuses an open client
    (left open). Metabase's sync is limited to `schema`, by default the schema the demo was seeded in
    (none when the warehouse holds no demo). A pooler in transaction mode in front of the warehouse is
    recognised and registered with the JDBC options it needs. Raises ConfigError for a bad DSN or root
    certificate, MetabaseError if Metabase cannot connect or the sync does not finish before the deadline.
    """
    if owner_dsn is not None:
        settings = settings.model_copy(update={"database_url": SecretStr(owner_dsn)})
    dsn, is_reader = _metabase_dsn(settings, metabase_dsn, progress)
    if schema is None:
        schema = _demo_schema(settings, progress)
    pooler = _transaction_pooler(dsn, progress)
    details = postgres_details(dsn, schema=schema, transaction_pooler=pooler)
    if expected_tables is None:
        from provisioner.db.schema import TABLES, VIEWS

        expected_tables = (*TABLES, *VIEWS)

    owned = authed is None
    if authed is None:
        authed = open_client(settings, progress=progress, clock=clock, sleep=sleep)
    client = authed.client
    try:
        progress.step(f"Registering {DATABASE_NAME!r} in Metabase as {details.user}@{details.host}")
        database, action = register_database(client, settings, details, progress)
        progress.info(f"Database {DATABASE_NAME!r} (id {database.id}): {action}")
        metadata, triggered = wait_for_tables(
            client, database, expected_tables, settings.sync_timeout_s, progress, clock, sleep, schema=schema
        )
    finally:
        if owned:
            client.close()
    found = {t.name for t in metadata.tables if schema is None or t.schema_name == schema}
    return ConnectResult(
        metabase_url=settings.metabase_url,
        database_id=database.id,
        database_name=database.name,
        action=action,
        connection=f"postgresql://{details.user}:{REDACTED}@{details.host}:{details.port}/{details.dbname}",
        is_reader=is_reader,
        schema_name=schema,
        transaction_pooler=pooler,
        tables_expected=len(set(expected_tables)),
        tables_found=len(set(expected_tables) & found),
        synced=True,
        sync_triggered=triggered,
        metadata=metadata,
    )


def _demo_schema(settings: Settings, progress: Progress) -> str | None:
    """The schema the demo was seeded in, from the warehouse as its owner sees it; None when unknown."""
    from provisioner.db.seed import find_demo_schema

    try:
        warehouse = resolve_warehouse(settings, start=False, progress=progress)
        return find_demo_schema(warehouse.dsn.get_secret_value(), progress)
    except ProvisionError as exc:
        progress.warn(f"cannot tell which schema holds the demo ({exc.message}): Metabase syncs every schema")
        return None


def _transaction_pooler(dsn: str, progress: Progress) -> bool:
    """Whether Metabase's DSN leads to a pooler in transaction mode (address, else a probe from here)."""
    from provisioner.db.hosted import find_transaction_pooler

    try:
        finding = find_transaction_pooler(dsn)
    except ProvisionError:
        return False  # not reachable from here (e.g. a Docker-internal host), and no known pooler address
    if finding.transaction_mode:
        progress.info(
            f"The warehouse is behind a pooler in transaction mode ({finding.evidence}): "
            f"Metabase connects with {POOLER_JDBC_OPTIONS}"
        )
    return finding.transaction_mode


def _metabase_dsn(settings: Settings, explicit: str | None, progress: Progress) -> tuple[str, bool | None]:
    """The DSN Metabase should use and whether it is the read-only role (None: given explicitly)."""
    if explicit is not None:
        return explicit, None
    if settings.metabase_database_url is not None:
        return settings.metabase_database_url.get_secret_value(), None
    connection = metabase_connection(settings, resolve_warehouse(settings, start=False, progress=progress))
    if connection.warning:
        progress.warn(connection.warning)
    return connection.dsn.get_secret_value(), bool(connection.is_reader)


def metabase_connection(settings: Settings, warehouse: Warehouse) -> MetabaseConnection:
    """The DSN Metabase should use: the reader DSN flag, else the stored reader role, else the owner's.

    The last comes with a warning, since that user can write.
    """
    if settings.reader_database_url is not None:
        return MetabaseConnection(dsn=settings.reader_database_url, is_reader=True)
    stored = StateDir(settings.home).credentials().reader
    if stored is not None and stored.belongs_to(warehouse.host, warehouse.port, warehouse.dbname):
        owner = warehouse.dsn.get_secret_value()
        dsn = with_credentials(owner, login_for_role(owner, stored.user), stored.password.get_secret_value())
        return MetabaseConnection(dsn=SecretStr(dsn), is_reader=True)
    return MetabaseConnection(
        dsn=warehouse.dsn,
        is_reader=False,
        warning=(
            "no read-only role is available: Metabase connects with the warehouse owner's credentials, "
            "which can write; run `provision seed` as a user that may create roles, or pass "
            "--reader-database-url"
        ),
    )
