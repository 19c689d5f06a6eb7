"""Setup, login, the tool's API key and database registration: fake Metabase, real PostgreSQL."""

from __future__ import annotations

import json
import os
import secrets
import stat
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests
import responses
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.config import Settings
from provisioner.connect import connect_database
from provisioner.db.schema import TABLES, VIEWS
from provisioner.errors import (
    ConfigError,
    MetabaseAuthError,
    MetabaseError,
    MetabaseUnreachable,
    MetabaseVersionError,
    ProvisionError,
)
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import DatabaseCreate, DatabaseUpdate, SetupUser
from provisioner.metabase.setup import (
    API_KEY_NAME,
    DATABASE_NAME,
    open_client,
    postgres_details,
    setup_metabase,
    wait_for_health,
)
from provisioner.progress import RecordingProgress
from provisioner.runtime.postgres import free_port
from provisioner.state import StateDir
from tests.credentials import store_credentials, stored_credentials, stored_section
from tests.db_fixtures import SeededDatabase
from tests.fake_metabase.handlers_setting import effective_value
from tests.fake_metabase.server import FakeMetabase, new_state

SMALL = ("accounts", "payments", "v_accounts")


class FakeTime:
    """An injected clock: `sleep` advances `now` instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Warehouse:
    """A database on the test server with a read-only role, as the demo has."""

    server: object
    dbname: str
    owner_dsn: str
    reader_role: str
    reader_password: str

    def reader_dsn(self, password: str | None = None) -> str:
        port = psycopg.conninfo.conninfo_to_dict(self.owner_dsn)["port"]
        secret = password or self.reader_password
        return f"postgresql://{self.reader_role}:{secret}@127.0.0.1:{port}/{self.dbname}"

    def execute(self, sql: str) -> None:
        with psycopg.connect(self.owner_dsn, autocommit=True) as conn:
            conn.execute(sql)

    def add_objects(self, names: Sequence[str]) -> None:
        for name in names:
            if name.startswith("v_"):
                self.execute(f"CREATE VIEW {name} AS SELECT 1 AS id")
            else:
                self.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY, label text)")
        self.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {self.reader_role}")

    def set_reader_password(self, password: str) -> None:
        self.execute(f"ALTER ROLE {self.reader_role} PASSWORD '{password}'")
        self.reader_password = password


def make_warehouse(pg_server, names: Sequence[str]) -> Warehouse:
    owner_dsn = pg_server.create_database("mb")
    dbname = psycopg.conninfo.conninfo_to_dict(owner_dsn)["dbname"]
    role = f"reader_{uuid.uuid4().hex[:10]}"  # roles are cluster-wide: unique per test
    password = "Rd" + secrets.token_hex(10)
    warehouse = Warehouse(pg_server, dbname, owner_dsn, role, password)
    warehouse.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    warehouse.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO {role}')
    warehouse.add_objects(names)
    return warehouse


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeMetabase]:
    with FakeMetabase() as fake:
        yield fake


@pytest.fixture
def fake_metabase(shared_fake: FakeMetabase) -> FakeMetabase:
    """A brand-new Metabase per test: one server per module with its state reset (stopping a server
    costs half a second; this file starts dozens of Metabases)."""
    shared_fake.state = new_state()
    shared_fake.set_version(FakeMetabase().version)
    shared_fake.sync_polls = 1
    shared_fake.clear_requests()
    return shared_fake


@pytest.fixture
def warehouse(pg_server) -> Warehouse:
    return make_warehouse(pg_server, SMALL)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def settings_for(fake: FakeMetabase, home: Path, **env: str) -> Settings:
    return Settings.load({"METABASE_URL": fake.url, **env}, cwd=home.parent, home=home, http_timeout_s=10)


def run_setup(fake: FakeMetabase, home: Path, fake_time: FakeTime, progress=None, **env: str):
    return setup_metabase(
        settings_for(fake, home, **env),
        progress=progress or RecordingProgress(),
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )


def run_connect(
    fake: FakeMetabase,
    home: Path,
    fake_time: FakeTime,
    dsn: str,
    tables: Sequence[str] = SMALL,
    progress=None,
):
    return connect_database(
        settings_for(fake, home),
        progress=progress or RecordingProgress(),
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        metabase_dsn=dsn,
        expected_tables=tables,
    )


def writes(fake: FakeMetabase) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in fake.mutating_requests()]


def people(fake: FakeMetabase) -> list[dict]:
    return [u for u in fake.state.users.values() if u.get("type") == "personal"]


def tool_keys(fake: FakeMetabase) -> list[dict]:
    return [k for k in fake.state.api_keys.values() if k.get("name", "").startswith(API_KEY_NAME)]


def demo_databases(fake: FakeMetabase) -> list[dict]:
    return [d for d in fake.databases() if d["name"] == DATABASE_NAME]


# --- setup -------------------------------------------------------------------------------------


def test_first_setup_creates_the_admin_and_an_api_key_stored_privately(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime
) -> None:
    progress = RecordingProgress()
    result = run_setup(fake_metabase, home, fake_time, progress)

    assert result.created_admin and result.created_api_key and result.auth == "api_key"
    assert result.version == "v0.65.4" and result.user_email == "admin@demo.local"
    creds = stored_credentials(home)
    assert stat.S_IMODE(os.stat(result.credentials_file).st_mode) == 0o600
    assert creds["admin"]["metabase_url"] == fake_metabase.url
    assert creds["api_key"]["metabase_url"] == fake_metabase.url
    [admin] = people(fake_metabase)
    assert admin["email"] == "admin@demo.local" and admin["password"] == creds["admin"]["password"]
    assert len(creds["admin"]["password"]) >= 20
    assert [k["group_id"] for k in tool_keys(fake_metabase)] == [2]  # Administrators
    with MetabaseClient(fake_metabase.url) as client:
        client.use_api_key(creds["api_key"]["key"])
        assert client.current_user().is_superuser
    assert creds["admin"]["password"] not in progress.text and creds["api_key"]["key"] not in progress.text


def test_setup_uses_the_admin_from_the_environment(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime
) -> None:
    result = run_setup(
        fake_metabase,
        home,
        fake_time,
        METABASE_ADMIN_EMAIL="ops@example.com",
        METABASE_ADMIN_PASSWORD="Env-Pa55word-1",
    )
    assert result.user_email == "ops@example.com"
    with MetabaseClient(fake_metabase.url) as client:
        assert client.login("ops@example.com", "Env-Pa55word-1")


def test_weak_admin_password_is_refused_with_a_hint_and_not_kept(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime
) -> None:
    with pytest.raises(MetabaseError) as caught:
        run_setup(fake_metabase, home, fake_time, METABASE_ADMIN_PASSWORD="password")
    assert caught.value.status == 400 and "METABASE_ADMIN_PASSWORD" in (caught.value.hint or "")
    assert stored_section(home, "admin") is None  # the refused password is not kept
    assert run_setup(fake_metabase, home, fake_time).created_admin  # a generated one works


@responses.activate
def test_losing_a_setup_race_to_another_admin_keeps_the_credentials_known_before(
    home: Path, fake_time: FakeTime
) -> None:
    # Metabase says "not set up", but someone else's setup lands before ours (403) and our login then
    # fails: the generated password was never valid and must not replace what was stored (another URL's).
    url = "http://race.test"
    known = {"metabase_url": "http://other.test", "email": "old@demo.local", "password": "Known-Pa55"}
    store_credentials(home, admin=known)
    responses.get(f"{url}/api/health", json={"status": "ok"})
    responses.get(
        f"{url}/api/session/properties",
        json={"has-user-setup": False, "setup-token": "tok", "version": {"tag": "v0.65.4"}},
    )
    responses.post(
        f"{url}/api/setup",
        status=403,
        body="The /api/setup route can only be used to create the first user, "
        "however a user currently exists.",
        content_type="text/plain",
    )
    responses.post(
        f"{url}/api/session", status=401, json={"errors": {"password": "did not match stored password"}}
    )
    settings = Settings.load({"METABASE_URL": url}, cwd=home.parent, home=home)
    with pytest.raises(MetabaseAuthError):
        setup_metabase(settings, progress=RecordingProgress(), clock=fake_time.clock, sleep=fake_time.sleep)
    assert [c.request.url.removeprefix(url) for c in responses.calls][-2:] == ["/api/setup", "/api/session"]
    assert stored_section(home, "admin") == known


def test_second_setup_only_reads(fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime) -> None:
    run_setup(fake_metabase, home, fake_time)
    fake_metabase.clear_requests()
    result = run_setup(fake_metabase, home, fake_time)
    assert not result.created_admin and not result.created_api_key
    assert writes(fake_metabase) == []
    assert len(fake_metabase.requests) <= 3  # health, properties, whoami


def test_lost_api_key_is_regenerated_not_duplicated(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime
) -> None:
    run_setup(fake_metabase, home, fake_time)
    state = StateDir(home)
    old_key = stored_section(state.root, "api_key")["key"]
    store_credentials(state.root, api_key=None)

    result = run_setup(fake_metabase, home, fake_time)

    assert result.created_api_key and len(tool_keys(fake_metabase)) == 1
    assert ("PUT", f"/api/api-key/{tool_keys(fake_metabase)[0]['id']}/regenerate") in writes(fake_metabase)
    new_key = stored_section(state.root, "api_key")["key"]
    assert new_key != old_key
    with MetabaseClient(fake_metabase.url) as client:
        client.use_api_key(old_key)
        with pytest.raises(MetabaseAuthError):
            client.current_user()


def test_revoked_api_key_falls_back_to_login_with_a_warning(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime
) -> None:
    run_setup(fake_metabase, home, fake_time)
    stored = stored_section(home, "api_key")
    response = requests.delete(
        f"{fake_metabase.url}/api/api-key/{stored['id']}", headers={"X-API-Key": stored["key"]}, timeout=10
    )
    assert response.status_code == 204

    progress = RecordingProgress()
    result = run_setup(fake_metabase, home, fake_time, progress)

    assert (
        "warn",
        f"the stored API key for {fake_metabase.url} was rejected (expired or revoked): "
        "logging in as the admin to create a new one",
    ) in progress.lines
    assert result.auth == "api_key" and result.created_api_key
    assert len(tool_keys(fake_metabase)) == 1


def test_known_metabase_without_credentials_is_an_auth_error(
    fake_metabase: FakeMetabase, home: Path, tmp_path: Path, fake_time: FakeTime
) -> None:
    run_setup(fake_metabase, home, fake_time)
    with pytest.raises(MetabaseAuthError) as caught:
        run_setup(fake_metabase, tmp_path / "other-home", fake_time)
    assert "no credentials" in caught.value.message and "METABASE_API_KEY" in (caught.value.hint or "")


def test_wrong_admin_password_is_reported_as_such(
    fake_metabase: FakeMetabase, home: Path, tmp_path: Path, fake_time: FakeTime
) -> None:
    run_setup(fake_metabase, home, fake_time)
    with pytest.raises(MetabaseAuthError) as caught:
        run_setup(fake_metabase, tmp_path / "other", fake_time, METABASE_ADMIN_PASSWORD="Wrong-Pa55-1")
    assert "wrong admin email or password" in (caught.value.hint or "")
    assert "Wrong-Pa55-1" not in json.dumps(caught.value.to_dict())


def test_api_key_from_the_environment_needs_no_login(
    fake_metabase: FakeMetabase, home: Path, tmp_path: Path, fake_time: FakeTime
) -> None:
    run_setup(fake_metabase, home, fake_time)
    key = stored_section(home, "api_key")["key"]
    fake_metabase.clear_requests()
    authed = open_client(
        settings_for(fake_metabase, tmp_path / "ci", METABASE_API_KEY=key),
        progress=RecordingProgress(),
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )
    with authed.client:
        assert authed.auth == "api_key" and authed.client.list_databases()
    assert authed.who == "the API key from METABASE_API_KEY"
    only_key = setup_metabase(
        settings_for(fake_metabase, tmp_path / "ci", METABASE_API_KEY=key),
        progress=RecordingProgress(),
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )
    assert not only_key.credentials_stored and only_key.auth == "api_key"
    assert writes(fake_metabase) == []


def test_revoked_environment_api_key_is_not_silently_replaced(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime
) -> None:
    run_setup(fake_metabase, home, fake_time)
    with pytest.raises(MetabaseAuthError, match="METABASE_API_KEY"):
        run_setup(fake_metabase, home, fake_time, METABASE_API_KEY="mb_NotAKeyAtAll123456")


def test_open_client_refuses_a_metabase_that_is_not_set_up(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime
) -> None:
    with pytest.raises(MetabaseError, match="not set up yet") as caught:
        open_client(settings_for(fake_metabase, home), progress=RecordingProgress(), sleep=fake_time.sleep)
    assert "provision metabase setup" in (caught.value.hint or "")
    assert writes(fake_metabase) == []


def test_metabase_older_than_supported_is_refused_before_any_write(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime
) -> None:
    fake_metabase.set_version("v0.60.2")
    with pytest.raises(MetabaseVersionError) as caught:
        run_setup(fake_metabase, home, fake_time)
    assert "v0.60.2" in caught.value.message and "61–65" in caught.value.message
    assert writes(fake_metabase) == [] and people(fake_metabase) == []


def test_metabase_newer_than_tested_warns_and_proceeds(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime
) -> None:
    fake_metabase.set_version("v0.67.1")
    progress = RecordingProgress()
    assert run_setup(fake_metabase, home, fake_time, progress).created_admin
    assert any(kind == "warn" and "newer than tested" in text for kind, text in progress.lines)


# --- waiting for health ------------------------------------------------------------------------


def test_wait_for_health_waits_while_metabase_initialises(fake_time: FakeTime) -> None:
    progress = RecordingProgress()
    with FakeMetabase(init_polls=3) as fake, MetabaseClient(fake.url) as client:
        wait_for_health(client, timeout_s=60, progress=progress, clock=fake_time.clock, sleep=fake_time.sleep)
    assert len(fake_time.sleeps) == 3
    assert f"Waiting for Metabase at {fake.url} (up to 60 s): starting (50%)" in progress.text
    assert "Metabase is ready" in progress.text


def test_wait_for_health_gives_up_at_the_deadline(fake_time: FakeTime) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    with MetabaseClient(url, timeout_s=2) as client, pytest.raises(MetabaseUnreachable) as caught:
        wait_for_health(
            client, timeout_s=30, progress=RecordingProgress(), clock=fake_time.clock, sleep=fake_time.sleep
        )
    assert "did not become healthy within 30 s" in caught.value.message
    assert 30 <= fake_time.now <= 32 and caught.value.hint


@responses.activate
def test_wait_for_health_fails_at_once_for_a_web_page(fake_time: FakeTime) -> None:
    responses.get("http://not-metabase.test/api/health", body="<html>hello</html>", content_type="text/html")
    with (
        MetabaseClient("http://not-metabase.test") as client,
        pytest.raises(MetabaseUnreachable, match="HTML"),
    ):
        wait_for_health(
            client, timeout_s=30, progress=RecordingProgress(), clock=fake_time.clock, sleep=fake_time.sleep
        )
    assert fake_time.sleeps == []


# --- connecting the database -------------------------------------------------------------------


def test_connect_registers_the_reader_and_waits_for_every_table(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, warehouse: Warehouse
) -> None:
    run_setup(fake_metabase, home, fake_time)
    result = run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())

    assert result.action == "created" and result.synced and result.tables_found == len(SMALL)
    [database] = demo_databases(fake_metabase)
    assert database["id"] == result.database_id and database["engine"] == "postgres"
    assert database["details"]["user"] == warehouse.reader_role  # never the owner
    assert database["details"]["dbname"] == warehouse.dbname
    assert warehouse.reader_password not in result.connection and "<redacted>" in result.connection
    stored = stored_section(home, "metabase_database")
    assert stored["database_id"] == result.database_id
    assert warehouse.reader_password not in json.dumps(stored)


def test_reconnect_changes_nothing(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, warehouse: Warehouse
) -> None:
    run_setup(fake_metabase, home, fake_time)
    first = run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())
    fake_metabase.clear_requests()

    run_setup(fake_metabase, home, fake_time)
    again = run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())

    assert again.action == "unchanged" and again.database_id == first.database_id
    assert writes(fake_metabase) == []
    # The id the first connect stored saves the list of databases: one metadata read checks it all.
    database_reads = [r.path for r in fake_metabase.requests if r.path.startswith("/api/database")]
    assert database_reads == [f"/api/database/{first.database_id}/metadata"]
    assert again.metadata is not None and set(SMALL) <= again.metadata.table_names


@pytest.mark.parametrize("change", ["deleted", "renamed"])
def test_a_remembered_database_that_is_gone_or_renamed_is_looked_up_by_name(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, warehouse: Warehouse, change: str
) -> None:
    run_setup(fake_metabase, home, fake_time)
    first = run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())
    with MetabaseClient(fake_metabase.url) as client:
        client.use_api_key(stored_section(home, "api_key")["key"])
        if change == "deleted":
            requests.delete(
                f"{fake_metabase.url}/api/database/{first.database_id}",
                headers={"x-api-key": stored_section(home, "api_key")["key"]},
                timeout=10,
            ).raise_for_status()
        else:  # a person renamed it: it is no longer the demo database, whatever id the tool stored
            client.update_database(first.database_id, DatabaseUpdate(name="Someone's copy"))
    fake_metabase.clear_requests()

    again = run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())

    assert again.action == "created" and again.database_id != first.database_id
    assert ("GET", "/api/database") in [(r.method, r.path) for r in fake_metabase.requests]
    assert [d["id"] for d in demo_databases(fake_metabase)] == [again.database_id]
    assert stored_section(home, "metabase_database")["database_id"] == again.database_id


def test_changed_reader_password_updates_the_connection_once(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, warehouse: Warehouse
) -> None:
    run_setup(fake_metabase, home, fake_time)
    first = run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())
    warehouse.set_reader_password("Rd-new-" + secrets.token_hex(6))
    fake_metabase.clear_requests()

    updated = run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())
    assert updated.action == "updated" and updated.database_id == first.database_id
    assert writes(fake_metabase) == [("PUT", f"/api/database/{first.database_id}")]
    assert fake_metabase.requests[-1].path.endswith("/metadata")  # it re-checked the tables afterwards

    fake_metabase.clear_requests()
    assert run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn()).action == "unchanged"
    assert writes(fake_metabase) == []


def test_changed_host_details_update_the_connection(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, warehouse: Warehouse
) -> None:
    run_setup(fake_metabase, home, fake_time)
    run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())
    localhost = warehouse.reader_dsn().replace("@127.0.0.1:", "@localhost:")
    assert run_connect(fake_metabase, home, fake_time, localhost).action == "updated"
    assert demo_databases(fake_metabase)[0]["details"]["host"] == "localhost"


def test_a_table_missing_from_the_metadata_triggers_a_schema_sync(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, warehouse: Warehouse
) -> None:
    run_setup(fake_metabase, home, fake_time)
    first = run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())
    warehouse.add_objects(["late_table"])
    fake_metabase.clear_requests()

    result = run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn(), (*SMALL, "late_table"))

    assert result.sync_triggered and result.tables_found == len(SMALL) + 1
    assert writes(fake_metabase) == [("POST", f"/api/database/{first.database_id}/sync_schema")]


def test_tables_that_never_appear_fail_at_the_deadline_naming_them(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, warehouse: Warehouse
) -> None:
    run_setup(fake_metabase, home, fake_time)
    with pytest.raises(MetabaseError) as caught:
        run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn(), (*SMALL, "no_such_table"))
    assert "no_such_table" in caught.value.message and "SELECT" in (caught.value.hint or "")
    assert fake_time.now >= 300  # the settings' sync deadline, reached on the injected clock


def test_database_credentials_rejected_by_metabase_show_its_reason_and_create_nothing(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, warehouse: Warehouse
) -> None:
    run_setup(fake_metabase, home, fake_time)
    wrong = "Wrong-" + secrets.token_hex(6)
    with pytest.raises(MetabaseError) as caught:
        run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn(wrong))
    assert "password is incorrect" in caught.value.message.lower()
    assert "as seen from Metabase" in (caught.value.hint or "")
    assert wrong not in json.dumps(caught.value.to_dict())
    assert demo_databases(fake_metabase) == []


def test_postgres_details_come_from_the_dsn() -> None:
    details = postgres_details("postgresql://reader:p%40ss@db.example:6543/demo?sslmode=require")
    assert (details.host, details.port, details.dbname, details.user) == (
        "db.example",
        6543,
        "demo",
        "reader",
    )
    assert details.ssl and details.as_details()["password"] == "p@ss"
    assert postgres_details("postgres://r:x@h/d").port == 5432


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://reader:Hidden-pw@db:abc/demo",
        "postgresql://reader:Hidden-pw@db:70000/demo",
        "postgresql://reader:Hidden-pw@db1,db2/demo",
    ],
)
def test_a_dsn_metabase_cannot_use_is_a_config_error_not_a_traceback(dsn: str) -> None:
    with pytest.raises(ConfigError) as caught:
        postgres_details(dsn)
    assert (
        "one host and one port" in caught.value.message or "port that is not a number" in caught.value.message
    )
    assert caught.value.hint
    assert "Hidden-pw" not in caught.value.message


def test_a_dsn_without_user_is_a_config_error_that_hides_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        postgres_details("postgresql://:Hidden-pw@h:5432/d")
    assert "Hidden-pw" not in caught.value.message


# --- interrupted runs converge -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "drop"])
@pytest.mark.parametrize("at_mutation", [1, 2, 3, 4])
def test_a_run_interrupted_at_any_write_converges_on_the_next(
    fake_metabase: FakeMetabase,
    home: Path,
    fake_time: FakeTime,
    warehouse: Warehouse,
    at_mutation: int,
    kind: str,
) -> None:
    # A first full run writes: setup, API key, tracking off, database (a 5th would be a sync only if
    # tables were late). The tracking PUT is idempotent: after a dropped connection it is sent again.
    fake_metabase.inject_fault(at_mutation=at_mutation, kind=kind)
    if (at_mutation, kind) != (3, "drop"):
        with pytest.raises(ProvisionError) as caught:
            run_setup(fake_metabase, home, fake_time)
            run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())
        assert caught.value.exit_code == 4 and caught.value.hint

    run_setup(fake_metabase, home, fake_time)
    result = run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())

    assert result.synced
    assert len(people(fake_metabase)) == 1
    assert len(tool_keys(fake_metabase)) == 1
    assert len(demo_databases(fake_metabase)) == 1
    assert effective_value(fake_metabase.state, "anon-tracking-enabled") is False
    fake_metabase.clear_requests()
    run_setup(fake_metabase, home, fake_time)
    assert run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn()).action == "unchanged"
    assert writes(fake_metabase) == []


def test_connect_defaults_to_the_stored_reader_role_on_the_database_url_host(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, seeded_database: SeededDatabase
) -> None:
    run_setup(fake_metabase, home, fake_time)
    reader = psycopg.conninfo.conninfo_to_dict(seeded_database.reader_dsn)
    store_credentials(home, reader={"user": reader["user"], "password": reader["password"]})
    settings = settings_for(fake_metabase, home, DATABASE_URL=seeded_database.owner_dsn)

    result = connect_database(
        settings, progress=RecordingProgress(), clock=fake_time.clock, sleep=fake_time.sleep
    )

    assert result.is_reader is True and result.action == "created"
    assert result.tables_found == result.tables_expected == len(TABLES) + len(VIEWS)
    [database] = demo_databases(fake_metabase)
    assert database["details"]["user"] == seeded_database.reader_role
    assert database["details"]["dbname"] == seeded_database.dbname


def test_connect_without_a_reader_role_warns_that_the_owner_is_used(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, seeded_database: SeededDatabase
) -> None:
    run_setup(fake_metabase, home, fake_time)
    progress = RecordingProgress()
    result = connect_database(
        settings_for(fake_metabase, home),
        progress=progress,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        owner_dsn=seeded_database.owner_dsn,
    )
    assert result.is_reader is False
    assert any(kind == "warn" and "can write" in text for kind, text in progress.lines)


def test_setup_applied_but_its_answer_lost_logs_in_with_the_stored_admin(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime
) -> None:
    # What a run that died right after POST /api/setup leaves: stored credentials, a set-up Metabase.
    store_credentials(
        home,
        admin={"metabase_url": fake_metabase.url, "email": "admin@demo.local", "password": "Stored-Pa55-1"},
    )
    with MetabaseClient(fake_metabase.url) as client:
        token = client.session_properties().setup_token
        client.setup(token, SetupUser(email="admin@demo.local", password="Stored-Pa55-1"), "Demo")

    result = run_setup(fake_metabase, home, fake_time)

    assert not result.created_admin and result.created_api_key and len(people(fake_metabase)) == 1


def test_database_registered_but_its_answer_lost_is_adopted_not_duplicated(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, warehouse: Warehouse
) -> None:
    run_setup(fake_metabase, home, fake_time)
    # A run that died right after POST /api/database: the database exists, no fingerprint stored.
    details = postgres_details(warehouse.reader_dsn()).as_details()
    with MetabaseClient(fake_metabase.url) as client:
        client.use_api_key(stored_section(home, "api_key")["key"])
        client.create_database(DatabaseCreate(name=DATABASE_NAME, details=details))

    assert run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn()).action == "updated"
    assert run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn()).action == "unchanged"
    assert len(demo_databases(fake_metabase)) == 1


@pytest.mark.parametrize("kind", ["500", "drop"])
def test_a_failed_connection_update_is_redone_on_the_next_run(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, warehouse: Warehouse, kind: str
) -> None:
    run_setup(fake_metabase, home, fake_time)
    run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())
    warehouse.set_reader_password("Rd-new-" + secrets.token_hex(6))
    fake_metabase.inject_fault(at_mutation=1, kind=kind)

    if kind == "drop":  # a PUT is safe to repeat: the client retries it within the same run
        assert run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn()).action == "updated"
    else:
        with pytest.raises(MetabaseError):
            run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn())
        assert run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn()).action == "updated"
    assert run_connect(fake_metabase, home, fake_time, warehouse.reader_dsn()).action == "unchanged"


@pytest.mark.parametrize("at_mutation", [1, 2])
def test_a_fault_while_replacing_a_lost_key_converges(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime, at_mutation: int
) -> None:
    run_setup(fake_metabase, home, fake_time)
    store_credentials(home, api_key=None)
    fake_metabase.inject_fault(at_mutation=at_mutation, kind="500")  # 1: login, 2: regenerate
    with pytest.raises(MetabaseError):
        run_setup(fake_metabase, home, fake_time)
    assert run_setup(fake_metabase, home, fake_time).auth == "api_key"
    assert len(tool_keys(fake_metabase)) == 1
    fake_metabase.clear_requests()
    run_setup(fake_metabase, home, fake_time)
    assert writes(fake_metabase) == []


# --- the CLI -----------------------------------------------------------------------------------


def _password(dsn: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(dsn)["password"])


@pytest.fixture
def instant_sync(fake_metabase: FakeMetabase) -> FakeMetabase:
    """The CLI waits on the real clock: a first sync that is already complete keeps it from sleeping."""
    fake_metabase.sync_polls = 0
    return fake_metabase


def cli(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(app, args, env=env)


def secrets_of(home: Path, fake: FakeMetabase, *extra: str) -> list[str]:
    creds = stored_credentials(home)
    found = [creds["admin"]["password"], creds["api_key"]["key"], *fake.state.sessions, *extra]
    return [s for s in found if s]


def test_cli_setup_then_connect_prints_results_and_no_secret(
    instant_sync: FakeMetabase,
    fake_metabase: FakeMetabase,
    clean_environ: Path,
    seeded_database: SeededDatabase,
) -> None:
    env = {"METABASE_URL": fake_metabase.url}
    setup = cli(["metabase", "setup"], env)
    assert setup.exit_code == 0, setup.stderr
    assert "Logged in as: API key 'metabase-provisioner (" in setup.stdout
    assert "(admin admin@demo.local)" in setup.stdout
    assert f"Credentials: {clean_environ / 'credentials.json'}" in setup.stdout
    assert "Creating the Metabase admin" in setup.stderr and "Creating" not in setup.stdout

    connect = cli(["metabase", "connect", "--metabase-database-url", seeded_database.reader_dsn], env)
    assert connect.exit_code == 0, connect.stderr
    total = len(TABLES) + len(VIEWS)
    assert f"Tables and views visible in Metabase: {total}/{total}" in connect.stdout
    assert "Asset Finance Demo" in connect.stdout and ": created" in connect.stdout

    leaked = secrets_of(clean_environ, fake_metabase, _password(seeded_database.reader_dsn))
    for result in (setup, connect):
        for secret in leaked:
            assert secret not in result.stdout and secret not in result.stderr


def test_cli_json_outputs_one_document_and_no_secret(
    instant_sync: FakeMetabase,
    fake_metabase: FakeMetabase,
    clean_environ: Path,
    seeded_database: SeededDatabase,
) -> None:
    env = {"METABASE_URL": fake_metabase.url}
    setup = cli(["metabase", "setup", "--json"], env)
    assert setup.exit_code == 0, setup.stderr
    data = json.loads(setup.stdout)
    assert data["ok"] and data["auth"] == "api_key" and data["created_admin"] is True

    connect = cli(
        ["metabase", "connect", "--json", "--metabase-database-url", seeded_database.reader_dsn], env
    )
    assert connect.exit_code == 0, connect.stderr
    connected = json.loads(connect.stdout)
    assert connected["action"] == "created" and connected["synced"] is True

    again = cli(["metabase", "connect", "--json", "--metabase-database-url", seeded_database.reader_dsn], env)
    assert json.loads(again.stdout)["action"] == "unchanged"
    for result in (setup, connect, again):
        for secret in secrets_of(clean_environ, fake_metabase, _password(seeded_database.reader_dsn)):
            assert secret not in result.stdout and secret not in result.stderr


def test_cli_wrong_admin_password_exits_4_with_a_hint(
    fake_metabase: FakeMetabase, home: Path, fake_time: FakeTime
) -> None:
    run_setup(fake_metabase, home, fake_time)  # another home: this CLI run knows only the env password
    env = {"METABASE_URL": fake_metabase.url, "METABASE_ADMIN_PASSWORD": "Wrong-Pa55-word"}
    result = cli(["metabase", "setup"], env)
    assert result.exit_code == 4
    assert result.stdout == ""
    assert "error: Metabase rejected the admin login" in result.stderr
    assert "hint: wrong admin email or password" in result.stderr
    assert "Wrong-Pa55-word" not in result.stderr

    as_json = cli(["metabase", "setup", "--json"], env)
    assert as_json.exit_code == 4
    payload = json.loads(as_json.stdout)
    assert payload["ok"] is False and payload["error"] == "metabase" and payload["exit_code"] == 4
    assert "Wrong-Pa55-word" not in as_json.stdout


@responses.activate
def test_a_remembered_database_read_without_details_falls_back_to_the_list() -> None:
    from provisioner.metabase.setup import _remembered_database
    from provisioner.state import DatabasePasswordFingerprint

    url = "http://mb.test"
    base = {"id": 7, "name": DATABASE_NAME, "engine": "postgres", "tables": []}
    details = {"host": "db", "port": 5432, "dbname": "demo", "user": "metabase_reader"}
    responses.get(f"{url}/api/database/7/metadata", json=base)
    responses.get(f"{url}/api/database/7/metadata", json={**base, "details": details})
    responses.get(f"{url}/api/database/8/metadata", status=404, body="Not found.", content_type="text/plain")

    def remembered(database_id: int) -> DatabasePasswordFingerprint:
        return DatabasePasswordFingerprint(
            metabase_url=url, database_id=database_id, salt="s", fingerprint="f"
        )

    with MetabaseClient(url) as client:
        # Without details the connection cannot be compared (it would be rewritten every run).
        assert _remembered_database(client, remembered(7)) is None
        found = _remembered_database(client, remembered(7))
        assert found is not None and found.details["host"] == "db"
        assert _remembered_database(client, remembered(8)) is None
        assert _remembered_database(client, None) is None
    assert len(responses.calls) == 3
