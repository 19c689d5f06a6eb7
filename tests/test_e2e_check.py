"""scripts/e2e_check.py against the fake Metabase: dashboards found or missing, every card's query run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import requests

from tests.fake_metabase.server import FakeMetabase

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "e2e_check.py"


@pytest.fixture(scope="module")
def e2e_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("e2e_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["e2e_check"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


class Admin:
    """Drives the fake through its HTTP API, as the provisioning would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        token = self.http.get(f"{url}/api/session/properties").json()["setup-token"]
        session = self.call(
            "POST",
            "/api/setup",
            {
                "token": token,
                "user": {"email": "ada@example.com", "password": "Str0ng-enough-pass", "first_name": "Ada"},
                "prefs": {"site_name": "E2E"},
            },
        )["id"]
        self.http.headers["X-Metabase-Session"] = session
        self.api_key = self.call("POST", "/api/api-key", {"name": "e2e", "group_id": 2})["unmasked_key"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, f"{self.url}{path}", json=body, timeout=10)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def dashboard(self, name: str, database_id: int, queries: dict[str, str]) -> int:
        collection = self.call("POST", "/api/collection", {"name": f"{name} collection"})["id"]
        dashboard = self.call("POST", "/api/dashboard", {"name": name, "collection_id": collection})["id"]
        dashcards = []
        for index, (card_name, sql) in enumerate(queries.items()):
            card = self.call(
                "POST",
                "/api/card",
                {
                    "name": card_name,
                    "display": "table",
                    "visualization_settings": {},
                    "collection_id": collection,
                    "dataset_query": {"type": "native", "database": database_id, "native": {"query": sql}},
                },
            )
            dashcards.append(
                {
                    "id": -1 - index,
                    "card_id": card["id"],
                    "row": index * 4,
                    "col": 0,
                    "size_x": 6,
                    "size_y": 4,
                }
            )
        self.call("PUT", f"/api/dashboard/{dashboard}", {"dashcards": dashcards})
        return dashboard


@pytest.fixture
def demo(pg_dsn: str) -> Any:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int, status text)")
        conn.execute("INSERT INTO accounts VALUES (1, 'healthy'), (2, 'delinquent')")
    parts = urlsplit(pg_dsn)
    with FakeMetabase() as fake:
        admin = Admin(fake.url)
        database = admin.call(
            "POST",
            "/api/database",
            {
                "engine": "postgres",
                "name": "Asset Finance Demo",
                "details": {
                    "host": parts.hostname,
                    "port": parts.port,
                    "dbname": parts.path.lstrip("/"),
                    "user": parts.username,
                    "password": parts.password,
                },
            },
        )["id"]
        yield fake, admin, database


def test_all_dashboards_present_and_queries_completed_passes(e2e_check: ModuleType, demo: Any) -> None:
    fake, admin, database = demo
    admin.dashboard(
        "Portfolio",
        database,
        {"Accounts": "select * from accounts", "Count": "select count(*) from accounts"},
    )
    admin.dashboard("Risk", database, {"Delinquent": "select id from accounts where status = 'delinquent'"})

    report = e2e_check.check_demo(fake.url, admin.api_key, ["Portfolio", "Risk"], "v0.65.4.x")

    assert report.ok, e2e_check.render(report)
    assert report.version == "v0.65.4"
    assert report.dashboards_found == ["Portfolio", "Risk"]
    assert [(c.card, c.status, c.row_count) for c in report.cards] == [
        ("Accounts", "completed", 2),
        ("Count", "completed", 1),
        ("Delinquent", "completed", 1),
    ]


def test_failing_query_and_missing_dashboard_fail_the_check(e2e_check: ModuleType, demo: Any) -> None:
    fake, admin, database = demo
    admin.dashboard("Portfolio", database, {"Broken": "select * from no_such_table"})

    report = e2e_check.check_demo(fake.url, admin.api_key, ["Portfolio", "Risk"])

    assert not report.ok
    assert report.dashboards_missing == ["Risk"]
    assert report.cards[0].status == "failed" and "no_such_table" in (report.cards[0].error or "")
    text = e2e_check.render(report)
    assert "dashboard MISSING: Risk" in text and "card FAILED: Portfolio / Broken" in text
    assert text.endswith("E2E CHECK FAILED")


def test_wrong_version_is_a_problem(e2e_check: ModuleType, demo: Any) -> None:
    fake, admin, database = demo
    admin.dashboard("Portfolio", database, {"Accounts": "select 1"})
    report = e2e_check.check_demo(fake.url, admin.api_key, ["Portfolio"], "v0.61.x")
    assert not report.ok and "reports version v0.65.4, expected v0.61.x" in report.problems[0]


@pytest.mark.parametrize(
    ("version", "tag", "matches"),
    [
        ("v0.65.4", "v0.65.x", True),
        ("v0.65.4.2", "v0.65.x", True),
        ("v0.65", "v0.65.x", True),
        ("v0.65.4", "v0.65.4.x", True),
        ("v0.65.4", "v0.65.3.x", False),
        ("v0.651.0", "v0.65.x", False),
        ("v0.64.6", "v0.65.x", False),
        (None, "v0.65.x", False),
    ],
)
def test_a_minor_tag_accepts_any_patch_of_its_minor_only(
    e2e_check: ModuleType, version: str | None, tag: str, matches: bool
) -> None:
    assert e2e_check.version_matches(version, tag) is matches


def test_print_version_prints_the_exact_version_that_runs(
    e2e_check: ModuleType, demo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, admin, _ = demo
    fake.set_version("v0.63.2")
    code = e2e_check.main(["--metabase-url", fake.url, "--api-key", admin.api_key, "--print-version"])
    assert (code, capsys.readouterr().out) == (0, "v0.63.2\n")


def test_main_reads_the_stored_api_key_and_exits_by_outcome(
    e2e_check: ModuleType,
    demo: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, admin, database = demo
    admin.dashboard("Portfolio", database, {"Accounts": "select 1"})
    home = tmp_path / "home"
    home.mkdir()
    (home / "credentials.json").write_text(
        json.dumps({"api_key": {"metabase_url": fake.url, "key": admin.api_key, "name": "e2e"}})
    )
    folder = tmp_path / "dashboards"
    folder.mkdir()
    monkeypatch.setattr(e2e_check, "expected_dashboards", lambda _: ["Portfolio"])

    assert e2e_check.main(["--home", str(home), "--dashboards", str(folder), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True and payload["dashboards_found"] == ["Portfolio"]
    assert admin.api_key not in json.dumps(payload)


def test_expected_dashboards_come_from_the_yaml(e2e_check: ModuleType) -> None:
    folder = SCRIPT.parent.parent / "dashboards"
    names = e2e_check.expected_dashboards(folder)
    assert len(names) == len([p for p in folder.glob("*.yaml") if "\ncards:" in p.read_text()]) >= 1
    assert all(isinstance(n, str) and n for n in names)
