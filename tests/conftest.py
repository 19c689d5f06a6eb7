"""Shared fixtures: a real embedded PostgreSQL per session, a fresh database per test, and an
isolated environment (no developer settings leak into a test)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from provisioner.config import ENV_VARS
from provisioner.runtime.postgres import EmbeddedPostgres, ServerInfo

# Fixtures owned by their own modules: the seeded demo database, and the fake Metabase.
pytest_plugins = ["tests.db_fixtures", "tests.fake_metabase.fixtures"]


class PgServer:
    """The session's embedded server and its superuser password."""

    def __init__(self, info: ServerInfo, password: str) -> None:
        self.info = info
        self.password = password

    def dsn(self, database: str = "postgres") -> str:
        return self.info.dsn(self.password, database)

    def create_database(self, prefix: str = "t") -> str:
        """Create an empty database and return its DSN."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """One real embedded PostgreSQL (TCP 127.0.0.1) for the whole test session."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    password = secrets.token_urlsafe(16)
    info = server.start(password)
    try:
        yield PgServer(info, password)
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A fresh, empty database on the session server."""
    return pg_server.create_database()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No developer settings leak in; state goes to a per-test PROVISION_HOME; cwd is tmp."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "provision-home"
    monkeypatch.setenv("PROVISION_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home
