"""The external runtime: checks what it is given, starts and deletes nothing; `up` and `down` via the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.config import Settings
from provisioner.errors import ConfigError, DatabaseError, MetabaseUnreachable
from provisioner.progress import RecordingProgress
from provisioner.runtime.postgres import free_port
from provisioner.stack import select_runtime
from tests.fake_metabase.server import FakeMetabase


@pytest.fixture
def fake() -> Iterator[FakeMetabase]:
    with FakeMetabase() as server:
        yield server


def _settings(home: Path, **overrides: object) -> Settings:
    return Settings.load({}, home=home, runtime="external", **overrides)


def test_start_returns_the_given_endpoints(clean_environ: Path, fake: FakeMetabase, pg_dsn: str) -> None:
    runtime = select_runtime(_settings(clean_environ, metabase_url=fake.url, database_url=pg_dsn))
    endpoints = runtime.start(RecordingProgress())
    assert runtime.name == "external"
    assert endpoints.metabase_url == fake.url
    assert endpoints.warehouse_dsn is not None and endpoints.warehouse_dsn.get_secret_value() == pg_dsn
    assert endpoints.metabase_warehouse_host is None


def test_start_without_a_database_url_is_a_config_error(clean_environ: Path, fake: FakeMetabase) -> None:
    runtime = select_runtime(_settings(clean_environ, metabase_url=fake.url))
    with pytest.raises(ConfigError, match="--database-url"):
        runtime.start(RecordingProgress())


def test_start_with_nothing_at_the_metabase_url_fails(clean_environ: Path, pg_dsn: str) -> None:
    settings = _settings(clean_environ, metabase_url=f"http://127.0.0.1:{free_port()}", database_url=pg_dsn)
    with pytest.raises(MetabaseUnreachable):
        select_runtime(settings).start(RecordingProgress())


def test_start_with_a_wrong_database_password_fails(
    clean_environ: Path, fake: FakeMetabase, pg_dsn: str
) -> None:
    wrong = pg_dsn.replace("@", "x@", 1)  # the password with one character more
    settings = _settings(clean_environ, metabase_url=fake.url, database_url=wrong)
    with pytest.raises(DatabaseError):
        select_runtime(settings).start(RecordingProgress())


def test_stop_and_destroy_leave_the_users_services_alone(
    clean_environ: Path, fake: FakeMetabase, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id int)")
    runtime = select_runtime(_settings(clean_environ, metabase_url=fake.url, database_url=pg_dsn))
    progress = RecordingProgress()
    runtime.stop(progress)
    runtime.destroy(progress)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    assert "nothing was deleted" in progress.text
    assert runtime.status().services[0].health == "healthy"


def test_status_reports_metabase_health_and_redacts_the_database(
    clean_environ: Path, fake: FakeMetabase, pg_dsn: str
) -> None:
    status = select_runtime(_settings(clean_environ, metabase_url=fake.url, database_url=pg_dsn)).status()
    by_name = {s.name: s for s in status.services}
    assert (by_name["metabase"].state, by_name["metabase"].health) == ("running", "healthy")
    password = pg_dsn.split(":")[2].split("@")[0]
    assert password not in (by_name["warehouse"].detail or "")
    assert password not in status.model_dump_json()
    assert status.running


def test_up_command_prints_endpoints_as_json_without_the_password(fake: FakeMetabase, pg_dsn: str) -> None:
    result = CliRunner().invoke(
        app, ["up", "--runtime", "external", "--metabase-url", fake.url, "--database-url", pg_dsn, "--json"]
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["ok"] is True and payload["metabase_url"] == fake.url
    password = pg_dsn.split(":")[2].split("@")[0]
    assert password not in result.stdout and password not in result.stderr
    assert "<redacted>" in payload["warehouse"]


def test_up_command_without_database_exits_3_with_a_hint(fake: FakeMetabase) -> None:
    result = CliRunner().invoke(app, ["up", "--runtime", "external", "--metabase-url", fake.url])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert "error: --runtime external needs the database" in result.stderr
    assert "hint: " in result.stderr


def test_down_command_external_deletes_nothing_and_says_so(fake: FakeMetabase) -> None:
    result = CliRunner().invoke(
        app, ["down", "--volumes", "--runtime", "external", "--metabase-url", fake.url]
    )
    assert result.exit_code == 0
    assert "nothing was deleted" in result.stderr
    assert result.stdout.strip().startswith("Nothing was stopped or deleted")
