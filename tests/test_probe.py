"""`provision metabase check`: scratch cards written as apply writes them, read back, run and archived.

Against the fake Metabase with a real PostgreSQL warehouse. A Metabase that changes what it keeps is
played by the fake's `rewrite_answers` hook (only answers change, the fake stays strict); failed writes
by its `inject_fault`. Whatever happens, nothing the probe wrote stays live.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from provisioner import dashboards
from provisioner.cli.app import app
from provisioner.config import Settings
from provisioner.doctor import Check, run_doctor
from provisioner.identity import KEY_SETTING
from provisioner.metabase.client import MetabaseClient
from provisioner.probe import (
    COLLECTION_PREFIX,
    ProbeResult,
    choose_target,
    differences,
    probe_client,
    probe_file,
)
from provisioner.progress import RecordingProgress
from tests.fake_metabase.server import FakeMetabase

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "Fake-Admin-Pass-1"  # the fake's admin (FakeMetabase.admin_session)
NOW = datetime(2026, 11, 20, 9, 30, 0, tzinfo=UTC)
COLLECTION = f"{COLLECTION_PREFIX} 2026-11-20 09:30:00 UTC"
ALL_CHECKS = [
    "collection created",
    "sql card saved",
    "sql card mark",
    "sql card template tags",
    "sql card read back",
    "sql card runs",
    "sql card runs filtered",
    "query card saved",
    "query card mark",
    "query card query",
    "query card read back",
    "query card runs",
    "cleanup",
]
CARD = r"/api/card/\d+"
CARD_QUERY = r"/api/card/\d+/query"
STRIPPED = 'visualization_settings["provisioner.key"]: expected "provisioner-probe/sql", got (missing)'


class Side:
    """A fake Metabase with the small warehouse registered (as "Warehouse"), and a client logged in."""

    def __init__(self, fake: FakeMetabase, dsn: str) -> None:
        self.fake = fake
        self.database_id = fake.add_database(dsn)
        self.client = MetabaseClient(fake.url, sleep=lambda _s: None)
        self.client.use_session(fake.admin_session(ADMIN_EMAIL, ADMIN_PASSWORD))

    def probe(self, **kwargs: Any) -> ProbeResult:
        return probe_client(
            self.client, metabase_url=self.fake.url, version=self.fake.version, now=lambda: NOW, **kwargs
        )

    def field_id(self, table: str, column: str) -> int:
        return self.client.database_metadata(self.database_id).field_id(table, column)

    def live(self) -> list[str]:
        """What the probe wrote that is not archived (every card here is the probe's)."""
        collections = [
            f"collection {c['name']!r}"
            for c in self.fake.collections()
            if c["name"].startswith(COLLECTION_PREFIX) and not c["archived"]
        ]
        return collections + [f"card {c['name']!r}" for c in self.fake.cards() if not c["archived"]]

    def probe_collections(self) -> list[dict[str, Any]]:
        return [c for c in self.fake.collections() if c["name"].startswith(COLLECTION_PREFIX)]


@pytest.fixture
def side(fake_metabase: FakeMetabase, fake_warehouse_dsn: str) -> Side:
    return Side(fake_metabase, fake_warehouse_dsn)


def _by_name(result: ProbeResult) -> dict[str, Any]:
    return {check.name: check for check in result.checks}


def _failed(result: ProbeResult) -> list[str]:
    return [check.name for check in result.failed]


# --- every check passes, and leaves nothing behind ---------------------------------------------


@pytest.mark.parametrize("version", ["v0.61.5", "v0.65.4"])
def test_every_check_passes_and_everything_is_archived(fake_warehouse_dsn: str, version: str) -> None:
    with FakeMetabase(version=version) as fake:
        side = Side(fake, fake_warehouse_dsn)
        progress = RecordingProgress()
        result = side.probe(progress=progress)

        assert [check.name for check in result.checks] == ALL_CHECKS
        assert result.ok, result.describe()
        assert (result.version, result.database, result.table, result.column) == (
            version,
            "Warehouse",
            "public.customers",
            "name",
        )
        # One scratch collection, named for the run, archived with both cards in it.
        (collection,) = side.probe_collections()
        assert collection["name"] == COLLECTION == result.collection
        assert collection["archived"] is True and result.collection_id == collection["id"]
        cards = fake.cards()
        assert [c["id"] for c in cards] == [card.id for card in result.cards] and len(cards) == 2
        assert all(c["archived"] and c["collection_id"] == collection["id"] for c in cards)
        assert side.live() == [] and result.left_live == []
        # Each check is reported as it is made.
        assert "PASS  sql card template tags: the field filter {{probe_filter}} came back" in progress.text


def test_cards_carry_the_mark_a_field_filter_and_a_legacy_query_on_real_fields(side: Side) -> None:
    side.probe()
    bodies = [r.json for r in side.fake.requests if r.method == "POST" and r.path == "/api/card"]
    sql, query = bodies
    name_id = side.field_id("customers", "name")
    assert sql["visualization_settings"][KEY_SETTING] == "provisioner-probe/sql"
    assert query["visualization_settings"][KEY_SETTING] == "provisioner-probe/query"
    tag = sql["dataset_query"]["native"]["template-tags"]["probe_filter"]
    assert (tag["type"], tag["dimension"], tag["widget-type"]) == (
        "dimension",
        ["field", name_id, None],
        "category",
    )
    native_sql = sql["dataset_query"]["native"]["query"]
    assert native_sql == "SELECT count(*) AS n FROM public.customers WHERE {{probe_filter}}"
    inner = query["dataset_query"]["query"]
    assert query["dataset_query"]["type"] == "query"  # legacy MBQL 4, as apply writes it
    assert inner["source-table"] == side.client.database_metadata(side.database_id).table("customers").id
    assert inner["filter"] == ["not-null", ["field", name_id, None]]
    assert inner["aggregation"] == [["count"]]
    assert inner["breakout"] == [["field", name_id, None]]


def test_the_probe_writes_its_cards_exactly_as_apply_writes_the_same_yaml(side: Side, tmp_path: Path) -> None:
    side.probe()
    probe_bodies = [r.json for r in side.fake.requests if r.method == "POST" and r.path == "/api/card"]
    # The probe's two questions as a dashboards file, applied by `dashboards apply`.
    loaded = probe_file(COLLECTION, choose_target(side.client, None))
    document = loaded.spec.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    side.fake.clear_requests()
    settings = Settings.load({}, cwd=tmp_path, metabase_url=side.fake.url)
    applied = dashboards.apply(settings, [tmp_path / "probe.yaml"], client=side.client, environ={})
    assert applied.ok, applied.describe()
    apply_bodies = [r.json for r in side.fake.requests if r.method == "POST" and r.path == "/api/card"]

    def without_collection(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # sorted by name: apply sends the two together, in either order
        kept = [{k: v for k, v in body.items() if k != "collection_id"} for body in bodies]
        return sorted(kept, key=lambda body: body["name"])

    assert len(apply_bodies) == 2
    assert without_collection(probe_bodies) == without_collection(apply_bodies)


# --- a Metabase that changes what it keeps -----------------------------------------------------


def _strip_mark(card: dict[str, Any]) -> None:
    card["visualization_settings"].pop(KEY_SETTING, None)


def _native_stage(card: dict[str, Any]) -> dict[str, Any] | None:
    stage = card["dataset_query"]["stages"][0]
    return stage if stage["lib/type"] == "mbql.stage/native" else None


def _rewrite_tag(field_id: int) -> Callable[[dict[str, Any]], None]:
    """Both places the tool may read a tag from: `legacy_query` (first) and the MBQL 5 stage."""

    def rewrite(card: dict[str, Any]) -> None:
        stage = _native_stage(card)
        if stage is None:
            return
        legacy = json.loads(card["legacy_query"])
        legacy_tag = legacy["native"]["template-tags"]["probe_filter"]
        stage_tag = stage["template-tags"]["probe_filter"]
        legacy_tag["widget-type"] = stage_tag["widget-type"] = "string/="
        legacy_tag["dimension"] = ["field", field_id, None]
        stage_tag["dimension"][2] = field_id
        card["legacy_query"] = json.dumps(legacy)

    return rewrite


def _rewrite_query(field_id: int) -> Callable[[dict[str, Any]], None]:
    """The query-builder card's filter dropped and its grouping moved to another column."""

    def rewrite(card: dict[str, Any]) -> None:
        stage = card["dataset_query"]["stages"][0]
        if stage["lib/type"] != "mbql.stage/mbql":
            return
        stage.pop("filters")
        stage["breakout"][0][2] = field_id

    return rewrite


def test_a_stripped_mark_fails_naming_the_setting_it_is_read_from(side: Side) -> None:
    side.fake.rewrite_answers("GET", CARD, _strip_mark)
    result = side.probe()
    assert _failed(result) == ["sql card mark", "query card mark"]
    mark = _by_name(result)["sql card mark"]
    assert [d.model_dump() for d in mark.differences] == [
        {
            "path": 'visualization_settings["provisioner.key"]',
            "expected": "provisioner-probe/sql",
            "got": None,
            "missing": "got",
        }
    ]
    assert "do not apply to this Metabase" in (mark.hint or "")
    assert _by_name(result)["cleanup"].ok and side.live() == []


def test_a_rewritten_template_tag_fails_naming_each_field_changed(side: Side) -> None:
    name_id, email_id = side.field_id("customers", "name"), side.field_id("customers", "email")
    side.fake.rewrite_answers("GET", CARD, _rewrite_tag(email_id))
    result = side.probe()
    assert _failed(result) == ["sql card template tags"]
    described = [d.describe() for d in _by_name(result)["sql card template tags"].differences]
    assert described == [
        f"template-tags.probe_filter.field: expected {name_id}, got {email_id}",
        'template-tags.probe_filter.widget-type: expected "category", got "string/="',
    ]
    assert side.live() == []


def test_a_changed_query_fails_naming_the_clauses_in_the_tools_normal_form(side: Side) -> None:
    side.fake.rewrite_answers("GET", CARD, _rewrite_query(side.field_id("customers", "email")))
    result = side.probe()
    assert _failed(result) == ["query card query"]
    check = _by_name(result)["query card query"]
    assert "query.filter" in check.detail and "query.group_by" in check.detail
    by_path = {d.path: d for d in check.differences}
    assert by_path["query.stages[0].filters"].missing == "got"
    not_null = ["not-null", {}, ["field", {}, ["customers", "name"]]]
    assert by_path["query.stages[0].filters"].expected == [not_null]
    moved = by_path["query.stages[0].breakout[0][2][1]"]
    assert (moved.expected, moved.got) == ("name", "email")
    assert side.live() == []


def test_another_changed_field_fails_the_read_back_naming_it(side: Side) -> None:
    def as_table(card: dict[str, Any]) -> None:
        card["display"] = "table"
        card["visualization_settings"].pop("scalar.field", None)

    side.fake.rewrite_answers("GET", CARD, as_table)
    result = side.probe()
    assert _failed(result) == ["sql card read back", "query card read back"]
    described = [d.describe() for d in _by_name(result)["sql card read back"].differences]
    assert described == [
        'display: expected "scalar", got "table"',
        'visualization_settings["scalar.field"]: expected "n", got (missing)',
    ]


def test_a_card_that_does_not_run_fails_with_metabases_error(side: Side) -> None:
    def failed(answer: dict[str, Any]) -> None:
        answer.update(status="failed", error="ERROR: permission denied for table customers\nmore")

    side.fake.rewrite_answers("POST", CARD_QUERY, failed)
    result = side.probe()
    assert _failed(result) == ["sql card runs", "sql card runs filtered", "query card runs"]
    assert _by_name(result)["query card runs"].detail == (
        "Metabase could not run the card: ERROR: permission denied for table customers"
    )
    assert side.live() == []


def test_a_field_filter_that_does_not_filter_fails(side: Side) -> None:
    def unfiltered(answer: dict[str, Any]) -> None:
        answer["data"]["rows"] = [[2]]

    side.fake.rewrite_answers("POST", CARD_QUERY, unfiltered)
    result = side.probe()
    assert _failed(result) == ["sql card runs filtered"]
    (difference,) = _by_name(result)["sql card runs filtered"].differences
    assert difference.describe() == "data.rows[0][0]: expected 0, got 2"


# --- failed writes: reported, and nothing left live --------------------------------------------


def test_a_refused_collection_fails_before_any_card_and_leaves_nothing(side: Side) -> None:
    side.fake.inject_fault(1, "500")  # POST /api/collection
    result = side.probe()
    assert [(c.name, c.ok) for c in result.checks] == [("collection created", False), ("cleanup", True)]
    assert "HTTP 500" in result.checks[0].detail
    assert side.probe_collections() == [] and side.fake.cards() == []


@pytest.mark.parametrize("kind", ["500", "drop", "drop-after-commit"])
def test_a_failed_card_write_is_reported_and_nothing_stays_live(side: Side, kind: str) -> None:
    side.fake.inject_fault(2, kind)  # the SQL card's POST /api/card (the collection's is the first)
    result = side.probe()
    assert not result.ok
    assert result.failed[0].name == "sql card saved"
    if kind == "500":  # Metabase answered: the other card is still probed
        assert _failed(result) == ["sql card saved"]
        assert _by_name(result)["query card runs"].ok
    else:  # the connection broke: nothing more is tried but the cleanup
        assert [c.name for c in result.checks] == ["collection created", "sql card saved", "cleanup"]
    assert _by_name(result)["cleanup"].ok
    # 500: only the query card was made. drop: none. drop-after-commit: the SQL card exists though its
    # answer was lost (no id known): it is archived with its collection.
    assert len(side.fake.cards()) == {"500": 1, "drop": 0, "drop-after-commit": 1}[kind]
    assert side.probe_collections()[0]["archived"] is True
    assert side.live() == []


def test_a_failed_cleanup_names_what_is_left_live_and_where(side: Side) -> None:
    # Writes: collection, SQL card, its two runs, query card, its run, archive x2, then the collection's.
    side.fake.inject_fault(9, "500")
    result = side.probe()
    assert _failed(result) == ["cleanup"]
    cleanup = _by_name(result)["cleanup"]
    assert result.left_live == [f"collection {COLLECTION!r} (id {result.collection_id})"]
    assert cleanup.detail.startswith(f"could not archive collection {COLLECTION!r}")
    where = f"{side.fake.url}/collection/{result.collection_id}"
    assert cleanup.hint == f"archive them by hand (move to Trash): {where}"
    # The cards themselves were archived one by one.
    assert side.live() == [f"collection {COLLECTION!r}"]


def test_no_database_to_read_is_refused_before_any_write(fake_metabase: FakeMetabase) -> None:
    client = MetabaseClient(fake_metabase.url, sleep=lambda _s: None)
    client.use_session(fake_metabase.admin_session())
    from provisioner.errors import ConfigError, MetabaseNotFound

    with pytest.raises(MetabaseNotFound, match="no database besides the Sample Database"):
        probe_client(client, metabase_url=fake_metabase.url, version="v0.65.4")
    with pytest.raises(ConfigError, match="no database named 'Nope'"):
        probe_client(client, metabase_url=fake_metabase.url, version="v0.65.4", database="Nope")
    assert fake_metabase.mutating_requests() == []


def test_differences_name_paths_of_dicts_lists_and_missing_keys() -> None:
    found = differences("x", {"a": [1, 2], "b": {"c": 1}, "d.e": 1}, {"a": [1, 3], "b": {}, "f": 2, "d.e": 1})
    assert [d.describe() for d in found] == [
        "x.a[1]: expected 2, got 3",
        "x.b.c: expected 1, got (missing)",
        "x.f: expected (missing), got 2",
    ]
    assert differences("x", [1], [1, 2])[0].describe() == "x: expected [1], got [1, 2]"


# --- the command and doctor ---------------------------------------------------------------------


@pytest.fixture
def cli_env(side: Side, monkeypatch: pytest.MonkeyPatch) -> Side:
    monkeypatch.setenv("METABASE_URL", side.fake.url)
    monkeypatch.setenv("METABASE_ADMIN_EMAIL", ADMIN_EMAIL)
    monkeypatch.setenv("METABASE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    return side


def test_check_json_prints_every_check_and_exits_0(cli_env: Side) -> None:
    result = CliRunner().invoke(app, ["metabase", "check", "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    assert [c["name"] for c in payload["checks"]] == ALL_CHECKS
    assert all(c["ok"] for c in payload["checks"])
    assert payload["database"] == "Warehouse" and payload["left_live"] == []
    assert [card["key"] for card in payload["cards"]] == ["provisioner-probe/sql", "provisioner-probe/query"]
    assert "PASS  query card query" in result.stderr  # progress on stderr
    # No key was created by a check, and no secret is printed.
    assert cli_env.fake.state.api_keys == {}
    assert ADMIN_PASSWORD not in result.stdout + result.stderr
    assert cli_env.live() == []


def test_check_text_lists_each_check(cli_env: Side) -> None:
    result = CliRunner().invoke(app, ["metabase", "check"])
    assert result.exit_code == 0, result.stderr
    assert "PASS  sql card mark: the identity mark 'provisioner-probe/sql' came back" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("All checks passed: all 13 checks passed")


def test_check_that_fails_exits_4_with_the_checks_in_json_and_the_difference_on_stderr(cli_env: Side) -> None:
    cli_env.fake.rewrite_answers("GET", CARD, _strip_mark)
    result = CliRunner().invoke(app, ["metabase", "check", "--json"])
    assert result.exit_code == 4
    payload = json.loads(result.stdout)  # one JSON document
    assert payload["ok"] is False and payload["error"] == "probe" and payload["exit_code"] == 4
    assert [c["name"] for c in payload["checks"] if not c["ok"]] == ["sql card mark", "query card mark"]
    assert payload["left_live"] == []
    assert "error: this Metabase (v0.65.4) changed, refused or could not run what the tool writes" in (
        result.stderr
    )
    assert STRIPPED in result.stderr
    assert "hint: do not apply to this Metabase" in result.stderr
    assert "Traceback" not in result.stderr and ADMIN_PASSWORD not in result.stdout + result.stderr
    assert cli_env.live() == []


def test_check_of_an_unknown_database_exits_3_and_writes_nothing(cli_env: Side) -> None:
    result = CliRunner().invoke(app, ["metabase", "check", "--database", "Nope"])
    assert result.exit_code == 3
    assert "error: Metabase has no database named 'Nope'" in result.stderr
    assert "hint: name one of Metabase's databases with --database: 'Sample Database', 'Warehouse'" in (
        result.stderr
    )
    assert result.stdout == ""
    assert [r.path for r in cli_env.fake.mutating_requests()] == ["/api/session"]


@pytest.fixture
def doctor_settings(side: Side, clean_environ: Path) -> Iterator[Settings]:
    yield Settings.load(
        {"METABASE_ADMIN_EMAIL": ADMIN_EMAIL, "METABASE_ADMIN_PASSWORD": ADMIN_PASSWORD},
        home=clean_environ,
        metabase_url=side.fake.url,
    )


def _doctor(settings: Settings, **kwargs: Any) -> dict[str, Check]:
    usage = type("Usage", (), {"free": 400 * 2**30})()
    checks = run_doctor(settings, runtime_choice="external", disk_usage=lambda _: usage, **kwargs)
    return {check.name: check for check in checks}


def test_doctor_runs_the_check_when_it_can_log_in(side: Side, doctor_settings: Settings) -> None:
    checks = _doctor(doctor_settings)
    assert checks["credentials"].ok
    assert list(checks)[-1] == "metabase check"
    assert checks["metabase check"].ok
    assert checks["metabase check"].detail.startswith("all 13 checks passed (Metabase v0.65.4, database")
    assert side.live() == [] and len(side.probe_collections()) == 1


def test_doctor_shows_the_first_failed_check_and_how_to_see_them_all(
    side: Side, doctor_settings: Settings
) -> None:
    side.fake.rewrite_answers("GET", CARD, _strip_mark)
    check = _doctor(doctor_settings)["metabase check"]
    assert not check.ok
    assert check.detail.startswith("2 of 13 checks failed: sql card mark, query card mark")
    assert STRIPPED in check.detail
    assert (check.hint or "").endswith("`provision metabase check` shows every check")


def test_doctor_without_the_probe_writes_nothing(side: Side, doctor_settings: Settings) -> None:
    checks = _doctor(doctor_settings, probe=False)
    assert checks["credentials"].ok and "metabase check" not in checks
    assert side.probe_collections() == []


def test_doctor_command_with_no_probe_only_reads(side: Side, clean_environ: Path) -> None:
    env = {
        "METABASE_ADMIN_EMAIL": ADMIN_EMAIL,
        "METABASE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PROVISION_HOME": str(clean_environ),
    }
    args = ["doctor", "--runtime", "external", "--metabase-url", side.fake.url, "--json"]
    side.fake.clear_requests()
    result = CliRunner().invoke(app, [*args, "--no-probe"], env=env)
    names = [check["name"] for check in json.loads(result.stdout)["checks"]]
    assert "credentials" in names and "metabase check" not in names
    assert {r.path for r in side.fake.mutating_requests()} == {"/api/session"}  # logins, nothing else
    assert side.probe_collections() == []

    probed = CliRunner().invoke(app, args, env=env)  # without the flag, doctor runs the check
    assert "metabase check" in [check["name"] for check in json.loads(probed.stdout)["checks"]]
    assert len(side.probe_collections()) == 1


def test_doctor_skips_the_check_when_it_cannot_log_in(side: Side, clean_environ: Path) -> None:
    settings = Settings.load({}, home=clean_environ, metabase_url=side.fake.url)  # no credentials
    checks = _doctor(settings)
    assert not checks["credentials"].ok and "metabase check" not in checks
