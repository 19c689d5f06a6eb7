"""The fake Metabase's test hooks: recorded requests, injected faults, state persistence, process mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fake_metabase import FakeMetabase
from tests.fake_metabase.fixtures import admin_http

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "Fake-Admin-Pass-1"


def test_requests_are_recorded_with_query_body_and_headers(fake_metabase: FakeMetabase) -> None:
    session = admin_http(fake_metabase)
    session.get(
        f"{fake_metabase.url}/api/collection/root/items", params=[("models", "card"), ("models", "dashboard")]
    )
    session.post(f"{fake_metabase.url}/api/collection", json={"name": "Team"})
    get, post = fake_metabase.requests[-2:]
    assert (get.method, get.path, get.query, get.json) == (
        "GET",
        "/api/collection/root/items",
        {"models": ["card", "dashboard"]},
        None,
    )
    assert (post.method, post.path, post.json) == ("POST", "/api/collection", {"name": "Team"})
    assert "x-metabase-session" in post.headers
    assert [r.path for r in fake_metabase.mutating_requests()] == ["/api/collection"]
    fake_metabase.clear_requests()
    assert fake_metabase.requests == []


def test_injected_500_answers_an_error_and_applies_nothing(fake_metabase: FakeMetabase) -> None:
    session = admin_http(fake_metabase)
    url = f"{fake_metabase.url}/api/collection"
    fake_metabase.inject_fault(at_mutation=2, kind="500")
    assert session.post(url, json={"name": "First"}).status_code == 200
    failed = session.post(url, json={"name": "Second"})
    assert failed.status_code == 500 and "message" in failed.json()
    assert session.post(url, json={"name": "Third"}).status_code == 200
    assert [
        c["name"] for c in fake_metabase.collections() if not c["personal_owner_id"] and c["type"] is None
    ] == [
        "First",
        "Third",
    ]


def test_injected_drop_closes_the_connection_without_applying(fake_metabase: FakeMetabase) -> None:
    session = admin_http(fake_metabase)
    fake_metabase.inject_fault(at_mutation=1, kind="drop")
    with pytest.raises(requests.ConnectionError):
        session.post(f"{fake_metabase.url}/api/dashboard", json={"name": "Lost"})
    assert fake_metabase.dashboards() == []
    assert session.post(f"{fake_metabase.url}/api/dashboard", json={"name": "Kept"}).status_code == 200
    assert [d["name"] for d in fake_metabase.dashboards()] == ["Kept"]


def test_inject_fault_rejects_nonsense() -> None:
    fake = FakeMetabase()
    with pytest.raises(ValueError):
        fake.inject_fault(at_mutation=0, kind="500")
    with pytest.raises(ValueError):
        fake.inject_fault(at_mutation=1, kind="timeout")  # type: ignore[arg-type]


def test_failed_request_rolls_back_partial_changes(fake_metabase: FakeMetabase) -> None:
    session = admin_http(fake_metabase)
    url = fake_metabase.url
    board = session.post(f"{url}/api/dashboard", json={"name": "Board"}).json()
    # The tab list is valid and applied first; the dashcard's missing card then fails the whole request.
    card = {"id": -1, "card_id": 999, "dashboard_tab_id": -1, "row": 0, "col": 0, "size_x": 1, "size_y": 1}
    body = {"tabs": [{"id": -1, "name": "T"}], "dashcards": [card]}
    assert session.put(f"{url}/api/dashboard/{board['id']}", json=body).status_code == 404
    assert session.get(f"{url}/api/dashboard/{board['id']}").json()["tabs"] == []


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "fake-state.json"
    with FakeMetabase(state_file=state_file) as first:
        token = requests.get(f"{first.url}/api/session/properties").json()["setup-token"]
        session = admin_http(first)
        session.post(f"{first.url}/api/collection", json={"name": "Kept"})
    assert state_file.exists()
    with FakeMetabase(state_file=state_file) as second:
        props = requests.get(f"{second.url}/api/session/properties").json()
        assert props["has-user-setup"] is True and props["setup-token"] == token
        login = requests.post(
            f"{second.url}/api/session", json={"username": "admin@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200
        headers = {"X-Metabase-Session": login.json()["id"]}
        names = [c["name"] for c in requests.get(f"{second.url}/api/collection", headers=headers).json()]
        assert "Kept" in names


@pytest.fixture
def fake_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    state_file = tmp_path / "state.json"
    process, url = _spawn(state_file)
    try:
        yield process, url, state_file
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _spawn(state_file: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_metabase", "--port", "0", "--state-file", str(state_file),
         "--version", "v0.64.6"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line.rsplit(" ", 1)[-1].strip()


def test_process_mode_keeps_data_across_a_kill(fake_process: tuple[subprocess.Popen[str], str, Path]) -> None:
    process, url, state_file = fake_process
    props = requests.get(f"{url}/api/session/properties").json()
    assert props["version"]["tag"] == "v0.64.6"
    setup = {
        "token": props["setup-token"],
        "user": {"email": "admin@example.com", "password": PASSWORD, "first_name": "Ada"},
        "prefs": {"site_name": "ACME"},
    }
    session_id = requests.post(f"{url}/api/setup", json=setup).json()["id"]
    headers = {"X-Metabase-Session": session_id}
    assert (
        requests.post(f"{url}/api/collection", json={"name": "Durable"}, headers=headers).status_code == 200
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    restarted, new_url = _spawn(state_file)
    try:
        assert requests.get(f"{new_url}/api/session/properties").json()["has-user-setup"] is True
        # Sessions live in the application DB too, as in Metabase.
        listed = requests.get(f"{new_url}/api/collection", headers=headers).json()
        assert "Durable" in [c["name"] for c in listed]
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=10) == 0


def test_process_mode_prints_no_secrets(fake_process: tuple[subprocess.Popen[str], str, Path]) -> None:
    process, url, _ = fake_process
    token = requests.get(f"{url}/api/session/properties").json()["setup-token"]
    setup = {
        "token": token,
        "user": {"email": "a@example.com", "password": PASSWORD},
        "prefs": {"site_name": "S"},
    }
    session_id = requests.post(f"{url}/api/setup", json=setup).json()["id"]
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    # The only line, the URL, was read at start; requests add nothing to the console.
    assert output == ""
    assert token not in url and session_id not in url
