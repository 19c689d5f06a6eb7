"""Reviewed plans (`plan --out`, `apply FILE`), the apply lock, backups and restore, on the fake Metabase."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from provisioner import dashboards
from provisioner.apply_lock import LOCK_PREFIX, ApplyLock
from provisioner.cli.app import app
from provisioner.config import Settings
from provisioner.errors import ApplyBusy, ConfigError, MetabaseError, StalePlan
from provisioner.mbql.normal import from_wire
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import CardUpdate, DashboardCreate
from provisioner.progress import RecordingProgress
from tests.fake_metabase.server import FakeMetabase, WriteGate

SALES = """\
key: sales
name: Sales
collection: Demo/Sales
filters:
  - {key: region, name: Region, type: category}
cards:
  - key: total
    name: Total sales
    display: scalar
    sql: SELECT sum(amount) AS total FROM sales WHERE true [[AND {{region}}]]
    tags: {region: {field: sales.region}}
    filters: {region: region}
    at: {row: 0, col: 0, width: 6, height: 3}
  - key: by-region
    name: Sales by region
    display: bar
    query:
      source: sales
      summarize: ["sum(amount)"]
      group_by: [region]
    filters: {region: region}
    at: {row: 0, col: 6, width: 12, height: 6}
"""


@pytest.fixture
def warehouse(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE sales (id serial PRIMARY KEY, region text, amount numeric)")
        conn.execute("INSERT INTO sales (region, amount) VALUES ('north', 10), ('south', 25), ('north', 5)")
    return pg_dsn


class Env:
    def __init__(self, fake: FakeMetabase, warehouse: str, root: Path) -> None:
        self.fake, self.root = fake, root
        fake.add_database(warehouse, name="Warehouse")
        self.session = fake.admin_session()
        self.client = self.new_client()
        self.settings = Settings.load({}, cwd=root, metabase_url=fake.url)
        self.directory = root / "dashboards"
        self.directory.mkdir(parents=True)
        self.write(SALES)

    def new_client(self) -> MetabaseClient:
        client = MetabaseClient(self.fake.url, sleep=lambda _s: None)
        client.use_session(self.session)
        return client

    def write(self, text: str) -> None:
        (self.directory / "sales.yaml").write_text(text)

    def apply(self, *paths: Path, **options: Any) -> dashboards.ApplyResult:
        return dashboards.apply(self.settings, list(paths) or [self.directory], client=self.client, **options)

    def plan(self, **options: Any) -> dashboards.Plan:
        return dashboards.plan(self.settings, [self.directory], client=self.client, **options)

    def writes(self) -> list[Any]:
        return [r for r in self.fake.mutating_requests() if not r.path.startswith("/api/session")]

    def card(self, name: str) -> dict[str, Any]:
        return next(c for c in self.fake.cards() if c["name"] == name and not c.get("archived"))


@pytest.fixture
def env(fake_metabase: FakeMetabase, warehouse: str, tmp_path: Path) -> Iterator[Env]:
    made = Env(fake_metabase, warehouse, tmp_path)
    yield made
    made.client.close()


def _live(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if not i.get("archived")]


# --- saved plans ---------------------------------------------------------------------------------


def test_a_saved_plan_applies_its_snapshot_not_the_working_tree(env: Env, tmp_path: Path) -> None:
    env.apply()
    env.write(SALES.replace("name: Total sales", "name: Sales total"))
    saved = tmp_path / "review.json"
    plan = env.plan(out=saved)
    assert plan.saved_to == str(saved)
    assert [(a.key, a.changes) for a in plan.actions if a.action == "update"] == [("sales/total", ["name"])]
    # The YAML moves on after the review: the saved plan still applies what was reviewed.
    env.write(SALES.replace("name: Total sales", "name: Something else"))

    result = env.apply(saved)

    assert [(o.key, o.action) for o in result.outcomes if o.action != "unchanged"] == [
        ("sales/total", "updated")
    ]
    assert env.card("Sales total")
    assert [(a.key, a.changes) for a in env.plan().actions if a.action == "update"] == [
        ("sales/total", ["name"])
    ]


def test_the_plan_file_holds_the_files_and_no_environment_value(env: Env, tmp_path: Path) -> None:
    env.write(SALES.replace("collection: Demo/Sales", "collection: Demo/Sales\ndescription: ${TEAM_NOTE}"))
    saved = tmp_path / "plan.json"
    dashboards.plan(
        env.settings,
        [env.directory],
        client=env.client,
        out=saved,
        environ={"TEAM_NOTE": "Team secret-x"},
    )
    data = json.loads(saved.read_text())
    assert data["format"] == "metabase-provisioner-plan" and data["prune"] is False
    assert data["files"] == {"sales.yaml": (env.directory / "sales.yaml").read_text()}
    assert data["paths"] == [{"path": ".", "directory": True}]
    assert list(data["environment"]) == ["TEAM_NOTE"]
    assert "secret-x" not in saved.read_text()
    assert (saved.stat().st_mode & 0o777) == 0o600


def test_an_object_changed_since_the_plan_is_named_and_nothing_is_written(env: Env, tmp_path: Path) -> None:
    env.apply()
    env.write(SALES.replace("display: bar", "display: line"))
    saved = tmp_path / "plan.json"
    env.plan(out=saved)
    card = env.card("Sales by region")
    env.client.update_card(card["id"], CardUpdate(name="Renamed in the UI"))  # a person, meanwhile
    env.fake.clear_requests()

    with pytest.raises(StalePlan) as caught:
        env.apply(saved)

    assert env.writes() == []
    message = caught.value.message
    assert f"card 'Sales by region' (id {card['id']}) changed in Metabase since the plan: name" in message
    assert "updated_at" in message
    assert caught.value.exit_code == 7


def test_force_applies_the_saved_plan_over_a_change(env: Env, tmp_path: Path) -> None:
    env.apply()
    env.write(SALES.replace("display: bar", "display: line"))
    saved = tmp_path / "plan.json"
    env.plan(out=saved)
    card = env.card("Sales by region")
    env.client.update_card(card["id"], CardUpdate(name="Renamed in the UI"))

    env.apply(saved, force=True)

    after = env.fake.cards()
    assert {(c["name"], c["display"]) for c in _live(after)} >= {("Sales by region", "line")}


def test_a_plan_overtaken_by_another_apply_is_refused(env: Env, tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    assert env.plan(out=saved).summary()["create"] == 5
    env.apply()  # someone applied the same YAML meanwhile
    env.fake.clear_requests()

    with pytest.raises(StalePlan) as caught:
        env.apply(saved)

    assert "dashboard 'Sales': planned create, now unchanged" in caught.value.message
    assert env.writes() == []


def test_a_plan_for_another_metabase_or_environment_is_refused(env: Env, tmp_path: Path) -> None:
    env.write(SALES.replace("collection: Demo/Sales", "collection: ${TEAM}"))
    saved = tmp_path / "plan.json"
    dashboards.plan(env.settings, [env.directory], client=env.client, out=saved, environ={"TEAM": "Blue"})

    other = env.settings.model_copy(update={"metabase_url": "http://metabase.example:3000"})
    with pytest.raises(ConfigError, match=r"made for http://127\.0\.0\.1"):
        dashboards.apply(other, [saved], client=env.client, environ={"TEAM": "Blue"}, force=True)
    with pytest.raises(StalePlan, match="environment variable TEAM has another value"):
        dashboards.apply(env.settings, [saved], client=env.client, environ={"TEAM": "Red"})
    result = dashboards.apply(env.settings, [saved], client=env.client, environ={"TEAM": "Blue"})
    assert result.summary()["created"] == 4  # collection Blue, the dashboard, its 2 cards


def test_saved_plan_misuse_is_a_config_error(env: Env, tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    env.plan(out=saved)
    with pytest.raises(ConfigError, match="--prune cannot be given with a saved plan"):
        env.apply(saved, prune=True)
    with pytest.raises(ConfigError, match="--force applies only to a saved plan"):
        env.apply(force=True)
    damaged = tmp_path / "damaged.json"
    damaged.write_text(saved.read_text().replace('"prune": false', '"prune": "sometimes"'))
    with pytest.raises(ConfigError, match="prune"):
        env.apply(damaged)
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="not a plan file"):
        env.apply(other)
    escaping = json.loads(saved.read_text())
    escaping["files"] = {"../../outside.yaml": "key: x"}
    (tmp_path / "escaping.json").write_text(json.dumps(escaping))
    with pytest.raises(ConfigError, match="outside its snapshot"):
        env.apply(tmp_path / "escaping.json")
    assert not (tmp_path.parent / "outside.yaml").exists()


def test_cli_plan_out_then_apply_file(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METABASE_URL", env.fake.url)
    key = env.client.create_api_key("tests", group_id=2).unmasked_key.get_secret_value()
    monkeypatch.setenv("METABASE_API_KEY", key)
    monkeypatch.chdir(env.root)
    runner = CliRunner()
    saved = tmp_path / "reviewed.json"

    planned = runner.invoke(app, ["dashboards", "plan", str(env.directory), "--out", str(saved), "--json"])
    assert planned.exit_code == 2, planned.stderr
    assert json.loads(planned.stdout)["saved_to"] == str(saved)
    human = runner.invoke(app, ["dashboards", "plan", str(env.directory), "--out", str(saved)])
    assert f"`provision dashboards apply {saved}` applies it" in human.stdout

    applied = runner.invoke(app, ["dashboards", "apply", str(saved), "--json"])
    assert applied.exit_code == 0, applied.stderr
    assert json.loads(applied.stdout)["summary"]["created"] == 5

    stale = runner.invoke(app, ["dashboards", "apply", str(saved)])
    assert stale.exit_code == 7
    assert "the saved plan no longer holds; nothing was written" in stale.stderr
    assert "Traceback" not in stale.stderr and key not in stale.stderr + stale.stdout


# --- the apply lock ------------------------------------------------------------------------------


class _NoLock(ApplyLock):
    """No lock at all: shows that the race below is real (and the lock is what prevents duplicates)."""

    def held(self, client: MetabaseClient, progress: Any = None, **_: Any) -> Any:
        from contextlib import nullcontext

        return nullcontext(False)


def _race(env: Env, lock: ApplyLock) -> list[BaseException | dashboards.ApplyResult]:
    """Two applies of the same YAML at once, their first writes held until both arrive."""
    results: list[BaseException | dashboards.ApplyResult] = []
    env.fake.write_gate = WriteGate(2)

    def one(home: str) -> None:
        settings = env.settings.model_copy(update={"home": env.root / home})
        client = env.new_client()
        try:
            results.append(dashboards.apply(settings, [env.directory], client=client, lock=lock))
        except BaseException as exc:
            results.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(h,)) for h in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    env.fake.write_gate = None
    return results


def test_without_the_lock_two_applies_at_once_duplicate(env: Env) -> None:
    _race(env, _NoLock())
    names = [c["name"] for c in _live(env.fake.collections())]
    assert names.count("Demo") == 2, "the gate no longer makes a race: the next test proves nothing"


def test_two_applies_at_once_never_duplicate(env: Env) -> None:
    results = _race(env, ApplyLock(poll_s=0.05))

    assert all(isinstance(r, dashboards.ApplyResult) and r.ok for r in results), results
    summaries = sorted(r.summary()["created"] for r in results if isinstance(r, dashboards.ApplyResult))
    assert summaries == [0, 5]  # the second waited, planned again and found everything made
    assert [c["name"] for c in _live(env.fake.collections())].count("Demo") == 1
    assert len(_live(env.fake.cards())) == 2
    assert [d["name"] for d in _live(env.fake.dashboards())] == ["Sales"]  # both locks are gone
    assert not env.plan().has_changes


def test_a_plan_without_creates_takes_no_lock(env: Env) -> None:
    env.apply()
    env.write(SALES.replace("display: bar", "display: line"))
    env.fake.clear_requests()
    env.apply()
    assert [(r.method, r.path) for r in env.writes() if r.path == "/api/dashboard"] == []


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_held_lock_is_waited_for_then_refused(env: Env) -> None:
    held = env.client.create_dashboard(DashboardCreate(name=f"{LOCK_PREFIX} other"))
    clock = _Clock()
    lock = ApplyLock(wait_s=10, poll_s=2, sleep=clock.sleep, clock=clock.time)
    progress = RecordingProgress()

    with pytest.raises(ApplyBusy) as caught, lock.held(env.client, progress):
        pass

    assert f"dashboard {held.id}" in caught.value.message and caught.value.exit_code == 6
    assert clock.now >= 10
    assert any("another apply is running" in text for _, text in progress.lines)
    assert [d["id"] for d in _live(env.fake.dashboards())] == [held.id]  # ours is gone, theirs kept


def test_a_stale_lock_is_removed(env: Env) -> None:
    env.client.create_dashboard(DashboardCreate(name=f"{LOCK_PREFIX} dead"))
    lock = ApplyLock(stale_after=timedelta(0), sleep=lambda _s: pytest.fail("must not wait"))
    progress = RecordingProgress()
    with lock.held(env.client, progress) as waited:
        assert waited is False
    assert _live(env.fake.dashboards()) == []
    assert any("stale apply lock" in text for kind, text in progress.lines if kind == "warn")


@pytest.mark.parametrize("kind", ["500", "drop-after-commit"])
def test_a_lock_whose_removal_fails_is_removed_by_the_next_apply(env: Env, kind: str) -> None:
    # Writes of a first apply: lock POST, 2 collections, dashboard, 2 cards, dashboard PUT, 2 runs,
    # the lock's DELETE (the 10th).
    env.fake.inject_fault(at_mutation=10, kind=kind)  # type: ignore[arg-type]
    progress = RecordingProgress()
    dashboards.apply(env.settings, [env.directory], client=env.client, progress=progress)
    if kind == "500":
        assert any(LOCK_PREFIX in d["name"] for d in _live(env.fake.dashboards()))
        assert any("could not remove the apply lock" in text for _, text in progress.lines)

    env.apply()  # changes nothing, takes no lock of its own, but clears what the last one left

    assert [d["name"] for d in _live(env.fake.dashboards())] == ["Sales"]


def test_a_lost_answer_to_the_lock_post_leaves_no_lock(env: Env) -> None:
    env.fake.inject_fault(at_mutation=1, kind="drop-after-commit")
    with pytest.raises(MetabaseError):
        env.apply()
    assert _live(env.fake.dashboards()) == []
    assert env.apply().summary()["created"] == 5


# --- backups and restore -------------------------------------------------------------------------


def _backups(env: Env) -> list[Path]:
    return sorted((env.settings.home / "backups").iterdir())


def test_apply_backs_up_what_it_changes_and_restore_puts_it_back(env: Env) -> None:
    env.apply()
    [first] = _backups(env)  # the first apply only created: its backup lists what it made
    assert len(json.loads((first / "manifest.json").read_text())["created"]) == 5
    before_card = env.card("Sales by region")
    [before_dash] = _live(env.fake.dashboards())

    env.write(
        SALES.replace("display: bar", "display: line")
        .replace('summarize: ["sum(amount)"]', "summarize: [count]")
        .replace("name: Sales\n", "name: Sales board\n")
    )
    result = env.apply()

    assert result.backup is not None
    backup = Path(result.backup)
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["command"] == "apply"
    assert {(o["kind"], o["action"]) for o in manifest["objects"]} == {
        ("card", "update"),
        ("dashboard", "update"),
    }
    saved_card = json.loads((backup / f"card-{before_card['id']}.json").read_text())
    assert saved_card["display"] == "bar" and saved_card["dataset_query"] == before_card["dataset_query"]

    restored = dashboards.restore(env.settings, backup, client=env.client)

    assert restored.ok, restored.describe()
    after_card = env.card("Sales by region")
    assert after_card["display"] == "bar"
    assert from_wire(after_card["dataset_query"]) == from_wire(before_card["dataset_query"])
    [after_dash] = _live(env.fake.dashboards())
    assert after_dash["name"] == before_dash["name"] == "Sales"
    # Back where the YAML before the change was: the plan of the new YAML wants the same changes again.
    assert {a.key for a in env.plan().actions if a.action == "update"} == {"sales", "sales/by-region"}
    # And the restore itself was backed up: restoring that backup undoes the restore.
    assert restored.backup is not None
    dashboards.restore(env.settings, restored.backup, client=env.client)
    assert not env.plan().has_changes


def test_restore_brings_back_what_prune_archived_and_archives_what_was_created(env: Env) -> None:
    env.apply()
    env.write(SALES.split("  - key: by-region")[0].replace("cards:", "cards:", 1))
    pruned = env.apply(prune=True)
    assert [o.key for o in pruned.outcomes if o.action == "archived"] == ["sales/by-region"]
    assert pruned.backup is not None

    dashboards.restore(env.settings, Path(pruned.backup), client=env.client)

    assert env.card("Sales by region")
    [dash] = _live(env.fake.dashboards())
    assert len(dash["dashcards"]) == 2

    env.write(
        SALES
        + """\
  - key: extra
    name: Extra
    display: table
    sql: SELECT 1 AS one
    at: {row: 6, col: 0, width: 6, height: 3}
"""
    )
    added = env.apply()
    assert added.backup is not None
    dashboards.restore(env.settings, Path(added.backup), client=env.client)
    assert [c["name"] for c in env.fake.cards() if c["name"] == "Extra" and not c.get("archived")] == []
    [dash] = _live(env.fake.dashboards())
    assert len(dash["dashcards"]) == 2


def test_restore_refuses_another_metabase_and_a_damaged_backup(env: Env, tmp_path: Path) -> None:
    env.apply()
    env.write(SALES.replace("display: bar", "display: line"))
    backup = Path(env.apply().backup or "")
    other = env.settings.model_copy(update={"metabase_url": "http://other.example"})
    env.fake.clear_requests()
    with pytest.raises(ConfigError, match=r"is a backup of http://127\.0\.0\.1"):
        dashboards.restore(other, backup, client=env.client)
    with pytest.raises(ConfigError, match="is not a backup"):
        dashboards.restore(env.settings, tmp_path, client=env.client)
    [card_file] = backup.glob("card-*.json")
    card_file.write_text("{")
    with pytest.raises(ConfigError, match="cannot be read"):
        dashboards.restore(env.settings, backup, client=env.client)
    assert env.writes() == []


def test_cli_restore(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.apply()
    env.write(SALES.replace("display: bar", "display: line"))
    backup = env.apply().backup
    assert backup is not None
    key = env.client.create_api_key("tests", group_id=2).unmasked_key.get_secret_value()
    monkeypatch.setenv("METABASE_URL", env.fake.url)
    monkeypatch.setenv("METABASE_API_KEY", key)
    monkeypatch.setenv("PROVISION_HOME", str(env.settings.home))
    runner = CliRunner()

    done = runner.invoke(app, ["dashboards", "restore", backup, "--json"])

    assert done.exit_code == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] is True and {o["action"] for o in out["objects"]} == {"restored"}
    assert env.card("Sales by region")["display"] == "bar"
    missing = runner.invoke(app, ["dashboards", "restore", str(env.root / "nope")])
    assert missing.exit_code == 3 and "is not a backup" in missing.stderr
