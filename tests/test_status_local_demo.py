"""A whole demo on the local runtime (embedded PostgreSQL, the fake Metabase as a process): `up`, `demo`,
then `status` and `doctor` all green, dashboard drift detected, `down --volumes` removes it."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.runtime.postgres import free_port
from provisioner.state import write_private

REPO = Path(__file__).resolve().parent.parent
PYTHON = shlex.quote(sys.executable)
FAKE_COMMAND = f"{PYTHON} -m tests.fake_metabase --port {{port}} --state-file {{state_dir}}/fake-state.json"


@pytest.fixture
def local_demo(clean_environ: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The environment of a local-runtime demo; everything it started is removed afterwards."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("PROVISION_RUNTIME", "local")
    monkeypatch.setenv("METABASE_COMMAND", FAKE_COMMAND)
    # A remembered ephemeral port, not the default 3000 that concurrent test runs would race for.
    write_private(clean_environ / "run" / "metabase.port", f"{free_port()}\n")
    try:
        yield clean_environ
    finally:
        CliRunner().invoke(app, ["down", "--volumes"])


def _json(args: list[str]) -> tuple[int, dict]:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.stdout, result.stderr
    return result.exit_code, json.loads(result.stdout)


def test_demo_then_status_and_doctor_are_green_and_down_removes_it(local_demo: Path) -> None:
    code, up = _json(["up"])
    assert (
        code == 0 and up["warehouse"] is None
    )  # the embedded warehouse: resolved by provisioner.runtime.warehouse
    code, before = _json(["status"])
    assert code == 1 and before["database"]["seeded"] is False

    code, demo = _json(["demo"])
    assert code == 0, demo

    code, status = _json(["status"])
    assert code == 0, status
    assert status["ok"] is True
    assert {s["name"]: s["state"] for s in status["runtime"]["services"]} == {
        "warehouse": "running",
        "metabase": "running",
    }
    assert status["metabase"]["version"] == "v0.65.4"
    assert status["database"]["seeded"] is True and status["database"]["sync_status"] == "complete"
    assert status["dashboards"] == {
        "in_sync": True,
        "changes": 0,
        "detail": "Metabase matches the YAML",
        "hint": None,
    }

    code, doctor = _json(["doctor"])
    failed = [c for c in doctor["checks"] if not c["ok"]]
    assert code == 0 and failed == []
    names = [c["name"] for c in doctor["checks"]]
    assert names == [
        "runtime",
        "metabase jar",
        "disk space",
        "ports",
        "metabase",
        "database",
        "credentials",
        "dashboards",
        "metabase check",
    ]
    credentials = next(c for c in doctor["checks"] if c["name"] == "credentials")
    assert "<redacted> (length " in credentials["detail"]

    # Someone renames a dashboard in Metabase: status and doctor see the drift.
    url = status["metabase"]["url"]
    key = json.loads((local_demo / "credentials.json").read_text())["api_key"]["key"]
    headers = {"X-API-Key": key}
    dashboard_id = int(demo["dashboards"][0]["url"].rstrip("/").rsplit("/", 1)[1].split("-")[0])
    renamed = requests.put(
        f"{url}/api/dashboard/{dashboard_id}", json={"name": "Edited by hand"}, headers=headers, timeout=10
    )
    assert renamed.status_code == 200
    code, drifted = _json(["status"])
    assert code == 1 and drifted["dashboards"]["in_sync"] is False and drifted["dashboards"]["changes"] >= 1
    code, doctor = _json(["doctor"])
    assert code == 1
    assert [c["name"] for c in doctor["checks"] if not c["ok"]] == ["dashboards"]

    code, down = _json(["down", "--volumes"])
    assert code == 0 and down["data_deleted"] is True
    assert not (local_demo / "postgres").exists()
    code, after = _json(["status"])
    assert code == 1
    assert {s["name"]: s["state"] for s in after["runtime"]["services"]} == {
        "warehouse": "stopped",
        "metabase": "stopped",
    }
