"""A demo remembers how it runs: the commands after it, in the same folder, need no flags or environment.

The record is `.provision/demo.json` (runtime, Metabase URL, jar or command, dashboard paths; no secret)
plus the database URL in credentials.json (mode 0600). A flag or an environment variable still wins; a
different --runtime ignores the record.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.runtime.postgres import free_port
from provisioner.state import write_private
from tests.fake_metabase.server import FakeMetabase

REPO = Path(__file__).resolve().parent.parent
FAKE_COMMAND = (
    f"{shlex.quote(sys.executable)} -m tests.fake_metabase --port {{port}} "
    "--state-file {state_dir}/fake-state.json"
)


@pytest.fixture
def fake() -> Iterator[FakeMetabase]:
    # Synced at once: the CLI's own sync poll would otherwise wait its production interval.
    with FakeMetabase(sync_polls=0) as server:
        yield server


def _invoke(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.stdout, result.stderr
    return result.exit_code, json.loads(result.stdout)


def test_after_an_external_demo_every_command_finds_it_without_flags_even_from_a_subfolder(
    fake: FakeMetabase, pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROVISION_HOME")  # the default, ./.provision, found again from below
    code, demo = _invoke(
        "demo", "--runtime", "external", "--metabase-url", fake.url, "--database-url", pg_dsn
    )
    assert code == 0, demo
    state = tmp_path / ".provision"

    record = json.loads((state / "demo.json").read_text())
    assert record["runtime"] == "external" and record["metabase_url"] == fake.url
    password = pg_dsn.split(":")[2].split("@")[0]
    assert password not in (state / "demo.json").read_text()
    credentials = state / "credentials.json"
    assert json.loads(credentials.read_text())["demo_database"]["url"] == pg_dsn
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600

    below = tmp_path / "notes" / "deeper"
    below.mkdir(parents=True)
    os.chdir(below)
    code, status = _invoke("status")
    assert code == 0 and status["runtime"]["runtime"] == "external" and status["dashboards"]["in_sync"]
    code, doctor = _invoke("doctor")
    assert code == 0, [c for c in doctor["checks"] if not c["ok"]]
    code, url = _invoke("db", "url")
    assert code == 0 and url["url"] == pg_dsn
    code, plan = _invoke("dashboards", "plan")
    assert code == 0 and plan["has_changes"] is False and len(plan["actions"]) > 5
    code, applied = _invoke("dashboards", "apply")
    assert code == 0 and {o["action"] for o in applied["objects"]} == {"unchanged"}
    code, exported = _invoke("dashboards", "export", "Locations", "--out", str(tmp_path / "out"))
    assert code == 0 and len(exported["files"]) == 1
    code, again = _invoke("reset")
    assert code == 0 and again["runtime"] == "external" and again["failed_cards"] == []
    code, down = _invoke("down")
    assert code == 0 and down["runtime"] == "external" and down["data_deleted"] is False
    assert not (below / ".provision").exists()


def test_a_flag_the_environment_or_another_runtime_wins_over_the_record(
    fake: FakeMetabase, pg_dsn: str, clean_environ: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _ = _invoke("demo", "--runtime", "external", "--metabase-url", fake.url, "--database-url", pg_dsn)
    assert code == 0
    elsewhere = f"http://127.0.0.1:{free_port()}"

    code, by_flag = _invoke("dashboards", "plan", "--metabase-url", elsewhere)
    assert code == 4 and elsewhere in by_flag["message"]
    # Neither the external database nor its Metabase leaks into the local runtime's status.
    code, status = _invoke("status", "--runtime", "local")
    assert code == 1 and status["runtime"]["runtime"] == "local"
    assert status["metabase"]["url"] != fake.url and status["database"]["reachable"] is False
    monkeypatch.setenv("METABASE_URL", elsewhere)
    code, by_env = _invoke("dashboards", "plan")
    assert code == 4 and elsewhere in by_env["message"]


@pytest.fixture
def local_environment(clean_environ: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the fake runs from the checkout
    write_private(clean_environ / "run" / "metabase.port", f"{free_port()}\n")
    try:
        yield clean_environ
    finally:
        CliRunner().invoke(app, ["down", "--volumes"])


def test_up_with_a_metabase_command_then_plain_demo_status_and_doctor(local_environment: Path) -> None:
    code, up = _invoke("up", "--runtime", "local", "--metabase-command", FAKE_COMMAND)
    assert code == 0, up
    # `up` ends with "Next: `provision demo`": that demo needs no flags.
    code, demo = _invoke("demo")
    assert code == 0 and demo["runtime"] == "local", demo
    code, status = _invoke("status")
    assert code == 0 and status["ok"] is True
    # doctor under a Metabase command: no jar is asked for, every check passes.
    code, doctor = _invoke("doctor")
    assert code == 0, [c for c in doctor["checks"] if not c["ok"]]
    program = next(c for c in doctor["checks"] if c["name"] == "metabase jar")
    assert "command" in program["detail"]
    code, plan = _invoke("dashboards", "plan")
    assert code == 0 and plan["has_changes"] is False
