"""plan / apply / prune / export against the fake Metabase, on a real PostgreSQL warehouse."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import responses
from typer.testing import CliRunner

from provisioner import dashboards
from provisioner.apply import execute
from provisioner.cli.app import app
from provisioner.compare import Reader
from provisioner.config import Settings
from provisioner.desired import DesiredCard
from provisioner.errors import ConfigError, MetabaseError, SpecErrors
from provisioner.id_cache import IdCache
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import (
    CardCreate,
    CardUpdate,
    DashboardCreate,
    DashboardUpdate,
    NativeDatasetQuery,
    NativeQuery,
)
from provisioner.plan import Action, Plan
from provisioner.progress import RecordingProgress
from tests.fake_metabase.server import FakeMetabase, new_state

SALES = """\
key: sales
name: Sales
collection: Demo/Sales
description: Sales by region.
filters:
  - {key: region, name: Region, type: category}
  - {key: min_amount, name: Minimum amount, type: number, default: 0}
tabs: [Overview, Detail]
cards:
  - heading: Sales at a glance
    at: {tab: Overview, row: 0, col: 0, width: 24, height: 1}
  - key: total
    name: Total sales
    display: scalar
    sql: SELECT sum(amount) AS total FROM sales WHERE amount >= {{min_amount}} [[AND {{region}}]]
    tags: {region: {field: sales.region}}
    filters: {region: region, min_amount: min_amount}
    viz: {y: total}
    at: {tab: Overview, row: 1, col: 0, width: 6, height: 3}
  - key: by-region
    name: Sales by region
    display: bar
    sql: |
      SELECT region, sum(amount) AS amount FROM sales
      WHERE amount >= {{min_amount}} [[AND {{region}}]]
      GROUP BY region ORDER BY region
    tags: {region: {field: sales.region}}
    filters: {region: region, min_amount: min_amount}
    viz: {x: region, y: [amount]}
    at: {tab: Overview, row: 1, col: 6, width: 18, height: 6}
  - text: "**Point at** the biggest region."
    at: {tab: Detail, row: 0, col: 0, width: 24, height: 2}
  - key: rows
    name: All sales
    display: table
    sql: SELECT region, amount, sold_on FROM sales WHERE true [[AND {{region}}]] ORDER BY sold_on
    tags: {region: {field: sales.region}}
    filters: {region: region}
    at: {tab: Detail, row: 2, col: 0, width: 24, height: 8}
"""


@pytest.fixture
def warehouse(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE sales (id serial PRIMARY KEY, region text, amount numeric, sold_on date)")
        conn.execute(
            "INSERT INTO sales (region, amount, sold_on) VALUES "
            "('north', 10, '2026-01-01'), ('south', 25, '2026-01-02'), ('north', 5, '2026-01-03')"
        )
    return pg_dsn


class Env:
    """The fake Metabase with the warehouse registered, a client, settings and a YAML directory."""

    def __init__(self, fake: Any, client: MetabaseClient, settings: Settings, directory: Path) -> None:
        self.fake, self.client, self.settings, self.directory = fake, client, settings, directory

    def write(self, text: str, name: str = "sales.yaml") -> None:
        (self.directory / name).write_text(text)

    def plan(self, prune: bool = False, directory: Path | None = None) -> dashboards.Plan:
        return dashboards.plan(self.settings, [directory or self.directory], prune=prune, client=self.client)

    def apply(self, prune: bool = False) -> dashboards.ApplyResult:
        return dashboards.apply(self.settings, [self.directory], prune=prune, client=self.client)

    def writes(self) -> list[Any]:
        return [r for r in self.fake.mutating_requests() if not r.path.startswith("/api/session")]


def _env(fake: Any, warehouse: str, root: Path) -> Env:
    session = fake.admin_session()
    fake.add_database(warehouse, name="Warehouse")
    client = MetabaseClient(fake.url, sleep=lambda _s: None)
    client.use_session(session)
    settings = Settings.load({}, cwd=root, metabase_url=fake.url)
    directory = root / "dashboards"
    directory.mkdir(parents=True)
    (directory / "sales.yaml").write_text(SALES)
    return Env(fake, client, settings, directory)


@pytest.fixture
def env(fake_metabase: Any, warehouse: str, tmp_path: Path) -> Iterator[Env]:
    made = _env(fake_metabase, warehouse, tmp_path)
    yield made
    made.client.close()


def _live(items: list[dict]) -> list[dict]:
    return [i for i in items if not i.get("archived")]


def test_apply_on_empty_metabase_creates_collections_cards_and_dashboard(env: Env) -> None:
    result = env.apply()
    assert result.ok, result.describe()
    assert result.summary() == {"created": 6, "updated": 0, "archived": 0, "unchanged": 0}
    [dashboard] = env.fake.dashboards()
    assert result.dashboard_urls == {"sales": f"{env.fake.url}/dashboard/{dashboard['id']}"}
    assert [t["name"] for t in dashboard["tabs"]] == ["Overview", "Detail"]
    assert len(dashboard["dashcards"]) == 5
    assert {p["slug"] for p in dashboard["parameters"]} == {"region", "min_amount"}
    assert sorted(c["name"] for c in env.fake.cards()) == ["All sales", "Sales by region", "Total sales"]
    names = {c["name"]: c for c in env.fake.collections()}
    assert names["Sales"]["location"] == f"/{names['Demo']['id']}/"
    # one PUT of the whole dashboard carries its cards, tabs and filters; the removed endpoint is never used
    puts = [r for r in env.writes() if r.method == "PUT" and r.path == f"/api/dashboard/{dashboard['id']}"]
    assert len(puts) == 1 and {"dashcards", "tabs", "parameters"} <= set(puts[0].json)
    assert not [r for r in env.writes() if r.path.endswith("/cards")]


def test_field_filters_resolve_table_column_to_field_ids(env: Env) -> None:
    env.apply()
    card = next(c for c in env.fake.cards() if c["name"] == "Sales by region")
    metadata = env.client.database_metadata(card["database_id"])
    fetched = env.client.get_card(card["id"])
    assert fetched.template_tags["region"].dimension_field_id == metadata.field_id("sales", "region")
    assert fetched.template_tags["min_amount"].type == "number"


def test_reapply_changes_nothing(env: Env) -> None:
    env.apply()
    env.fake.clear_requests()
    result = env.apply()
    assert env.writes() == []
    assert result.summary() == {"created": 0, "updated": 0, "archived": 0, "unchanged": 6}


def test_noop_plan_costs_a_constant_number_of_requests(env: Env) -> None:
    env.apply()
    small = env.plan().requests
    more_cards = SALES + "".join(
        f"  - key: extra-{i}\n    name: Extra {i}\n    sql: SELECT {i} AS n\n    at: {{tab: Detail}}\n"
        for i in range(6)
    )
    env.write(more_cards)
    env.apply()
    plan = env.plan()
    assert not plan.has_changes
    # Databases, metadata, collections, the dashboard (its id remembered by the last apply); a fresh
    # clone also lists the items of each managed collection.
    assert plan.requests == small == 4
    assert _plan_without_cache(env, env.directory.parent).requests == 4 + 2


def test_renaming_a_card_in_yaml_updates_it_in_place(env: Env) -> None:
    env.apply()
    before = {c["name"]: c["id"] for c in env.fake.cards()}
    env.write(SALES.replace("name: Sales by region", "name: Revenue by region"))
    plan = env.plan()
    [change] = [a for a in plan.actions if a.action != "unchanged"]
    assert (change.kind, change.action, change.changes) == ("card", "update", ["name"])
    env.apply()
    after = {c["name"]: c["id"] for c in _live(env.fake.cards())}
    assert after["Revenue by region"] == before["Sales by region"]
    assert len(after) == 3


def test_renaming_the_dashboard_keeps_its_id(env: Env) -> None:
    env.apply()
    [before] = env.fake.dashboards()
    env.write(SALES.replace("name: Sales\n", "name: Sales Board\n"))
    plan = env.plan()
    assert [(a.kind, a.changes) for a in plan.actions if a.action == "update"] == [("dashboard", ["name"])]
    env.apply()
    [after] = env.fake.dashboards()
    assert (after["id"], after["name"]) == (before["id"], "Sales Board")


def test_a_fresh_clone_plans_against_an_existing_metabase(env: Env, tmp_path: Path) -> None:
    env.apply()
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "sales.yaml").write_text(SALES)
    settings = env.settings.model_copy(update={"home": clone / ".provision"})  # no local state at all
    assert not dashboards.plan(settings, [clone], client=env.client).has_changes


def test_ui_edits_show_as_drift_naming_the_fields(env: Env) -> None:
    env.apply()
    card = next(c for c in env.fake.cards() if c["name"] == "Total sales")
    env.client.update_card(card["id"], CardUpdate(name="Renamed in the UI", display="table"))
    plan = env.plan()
    [drift] = [a for a in plan.actions if a.action == "update"]
    assert (drift.kind, drift.id, drift.changes) == ("card", card["id"], ["name", "display"])
    env.apply()
    assert not env.plan().has_changes


def test_plan_writes_nothing(env: Env) -> None:
    env.fake.clear_requests()
    plan = env.plan()
    assert plan.has_changes
    assert env.writes() == []


def test_prune_archives_only_managed_objects(env: Env) -> None:
    env.apply()
    sales = next(c for c in env.fake.collections() if c["name"] == "Sales")
    db_id = env.fake.cards()[0]["database_id"]
    people_card = env.client.create_card(
        CardCreate(
            name="Made by a person",
            display="table",
            dataset_query=NativeDatasetQuery(database=db_id, native=NativeQuery(query="SELECT 1")),
            collection_id=sales["id"],
        )
    )
    people_dashboard = env.client.create_dashboard(
        DashboardCreate(name="People board", collection_id=sales["id"])
    )
    env.write(SALES[: SALES.index("  - key: rows")])  # the table card is gone from the YAML
    without_prune = env.plan()
    assert not [a for a in without_prune.actions if a.action == "archive"]
    plan = env.plan(prune=True)
    assert [(a.kind, a.name) for a in plan.actions if a.action == "archive"] == [("card", "All sales")]
    env.fake.clear_requests()
    env.apply(prune=True)
    assert [r.method for r in env.writes() if r.method == "DELETE"] == []  # archived, never deleted
    cards = {c["name"]: c for c in env.fake.cards()}
    assert cards["All sales"]["archived"] is True
    assert cards["Made by a person"]["archived"] is False
    assert env.client.get_card(people_card.id).archived is False
    assert env.client.get_dashboard(people_dashboard.id).archived is False
    assert not env.plan(prune=True).has_changes


def test_prune_archives_a_managed_dashboard_removed_from_yaml(env: Env) -> None:
    other = SALES.replace("key: sales", "key: other").replace("name: Sales\n", "name: Other\n")
    env.write(other, "other.yaml")
    env.apply()
    (env.directory / "other.yaml").unlink()
    plan = env.plan(prune=True)
    archived = {(a.kind, a.name) for a in plan.actions if a.action == "archive"}
    assert ("dashboard", "Other") in archived and len(archived) == 4
    env.apply(prune=True)
    dashboards_by_name = {d["name"]: d for d in env.fake.dashboards()}
    assert dashboards_by_name["Other"]["archived"] is True
    assert dashboards_by_name["Sales"]["archived"] is False


def test_prune_given_one_file_archives_only_what_left_that_file(env: Env) -> None:
    env.write(_second_dashboard(), "b.yaml")
    env.apply()
    env.write(SALES[: SALES.index("  - key: rows")])  # a card removed from sales.yaml
    sales_only = env.directory / "sales.yaml"

    plan = dashboards.plan(env.settings, [sales_only], prune=True, client=env.client)

    # The other file's dashboard is not in what was given, so it is not "gone from the YAML".
    assert [(a.kind, a.key) for a in plan.actions if a.action == "archive"] == [("card", "sales/rows")]
    dashboards.apply(env.settings, [sales_only], prune=True, client=env.client)
    live = _live(env.fake.dashboards())
    assert sorted(d["name"] for d in live) == ["Sales", "Sales 2"]
    assert sorted(c["name"] for c in _live(env.fake.cards())).count("All sales") == 1  # Sales 2's own

    # Given the directory, a dashboard whose file is gone is pruned.
    (env.directory / "b.yaml").unlink()
    archived = [(a.kind, a.key) for a in env.plan(prune=True).actions if a.action == "archive"]
    assert ("dashboard", "sales-2") in archived


def test_export_then_plan_shows_no_changes(env: Env, tmp_path: Path) -> None:
    env.apply()
    out = tmp_path / "exported"
    result = dashboards.export(env.settings, ["Sales"], out_dir=out, client=env.client)
    assert result.files == [str(out / "sales.yaml")]
    text = (out / "sales.yaml").read_text()
    assert "field: sales.region" in text and "entity_id" not in text
    plan = env.plan(directory=out)
    assert not plan.has_changes, plan.describe()


def test_export_by_id_writes_valid_yaml(env: Env, tmp_path: Path) -> None:
    env.apply()
    [dashboard] = env.fake.dashboards()
    out = tmp_path / "by-id"
    dashboards.export(env.settings, [str(dashboard["id"])], out_dir=out, client=env.client)
    assert dashboards.validate([out]).dashboards[0]["key"] == "sales"


def test_a_card_that_fails_in_metabase_is_reported(env: Env) -> None:
    env.write(
        SALES.replace("SELECT region, amount, sold_on FROM sales", "SELECT region, amount FROM no_such_table")
    )
    result = env.apply()
    assert [f.name for f in result.failed_queries] == ["All sales"]
    assert not result.ok


def test_unknown_table_column_in_metabase_is_a_spec_error(env: Env) -> None:
    env.write(
        SALES.replace(
            "tags: {region: {field: sales.region}}\n    filters: {region: region}\n",
            "tags: {region: {field: sales.regio}}\n    filters: {region: region}\n",
        )
    )
    with pytest.raises(SpecErrors) as caught:
        env.plan()
    [error] = caught.value.errors
    assert error.field == "cards[4].tags.region.field" and "sales.regio" in error.problem


def _counts(env: Env) -> tuple[int, int, int]:
    return (
        len(_live(env.fake.cards())),
        len(_live(env.fake.dashboards())),
        len([c for c in env.fake.collections() if c["name"] in ("Demo", "Sales") and not c.get("archived")]),
    )


# The writes of a clean apply, in order: the apply lock's POST, 2 collections, dashboard POST, 3 cards,
# its PUT, 3 card runs, the lock's DELETE. Every position, three kinds of fault: a 500 (nothing applied),
# a connection dropped before Metabase applied the write, and one dropped after it committed (the
# answer is lost). A lost POST is never sent again blindly; the next apply finds what it made by its mark.
CLEAN_APPLY_WRITES = 12


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["500", "drop", "drop-after-commit"])
def test_a_fault_at_any_write_then_a_rerun_converges_without_duplicates(
    warehouse: str, tmp_path: Path, kind: str
) -> None:
    with FakeMetabase() as fake:
        for position in range(1, CLEAN_APPLY_WRITES + 1):
            fake.state = new_state()  # a brand-new Metabase for each position, without a restart
            env = _env(fake, warehouse, tmp_path / f"{kind}-{position}")
            fake.clear_requests()
            fake.inject_fault(at_mutation=position, kind=kind)  # type: ignore[arg-type]
            if kind == "500" and position < CLEAN_APPLY_WRITES:
                with pytest.raises(MetabaseError):
                    env.apply()
            else:
                # A dropped PUT is retried and may succeed; a lock that cannot be deleted is left to the
                # next apply (the apply itself succeeded).
                with contextlib.suppress(MetabaseError):
                    env.apply()
            faulted = env.writes()[position - 1]
            if faulted.method == "POST" and not faulted.path.endswith("/query"):
                sent = [(r.path, json.dumps(r.json, sort_keys=True)) for r in env.writes()]
                assert sent.count((faulted.path, json.dumps(faulted.json, sort_keys=True))) == 1, position
            second = env.apply()
            assert second.ok, (position, second.describe())
            assert _counts(env) == (3, 1, 2), position
            assert not env.plan().has_changes, position
            env.client.close()


def test_a_clean_apply_makes_twelve_writes(env: Env) -> None:
    # The lock's POST and DELETE, 2 collections, 3 cards, the dashboard POST and its one PUT, 3 card runs
    # (the read-back is a GET)
    env.fake.clear_requests()
    env.apply()
    assert len(env.writes()) == 12


def test_cli_plan_exit_codes(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    key = env.client.create_api_key("tests", group_id=2).unmasked_key.get_secret_value()
    monkeypatch.setenv("METABASE_URL", env.fake.url)
    monkeypatch.setenv("METABASE_API_KEY", key)
    runner = CliRunner()
    pending = runner.invoke(app, ["dashboards", "plan", str(env.directory), "--json"])
    assert pending.exit_code == 2, pending.stderr
    assert json.loads(pending.stdout)["summary"]["create"] == 6
    applied = runner.invoke(app, ["dashboards", "apply", str(env.directory), "--json"])
    assert applied.exit_code == 0, applied.stderr
    assert json.loads(applied.stdout)["summary"]["created"] == 6
    clean = runner.invoke(app, ["dashboards", "plan", str(env.directory)])
    assert clean.exit_code == 0
    assert "0 to create, 0 to update, 0 to archive, 6 unchanged" in clean.stdout
    assert key not in clean.stdout + clean.stderr
    broken = runner.invoke(app, ["dashboards", "plan", str(env.directory / "missing.yaml")])
    assert broken.exit_code == 3


def test_cli_export_writes_yaml_that_plans_clean(
    env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.apply()
    key = env.client.create_api_key("tests", group_id=2).unmasked_key.get_secret_value()
    monkeypatch.setenv("METABASE_URL", env.fake.url)
    monkeypatch.setenv("METABASE_API_KEY", key)
    out = tmp_path / "cli-export"
    runner = CliRunner()
    exported = runner.invoke(app, ["dashboards", "export", "Sales", "--out", str(out), "--json"])
    assert exported.exit_code == 0, exported.stderr
    assert json.loads(exported.stdout)["files"] == [str(out / "sales.yaml")]
    planned = runner.invoke(app, ["dashboards", "plan", str(out)])
    assert planned.exit_code == 0, planned.stdout + planned.stderr
    missing = runner.invoke(app, ["dashboards", "export", "No such board", "--out", str(out)])
    assert missing.exit_code == 4
    assert "no dashboard named 'No such board'" in missing.stderr


def test_moving_a_card_keeps_every_dashcard_id(env: Env) -> None:
    env.apply()
    [before] = env.fake.dashboards()
    ids_before = {d["card_id"]: d["id"] for d in before["dashcards"]}
    env.write(
        SALES.replace(
            "at: {tab: Overview, row: 1, col: 0, width: 6, height: 3}", "at: {tab: Overview, row: 7, col: 0}"
        )
    )
    plan = env.plan()
    assert [(a.kind, a.changes) for a in plan.actions if a.action == "update"] == [("dashboard", ["cards"])]
    env.apply()
    [after] = env.fake.dashboards()
    assert {d["card_id"]: d["id"] for d in after["dashcards"]} == ids_before
    moved = next(d for d in after["dashcards"] if d["card"] and d["card"].get("name") == "Total sales")
    assert (moved["row"], moved["col"], moved["size_x"], moved["size_y"]) == (7, 0, 6, 3)
    assert not env.plan().has_changes


def test_renaming_a_tab_keeps_its_id_and_its_cards(env: Env) -> None:
    env.apply()
    [before] = env.fake.dashboards()
    tab_ids = {t["name"]: t["id"] for t in before["tabs"]}
    dashcards_before = {d["id"]: d["dashboard_tab_id"] for d in before["dashcards"]}
    env.write(
        SALES.replace("[Overview, Detail]", "[Overview, Details]").replace("tab: Detail,", "tab: Details,")
    )

    assert [(a.kind, a.changes) for a in env.plan().actions if a.action == "update"] == [
        ("dashboard", ["tabs", "cards"])
    ]
    env.apply()

    [after] = env.fake.dashboards()
    # Tab links (?tab=<id>-details) and every dashcard survive the rename.
    assert {t["name"]: t["id"] for t in after["tabs"]} == {
        "Overview": tab_ids["Overview"],
        "Details": tab_ids["Detail"],
    }
    assert {d["id"]: d["dashboard_tab_id"] for d in after["dashcards"]} == dashcards_before
    assert not env.plan().has_changes


def test_dropping_tabs_keeps_one_tab_holding_every_card(env: Env) -> None:
    env.apply()
    single = (
        SALES.replace("tabs: [Overview, Detail]\n", "")
        .replace("tab: Overview, ", "")
        .replace(
            "at: {tab: Detail, row: 0, col: 0, width: 24, height: 2}",
            "at: {row: 7, col: 0, width: 24, height: 2}",
        )
        .replace(
            "at: {tab: Detail, row: 2, col: 0, width: 24, height: 8}",
            "at: {row: 9, col: 0, width: 24, height: 8}",
        )
    )
    env.write(single)
    assert [(a.kind, a.changes) for a in env.plan().actions if a.action == "update"] == [
        ("dashboard", ["tabs", "cards"])
    ]
    env.apply()
    [dashboard] = env.fake.dashboards()
    # Metabase rejects a PUT that leaves a tabbed dashboard without tabs (its UI keeps one too)
    assert [t["name"] for t in dashboard["tabs"]] == ["Overview"] and len(dashboard["dashcards"]) == 5
    assert {d["dashboard_tab_id"] for d in dashboard["dashcards"]} == {dashboard["tabs"][0]["id"]}
    assert not env.plan().has_changes


def test_moving_the_dashboard_to_another_collection_keeps_every_id(env: Env) -> None:
    env.apply()
    [before] = env.fake.dashboards()
    cards_before = sorted(c["id"] for c in env.fake.cards())
    env.write(SALES.replace("collection: Demo/Sales", "collection: Demo/Revenue"))
    plan = env.plan()
    assert [(a.kind, a.key) for a in plan.actions if a.action == "create"] == [("collection", "Demo/Revenue")]
    assert {(a.kind, tuple(a.changes)) for a in plan.actions if a.action == "update"} == {
        ("card", ("collection",)),
        ("dashboard", ("collection",)),
    }
    env.apply()
    revenue = next(c for c in env.fake.collections() if c["name"] == "Revenue")
    [after] = env.fake.dashboards()
    assert (after["id"], after["collection_id"]) == (before["id"], revenue["id"])
    assert sorted(c["id"] for c in env.fake.cards() if c["collection_id"] == revenue["id"]) == cards_before
    assert not env.plan().has_changes


def test_cli_apply_exits_1_when_a_card_fails_in_metabase(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    key = env.client.create_api_key("tests", group_id=2).unmasked_key.get_secret_value()
    monkeypatch.setenv("METABASE_URL", env.fake.url)
    monkeypatch.setenv("METABASE_API_KEY", key)
    env.write(SALES.replace("SELECT region, amount, sold_on FROM sales", "SELECT region FROM no_such_table"))
    result = CliRunner().invoke(app, ["dashboards", "apply", str(env.directory)])
    assert result.exit_code == 1
    assert "query failed: All sales" in result.stdout
    assert "6 created, 0 updated, 0 archived, 0 unchanged" in result.stdout
    assert "card 'All sales' fails in Metabase" in result.stderr


def test_apply_reports_what_metabase_did_not_store_as_written(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_get = env.client.get_dashboard

    def stores_another_name(dashboard_id: int) -> Any:
        read = real_get(dashboard_id)
        return read.model_copy(update={"name": "Not what we wrote"})

    env.apply()
    env.write(SALES.replace("name: Sales\n", "name: Sales v2\n"))
    monkeypatch.setattr(env.client, "get_dashboard", stores_another_name)
    result = env.apply()
    assert not result.ok
    assert [p for p in result.verify_problems if "differs after apply: name" in p]


# --- the remembered dashboard ids (id_cache.py): a shortcut that must never change the plan --------


def _second_dashboard() -> str:
    return SALES.replace("key: sales", "key: sales-2").replace("name: Sales\n", "name: Sales 2\n")


def _plan_without_cache(env: Env, tmp_path: Path) -> dashboards.Plan:
    """The plan a fresh clone computes: same YAML and Metabase, no local state at all."""
    settings = env.settings.model_copy(update={"home": tmp_path / "fresh-clone-home"})
    return dashboards.plan(settings, [env.directory], client=env.client)


def _cached_ids(env: Env) -> dict[str, int]:
    return IdCache.of(env.settings.home).dashboards(env.settings.metabase_url)


def _sales_dashboard(env: Env) -> Any:
    [dashboard] = [d for d in _live(env.fake.dashboards()) if d["name"] == "Sales"]
    return dashboard


def _archive_it(env: Env, tmp_path: Path) -> None:
    env.client.update_dashboard(_sales_dashboard(env)["id"], DashboardUpdate(archived=True))


def _move_it_out(env: Env, tmp_path: Path) -> None:
    # To the root collection: outside every collection the YAML manages, so not ours to find there.
    env.client.update_dashboard(_sales_dashboard(env)["id"], DashboardUpdate(collection_id=None))


def _point_at_a_persons_dashboard(env: Env, tmp_path: Path) -> None:
    sales = next(c for c in env.fake.collections() if c["name"] == "Sales")
    theirs = env.client.create_dashboard(DashboardCreate(name="Sales", collection_id=sales["id"]))
    IdCache.of(env.settings.home).remember(env.settings.metabase_url, {"sales": theirs.id}, set())


def _point_at_nothing(env: Env, tmp_path: Path) -> None:
    IdCache.of(env.settings.home).remember(env.settings.metabase_url, {"sales": 99999}, set())


def _swap_two_remembered_ids(env: Env, tmp_path: Path) -> None:
    # Both dashboards and all their cards exist, so only each dashboard's key can tell them apart.
    env.write(_second_dashboard(), "b.yaml")
    env.apply()
    ids = _cached_ids(env)
    swapped = {"sales": ids["sales-2"], "sales-2": ids["sales"]}
    IdCache.of(env.settings.home).remember(env.settings.metabase_url, swapped, set())


def _take_a_card_off(env: Env, tmp_path: Path) -> None:
    dashboard = env.client.get_dashboard(_sales_dashboard(env)["id"])
    kept = [dc for dc in dashboard.dashcards if dc.card is None or dc.card.name != "All sales"]
    env.client.update_dashboard(dashboard.id, DashboardUpdate(dashcards=kept, tabs=dashboard.tabs))


def _interrupted_after_creating_a_new_card(env: Env, tmp_path: Path) -> None:
    env.write(SALES + "  - key: extra\n    name: Extra\n    sql: SELECT 1 AS n\n    at: {tab: Detail}\n")
    env.fake.inject_fault(at_mutation=2, kind="500")  # the card POST lands, the dashboard PUT fails
    with pytest.raises(MetabaseError):
        env.apply()


def _rename_a_card_in_yaml(env: Env, tmp_path: Path) -> None:
    env.write(SALES.replace("name: Sales by region", "name: Revenue by region"))


@pytest.mark.parametrize(
    "change",
    [
        None,
        _archive_it,
        _move_it_out,
        _point_at_a_persons_dashboard,
        _point_at_nothing,
        _swap_two_remembered_ids,
        _take_a_card_off,
        _interrupted_after_creating_a_new_card,
        _rename_a_card_in_yaml,
    ],
    ids=lambda c: "nothing" if c is None else c.__name__.strip("_"),
)
def test_remembered_ids_plan_exactly_what_a_fresh_clone_plans(env: Env, tmp_path: Path, change: Any) -> None:
    env.apply()
    assert _cached_ids(env) == {"sales": _sales_dashboard(env)["id"]}
    if change is not None:
        change(env, tmp_path)

    cached = env.plan()
    fresh = _plan_without_cache(env, tmp_path)

    assert cached.to_dict() == fresh.to_dict()
    if change is None:
        # The shortcut skipped the collection items listing: fewer requests for the same answer.
        assert cached.requests < fresh.requests


def test_apply_remembers_new_dashboards_and_forgets_pruned_ones(env: Env) -> None:
    env.write(_second_dashboard(), "b.yaml")
    env.apply()
    ids = _cached_ids(env)
    assert set(ids) == {"sales", "sales-2"}
    assert sorted(ids.values()) == sorted(d["id"] for d in _live(env.fake.dashboards()))

    (env.directory / "b.yaml").unlink()
    env.apply(prune=True)
    assert set(_cached_ids(env)) == {"sales"}


def test_a_noop_apply_does_not_rewrite_the_cache_and_a_damaged_one_is_ignored(env: Env) -> None:
    env.apply()
    cache = IdCache.of(env.settings.home).path
    before = cache.stat().st_mtime_ns
    env.apply()
    assert cache.stat().st_mtime_ns == before

    cache.write_text("{not json")
    assert not env.plan().has_changes
    env.apply()
    assert _cached_ids(env) == {"sales": _sales_dashboard(env)["id"]}


def test_an_unwritable_state_directory_costs_the_shortcut_not_the_apply(env: Env, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")  # the state directory's place is taken by a file: nothing can be written
    settings = env.settings.model_copy(update={"home": blocked / ".provision"})
    progress = RecordingProgress()

    # Without a place for the backup, apply refuses before any write ...
    env.fake.clear_requests()
    with pytest.raises(ConfigError, match="cannot write the backup"):
        dashboards.apply(settings, [env.directory], client=env.client, progress=progress)
    assert env.writes() == []

    # ... and with one elsewhere (--backup-dir), only the shortcut of remembered ids is lost.
    result = dashboards.apply(
        settings, [env.directory], client=env.client, progress=progress, backup_dir=tmp_path / "backups"
    )

    assert result.ok and len(_live(env.fake.dashboards())) == 1
    warnings = [text for kind, text in progress.lines if kind == "warn"]
    assert any("metabase-ids.json" in w and "next run reads every collection" in w for w in warnings)


@responses.activate
def test_a_failed_card_run_with_a_blank_error_is_reported_not_raised() -> None:
    card = DesiredCard(
        file_key="d",
        key="q",
        ident="d/q",
        name="Q",
        description=None,
        display="table",
        type="question",
        sql="SELECT 1",
        template_tags={},
        visualization_settings={"provisioner.key": "d/q"},
        collection_path=("C",),
        database_id=1,
    )
    plan = Plan(
        [
            Action("collection", "unchanged", "C", "C", id=3, desired=("C",)),
            Action("card", "update", "d/q", "Q", id=5, changes=["sql"], desired=card),
        ]
    )
    base = "http://mb.test"
    responses.put(f"{base}/api/card/5", json={"id": 5, "name": "Q"})
    # Metabase answers 202 even when the query fails; the message may be empty.
    responses.post(f"{base}/api/card/5/query", status=202, json={"status": "failed", "error": " \n"})
    with MetabaseClient(base, sleep=lambda _s: None) as client:
        result = execute(plan, client, Reader(), metabase_url=base)
    assert [(f.key, f.card_id, f.error) for f in result.failed_queries] == [("d/q", 5, "failed")]
    assert not result.ok


def test_plan_as_markdown_is_a_pull_request_comment_of_what_changes(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.apply()
    key = env.client.create_api_key("tests", group_id=2).unmasked_key.get_secret_value()
    monkeypatch.setenv("METABASE_URL", env.fake.url)
    monkeypatch.setenv("METABASE_API_KEY", key)
    env.write(
        SALES.replace("name: Total sales", "name: Sales in total").replace("name: Sales\n", "name: Revenue\n")
    )
    (env.directory / "more.yaml").write_text(
        SALES.replace("key: sales", "key: more").replace("name: Sales\n", "name: More | sales\n")
    )

    planned = CliRunner().invoke(app, ["dashboards", "plan", str(env.directory), "--format", "markdown"])

    assert planned.exit_code == 2, planned.stderr
    comment = planned.stdout
    assert comment.startswith("<!-- metabase-provisioner plan -->\n### Metabase plan for http://")
    assert "| update | card | Sales in total | `sales/total` | `name` |" in comment
    assert "| update | dashboard | Revenue | `sales` | `name` |" in comment
    assert "| create | dashboard | More \\| sales | `more` | new |" in comment
    assert "<details><summary>" in comment and "unchanged</summary>" in comment
    as_json = CliRunner().invoke(app, ["dashboards", "plan", str(env.directory), "--format", "json"])
    assert as_json.exit_code == 2 and json.loads(as_json.stdout)["exit_code"] == 2
