"""`provision demo` end to end.

Local runtime for real: the embedded PostgreSQL plus the fake Metabase started as a separate process
through the configurable launch command (its state survives a kill, like Metabase's application
database). External runtime: the in-thread fake and a database on the session's PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.config import Settings
from provisioner.db.seed import seed_status
from provisioner.demo import run_demo
from provisioner.errors import MetabaseError
from provisioner.progress import RecordingProgress
from provisioner.runtime.external import ExternalRuntime
from provisioner.runtime.local import LocalRuntime
from provisioner.runtime.postgres import free_port
from provisioner.state import write_private
from tests.credentials import stored_credentials

REPO = Path(__file__).resolve().parent.parent
DEMO_FILES = sorted((REPO / "dashboards").glob("*.yaml"))
DEMO_DASHBOARDS = [p for p in DEMO_FILES if "\ncards:" in p.read_text()]
DEMO_MODELS = sum(p.read_text().count("    type: model\n") for p in DEMO_FILES)
FAKE_COMMAND = (
    f"{shlex.quote(sys.executable)} -m tests.fake_metabase --port {{port}} "
    "--state-file {state_dir}/fake-state.json"
)


def _short_sleep(seconds: float) -> None:
    """Polls of a real process still wait, but 50 ms, not Metabase's production intervals."""
    time.sleep(min(seconds, 0.05))


def _dashboard_names() -> set[str]:
    import yaml

    return {yaml.safe_load(p.read_text())["name"] for p in DEMO_DASHBOARDS}


def _live(objects: list[dict]) -> list[dict]:
    return [o for o in objects if not o.get("archived")]


# --- local runtime: real processes ----------------------------------------------------------------


@pytest.fixture
def local(clean_environ: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for a local-runtime demo whose Metabase is the fake, run as a process."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    settings = Settings.load(os.environ, runtime="local", metabase_command=FAKE_COMMAND)
    # A remembered ephemeral port, not the default 3000 that concurrent test runs would race for.
    write_private(LocalRuntime(settings).port_file, f"{free_port()}\n")
    try:
        yield settings
    finally:
        LocalRuntime(settings).destroy(RecordingProgress())


def _state_file(settings: Settings) -> Path:
    matches = list(settings.home.rglob("fake-state.json"))
    assert len(matches) == 1, matches
    return matches[0]


def _runtime(settings: Settings) -> LocalRuntime:
    return LocalRuntime(settings, sleep=_short_sleep)


def _warehouse_dsn(settings: Settings) -> str:
    from provisioner.runtime.warehouse import resolve_warehouse

    return resolve_warehouse(settings, start=False).dsn.get_secret_value()


def _objects(settings: Settings, kind: str) -> list[dict]:
    state = json.loads(_state_file(settings).read_text())
    table = state[kind]
    return list(table.values()) if isinstance(table, dict) else list(table)


def test_local_demo_from_nothing_then_rerun_writes_nothing(local: Settings) -> None:
    cold = run_demo(local, runtime=_runtime(local), progress=RecordingProgress(), sleep=_short_sleep)

    assert cold.changed is True and cold.failed_cards == []
    assert {d.name for d in cold.dashboards} == _dashboard_names()
    assert all(d.action == "created" and d.url.startswith(cold.metabase_url) for d in cold.dashboards)
    assert [s.name for s in cold.steps] == ["start", "seed", "setup", "connect", "dashboards"]
    assert all(s.changed for s in cold.steps)
    state_file = _state_file(local)
    before = state_file.read_bytes()

    again = run_demo(local, runtime=_runtime(local), progress=RecordingProgress(), sleep=_short_sleep)

    assert again.changed is False
    assert {d.action for d in again.dashboards} == {"unchanged"}
    assert not any(s.changed for s in again.steps)
    # The fake saves its state after every mutating request: an identical file means zero writes.
    assert state_file.read_bytes() == before

    # After `provision down`, the demo starts again and says so, though nothing else changes.
    _runtime(local).stop(RecordingProgress())
    restarted = run_demo(local, runtime=_runtime(local), progress=RecordingProgress(), sleep=_short_sleep)
    assert restarted.changed is True
    assert [s.name for s in restarted.steps if s.changed] == ["start"]
    assert state_file.read_bytes() == before


class _KillMetabaseWhileApplying(RecordingProgress):
    """Kills the Metabase process (SIGKILL, by its pid file) after `after` objects were written."""

    def __init__(self, pid_file: Path, after: int) -> None:
        super().__init__()
        self.pid_file, self.after, self.written = pid_file, after, 0

    def info(self, message: str) -> None:
        super().info(message)
        if message.startswith(("creating question", "creating model", "creating dashboard")):
            self.written += 1
            if self.written == self.after:
                os.kill(int(self.pid_file.read_text().split()[0]), signal.SIGKILL)


def test_metabase_killed_mid_apply_then_demo_converges_without_duplicates(local: Settings) -> None:
    runtime = _runtime(local)
    # Dashboards are created first (their questions are saved inside them), then the 8 models, then the
    # questions built on them: the kill lands as the questions go out, after the models all exist. Writes
    # that do not wait for each other go out together, so more may have started when it lands.
    killer = _KillMetabaseWhileApplying(runtime.pid_file, after=15)

    with pytest.raises(MetabaseError):
        run_demo(local, runtime=runtime, progress=killer, sleep=_short_sleep)
    assert killer.written >= 15
    half_done = _live(_objects(local, "cards"))
    assert len(half_done) > 0

    resumed = run_demo(local, runtime=_runtime(local), progress=RecordingProgress(), sleep=_short_sleep)

    assert resumed.failed_cards == []
    assert {d.name for d in resumed.dashboards} == _dashboard_names()
    cards = _live(_objects(local, "cards"))
    keys = [c["visualization_settings"].get("provisioner.key") for c in cards]
    assert len(keys) == len(set(keys)), "a card was created twice"
    assert {c["id"] for c in half_done} <= {c["id"] for c in cards}, "cards made before the kill were kept"
    dashboards = _live(_objects(local, "dashboards"))
    assert sorted(d["name"] for d in dashboards) == sorted(_dashboard_names())
    assert len(_objects(local, "databases")) == 2  # the sample database and ours
    assert len([u for u in _objects(local, "users") if u.get("type") == "personal"]) == 1

    assert (
        run_demo(local, runtime=_runtime(local), progress=RecordingProgress(), sleep=_short_sleep).changed
        is False
    )


def test_demo_fresh_rebuilds_the_local_demo_from_nothing(local: Settings) -> None:
    first = run_demo(local, runtime=_runtime(local), progress=RecordingProgress(), sleep=_short_sleep)
    with psycopg.connect(_warehouse_dsn(local), autocommit=True) as conn:
        conn.execute("CREATE TABLE left_by_a_broken_demo (id int)")

    fresh = run_demo(
        local, runtime=_runtime(local), fresh=True, progress=RecordingProgress(), sleep=_short_sleep
    )

    assert fresh.steps[0].name == "destroy"
    assert fresh.changed is True and fresh.failed_cards == []
    assert {d.action for d in fresh.dashboards} == {"created"}
    assert sorted(d["name"] for d in _live(_objects(local, "dashboards"))) == sorted(_dashboard_names())
    assert len(_objects(local, "databases")) == 2
    # The warehouse was rebuilt from nothing too: what was left in it is gone.
    with psycopg.connect(_warehouse_dsn(local)) as conn:
        assert conn.execute("SELECT to_regclass('left_by_a_broken_demo')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (15,)
    assert {d.url for d in fresh.dashboards} and first.metabase_url == fresh.metabase_url


def test_demo_cli_prints_the_summary_and_never_a_secret(local: Settings, monkeypatch) -> None:
    monkeypatch.setenv("PROVISION_RUNTIME", "local")
    monkeypatch.setenv("METABASE_COMMAND", FAKE_COMMAND)

    result = CliRunner().invoke(app, ["demo", "--json"])

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["changed"] is True and len(summary["dashboards"]) == len(DEMO_DASHBOARDS)
    assert summary["credentials_file"].endswith("credentials.json")
    assert "→ Seeding the demo database" in result.stderr
    credentials = stored_credentials(local.home)
    secrets = [credentials["admin"]["password"], credentials["api_key"]["key"]]
    secrets += [credentials["postgres"]["password"], credentials["reader"]["password"]]
    for secret in secrets:
        assert secret not in result.stdout and secret not in result.stderr

    text = CliRunner().invoke(app, ["demo"])
    assert text.exit_code == 0, text.stderr
    assert "nothing changed" in text.stdout
    assert all(d["url"] in text.stdout for d in summary["dashboards"])
    for secret in secrets:
        assert secret not in text.stdout and secret not in text.stderr


# --- external runtime: an existing Metabase and database ------------------------------------------


@pytest.fixture
def external(fake_metabase, pg_dsn: str, clean_environ: Path) -> Settings:
    return Settings.load({}, home=clean_environ, metabase_url=fake_metabase.url, database_url=pg_dsn)


def test_external_demo_converges_and_fresh_keeps_what_the_tool_did_not_create(
    external: Settings, fake_metabase, pg_dsn: str
) -> None:
    cold = run_demo(
        external, runtime=ExternalRuntime(external), progress=RecordingProgress(), sleep=_short_sleep
    )
    assert cold.changed is True and cold.failed_cards == [] and cold.runtime == "external"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes_of_the_customer (id int)")  # not the tool's

    fake_metabase.clear_requests()
    again = run_demo(
        external, runtime=ExternalRuntime(external), progress=RecordingProgress(), sleep=_short_sleep
    )
    assert again.changed is False
    assert fake_metabase.mutating_requests() == []
    # The request budget of a no-op re-run: beyond health and login (setup state and version, the
    # key check), one metadata read, one list of collections, one GET per dashboard (its questions come
    # with it) and one per model (kept in the collection, on no dashboard).
    login = {"/api/health", "/api/session/properties", "/api/user/current"}
    beyond = [f"{r.method} {r.path}" for r in fake_metabase.requests if r.path not in login]
    assert DEMO_MODELS == 8
    assert len(beyond) <= 2 + len(DEMO_DASHBOARDS) + DEMO_MODELS, beyond

    fresh = run_demo(
        external,
        runtime=ExternalRuntime(external),
        fresh=True,
        progress=RecordingProgress(),
        sleep=_short_sleep,
    )

    assert fresh.failed_cards == []
    # Nothing of the tool's was deleted in Metabase: the same dashboards, updated in place or unchanged.
    assert {d.url for d in fresh.dashboards} == {d.url for d in cold.dashboards}
    assert len([d for d in fake_metabase.dashboards() if not d.get("archived")]) == len(DEMO_DASHBOARDS)
    assert len([d for d in fake_metabase.databases() if not d.get("is_sample")]) == 1
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regclass('notes_of_the_customer')").fetchone() == (
            "notes_of_the_customer",
        )
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (15,)


@pytest.mark.slow
def test_demo_at_scale_in_its_own_schema_answers_every_card(
    external: Settings, fake_metabase, pg_dsn: str
) -> None:
    result = run_demo(
        external,
        runtime=ExternalRuntime(external),
        schema="demo_at_scale",
        scale=2,
        progress=RecordingProgress(),
        sleep=_short_sleep,
    )

    assert result.failed_cards == []
    status = seed_status(pg_dsn)
    assert status is not None and (status.scale, status.schema_name) == (2, "demo_at_scale")
    assert status.counts["accounts"] == 30
    # A re-run without the options keeps both, and changes nothing.
    again = run_demo(
        external, runtime=ExternalRuntime(external), progress=RecordingProgress(), sleep=_short_sleep
    )
    assert again.changed is False


def test_demo_refuses_a_bad_scale_before_anything_starts(clean_environ: Path) -> None:
    outcome = CliRunner().invoke(app, ["demo", "--runtime", "external", "--scale", "0"])
    assert outcome.exit_code == 3
    assert "--scale must be a whole number" in outcome.stderr
    assert not (clean_environ / "credentials.json").exists()
