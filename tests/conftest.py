"""Shared fixtures: a real embedded PostgreSQL per session, a fresh database per test, and an
isolated environment (no developer settings leak into a test)."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from provisioner.config import ENV_VARS
from provisioner.runtime.postgres import EmbeddedPostgres, ServerInfo

# Fixtures owned by their own modules: the seeded demo database, the fake Metabase, PgBouncer.
pytest_plugins = ["tests.db_fixtures", "tests.fake_metabase.fixtures", "tests.pgbouncer"]

_PRIVATE_BASETEMP = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Give this run a base temp directory no other pytest run touches.

    Every pytest run resets the shared `pytest-of-<user>` directory to mode 0700. As root, the embedded
    PostgreSQL runs as a separate system user that must traverse the path to its data directory, so a
    second pytest starting on the machine cut every server of the first one off (hundreds of errors).
    A directory of our own, made by mkdtemp and removed at the end, keeps its permissions.
    """
    if config.option.basetemp is None:
        base = Path(tempfile.mkdtemp(prefix="provisioner-tests-"))
        config.option.basetemp = str(base)
        config.stash[_PRIVATE_BASETEMP] = base


def pytest_unconfigure(config: pytest.Config) -> None:
    base = config.stash.get(_PRIVATE_BASETEMP, None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)


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
