"""`provision seed`: find (or start) the warehouse, seed it, and keep the reader role's password.

The orchestration around `db.seed.seed_database`, which does the database work in one transaction:
this module picks the warehouse and the reader's login, and stores the login once it works.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import TYPE_CHECKING

from pydantic import SecretStr

from provisioner.db.hosted import role_of_login
from provisioner.db.roles import READER_ROLE
from provisioner.db.seed import SeedResult, check_seed_options, seed_database
from provisioner.progress import NullProgress, Progress
from provisioner.runtime.warehouse import resolve_warehouse
from provisioner.state import ReaderLogin, StateDir

if TYPE_CHECKING:
    from provisioner.config import Settings


def seed(
    settings: Settings,
    *,
    as_of: date | None,
    reset: bool,
    force: bool,
    port: int | None,
    progress: Progress | None = None,
    schema: str | None = None,
    scale: int | None = None,
) -> SeedResult:
    """Seed the configured warehouse (starting the embedded one if needed) and store the reader's password.

    `schema`: where the demo goes; `scale`: copies of the curated demo, None for the demo's current scale
    (see `seed_database`). Raises ConfigError (a bad schema name or scale, before anything starts),
    DatabaseError, OwnershipError, EnvironmentProblem (embedded port in use).
    """
    check_seed_options(schema=schema, scale=scale)
    progress = progress or NullProgress()
    warehouse = resolve_warehouse(settings, port=port, progress=progress)
    state = StateDir(settings.home)
    password: str | None = None
    if settings.reader_database_url is not None:
        # Someone else's role: only grant it SELECT on the rebuilt objects.
        role = role_of_login(settings.reader_database_url.get_secret_value()) or READER_ROLE
    else:
        role = READER_ROLE
        stored = state.credentials().reader
        here = (warehouse.host, warehouse.port, warehouse.dbname)
        if stored is not None and stored.user == role and stored.belongs_to(*here):
            password = stored.password.get_secret_value()
        else:
            password = secrets.token_urlsafe(24)
    result = seed_database(
        warehouse.dsn.get_secret_value(),
        as_of=as_of or date.today(),
        reset=reset,
        force=force,
        reader_password=password,
        progress=progress,
        reader_role=role,
        schema=schema,
        scale=scale,
    )
    if password is not None:
        with state.edit_credentials() as credentials:
            if result.reader.password_set:
                credentials.reader = ReaderLogin(
                    user=role,
                    password=SecretStr(password),
                    host=warehouse.host,
                    port=warehouse.port,
                    dbname=warehouse.dbname,
                )
            else:
                credentials.reader = None
    return result
