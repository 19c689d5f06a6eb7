"""`provision status`: runtime, Metabase health and version, seeded data, sync state, dashboard drift."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.config import Settings
from provisioner.runtime.external import ExternalRuntime
from provisioner.runtime.postgres import free_port
from provisioner.status import collect_status, probe_database, probe_metabase
from tests.db_fixtures import SeededDatabase
from tests.fake_metabase.server import FakeMetabase


@pytest.fixture
def fake() -> Iterator[FakeMetabase]:
    with FakeMetabase() as server:
        yield server


def _external(home: Path, url: str, dsn: str) -> Settings:
    return Settings.load({}, home=home, runtime="external", metabase_url=url, database_url=dsn)


def test_metabase_not_set_up_yet_is_healthy_but_dashboards_unknown(
    clean_environ: Path, fake: FakeMetabase, seeded_database: SeededDatabase
) -> None:
    settings = _external(clean_environ, fake.url, seeded_database.owner_dsn)
    report = collect_status(settings, ExternalRuntime(settings))

    assert report.metabase.healthy and report.metabase.version == "v0.65.4" and report.metabase.supported
    assert report.database.reachable and report.database.seeded
    assert "24 tables" in (report.database.detail or "")
    assert report.dashboards.in_sync is None
    assert "not set up" in (report.metabase.detail or "")
    assert not report.ok


def test_empty_database_is_reachable_but_not_seeded(pg_dsn: str) -> None:
    from pydantic import SecretStr

    state = probe_database(SecretStr(pg_dsn))
    assert state.reachable and state.seeded is False
    assert "provision demo" in (state.hint or "")


def test_unreachable_things_are_reported_not_raised() -> None:
    from pydantic import SecretStr

    dead = f"http://127.0.0.1:{free_port()}"
    assert probe_metabase(dead).reachable is False
    assert probe_metabase(None).hint == "run `provision up`"
    db = probe_database(SecretStr(f"postgresql://u:secret-pw@127.0.0.1:{free_port()}/x"))
    assert db.reachable is False and "secret-pw" not in (db.detail or "")


def test_too_old_metabase_is_unsupported() -> None:
    with FakeMetabase(version="v0.60.3") as old:
        state = probe_metabase(old.url)
    assert state.healthy and state.supported is False and "too old" in (state.detail or "")


def test_status_command_json_exits_1_until_all_is_well(fake: FakeMetabase, pg_dsn: str) -> None:
    result = CliRunner().invoke(
        app,
        ["status", "--runtime", "external", "--metabase-url", fake.url, "--database-url", pg_dsn, "--json"],
    )
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert payload["runtime"]["runtime"] == "external"
    assert payload["metabase"]["version"] == "v0.65.4"
    assert payload["database"]["seeded"] is False
    assert "warehouse_dsn" not in payload["runtime"]
    password = pg_dsn.split(":")[2].split("@")[0]
    assert password not in result.stdout


def test_status_command_text_lists_services_and_hints(fake: FakeMetabase, pg_dsn: str) -> None:
    result = CliRunner().invoke(
        app, ["status", "--runtime", "external", "--metabase-url", fake.url, "--database-url", pg_dsn]
    )
    assert result.exit_code == 1
    assert "Runtime: external" in result.stdout
    assert "  metabase: running, healthy" in result.stdout
    assert "Metabase v0.65.4: healthy" in result.stdout
    assert "Database: reachable, but the demo data is not loaded" in result.stdout
    assert "hint: run `provision demo`" in result.stdout
